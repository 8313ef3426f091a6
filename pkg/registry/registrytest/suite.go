package registrytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-registry/berth/pkg/oci"
)

// Run runs the whole suite; newEnv must return an empty registry each call.
func Run(t *testing.T, newEnv func(t *testing.T) Env) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s *server)
	}{
		{"Base", testBase},
		{"BlobMonolithic", testBlobMonolithic},
		{"BlobSHA512", testBlobSHA512},
		{"BlobRange", testBlobRange},
		{"UploadStreamed", testUploadStreamed},
		{"UploadChunked", testUploadChunked},
		{"UploadErrors", testUploadErrors},
		{"UploadDigestMismatch", testUploadDigestMismatch},
		{"UploadRestart", testUploadRestart},
		{"Mount", testMount},
		{"Manifests", testManifests},
		{"ManifestErrors", testManifestErrors},
		{"ManifestLarge", testManifestLarge},
		{"Index", testIndex},
		{"TagsPagination", testTagsPagination},
		{"Catalog", testCatalog},
		{"Referrers", testReferrers},
		{"Deletes", testDeletes},
		{"Errors", testErrors},
		{"BodyLimit", testBodyLimit},
		{"Concurrency", testConcurrency},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			s := start(t, env)
			tc.fn(t, s)
		})
	}
}

func testBase(t *testing.T, s *server) {
	r := s.do("GET", "/v2/", nil, nil, false)
	s.expect(r, 200, "", "GET /v2/")
	if r.header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Fatalf("API version header %q", r.header.Get("Docker-Distribution-API-Version"))
	}
	s.expect(s.do("HEAD", "/v2/", nil, nil, false), 200, "", "HEAD /v2/")
}

func checkBlob(t *testing.T, s *server, repo string, d oci.Digest, want []byte) {
	t.Helper()
	h := s.do("HEAD", "/v2/"+repo+"/blobs/"+string(d), nil, nil, false)
	s.expect(h, 200, "", "HEAD blob")
	if h.header.Get("Content-Length") != strconv.Itoa(len(want)) || h.header.Get("Docker-Content-Digest") != string(d) {
		t.Fatalf("HEAD blob headers %v", h.header)
	}
	g := s.do("GET", "/v2/"+repo+"/blobs/"+string(d), nil, nil, false)
	if g.status == http.StatusTemporaryRedirect {
		if g.header.Get("Location") == "" || g.header.Get("Docker-Content-Digest") != string(d) {
			t.Fatalf("redirect headers %v", g.header)
		}
	} else {
		s.expect(g, 200, "", "GET blob")
	}
	g = s.do("GET", "/v2/"+repo+"/blobs/"+string(d), nil, nil, true)
	s.expect(g, 200, "", "GET blob (followed)")
	if !bytes.Equal(g.body, want) {
		t.Fatalf("blob %s: got %d bytes, want %d", d, len(g.body), len(want))
	}
}

func testBlobMonolithic(t *testing.T, s *server) {
	b := randomBytes(t, 100_000)
	d := s.pushBlob("mono/repo", b)
	checkBlob(t, s, "mono/repo", d, b)
	// Zero-length blob.
	d0 := s.pushBlob("mono/repo", []byte{})
	checkBlob(t, s, "mono/repo", d0, []byte{})
	// Not readable through another repository.
	s.expect(s.do("HEAD", "/v2/other/blobs/"+string(d), nil, nil, false), 404, "", "HEAD blob other repo")
	s.expect(s.do("GET", "/v2/other/blobs/"+string(d), nil, nil, false), 404, "BLOB_UNKNOWN", "GET blob other repo")
	// Wrong digest for the body: rejected, nothing stored.
	bad := oci.FromBytes(oci.SHA256, []byte("something else"))
	r := s.do("POST", "/v2/mono/repo/blobs/uploads/?digest="+string(bad), b, nil, false)
	s.expect(r, 400, "DIGEST_INVALID", "monolithic digest mismatch")
	s.expect(s.do("HEAD", "/v2/mono/repo/blobs/"+string(bad), nil, nil, false), 404, "", "HEAD after mismatch")
}

func testBlobSHA512(t *testing.T, s *server) {
	b := randomBytes(t, 70_000)
	d := oci.FromBytes(oci.SHA512, b)
	s.expect(s.do("POST", "/v2/sha/blobs/uploads/?digest="+string(d), b, nil, false), 201, "", "sha512 monolithic")
	checkBlob(t, s, "sha", d, b)
	// Chunked with a sha512 close.
	b2 := randomBytes(t, 50_000)
	d2 := oci.FromBytes(oci.SHA512, b2)
	loc := s.startUpload("sha")
	r := s.do("PATCH", loc, b2[:20_000], map[string]string{"Content-Range": "0-19999", "Content-Type": "application/octet-stream"}, false)
	s.expect(r, 202, "", "sha512 patch")
	r = s.do("PUT", withDigest(r.header.Get("Location"), d2), b2[20_000:], nil, false)
	s.expect(r, 201, "", "sha512 close")
	checkBlob(t, s, "sha", d2, b2)
	// A sha512 close that does not match.
	loc = s.startUpload("sha")
	r = s.do("PUT", withDigest(loc, oci.FromBytes(oci.SHA512, []byte("x"))), b2, nil, false)
	s.expect(r, 400, "DIGEST_INVALID", "sha512 mismatch")
}

