package push_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/push"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/tests/harness"
)

// anonymous keeps the tests away from the machine's docker config.
var anonymous = push.Conn{Keychain: authn.NewMultiKeychain()}

// fastRetry keeps failing tests quick.
var fastRetry = push.RetryPolicy{Attempts: 3, Base: 10 * time.Millisecond, Max: 50 * time.Millisecond}

// countingHandler counts requests by method and path kind, so tests see
// which upload path a push took.
type countingHandler struct {
	h     http.Handler
	mu    sync.Mutex
	calls map[string]int
}

func (c *countingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	kind := "other"
	switch {
	case strings.Contains(r.URL.Path, "/blobs/uploads/"):
		kind = "upload"
	case strings.Contains(r.URL.Path, "/blobs/"):
		kind = "blob"
	case strings.Contains(r.URL.Path, "/manifests/"):
		kind = "manifest"
	}
	c.calls[r.Method+" "+kind]++
	c.mu.Unlock()
	c.h.ServeHTTP(w, r)
}

func (c *countingHandler) count(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[k]
}

// embedded starts registry.New over the embedded store (the fallback
// path: no presigning) and returns its host and request counter.
func embedded(t *testing.T, cfg registry.Config) (string, *countingHandler) {
	t.Helper()
	e := testenv.NewEmbedded(t)
	ch := &countingHandler{h: registry.New(cfg, e.Items, e.Blobs), calls: map[string]int{}}
	srv := httptest.NewServer(ch)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), ch
}

func doPush(t *testing.T, src push.Source, ref string, opts push.Options) push.Summary {
	t.Helper()
	sum, err := pushTo(context.Background(), src, ref, "", opts)
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return sum
}

func pushTo(ctx context.Context, src push.Source, ref, mountFrom string, opts push.Options) (push.Summary, error) {
	dst, err := push.NewTarget(ctx, ref, anonymous, mountFrom, fastRetry)
	if err != nil {
		return push.Summary{}, err
	}
	return push.Push(ctx, src, dst, opts)
}

func open(t *testing.T, src string) push.Source {
	t.Helper()
	s, closeFn, err := push.Open(src)
	if err != nil {
		t.Fatalf("open %s: %v", src, err)
	}
	t.Cleanup(func() { _ = closeFn() })
	return s
}

// pulled reads ref back with ggcr: its manifest bytes and every blob of
// every image it holds (children of an index included), by digest.
func pulled(t *testing.T, ref string) (v1.Hash, []byte, map[string][]byte) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Get(r)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	blobs := map[string][]byte{}
	var images []v1.Image
	if d.MediaType.IsIndex() {
		idx, err := d.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range im.Manifests {
			img, err := idx.Image(c.Digest)
			if err != nil {
				t.Fatal(err)
			}
			images = append(images, img)
		}
	} else {
		img, err := d.Image()
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, img)
	}
	for _, img := range images {
		cfgName, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.RawConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		blobs[cfgName.String()] = cfg
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			dg, err := l.Digest()
			if err != nil {
				t.Fatal(err)
			}
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			_ = rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			blobs[dg.String()] = b
		}
	}
	return d.Digest, d.Manifest, blobs
}

// checkLayout asserts that ref holds exactly the layout's content.
func checkLayout(t *testing.T, ref string, l harness.Layout) {
	t.Helper()
	dg, man, blobs := pulled(t, ref)
	if dg.String() != l.Digest() || !bytes.Equal(man, l.Blob(t, l.Digest())) {
		t.Fatalf("%s: manifest %s, want %s (byte-identical)", ref, dg, l.Digest())
	}
	for _, img := range l.Images {
		for _, d := range append([]harness.Descriptor{img.Config}, img.Layers...) {
			if got, ok := blobs[d.Digest]; !ok || !bytes.Equal(got, l.Blob(t, d.Digest)) {
				t.Fatalf("%s: blob %s differs from the layout's (%d bytes pulled)", ref, d.Digest, len(got))
			}
		}
	}
}

