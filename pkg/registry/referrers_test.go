package registry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/storage"
)

// countingItems counts the metadata queries and the items they return, to
// report what a listing costs the store.
type countingItems struct {
	storage.Items
	queries, items int
}

func (c *countingItems) ItemQuery(ctx context.Context, pk, prefix, after string, limit int) ([]storage.Item, bool, error) {
	items, more, err := c.Items.ItemQuery(ctx, pk, prefix, after, limit)
	c.queries++
	c.items += len(items)
	return items, more, err
}

func (c *countingItems) reset() (queries, items int) {
	queries, items = c.queries, c.items
	c.queries, c.items = 0, 0
	return queries, items
}

// lambdaPageBudget is what one referrers response may weigh so that, even
// base64-encoded (4/3) with its headers, it fits Lambda's 6 MB response.
const lambdaPageBudget = 4 << 20

// artifact is a blob-less artifact manifest put whose subject is subject.
func artifact(repo string, subject oci.Digest, artifactType, seed string, annotations map[string]string) meta.ManifestPut {
	body := []byte(fmt.Sprintf(`{"artifactType":%q,"seed":%q}`, artifactType, seed))
	return meta.ManifestPut{
		Repo: repo, Digest: oci.FromBytes(oci.SHA256, body), Body: body,
		Parsed: &oci.Manifest{
			MediaType: oci.MediaTypeImageManifest, ArtifactType: artifactType, Annotations: annotations,
			Subject: &oci.Descriptor{MediaType: oci.MediaTypeImageManifest, Digest: subject, Size: 7},
		},
	}
}

type referrersWalk struct {
	descs    []oci.Descriptor
	requests int
	sizes    []int
	filtered bool // every response said OCI-Filters-Applied: artifactType
}

// walkReferrers follows the Link headers of a referrers listing from path.
func walkReferrers(t *testing.T, h http.Handler, path string) referrersWalk {
	t.Helper()
	var w referrersWalk
	w.filtered = true
	for path != "" {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body.String())
		}
		w.requests++
		w.sizes = append(w.sizes, rec.Body.Len())
		w.filtered = w.filtered && rec.Header().Get("OCI-Filters-Applied") == "artifactType"
		var ix oci.Index
		if err := json.Unmarshal(rec.Body.Bytes(), &ix); err != nil {
			t.Fatal(err)
		}
		w.descs = append(w.descs, ix.Manifests...)
		path = ""
		if link := rec.Header().Get("Link"); link != "" {
			if !strings.HasSuffix(link, `>; rel="next"`) || link[0] != '<' {
				t.Fatalf("Link %q", link)
			}
			path = link[1:strings.Index(link, ">")]
		}
		if w.requests > 1000 {
			t.Fatal("listing does not end")
		}
	}
	return w
}

func maxOf(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func sum(xs []int) int {
	s := 0
	for _, x := range xs {
		s += x
	}
	return s
}

// TestReferrersAtScale (issue 11, point 4): a subject with 10,000 junk
// referrers whose digests sort before a real signature. The signature is
// found by an artifactType query in one small response; the unfiltered
// listing pages through every entry by Link, each response within the
// Lambda budget; referrers with large annotations page by bytes too.
func TestReferrersAtScale(t *testing.T) {
	e := testenv.NewEmbedded(t)
	counted := &countingItems{Items: e.Items}
	h := registry.New(registry.Config{}, counted, e.Blobs)
	st := meta.New(e.Items)
	ctx := t.Context()
	subject := oci.FromBytes(oci.SHA256, []byte("subject"))
	const sigType, junkType = "application/vnd.example.sig", "application/vnd.example.junk"
	var sig meta.ManifestPut
	for i := 0; ; i++ {
		if sig = artifact("r", subject, sigType, fmt.Sprintf("sig-%d", i), nil); strings.HasPrefix(string(sig.Digest), "sha256:ff") {
			break
		}
	}
	for i, n := 0, 0; n < 10_000; i++ {
		p := artifact("r", subject, junkType, fmt.Sprintf("junk-%d", i), map[string]string{"org.example.n": fmt.Sprint(i)})
		if p.Digest >= sig.Digest {
			continue
		}
		if err := st.ManifestPut(ctx, p); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if err := st.ManifestPut(ctx, sig); err != nil {
		t.Fatal(err)
	}
	base := "/v2/r/referrers/" + string(subject)
	counted.reset()

	sigs := walkReferrers(t, h, base+"?artifactType="+url.QueryEscape(sigType))
	if len(sigs.descs) != 1 || sigs.descs[0].Digest != sig.Digest || !sigs.filtered {
		t.Fatalf("artifactType query: %d descriptors (filter header %v), want the signature", len(sigs.descs), sigs.filtered)
	}
	queries, items := counted.reset()
	if items != 1 {
		t.Errorf("artifactType query read %d entries, want only the matching one", items)
	}
	t.Logf("10,000 junk + 1 signature, artifactType query: %d request(s), %d bytes; %d store queries, %d entries read", sigs.requests, sum(sigs.sizes), queries, items)

	all := walkReferrers(t, h, base)
	seen := map[oci.Digest]bool{}
	for _, d := range all.descs {
		seen[d.Digest] = true
	}
	if len(all.descs) != 10_001 || len(seen) != 10_001 || !seen[sig.Digest] {
		t.Fatalf("unfiltered listing: %d descriptors (%d distinct), signature %v", len(all.descs), len(seen), seen[sig.Digest])
	}
	if maxOf(all.sizes) > lambdaPageBudget {
		t.Fatalf("largest response %d bytes", maxOf(all.sizes))
	}
	queries, items = counted.reset()
	t.Logf("10,000 junk + 1 signature, unfiltered: %d request(s), largest %d bytes, %d bytes in all; %d store queries, %d entries read", all.requests, maxOf(all.sizes), sum(all.sizes), queries, items)

	// Large annotations (under the per-entry cap, so they are kept): the
	// old single response was past 6 MB; now every page is in budget.
	fat := oci.FromBytes(oci.SHA256, []byte("fat subject"))
	big := strings.Repeat("a", 60<<10)
	for i := 0; i < 120; i++ {
		if err := st.ManifestPut(ctx, artifact("r", fat, sigType, fmt.Sprintf("fat-%d", i), map[string]string{"big": big})); err != nil {
			t.Fatal(err)
		}
	}
	counted.reset()
	fatWalk := walkReferrers(t, h, "/v2/r/referrers/"+string(fat))
	if len(fatWalk.descs) != 120 || maxOf(fatWalk.sizes) > lambdaPageBudget {
		t.Fatalf("large annotations: %d descriptors, largest response %d bytes", len(fatWalk.descs), maxOf(fatWalk.sizes))
	}
	queries, items = counted.reset()
	t.Logf("120 referrers with 60 KiB annotations: %d request(s), largest %d bytes, %d bytes in all; %d store queries, %d entries read", fatWalk.requests, maxOf(fatWalk.sizes), sum(fatWalk.sizes), queries, items)
}