func testBlobRange(t *testing.T, s *server) {
	b := randomBytes(t, 10_000)
	d := s.pushBlob("rng", b)
	r := s.do("GET", "/v2/rng/blobs/"+string(d), nil, map[string]string{"Range": "bytes=100-199"}, true)
	if r.status != http.StatusPartialContent || !bytes.Equal(r.body, b[100:200]) {
		t.Fatalf("range: status %d, %d bytes", r.status, len(r.body))
	}
	r = s.do("GET", "/v2/rng/blobs/"+string(d), nil, map[string]string{"Range": "bytes=-10"}, true)
	if r.status != http.StatusPartialContent || !bytes.Equal(r.body, b[len(b)-10:]) {
		t.Fatalf("suffix range: status %d, %d bytes", r.status, len(r.body))
	}
	r = s.do("GET", "/v2/rng/blobs/"+string(d), nil, map[string]string{"Range": "bytes=20000-"}, true)
	if r.status != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("unsatisfiable range: status %d", r.status)
	}
}

func (s *server) startUpload(repo string) string {
	s.t.Helper()
	r := s.do("POST", "/v2/"+repo+"/blobs/uploads/", nil, nil, false)
	s.expect(r, 202, "", "start upload")
	loc := r.header.Get("Location")
	if loc == "" || r.header.Get("Docker-Upload-UUID") == "" || r.header.Get("Range") != "0-0" {
		s.t.Fatalf("start upload headers %v", r.header)
	}
	return loc
}

func withDigest(loc string, d oci.Digest) string {
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	return loc + sep + "digest=" + string(d)
}

func testUploadStreamed(t *testing.T, s *server) {
	b := randomBytes(t, 300_000)
	loc := s.startUpload("stream")
	r := s.do("PATCH", loc, b[:123_456], map[string]string{"Content-Type": "application/octet-stream"}, false)
	s.expect(r, 202, "", "streamed patch")
	if r.header.Get("Range") != "0-123455" {
		t.Fatalf("Range %q", r.header.Get("Range"))
	}
	r = s.do("PATCH", r.header.Get("Location"), b[123_456:], nil, false)
	s.expect(r, 202, "", "streamed patch 2")
	st := s.do("GET", r.header.Get("Location"), nil, nil, false)
	s.expect(st, 204, "", "upload status")
	if st.header.Get("Range") != fmt.Sprintf("0-%d", len(b)-1) {
		t.Fatalf("status Range %q", st.header.Get("Range"))
	}
	d := sha(b)
	r = s.do("PUT", withDigest(r.header.Get("Location"), d), nil, nil, false)
	s.expect(r, 201, "", "close")
	if r.header.Get("Location") != "/v2/stream/blobs/"+string(d) || r.header.Get("Docker-Content-Digest") != string(d) {
		t.Fatalf("close headers %v", r.header)
	}
	checkBlob(t, s, "stream", d, b)
	// The session is gone.
	s.expect(s.do("GET", loc, nil, nil, false), 404, "BLOB_UPLOAD_UNKNOWN", "status after close")
	// POST then one PUT with the whole body (oras, containerd).
	b2 := randomBytes(t, 5000)
	loc = s.startUpload("stream")
	s.expect(s.do("PUT", withDigest(loc, sha(b2)), b2, nil, false), 201, "", "POST+PUT")
	checkBlob(t, s, "stream", sha(b2), b2)
}

func testUploadChunked(t *testing.T, s *server) {
	b := randomBytes(t, 6<<20+12345) // straddles the S3 5 MiB part minimum
	loc := s.startUpload("chunked")
	chunk := 1 << 20
	if s.env.MaxBodyBytes > 0 && int64(chunk) > s.env.MaxBodyBytes {
		chunk = int(s.env.MaxBodyBytes)
	}
	for off := 0; off < len(b); off += chunk {
		end := min(off+chunk, len(b))
		r := s.do("PATCH", loc, b[off:end], map[string]string{
			"Content-Range": fmt.Sprintf("%d-%d", off, end-1), "Content-Type": "application/octet-stream",
		}, false)
		s.expect(r, 202, "", fmt.Sprintf("chunk at %d", off))
		if r.header.Get("Range") != fmt.Sprintf("0-%d", end-1) {
			t.Fatalf("chunk at %d: Range %q", off, r.header.Get("Range"))
		}
		loc = r.header.Get("Location")
	}
	// Out of order: 416 with the current Range.
	r := s.do("PATCH", loc, []byte("xx"), map[string]string{"Content-Range": "5-6"}, false)
	s.expect(r, 416, "", "out-of-order chunk")
	if r.header.Get("Range") != fmt.Sprintf("0-%d", len(b)-1) {
		t.Fatalf("416 Range %q", r.header.Get("Range"))
	}
	r = s.do("PUT", withDigest(loc, sha(b)), nil, nil, false)
	s.expect(r, 201, "", "chunked close")
	checkBlob(t, s, "chunked", sha(b), b)
}