func blobCount(l harness.Layout) int {
	n := 0
	for _, img := range l.Images {
		n += 1 + len(img.Layers)
	}
	return n
}

// An OCI layout goes up through the ordinary upload API of the embedded
// store (no presigning) and comes back byte-identical; pushing it again
// sends no bytes.
func TestPushLayoutEmbedded(t *testing.T) {
	host, calls := embedded(t, registry.Config{})
	l := harness.WriteImage(t, "v1", 300, 3<<20, 5<<20)
	ref := host + "/team/app:v1"

	sum := doPush(t, open(t, l.Dir), ref, push.Options{})
	if sum.Uploaded != 4 || sum.Skipped != 0 || sum.Manifests != 1 || sum.Digest.String() != l.Digest() {
		t.Fatalf("first push: %+v", sum)
	}
	// Config and the small layer in one POST each; the big layers after a
	// direct request the embedded store answers the ordinary way.
	if sum.Paths[push.PathPost] != 2 || sum.Paths[push.PathPut] != 2 {
		t.Fatalf("paths %v", sum.Paths)
	}
	checkLayout(t, ref, l)

	before := calls.count("PUT upload") + calls.count("POST upload")
	again := doPush(t, open(t, l.Dir), ref, push.Options{})
	if again.Uploaded != 0 || again.Skipped != 4 || again.UploadedBytes != 0 || again.SkippedBytes != sum.UploadedBytes {
		t.Fatalf("second push uploaded: %+v", again)
	}
	if after := calls.count("PUT upload") + calls.count("POST upload"); after != before {
		t.Fatalf("second push made %d upload requests", after-before)
	}
	checkLayout(t, ref, l)
}

