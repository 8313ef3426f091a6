package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/berth-registry/berth/tests/harness"
)

// testTags tags one image many times and pages through the tag list with
// crane, regctl and raw requests (n, last, Link).
func testTags(t *testing.T, s *harness.Server) {
	c := crane(t)
	r := repo(t, "tags")
	l := harness.WriteImage(t, "t00", 64<<10)
	c.Run("push", "--insecure", l.Dir, ref(s, r, "t00"))
	want := []string{"t00"}
	for i := 1; i < 12; i++ {
		tag := fmt.Sprintf("t%02d", i)
		c.Run("tag", "--insecure", ref(s, r, "t00"), tag)
		want = append(want, tag)
	}
	if got := strings.Fields(c.Run("ls", "--insecure", s.Addr+"/"+r)); !slices.Equal(got, want) {
		t.Fatalf("crane ls = %q, want %q", got, want)
	}
	if got := strings.Fields(regctl(t, s).Run("tag", "ls", s.Addr+"/"+r)); !slices.Equal(got, want) {
		t.Fatalf("regctl tag ls = %q, want %q", got, want)
	}

	// Raw pagination: pages of 5 linked by Link headers.
	var paged []string
	next := "/v2/" + r + "/tags/list?n=5"
	for pages := 0; next != ""; pages++ {
		if pages > 3 {
			t.Fatalf("tag list does not end: %q", paged)
		}
		st, hdr, body := do(t, s, "GET", next, nil, nil)
		if st != 200 {
			t.Fatalf("GET %s: %d %s", next, st, body)
		}
		var page struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(body, &page); err != nil || page.Name != r {
			t.Fatalf("GET %s: %v %s", next, err, body)
		}
		if len(page.Tags) > 5 {
			t.Fatalf("n=5 returned %d tags", len(page.Tags))
		}
		paged = append(paged, page.Tags...)
		next = nextLink(t, hdr["Link"])
		if next != "" && len(page.Tags) != 5 {
			t.Fatalf("short page %q with a next link", page.Tags)
		}
	}
	if !slices.Equal(paged, want) {
		t.Fatalf("paged tags = %q, want %q", paged, want)
	}
	st, _, body := do(t, s, "GET", "/v2/"+r+"/tags/list?n=3&last=t05", nil, nil)
	if st != 200 || !strings.Contains(string(body), `["t06","t07","t08"]`) {
		t.Fatalf("n=3&last=t05: %d %s", st, body)
	}
}

var linkRE = regexp.MustCompile(`^<([^>]+)>;\s*rel="?next"?`)

// nextLink returns the path of a rel="next" Link header, or "".
func nextLink(t *testing.T, values []string) string {
	t.Helper()
	if len(values) == 0 {
		return ""
	}
	if len(values) > 1 {
		t.Fatalf("%d Link headers: %q", len(values), values)
	}
	m := linkRE.FindStringSubmatch(values[0])
	if m == nil {
		t.Fatalf("malformed Link header %q", values[0])
	}
	u, err := url.Parse(m[1])
	if err != nil {
		t.Fatalf("Link %q: %v", values[0], err)
	}
	return u.RequestURI()
}

// testDeletes deletes a tag with regctl and a manifest with crane.
func testDeletes(t *testing.T, s *harness.Server) {
	c := crane(t)
	r := repo(t, "del")
	one, two := harness.WriteImage(t, "one", 64<<10), harness.WriteImage(t, "two", 64<<10)
	c.Run("push", "--insecure", one.Dir, ref(s, r, "one"))
	c.Run("push", "--insecure", two.Dir, ref(s, r, "two"))
	c.Run("tag", "--insecure", ref(s, r, "one"), "keep")

	regctl(t, s).Run("tag", "delete", ref(s, r, "one"))
	if got := strings.Fields(c.Run("ls", "--insecure", s.Addr+"/"+r)); !slices.Equal(got, []string{"keep", "two"}) {
		t.Fatalf("tags after regctl tag delete: %q", got)
	}
	if st := headManifest(t, s, r, one.Digest()); st != 200 {
		t.Fatalf("manifest of a deleted tag still tagged keep: HEAD %d", st)
	}

	c.Run("delete", "--insecure", ref(s, r, two.Digest()))
	if st := headManifest(t, s, r, two.Digest()); st != 404 {
		t.Fatalf("HEAD deleted manifest: %d", st)
	}
	st, _, body := do(t, s, "GET", "/v2/"+r+"/manifests/two", nil, nil)
	if st != 404 || ociError(body) != "MANIFEST_UNKNOWN" {
		t.Fatalf("GET tag of deleted manifest: %d %s", st, body)
	}
	if res := c.Exec("manifest", "--insecure", ref(s, r, "two")); res.Err == nil {
		t.Fatal("crane manifest of a deleted image succeeded")
	}
}