func testUploadErrors(t *testing.T, s *server) {
	s.expect(s.do("GET", "/v2/u/blobs/uploads/nosuchupload", nil, nil, false), 404, "BLOB_UPLOAD_UNKNOWN", "unknown upload")
	s.expect(s.do("PATCH", "/v2/u/blobs/uploads/../../x", []byte("a"), nil, false), 404, "", "traversal upload id")
	s.expect(s.do("PATCH", "/v2/u/blobs/uploads/a.b", []byte("a"), nil, false), 404, "BLOB_UPLOAD_UNKNOWN", "bad upload id")
	loc := s.startUpload("u")
	// Another repository cannot use the session.
	other := strings.Replace(loc, "/v2/u/", "/v2/other/", 1)
	s.expect(s.do("PATCH", other, []byte("a"), nil, false), 404, "BLOB_UPLOAD_UNKNOWN", "session of another repo")
	// Content-Range that does not start at 0, malformed, or disagrees with the length.
	s.expect(s.do("PATCH", loc, []byte("abc"), map[string]string{"Content-Range": "1-3"}, false), 416, "", "range not at offset")
	s.expect(s.do("PATCH", loc, []byte("abc"), map[string]string{"Content-Range": "zz"}, false), 416, "", "bad range")
	s.expect(s.do("PATCH", loc, []byte("abc"), map[string]string{"Content-Range": "0-9"}, false), 400, "SIZE_INVALID", "range longer than body")
	// PUT without digest, with a bad digest.
	s.expect(s.do("PUT", loc, nil, nil, false), 400, "DIGEST_INVALID", "close without digest")
	s.expect(s.do("PUT", loc+"?digest=sha256:nothex", nil, nil, false), 400, "DIGEST_INVALID", "close with bad digest")
	// The session still works after all of that.
	b := []byte("hello")
	r := s.do("PATCH", loc, b, map[string]string{"Content-Range": "0-4"}, false)
	s.expect(r, 202, "", "patch after errors")
	s.expect(s.do("PUT", withDigest(r.header.Get("Location"), sha(b)), nil, nil, false), 201, "", "close after errors")
	// Cancel.
	loc = s.startUpload("u")
	s.expect(s.do("DELETE", loc, nil, nil, false), 204, "", "cancel")
	s.expect(s.do("GET", loc, nil, nil, false), 404, "BLOB_UPLOAD_UNKNOWN", "status after cancel")
	s.expect(s.do("DELETE", loc, nil, nil, false), 404, "BLOB_UPLOAD_UNKNOWN", "cancel twice")
}

func testUploadDigestMismatch(t *testing.T, s *server) {
	b := randomBytes(t, 200_000)
	loc := s.startUpload("mm")
	r := s.do("PATCH", loc, b, nil, false)
	s.expect(r, 202, "", "patch")
	wrong := sha([]byte("not it"))
	s.expect(s.do("PUT", withDigest(r.header.Get("Location"), wrong), nil, nil, false), 400, "DIGEST_INVALID", "mismatch close")
	// Nothing is left: no blob under either digest, no session.
	s.expect(s.do("HEAD", "/v2/mm/blobs/"+string(wrong), nil, nil, false), 404, "", "wrong digest blob")
	s.expect(s.do("HEAD", "/v2/mm/blobs/"+string(sha(b)), nil, nil, false), 404, "", "real digest blob")
	s.expect(s.do("GET", loc, nil, nil, false), 404, "BLOB_UPLOAD_UNKNOWN", "session after mismatch")
	// Nor any staged bytes.
	if s.env.Leftovers != nil {
		if left := s.env.Leftovers(t); len(left) > 0 {
			t.Fatalf("staging data left after a mismatch: %v", left)
		}
	}
}

func testUploadRestart(t *testing.T, s *server) {
	if s.env.Restart == nil {
		t.Fatal("every backend must support restart")
	}
	b := randomBytes(t, 3<<20)
	loc := s.startUpload("restart")
	r := s.do("PATCH", loc, b[:1<<20], map[string]string{"Content-Range": fmt.Sprintf("0-%d", 1<<20-1)}, false)
	s.expect(r, 202, "", "chunk 1")
	s.restart()
	r = s.do("PATCH", r.header.Get("Location"), b[1<<20:], map[string]string{"Content-Range": fmt.Sprintf("%d-%d", 1<<20, len(b)-1)}, false)
	s.expect(r, 202, "", "chunk 2 after restart")
	s.expect(s.do("PUT", withDigest(r.header.Get("Location"), sha(b)), nil, nil, false), 201, "", "close after restart")
	checkBlob(t, s, "restart", sha(b), b)
}

func testMount(t *testing.T, s *server) {
	b := randomBytes(t, 4096)
	d := s.pushBlob("src/repo", b)
	r := s.do("POST", "/v2/dst/repo/blobs/uploads/?mount="+string(d)+"&from=src/repo", nil, nil, false)
	s.expect(r, 201, "", "mount")
	if r.header.Get("Location") != "/v2/dst/repo/blobs/"+string(d) || r.header.Get("Docker-Content-Digest") != string(d) {
		t.Fatalf("mount headers %v", r.header)
	}
	checkBlob(t, s, "dst/repo", d, b)
	// Source lacks the blob: a session instead.
	missing := sha([]byte("missing"))
	r = s.do("POST", "/v2/dst/repo/blobs/uploads/?mount="+string(missing)+"&from=src/repo", nil, nil, false)
	s.expect(r, 202, "", "mount fallback")
	if r.header.Get("Location") == "" {
		t.Fatal("fallback without Location")
	}
	// No from: not mounted across repositories (a digest is not a capability).
	r = s.do("POST", "/v2/third/blobs/uploads/?mount="+string(d), nil, nil, false)
	s.expect(r, 202, "", "mount without from")
	// Invalid source name: a session too.
	s.expect(s.do("POST", "/v2/third/blobs/uploads/?mount="+string(d)+"&from=BAD", nil, nil, false), 202, "", "mount from bad name")
}

