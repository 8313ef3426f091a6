package e2e

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-registry/berth/tests/harness"
)

func crane(t *testing.T) *harness.Tool { return harness.Client(t, "crane") }

// testCrane pushes, pulls and copies an image with crane; the copy to a
// second repository must mount the blobs, not upload them again.
func testCrane(t *testing.T, s *harness.Server) {
	c := crane(t)
	src, dst := repo(t, "src"), repo(t, "dst")
	l := harness.WriteImage(t, "v1", 1<<20, 256<<10)
	img := l.Images[0]

	c.Run("push", "--insecure", l.Dir, ref(s, src, "v1"))
	if got := strings.TrimSpace(c.Run("digest", "--insecure", ref(s, src, "v1"))); got != l.Digest() {
		t.Fatalf("crane digest = %s, want %s", got, l.Digest())
	}
	// The manifest comes back byte for byte.
	if got := c.Run("manifest", "--insecure", ref(s, src, "v1")); !bytes.Equal([]byte(got), l.Blob(t, l.Digest())) {
		t.Fatalf("manifest differs:\n%s", got)
	}
	if got := c.Run("config", "--insecure", ref(s, src, "v1")); !bytes.Equal([]byte(got), l.Blob(t, img.Config.Digest)) {
		t.Fatalf("config differs:\n%s", got)
	}
	for _, layer := range img.Layers {
		if got := c.Run("blob", "--insecure", ref(s, src, layer.Digest)); harness.Digest([]byte(got)) != layer.Digest {
			t.Fatalf("layer %s came back as %s", layer.Digest, harness.Digest([]byte(got)))
		}
	}
	out := filepath.Join(t.TempDir(), "pulled")
	c.Run("pull", "--insecure", "--format", "oci", ref(s, src, "v1"), out)

	// Cross-repository copy: no blob is uploaded again. crane HEADs each
	// blob in dst first; Berth mounts it there on that HEAD (the pusher may
	// read src) and answers 200, so crane skips it. A registry that
	// answered 404 would get a mount POST (→ 201) instead.
	mark := s.Mark()
	c.Run("copy", "--insecure", ref(s, src, "v1"), ref(s, dst, "v1"))
	if got := strings.TrimSpace(c.Run("digest", "--insecure", ref(s, dst, "v1"))); got != l.Digest() {
		t.Fatalf("copied digest = %s, want %s", got, l.Digest())
	}
	for _, d := range append([]harness.Descriptor{img.Config}, img.Layers...) {
		if st := headBlob(t, s, dst, d.Digest); st != 200 {
			t.Fatalf("HEAD %s in %s after copy: %d", d.Digest, dst, st)
		}
	}
	if !s.Attached() {
		for _, r := range uploadsOf(s.RequestsSince(mark), dst) {
			if r.Method != "POST" || r.Status != 201 {
				t.Fatalf("crane copy to %s: %s %s → %d; want no upload (HEAD → 200, or a mount POST → 201)", dst, r.Method, r.Path, r.Status)
			}
		}
		heads := 0
		for _, r := range s.RequestsSince(mark) {
			if r.Repo == dst && r.Route == "blob" && r.Method == "HEAD" && r.Status == 200 {
				heads++
			}
		}
		if heads == 0 {
			t.Fatalf("crane copy to %s: no HEAD answered 200: the blobs were not mounted on HEAD", dst)
		}
	}
	tags := strings.Fields(c.Run("ls", "--insecure", s.Addr+"/"+dst))
	if !slices.Equal(tags, []string{"v1"}) {
		t.Fatalf("crane ls %s = %q", dst, tags)
	}
}

// testCraneIndex pushes a multi-platform index and resolves each platform.
func testCraneIndex(t *testing.T, s *harness.Server) {
	c := crane(t)
	r := repo(t, "multi")
	platforms := []string{"linux/amd64", "linux/arm64"}
	l := harness.WriteIndex(t, "multi", 512<<10, platforms...)
	c.Run("push", "--insecure", l.Dir, ref(s, r, "multi"))
	if got := c.Run("manifest", "--insecure", ref(s, r, "multi")); !bytes.Equal([]byte(got), l.Blob(t, l.Digest())) {
		t.Fatalf("index differs:\n%s", got)
	}
	for i, img := range l.Images {
		plat := platforms[i]
		got := strings.TrimSpace(c.Run("digest", "--insecure", "--platform", plat, ref(s, r, "multi")))
		if got != img.Manifest.Digest {
			t.Fatalf("%s resolves to %s, want %s", plat, got, img.Manifest.Digest)
		}
		if st := headManifest(t, s, r, img.Manifest.Digest); st != 200 {
			t.Fatalf("HEAD child %s: %d", img.Manifest.Digest, st)
		}
	}
	// The whole index copies to another repository.
	c.Run("copy", "--insecure", ref(s, r, "multi"), ref(s, repo(t, "copy"), "multi"))
	if got := strings.TrimSpace(c.Run("digest", "--insecure", ref(s, repo(t, "copy"), "multi"))); got != l.Digest() {
		t.Fatalf("copied index digest %s, want %s", got, l.Digest())
	}
}

// testBigLayer round-trips an image with a 64 MiB random layer. crane sends
// a blob in one request, which the Lambda path refuses by design (about
// 4.4 MB per request): there the big push goes through regctl's chunked
// uploads (testRegctlChunked) and crane must fail with a 413.
func testBigLayer(t *testing.T, s *harness.Server) {
	c := crane(t)
	r := repo(t, "big")
	if onLambda(s) {
		l := harness.WriteImage(t, "big", 8<<20)
		res := c.Exec("push", "--insecure", l.Dir, ref(s, r, "big"))
		if res.Err == nil {
			t.Fatal("crane pushed an 8 MiB layer in one request through Lambda")
		}
		if !strings.Contains(res.Output(), "413") {
			t.Fatalf("crane push through Lambda failed without a 413:\n%s", res.Output())
		}
		return
	}
	l := harness.WriteImage(t, "big", 64<<20)
	c.Run("push", "--insecure", l.Dir, ref(s, r, "big"))
	layer := l.Images[0].Layers[0]
	if got := harness.Digest([]byte(c.Run("blob", "--insecure", ref(s, r, layer.Digest)))); got != layer.Digest {
		t.Fatalf("64 MiB layer came back as %s, want %s", got, layer.Digest)
	}
}