// chunk sends one PATCH with Content-Range and returns the next Location.
func chunk(t *testing.T, s *harness.Server, loc string, b []byte, offset int) string {
	t.Helper()
	st, hdr, body := do(t, s, "PATCH", loc, b, map[string]string{
		"Content-Type":  "application/octet-stream",
		"Content-Range": fmt.Sprintf("%d-%d", offset, offset+len(b)-1),
	})
	if st != 202 {
		t.Fatalf("PATCH %d bytes at %d: %d %s", len(b), offset, st, body)
	}
	if got := strings.Join(hdr["Range"], ""); got != fmt.Sprintf("0-%d", offset+len(b)-1) {
		t.Fatalf("Range after chunk: %q", got)
	}
	return hdr["Location"][0]
}

// withDigest appends ?digest= to an upload location.
func withDigest(loc, digest string) string {
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	return loc + sep + "digest=" + url.QueryEscape(digest)
}

// testRestart restarts the server in the middle of a chunked upload, which
// then completes: upload state lives in the store, not in the process.
func testRestart(t *testing.T, s *harness.Server) {
	if s.Attached() {
		t.Skip("cannot restart an attached registry")
	}
	r := repo(t, "up")
	b := harness.Random(3<<20 + 12345)
	half := 2 << 20
	st, hdr, body := do(t, s, "POST", "/v2/"+r+"/blobs/uploads/", nil, nil)
	if st != 202 {
		t.Fatalf("POST upload: %d %s", st, body)
	}
	loc := chunk(t, s, hdr["Location"][0], b[:half], 0)

	s.Restart()

	st, hdr, body = do(t, s, "GET", loc, nil, nil)
	if st != 204 || strings.Join(hdr["Range"], "") != fmt.Sprintf("0-%d", half-1) {
		t.Fatalf("upload status after restart: %d %v %s", st, hdr["Range"], body)
	}
	loc = chunk(t, s, loc, b[half:], half)
	st, _, body = do(t, s, "PUT", withDigest(loc, harness.Digest(b)), nil, nil)
	if st != 201 {
		t.Fatalf("closing PUT after restart: %d %s", st, body)
	}
	if got := pullBlob(t, s, r, harness.Digest(b)); harness.Digest(got) != harness.Digest(b) {
		t.Fatal("blob uploaded across a restart differs")
	}
}

// pullBlob GETs a blob, following a redirect to S3.
func pullBlob(t *testing.T, s *harness.Server, r, digest string) []byte {
	t.Helper()
	st, hdr, body := do(t, s, "GET", "/v2/"+r+"/blobs/"+digest, nil, nil)
	if st == 307 {
		st, _, body = do(t, s, "GET", hdr["Location"][0], nil, nil)
	}
	if st != 200 {
		t.Fatalf("GET blob %s: %d", digest, st)
	}
	return body
}

// testLambdaLimits checks the request size limit of the Lambda path: a
// monolithic 5 MB blob is refused, a blob just over the handler's cap gets
// the registry's OCI error, and the same bytes in chunks go through.
func testLambdaLimits(t *testing.T, s *harness.Server) {
	r := repo(t, "limit")
	five := harness.Random(5_000_000)
	// 5 MB is 6.67 MB of base64 in the event: Lambda refuses the invoke
	// and API Gateway answers 413 before the handler runs.
	st, _, body := do(t, s, "POST", "/v2/"+r+"/blobs/uploads/?digest="+harness.Digest(five), five,
		map[string]string{"Content-Type": "application/octet-stream"})
	if st != 413 {
		t.Fatalf("monolithic 5 MB push through Lambda: %d %s", st, body)
	}
	// Just over the handler's cap, the event fits: the registry answers
	// with its OCI error that names chunked uploads.
	over := five[:4_500_000]
	st, _, body = do(t, s, "POST", "/v2/"+r+"/blobs/uploads/?digest="+harness.Digest(over), over,
		map[string]string{"Content-Type": "application/octet-stream"})
	if st != 413 || ociError(body) != "SIZE_INVALID" || !strings.Contains(string(body), "chunk") {
		t.Fatalf("4.5 MB monolithic push through Lambda: %d %s", st, body)
	}
	// The 5 MB blob in two chunks succeeds.
	st, hdr, body := do(t, s, "POST", "/v2/"+r+"/blobs/uploads/", nil, nil)
	if st != 202 {
		t.Fatalf("POST: %d %s", st, body)
	}
	loc := chunk(t, s, hdr["Location"][0], five[:2_500_000], 0)
	loc = chunk(t, s, loc, five[2_500_000:], 2_500_000)
	if st, _, body := do(t, s, "PUT", withDigest(loc, harness.Digest(five)), nil, nil); st != 201 {
		t.Fatalf("closing PUT: %d %s", st, body)
	}
	if got := pullBlob(t, s, r, harness.Digest(five)); harness.Digest(got) != harness.Digest(five) {
		t.Fatal("chunked 5 MB blob differs")
	}
}