func testManifests(t *testing.T, s *server) {
	img := newImage(t, "m")
	s.pushImage("man/repo", "v1", img)
	for _, ref := range []string{"v1", string(img.Digest)} {
		r := s.do("GET", "/v2/man/repo/manifests/"+ref, nil, map[string]string{"Accept": oci.MediaTypeImageManifest}, false)
		s.expect(r, 200, "", "GET manifest "+ref)
		if !bytes.Equal(r.body, img.Manifest) {
			t.Fatalf("manifest body differs")
		}
		if r.header.Get("Content-Type") != oci.MediaTypeImageManifest || r.header.Get("Docker-Content-Digest") != string(img.Digest) ||
			r.header.Get("Content-Length") != strconv.Itoa(len(img.Manifest)) {
			t.Fatalf("GET manifest headers %v", r.header)
		}
		h := s.do("HEAD", "/v2/man/repo/manifests/"+ref, nil, nil, false)
		s.expect(h, 200, "", "HEAD manifest")
		if len(h.body) != 0 || h.header.Get("Content-Length") != strconv.Itoa(len(img.Manifest)) || h.header.Get("Docker-Content-Digest") != string(img.Digest) {
			t.Fatalf("HEAD manifest headers %v", h.header)
		}
	}
	sameByTagAndDigest(t, s, "man/repo", "v1", img.Digest)
	// Re-push is idempotent; moving a tag works.
	s.pushImage("man/repo", "v1", img)
	s.pushImage("man/repo", "again", img) // a tag of an existing manifest
	sameByTagAndDigest(t, s, "man/repo", "again", img.Digest)
	img2 := newImage(t, "m2")
	s.pushImage("man/repo", "v1", img2)
	sameByTagAndDigest(t, s, "man/repo", "v1", img2.Digest)
	r := s.do("GET", "/v2/man/repo/manifests/v1", nil, nil, false)
	if r.header.Get("Docker-Content-Digest") != string(img2.Digest) {
		t.Fatal("tag did not move")
	}
	s.expect(s.do("GET", "/v2/man/repo/manifests/"+string(img.Digest), nil, nil, false), 200, "", "untagged manifest still there")
	// Push by digest; the same bytes under a sha512 digest.
	img3 := newImage(t, "m3")
	s.pushImage("man/repo", "", img3)
	d512 := oci.FromBytes(oci.SHA512, img3.Manifest)
	r = s.do("PUT", "/v2/man/repo/manifests/"+string(d512), img3.Manifest, map[string]string{"Content-Type": oci.MediaTypeImageManifest}, false)
	s.expect(r, 201, "", "PUT by sha512")
	if r.header.Get("Docker-Content-Digest") != string(d512) {
		t.Fatalf("sha512 digest header %q", r.header.Get("Docker-Content-Digest"))
	}
	s.expect(s.do("GET", "/v2/man/repo/manifests/"+string(d512), nil, nil, false), 200, "", "GET by sha512")
	// Docker schema2 with its own Content-Type.
	cfg := []byte(`{"architecture":"arm64","os":"linux"}`)
	s.pushBlob("man/repo", cfg)
	dm := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":%q,"size":%d},"layers":[]}`,
		oci.MediaTypeDockerManifest, sha(cfg), len(cfg)))
	s.expect(s.do("PUT", "/v2/man/repo/manifests/docker", dm, map[string]string{"Content-Type": oci.MediaTypeDockerManifest}, false), 201, "", "docker manifest")
	r = s.do("GET", "/v2/man/repo/manifests/docker", nil, nil, false)
	if r.header.Get("Content-Type") != oci.MediaTypeDockerManifest {
		t.Fatalf("docker content type %q", r.header.Get("Content-Type"))
	}
	sameByTagAndDigest(t, s, "man/repo", "docker", sha(dm))
	// Non-distributable layers with urls need not exist.
	nd := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip","digest":%q,"size":7,"urls":["https://example.com/layer"]}]}`,
		oci.MediaTypeImageManifest, oci.MediaTypeImageConfig, sha(cfg), len(cfg), sha([]byte("foreign"))))
	s.expect(s.do("PUT", "/v2/man/repo/manifests/foreign", nd, map[string]string{"Content-Type": oci.MediaTypeImageManifest}, false), 201, "", "foreign layer")
}

