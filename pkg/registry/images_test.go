package registry_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/berth-registry/berth/pkg/access"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/registry/registrytest"
)

// caller is an authenticated principal, as the auth middleware hands it on.
type caller struct {
	access.Open
	arn string
}

func (p caller) Subject() string { return p.arn }

// as serves h with the caller p.
func as(h http.Handler, p caller) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(access.NewContext(r.Context(), p)))
	})
}

// The image listing (GET /v2/<name>/_berth/images) shows each manifest
// with its tags, pull size, caller and last recorded pull, in digest
// order, paged like the tag list; an unknown repository is NAME_UNKNOWN.
func TestImageList(t *testing.T) {
	runLazy(t, func(t *testing.T, e *lazyEnv) {
		ci := as(e.g, caller{arn: "arn:aws:iam::123456789012:role/ci"})
		dev := as(e.g, caller{arn: "repo:acme/app:ref:refs/heads/main"})
		pushedAt := e.clk.now().UTC()
		a := registrytest.NewImage([]byte(`{"a":1}`), []byte("layer one"), []byte("layer two!"))
		b := registrytest.NewImage([]byte(`{"b":2}`), []byte("layer three"))
		registrytest.PushImage(t, ci, "app", "v1", a)
		registrytest.PutManifest(t, ci, "app", "stable", oci.MediaTypeImageManifest, a.Manifest)
		registrytest.PushImage(t, dev, "app", "", b)
		// Someone else re-pushing a changes neither its caller nor its push time.
		e.clk.advance(time.Hour)
		registrytest.PutManifest(t, dev, "app", "", oci.MediaTypeImageManifest, a.Manifest)
		e.clk.advance(25 * time.Hour)
		if rec := call(t, e.g, "GET", "/v2/app/manifests/v1", nil); rec.Code != http.StatusOK {
			t.Fatalf("pull: %d %s", rec.Code, rec.Body)
		}
		pulledAt := e.clk.now().UTC()

		list := func(path string) (registry.Images, string) {
			t.Helper()
			rec := call(t, e.g, "GET", path, nil)
			if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != registry.ImagesType {
				t.Fatalf("GET %s: %d %v %s", path, rec.Code, rec.Header(), rec.Body)
			}
			var got registry.Images
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			return got, rec.Header().Get("Link")
		}
		stamp := func(t time.Time) string { return t.Truncate(time.Second).Format(time.RFC3339) }
		size := func(img registrytest.Image) int64 {
			n := int64(len(img.Manifest) + len(img.Config))
			for _, l := range img.Layers {
				n += int64(len(l))
			}
			return n
		}
		want := []registry.Image{
			{Digest: string(a.Digest), MediaType: oci.MediaTypeImageManifest, Tags: []string{"stable", "v1"}, Size: size(a),
				PushedAt: stamp(pushedAt), PushedBy: "arn:aws:iam::123456789012:role/ci", LastPulledAt: stamp(pulledAt)},
			{Digest: string(b.Digest), MediaType: oci.MediaTypeImageManifest, Size: size(b),
				PushedAt: stamp(pushedAt), PushedBy: "repo:acme/app:ref:refs/heads/main", LastPulledAt: stamp(pushedAt)},
		}
		slices.SortFunc(want, func(x, y registry.Image) int {
			if x.Digest < y.Digest {
				return -1
			}
			return 1
		})
		got, link := list("/v2/app/_berth/images")
		if got.Name != "app" || len(got.Images) != 2 || link != "" {
			t.Fatalf("listing: %+v, Link %q", got, link)
		}
		for i := range want {
			if !equalImage(got.Images[i], want[i]) {
				t.Errorf("image %d:\n got %+v\nwant %+v", i, got.Images[i], want[i])
			}
		}

		first, link := list("/v2/app/_berth/images?n=1")
		if len(first.Images) != 1 || first.Images[0].Digest != want[0].Digest || link == "" {
			t.Fatalf("page 1: %+v, Link %q", first, link)
		}
		second, link := list("/v2/app/_berth/images?n=1&last=" + want[0].Digest)
		if len(second.Images) != 1 || second.Images[0].Digest != want[1].Digest {
			t.Fatalf("page 2: %+v, Link %q", second, link)
		}
		if none, _ := list("/v2/app/_berth/images?n=0"); len(none.Images) != 0 {
			t.Fatalf("n=0: %+v", none)
		}

		rec := call(t, e.g, "GET", "/v2/nothing/_berth/images", nil)
		if rec.Code != http.StatusNotFound || !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("unknown repository: %d %s", rec.Code, rec.Body)
		}
	})
}

func equalImage(a, b registry.Image) bool {
	return a.Digest == b.Digest && a.MediaType == b.MediaType && a.ArtifactType == b.ArtifactType &&
		slices.Equal(a.Tags, b.Tags) && a.Size == b.Size && a.Subject == b.Subject &&
		a.PushedAt == b.PushedAt && a.PushedBy == b.PushedBy && a.LastPulledAt == b.LastPulledAt
}