// tarDir writes dir as a tar archive (what `docker buildx --output
// type=oci` writes).
func tarDir(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPushOCIArchive(t *testing.T) {
	host, _ := embedded(t, registry.Config{})
	l := harness.WriteImage(t, "latest", 2<<20, 1000)
	ref := host + "/archive/app:latest"
	sum := doPush(t, open(t, tarDir(t, l.Dir)), ref, push.Options{})
	if sum.Uploaded != 3 || sum.Digest.String() != l.Digest() {
		t.Fatalf("push: %+v", sum)
	}
	checkLayout(t, ref, l)
}

// A `docker save` tar has no registry manifest; ggcr builds the one crane
// push would (gzip-compressed layers), and it comes back intact.
func TestPushDockerSave(t *testing.T) {
	host, _ := embedded(t, registry.Config{})
	img, err := random.Image(2<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "save.tar")
	tag, err := name.NewTag("example.com/app:saved")
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(p, tag, img); err != nil {
		t.Fatal(err)
	}
	want, err := tarball.ImageFromPath(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantDigest, err := want.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref := host + "/saved/app:v1"
	sum := doPush(t, open(t, p), ref, push.Options{Jobs: 2})
	if sum.Digest != wantDigest || sum.Uploaded != 3 {
		t.Fatalf("push: %+v, want digest %s", sum, wantDigest)
	}
	got, _, blobs := pulled(t, ref)
	if got != wantDigest {
		t.Fatalf("pulled %s, want %s", got, wantDigest)
	}
	// The uncompressed content of every layer equals the saved one.
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	pulledImg, err := remote.Image(mustRef(t, ref))
	if err != nil {
		t.Fatal(err)
	}
	pl, err := pulledImg.Layers()
	if err != nil || len(pl) != len(layers) || len(blobs) != len(layers)+1 {
		t.Fatalf("pulled %d layers (%v), want %d", len(pl), err, len(layers))
	}
	for i := range layers {
		if a, b := uncompressed(t, layers[i]), uncompressed(t, pl[i]); !bytes.Equal(a, b) {
			t.Fatalf("layer %d differs after the push", i)
		}
	}
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func uncompressed(t *testing.T, l v1.Layer) []byte {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A two-platform index goes up children first; --platform pushes one child
// under the tag.
func TestPushIndex(t *testing.T) {
	host, _ := embedded(t, registry.Config{})
	l := harness.WriteIndex(t, "multi", 2<<20, "linux/amd64", "linux/arm64")
	ref := host + "/multi/app:multi"
	sum := doPush(t, open(t, l.Dir), ref, push.Options{})
	if sum.Manifests != 3 || sum.Uploaded != blobCount(l) {
		t.Fatalf("push: %+v", sum)
	}
	checkLayout(t, ref, l)

	arm := &v1.Platform{OS: "linux", Architecture: "arm64"}
	one := host + "/multi/arm:only"
	sum = doPush(t, open(t, l.Dir), one, push.Options{Platform: arm})
	if sum.Digest.String() != l.Images[1].Manifest.Digest || sum.Manifests != 1 {
		t.Fatalf("platform push: %+v, want %s", sum, l.Images[1].Manifest.Digest)
	}
	got, _, _ := pulled(t, one)
	if got.String() != l.Images[1].Manifest.Digest {
		t.Fatalf("pulled %s", got)
	}
}

// addReferrer writes an SBOM-like artifact whose subject is the layout's
// top manifest into the layout (as `oras attach --oci-layout` does) and
// returns its digest.
func addReferrer(t *testing.T, l harness.Layout) string {
	t.Helper()
	write := func(b []byte) string {
		d := harness.Digest(b)
		if err := os.WriteFile(filepath.Join(l.Dir, "blobs", "sha256", strings.TrimPrefix(d, "sha256:")), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	empty := []byte("{}")
	sbom := []byte(`{"spdxVersion":"SPDX-2.3","name":"app"}`)
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     harness.MediaTypeManifest,
		"artifactType":  "application/spdx+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.empty.v1+json", "digest": write(empty), "size": len(empty)},
		"layers":        []any{map[string]any{"mediaType": "application/spdx+json", "digest": write(sbom), "size": len(sbom)}},
		"subject":       map[string]any{"mediaType": l.Top.MediaType, "digest": l.Top.Digest, "size": l.Top.Size},
	}
	mb, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	md := write(mb)
	idxPath := filepath.Join(l.Dir, "index.json")
	var idx map[string]any
	ib, err := os.ReadFile(idxPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(ib, &idx); err != nil {
		t.Fatal(err)
	}
	idx["manifests"] = append(idx["manifests"].([]any), map[string]any{
		"mediaType": harness.MediaTypeManifest, "digest": md, "size": len(mb), "artifactType": "application/spdx+json",
	})
	if ib, err = json.Marshal(idx); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(idxPath, ib, 0o644); err != nil {
		t.Fatal(err)
	}
	return md
}

func referrers(t *testing.T, ref, subject string) []string {
	t.Helper()
	r := mustRef(t, ref)
	idx, err := remote.Referrers(r.Context().Digest(subject))
	if err != nil {
		t.Fatalf("referrers: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range im.Manifests {
		out = append(out, d.Digest.String())
	}
	return out
}

// A layout's manifest whose subject is the pushed image goes up after it
// and shows in the registry's referrers API.
func TestPushLayoutReferrer(t *testing.T) {
	host, _ := embedded(t, registry.Config{})
	l := harness.WriteImage(t, "signed", 4096)
	sbom := addReferrer(t, l)
	ref := host + "/ref/app:signed"
	sum := doPush(t, open(t, l.Dir+":signed"), ref, push.Options{})
	if sum.Manifests != 2 || sum.Uploaded != 4 {
		t.Fatalf("push: %+v", sum)
	}
	if got := referrers(t, ref, l.Digest()); len(got) != 1 || got[0] != sbom {
		t.Fatalf("referrers %v, want [%s]", got, sbom)
	}
	checkLayout(t, ref, l)
}

// Copy between two repositories of one registry mounts every blob; copy to
// another registry moves the bytes; referrers follow both times.
func TestCopy(t *testing.T) {
	hostA, _ := embedded(t, registry.Config{})
	hostB, _ := embedded(t, registry.Config{})
	l := harness.WriteIndex(t, "multi", 3<<20, "linux/amd64", "linux/arm64")
	sbom := addReferrer(t, l)
	src := hostA + "/src/app:multi"
	doPush(t, open(t, l.Dir+":multi"), src, push.Options{})

	copyTo := func(dst string) push.Summary {
		t.Helper()
		s, err := push.NewRemoteSource(src, anonymous)
		if err != nil {
			t.Fatal(err)
		}
		from := ""
		if reg, repo := s.MountFrom(); strings.HasPrefix(dst, reg+"/") {
			from = repo
		}
		sum, err := pushTo(context.Background(), s, dst, from, push.Options{})
		if err != nil {
			t.Fatalf("copy to %s: %v", dst, err)
		}
		checkLayout(t, dst, l)
		if got := referrers(t, dst, l.Digest()); len(got) != 1 || got[0] != sbom {
			t.Fatalf("%s referrers %v, want [%s]", dst, got, sbom)
		}
		return sum
	}
	total := blobCount(l) + 2 // the SBOM's config and layer
	same := copyTo(hostA + "/dst/app:copy")
	if same.Mounted != total || same.Uploaded != 0 || same.Manifests != 4 {
		t.Fatalf("copy within the registry: %+v", same)
	}
	other := copyTo(hostB + "/mirror/app:multi")
	if other.Uploaded != total || other.Mounted != 0 {
		t.Fatalf("copy across registries: %+v", other)
	}
}

// cancelAfter is a Progress that cancels the push once n blobs are done.
type cancelAfter struct {
	push.Quiet
	n      int32
	done   atomic.Int32
	cancel context.CancelFunc
}

func (c *cancelAfter) Blob(v1.Descriptor) push.BlobProgress { return c }
func (c *cancelAfter) Add(int64)                            {}
func (c *cancelAfter) Done(r push.BlobResult, err error) {
	if err == nil && c.done.Add(1) == c.n {
		c.cancel()
	}
}

// An interrupted push leaves what it uploaded; the next run skips it and
// finishes the image.
func TestPushResumes(t *testing.T) {
	host, _ := embedded(t, registry.Config{})
	l := harness.WriteImage(t, "v1", 2<<20, 2<<20, 2<<20, 2<<20)
	ref := host + "/resume/app:v1"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := pushTo(ctx, open(t, l.Dir), ref, "", push.Options{Jobs: 1, Progress: &cancelAfter{n: 2, cancel: cancel}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted push: %v", err)
	}
	if _, err := remote.Get(mustRef(t, ref)); err == nil {
		t.Fatal("the tag exists after an interrupted push")
	}
	sum := doPush(t, open(t, l.Dir), ref, push.Options{})
	if sum.Skipped != 2 || sum.Uploaded != 3 {
		t.Fatalf("resumed push: %+v", sum)
	}
	checkLayout(t, ref, l)
}

// Behind a body cap (Lambda), a monolithic PUT gets 413 and the blob goes
// up in OCI chunks of OCI-Chunk-Min-Length.
func TestPushChunkedAfter413(t *testing.T) {
	host, calls := embedded(t, registry.Config{MaxBodyBytes: 1 << 20, ChunkMinLength: 512 << 10})
	l := harness.WriteImage(t, "big", 3<<20)
	ref := host + "/capped/app:big"
	sum := doPush(t, open(t, l.Dir), ref, push.Options{})
	if sum.Paths[push.PathChunked] != 1 {
		t.Fatalf("paths %v", sum.Paths)
	}
	// 3 MiB + a tar header in 512 KiB chunks: 7 PATCHes.
	if n := calls.count("PATCH upload"); n != 7 {
		t.Fatalf("%d PATCHes, want 7", n)
	}
	checkLayout(t, ref, l)
}