func testManifestErrors(t *testing.T, s *server) {
	img := newImage(t, "e")
	ct := map[string]string{"Content-Type": oci.MediaTypeImageManifest}
	// Blobs missing.
	s.expect(s.do("PUT", "/v2/me/manifests/x", img.Manifest, ct, false), 400, "MANIFEST_BLOB_UNKNOWN", "missing blobs")
	s.pushBlob("me", img.Config)
	s.expect(s.do("PUT", "/v2/me/manifests/x", img.Manifest, ct, false), 400, "MANIFEST_BLOB_UNKNOWN", "missing layer")
	s.pushBlob("me", img.Layers[0])
	// Digest in URL does not match body.
	s.expect(s.do("PUT", "/v2/me/manifests/"+string(sha([]byte("x"))), img.Manifest, ct, false), 400, "DIGEST_INVALID", "digest mismatch")
	s.expect(s.do("PUT", "/v2/me/manifests/x", []byte("{not json"), ct, false), 400, "MANIFEST_INVALID", "bad json")
	s.expect(s.do("PUT", "/v2/me/manifests/x", img.Manifest, map[string]string{"Content-Type": oci.MediaTypeImageIndex}, false), 400, "MANIFEST_INVALID", "content type mismatch")
	s.expect(s.do("PUT", "/v2/me/manifests/bad:tag", img.Manifest, ct, false), 400, "DIGEST_INVALID", "bad reference")
	s.expect(s.do("PUT", "/v2/me/manifests/-bad", img.Manifest, ct, false), 400, "TAG_INVALID", "bad tag")
	// Reads of a reference that is no valid tag: nothing can exist there,
	// so 404 MANIFEST_UNKNOWN (the OCI conformance suite's expectation);
	// writes and deletes keep 400 TAG_INVALID, malformed digests 400
	// DIGEST_INVALID (issue 11, point 12).
	s.expect(s.do("GET", "/v2/me/manifests/.INVALID_MANIFEST_NAME", nil, nil, false), 404, "MANIFEST_UNKNOWN", "GET invalid tag")
	s.expect(s.do("HEAD", "/v2/me/manifests/.INVALID_MANIFEST_NAME", nil, nil, false), 404, "", "HEAD invalid tag")
	s.expect(s.do("PUT", "/v2/me/manifests/.INVALID_MANIFEST_NAME", img.Manifest, ct, false), 400, "TAG_INVALID", "PUT invalid tag")
	s.expect(s.do("DELETE", "/v2/me/manifests/.INVALID_MANIFEST_NAME", nil, nil, false), 400, "TAG_INVALID", "DELETE invalid tag")
	s.expect(s.do("GET", "/v2/me/manifests/sha256:zz", nil, nil, false), 400, "DIGEST_INVALID", "GET malformed digest")
	// Wrong descriptor size.
	wrong := bytes.Replace(img.Manifest, []byte(fmt.Sprintf(`"size":%d}]`, len(img.Layers[0]))), []byte(`"size":1}]`), 1)
	s.expect(s.do("PUT", "/v2/me/manifests/x", wrong, ct, false), 400, "MANIFEST_BLOB_UNKNOWN", "size mismatch")
	// Too big: 413 with MANIFEST_INVALID, nothing stored.
	big := bytes.Repeat([]byte(" "), 4<<20+1)
	s.expect(s.do("PUT", "/v2/me/manifests/big", big, ct, false), 413, "MANIFEST_INVALID", "too big")
	// After all that, the good push works and nothing else is tagged.
	s.expect(s.do("PUT", "/v2/me/manifests/x", img.Manifest, ct, false), 201, "", "good push")
	var tags struct{ Tags []string }
	r := s.do("GET", "/v2/me/tags/list", nil, nil, false)
	if err := json.Unmarshal(r.body, &tags); err != nil || len(tags.Tags) != 1 || tags.Tags[0] != "x" {
		t.Fatalf("tags after errors: %s", r.body)
	}
}

func testManifestLarge(t *testing.T, s *server) {
	cfg := []byte(`{}`)
	s.pushBlob("large", cfg)
	// ~3.5 MB of annotations: stored outside the metadata item.
	ann := strings.Repeat("a", 3_500_000)
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":%d},"layers":[],"annotations":{"big":%q}}`,
		oci.MediaTypeImageManifest, oci.MediaTypeEmptyJSON, sha(cfg), len(cfg), ann))
	r := s.do("PUT", "/v2/large/manifests/big", m, map[string]string{"Content-Type": oci.MediaTypeImageManifest}, false)
	if s.env.MaxBodyBytes > 0 && int64(len(m)) > s.env.MaxBodyBytes {
		// Behind a request cap the push is refused with a clear error.
		if r.status != http.StatusRequestEntityTooLarge {
			t.Fatalf("large manifest through a cap: status %d", r.status)
		}
		return
	}
	s.expect(r, 201, "", "large manifest")
	g := s.do("GET", "/v2/large/manifests/big", nil, nil, false)
	s.expect(g, 200, "", "GET large")
	if !bytes.Equal(g.body, m) {
		t.Fatal("large manifest differs")
	}
	sameByTagAndDigest(t, s, "large", "big", sha(m))
}

// sameByTagAndDigest checks that GET and HEAD of a manifest by tag answer
// exactly what they answer by digest: status, headers and body. A pull by
// tag reads the tag's copy of the manifest record (docs/dynamodb.md), a
// pull by digest the record itself.
func sameByTagAndDigest(t *testing.T, s *server, repo, tag string, d oci.Digest) {
	t.Helper()
	for _, method := range []string{"GET", "HEAD"} {
		byTag := s.do(method, "/v2/"+repo+"/manifests/"+tag, nil, nil, false)
		byDigest := s.do(method, "/v2/"+repo+"/manifests/"+string(d), nil, nil, false)
		s.expect(byTag, 200, "", method+" manifest by tag")
		s.expect(byDigest, 200, "", method+" manifest by digest")
		// Headers that name the response, not the manifest: the time, and
		// API Gateway's request id when the suite runs through Lambda.
		for _, h := range []string{"Date", "Apigw-Requestid"} {
			byTag.header.Del(h)
			byDigest.header.Del(h)
		}
		if !reflect.DeepEqual(byTag.header, byDigest.header) || !bytes.Equal(byTag.body, byDigest.body) {
			t.Fatalf("%s %s:%s differs from %s:\nby tag:    %v, %d bytes\nby digest: %v, %d bytes",
				method, repo, tag, d, byTag.header, len(byTag.body), byDigest.header, len(byDigest.body))
		}
	}
}

func testIndex(t *testing.T, s *server) {
	a, b := newImage(t, "a"), newImage(t, "b")
	s.pushImage("idx", "", a)
	missing := newImage(t, "missing")
	ct := map[string]string{"Content-Type": oci.MediaTypeImageIndex}
	mk := func(imgs ...Image) []byte {
		var ds []string
		for i, im := range imgs {
			ds = append(ds, fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d,"platform":{"architecture":"arch%d","os":"linux"}}`,
				oci.MediaTypeImageManifest, im.Digest, len(im.Manifest), i))
		}
		return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[%s]}`, oci.MediaTypeImageIndex, strings.Join(ds, ",")))
	}
	s.expect(s.do("PUT", "/v2/idx/manifests/multi", mk(a, missing), ct, false), 400, "MANIFEST_BLOB_UNKNOWN", "index with missing child")
	s.pushImage("idx", "", b)
	idx := mk(a, b)
	s.expect(s.do("PUT", "/v2/idx/manifests/multi", idx, ct, false), 201, "", "index")
	r := s.do("GET", "/v2/idx/manifests/multi", nil, nil, false)
	if r.header.Get("Content-Type") != oci.MediaTypeImageIndex || !bytes.Equal(r.body, idx) {
		t.Fatalf("index GET %v", r.header)
	}
	sameByTagAndDigest(t, s, "idx", "multi", sha(idx))
}

func testTagsPagination(t *testing.T, s *server) {
	s.expect(s.do("GET", "/v2/pg/tags/list", nil, nil, false), 404, "NAME_UNKNOWN", "tags of unknown repo")
	img := newImage(t, "p")
	s.pushImage("pg", "t00", img)
	var want []string
	for i := 0; i < 12; i++ {
		tag := fmt.Sprintf("t%02d", i)
		want = append(want, tag)
		s.expect(s.do("PUT", "/v2/pg/manifests/"+tag, img.Manifest, map[string]string{"Content-Type": oci.MediaTypeImageManifest}, false), 201, "", "tag "+tag)
	}
	for _, tag := range []string{"Z-upper", "latest"} {
		s.expect(s.do("PUT", "/v2/pg/manifests/"+tag, img.Manifest, map[string]string{"Content-Type": oci.MediaTypeImageManifest}, false), 201, "", "tag "+tag)
	}
	// Sorted byte-wise: uppercase before lowercase, "latest" before "t00".
	want = append([]string{"Z-upper", "latest"}, want...)
	type list struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	var all list
	r := s.do("GET", "/v2/pg/tags/list", nil, nil, false)
	s.expect(r, 200, "", "tags")
	if err := json.Unmarshal(r.body, &all); err != nil || all.Name != "pg" || strings.Join(all.Tags, ",") != strings.Join(want, ",") {
		t.Fatalf("tags %s, want %v", r.body, want)
	}
	// Page through with n=5 following Link.
	var got []string
	next := "/v2/pg/tags/list?n=5"
	pages := 0
	for next != "" {
		r := s.do("GET", next, nil, nil, false)
		s.expect(r, 200, "", "tags page")
		var l list
		if err := json.Unmarshal(r.body, &l); err != nil || len(l.Tags) > 5 {
			t.Fatalf("page %s", r.body)
		}
		got = append(got, l.Tags...)
		pages++
		next = ""
		if link := r.header.Get("Link"); link != "" {
			if !strings.HasSuffix(link, `>; rel="next"`) || !strings.HasPrefix(link, "</v2/pg/tags/list?") {
				t.Fatalf("Link %q", link)
			}
			next = link[1:strings.Index(link, ">")]
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") || pages != 3 {
		t.Fatalf("paged %v in %d pages, want %v", got, pages, want)
	}
	// last without n, n=0, bad n.
	r = s.do("GET", "/v2/pg/tags/list?last=t10", nil, nil, false)
	var l list
	_ = json.Unmarshal(r.body, &l)
	if strings.Join(l.Tags, ",") != "t11" {
		t.Fatalf("after t10: %v", l.Tags)
	}
	r = s.do("GET", "/v2/pg/tags/list?n=0", nil, nil, false)
	s.expect(r, 200, "", "n=0")
	if !strings.Contains(string(r.body), `"tags":[]`) {
		t.Fatalf("n=0 body %s", r.body)
	}
	s.expect(s.do("GET", "/v2/pg/tags/list?n=-1", nil, nil, false), 400, "PAGINATION_NUMBER_INVALID", "n=-1")
	s.expect(s.do("GET", "/v2/pg/tags/list?n=x", nil, nil, false), 400, "PAGINATION_NUMBER_INVALID", "n=x")
}

func testCatalog(t *testing.T, s *server) {
	img := newImage(t, "c")
	names := []string{"a/one", "a/two", "b", "c/d/e"}
	for _, n := range names {
		s.pushImage(n, "v", img)
	}
	var got []string
	next := "/v2/_catalog?n=3"
	for next != "" {
		r := s.do("GET", next, nil, nil, false)
		s.expect(r, 200, "", "catalog")
		var c struct{ Repositories []string }
		if err := json.Unmarshal(r.body, &c); err != nil {
			t.Fatal(err)
		}
		got = append(got, c.Repositories...)
		next = ""
		if link := r.header.Get("Link"); link != "" {
			next = link[1:strings.Index(link, ">")]
		}
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("catalog %v", got)
	}
	// A repository whose only manifest is deleted leaves the catalog.
	s.expect(s.do("DELETE", "/v2/b/manifests/"+string(img.Digest), nil, nil, false), 202, "", "delete")
	r := s.do("GET", "/v2/_catalog", nil, nil, false)
	if strings.Contains(string(r.body), `"b"`) {
		t.Fatalf("deleted repo still listed: %s", r.body)
	}
}

func testReferrers(t *testing.T, s *server) {
	subject := newImage(t, "subject")
	s.pushImage("ref", "v1", subject)
	empty := []byte("{}")
	s.pushBlob("ref", empty)
	art := func(at, extra string, subj oci.Digest, size int) []byte {
		layer := []byte(extra)
		s.pushBlob("ref", layer)
		return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"artifactType":%q,"config":{"mediaType":%q,"digest":%q,"size":2},"layers":[{"mediaType":"text/plain","digest":%q,"size":%d}],"subject":{"mediaType":%q,"digest":%q,"size":%d},"annotations":{"org.example":"v"}}`,
			oci.MediaTypeImageManifest, at, oci.MediaTypeEmptyJSON, sha(empty), sha(layer), len(layer), oci.MediaTypeImageManifest, subj, size))
	}
	sig := art("application/vnd.example.sig", "sig", subject.Digest, len(subject.Manifest))
	sbom := art("application/vnd.example.sbom", "sbom", subject.Digest, len(subject.Manifest))
	ct := map[string]string{"Content-Type": oci.MediaTypeImageManifest}
	for _, m := range [][]byte{sig, sbom} {
		r := s.do("PUT", "/v2/ref/manifests/"+string(sha(m)), m, ct, false)
		s.expect(r, 201, "", "artifact push")
		if r.header.Get("OCI-Subject") != string(subject.Digest) {
			t.Fatalf("OCI-Subject %q", r.header.Get("OCI-Subject"))
		}
	}
	// A subject that does not exist is accepted.
	ghost := sha([]byte("ghost"))
	orphan := art("application/vnd.example.sig", "orphan", ghost, 10)
	s.expect(s.do("PUT", "/v2/ref/manifests/"+string(sha(orphan)), orphan, ct, false), 201, "", "orphan artifact")

	idx := func(q string) (oci.Index, resp) {
		r := s.do("GET", "/v2/ref/referrers/"+string(subject.Digest)+q, nil, nil, false)
		s.expect(r, 200, "", "referrers")
		var ix oci.Index
		if err := json.Unmarshal(r.body, &ix); err != nil {
			t.Fatal(err)
		}
		if r.header.Get("Content-Type") != oci.MediaTypeImageIndex || ix.MediaType != oci.MediaTypeImageIndex || ix.SchemaVersion != 2 {
			t.Fatalf("referrers response %v %s", r.header, r.body)
		}
		return ix, r
	}
	ix, r := idx("")
	if len(ix.Manifests) != 2 || r.header.Get("OCI-Filters-Applied") != "" {
		t.Fatalf("referrers %+v", ix)
	}
	for _, d := range ix.Manifests {
		if d.MediaType != oci.MediaTypeImageManifest || d.Annotations["org.example"] != "v" || d.Size == 0 ||
			(d.Digest != sha(sig) && d.Digest != sha(sbom)) || (d.ArtifactType != "application/vnd.example.sig" && d.ArtifactType != "application/vnd.example.sbom") {
			t.Fatalf("descriptor %+v", d)
		}
	}
	ix, r = idx("?artifactType=application/vnd.example.sbom")
	if len(ix.Manifests) != 1 || ix.Manifests[0].Digest != sha(sbom) || r.header.Get("OCI-Filters-Applied") != "artifactType" {
		t.Fatalf("filtered %+v %v", ix, r.header)
	}
	// Paged by Link (issue 11, point 4): one entry a page, the filter kept
	// across pages, every entry listed once.
	paged := map[oci.Digest]bool{}
	next := "/v2/ref/referrers/" + string(subject.Digest) + "?n=1"
	for pages := 0; next != ""; pages++ {
		if pages > 3 {
			t.Fatalf("paging does not end: %s", next)
		}
		r := s.do("GET", next, nil, nil, false)
		s.expect(r, 200, "", "referrers page")
		var page oci.Index
		if err := json.Unmarshal(r.body, &page); err != nil || len(page.Manifests) > 1 {
			t.Fatalf("page %s: %v %s", next, err, r.body)
		}
		for _, d := range page.Manifests {
			paged[d.Digest] = true
		}
		next = ""
		if link := r.header.Get("Link"); link != "" {
			if !strings.HasPrefix(link, "</v2/ref/referrers/"+string(subject.Digest)+"?") || !strings.HasSuffix(link, `>; rel="next"`) {
				t.Fatalf("Link %q", link)
			}
			next = link[1:strings.Index(link, ">")]
		}
	}
	if len(paged) != 2 || !paged[sha(sig)] || !paged[sha(sbom)] {
		t.Fatalf("paged referrers %v", paged)
	}
	r = s.do("GET", "/v2/ref/referrers/"+string(subject.Digest)+"?n=1&artifactType=application/vnd.example.sig", nil, nil, false)
	s.expect(r, 200, "", "filtered page")
	if link := r.header.Get("Link"); link != "" && !strings.Contains(link, "artifactType=application%2Fvnd.example.sig") {
		t.Fatalf("filtered Link drops the filter: %q", link)
	}
	s.expect(s.do("GET", "/v2/ref/referrers/"+string(subject.Digest)+"?last=nonsense", nil, nil, false), 400, "PAGINATION_NUMBER_INVALID", "bad cursor")
	s.expect(s.do("GET", "/v2/ref/referrers/"+string(subject.Digest)+"?n=x", nil, nil, false), 400, "PAGINATION_NUMBER_INVALID", "bad n")
	// Unknown subject: an empty index, not 404.
	r = s.do("GET", "/v2/ref/referrers/"+string(sha([]byte("nothing"))), nil, nil, false)
	s.expect(r, 200, "", "referrers of unknown")
	if !strings.Contains(string(r.body), `"manifests":[]`) {
		t.Fatalf("empty referrers %s", r.body)
	}
	r = s.do("GET", "/v2/ref/referrers/"+string(ghost), nil, nil, false)
	if !strings.Contains(string(r.body), string(sha(orphan))) {
		t.Fatalf("orphan referrer missing: %s", r.body)
	}
	s.expect(s.do("GET", "/v2/ref/referrers/notadigest", nil, nil, false), 400, "DIGEST_INVALID", "bad referrers digest")
	// Deleting an artifact removes it from the referrers.
	s.expect(s.do("DELETE", "/v2/ref/manifests/"+string(sha(sig)), nil, nil, false), 202, "", "delete artifact")
	if ix, _ = idx(""); len(ix.Manifests) != 1 {
		t.Fatalf("after delete %+v", ix)
	}
}

func testDeletes(t *testing.T, s *server) {
	img := newImage(t, "d")
	s.pushImage("del", "a", img)
	s.expect(s.do("PUT", "/v2/del/manifests/b", img.Manifest, map[string]string{"Content-Type": oci.MediaTypeImageManifest}, false), 201, "", "tag b")
	// Delete a tag: the manifest stays.
	s.expect(s.do("DELETE", "/v2/del/manifests/a", nil, nil, false), 202, "", "delete tag")
	s.expect(s.do("GET", "/v2/del/manifests/a", nil, nil, false), 404, "MANIFEST_UNKNOWN", "deleted tag")
	s.expect(s.do("GET", "/v2/del/manifests/"+string(img.Digest), nil, nil, false), 200, "", "manifest after tag delete")
	s.expect(s.do("DELETE", "/v2/del/manifests/a", nil, nil, false), 404, "MANIFEST_UNKNOWN", "delete tag twice")
	// Delete by digest: the manifest and every tag on it go.
	s.expect(s.do("DELETE", "/v2/del/manifests/"+string(img.Digest), nil, nil, false), 202, "", "delete manifest")
	s.expect(s.do("GET", "/v2/del/manifests/"+string(img.Digest), nil, nil, false), 404, "MANIFEST_UNKNOWN", "deleted manifest")
	s.expect(s.do("GET", "/v2/del/manifests/b", nil, nil, false), 404, "MANIFEST_UNKNOWN", "tag of deleted manifest")
	s.expect(s.do("DELETE", "/v2/del/manifests/"+string(img.Digest), nil, nil, false), 404, "MANIFEST_UNKNOWN", "delete twice")
	// Blobs.
	d := sha(img.Layers[0])
	s.expect(s.do("DELETE", "/v2/del/blobs/"+string(d), nil, nil, false), 202, "", "delete blob")
	s.expect(s.do("HEAD", "/v2/del/blobs/"+string(d), nil, nil, false), 404, "", "deleted blob")
	s.expect(s.do("DELETE", "/v2/del/blobs/"+string(d), nil, nil, false), 404, "BLOB_UNKNOWN", "delete blob twice")
	// Pushing again after deletes works.
	s.pushImage("del", "a", img)
}

func testErrors(t *testing.T, s *server) {
	d := string(sha([]byte("x")))
	cases := []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v2/UPPER/manifests/latest", 400, "NAME_INVALID"},
		{"GET", "/v2/a..b/tags/list", 400, "NAME_INVALID"},
		{"GET", "/v2/" + strings.Repeat("a", 256) + "/tags/list", 400, "NAME_INVALID"},
		{"GET", "/v2/nope/tags/list", 404, "NAME_UNKNOWN"},
		{"GET", "/v2/nope/manifests/latest", 404, "MANIFEST_UNKNOWN"},
		{"GET", "/v2/nope/manifests/" + d, 404, "MANIFEST_UNKNOWN"},
		{"GET", "/v2/nope/manifests/sha256:zz", 400, "DIGEST_INVALID"},
		{"GET", "/v2/nope/manifests/md5:d41d8cd98f00b204e9800998ecf8427e", 400, "DIGEST_INVALID"},
		{"GET", "/v2/nope/blobs/" + d, 404, "BLOB_UNKNOWN"},
		{"GET", "/v2/nope/blobs/latest", 400, "DIGEST_INVALID"},
		{"DELETE", "/v2/nope/blobs/" + d, 404, "BLOB_UNKNOWN"},
		{"POST", "/v2/nope/blobs/uploads/?digest=sha256:bad", 400, "DIGEST_INVALID"},
		{"PUT", "/v2/nope/blobs/" + d, 405, "UNSUPPORTED"},
		{"POST", "/v2/nope/manifests/latest", 405, "UNSUPPORTED"},
		{"GET", "/v2/nope/nothing", 404, "UNSUPPORTED"},
	}
	for _, c := range cases {
		r := s.do(c.method, c.path, nil, nil, false)
		s.expect(r, c.status, c.code, c.method+" "+c.path)
		if r.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: Content-Type %q", c.method, c.path, r.header.Get("Content-Type"))
		}
	}
}

func testBodyLimit(t *testing.T, s *server) {
	if s.env.MaxBodyBytes == 0 {
		// No cap: a 20 MiB monolithic push goes through.
		b := randomBytes(t, 20<<20)
		s.pushBlob("limit", b)
		return
	}
	b := randomBytes(t, int(s.env.MaxBodyBytes)+1)
	r := s.do("POST", "/v2/limit/blobs/uploads/?digest="+string(sha(b)), b, nil, false)
	if r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("over the cap: %d %s", r.status, r.body)
	}
	loc := s.startUpload("limit")
	r = s.do("PATCH", loc, b, nil, false)
	if r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("patch over the cap: %d %s", r.status, r.body)
	}
	// The same bytes in chunks succeed.
	half := len(b) / 2
	r = s.do("PATCH", loc, b[:half], map[string]string{"Content-Range": fmt.Sprintf("0-%d", half-1)}, false)
	s.expect(r, 202, "", "first half")
	r = s.do("PATCH", r.header.Get("Location"), b[half:], map[string]string{"Content-Range": fmt.Sprintf("%d-%d", half, len(b)-1)}, false)
	s.expect(r, 202, "", "second half")
	s.expect(s.do("PUT", withDigest(r.header.Get("Location"), sha(b)), nil, nil, false), 201, "", "close")
	checkBlob(t, s, "limit", sha(b), b)
}
