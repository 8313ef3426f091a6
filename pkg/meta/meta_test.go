package meta_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/driver/boltdb"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

func newStore(t *testing.T, opts ...meta.Option) *meta.Store {
	t.Helper()
	return meta.New(testenv.NewEmbedded(t).Items, opts...)
}

func refcount(t *testing.T, s *meta.Store, d oci.Digest) int64 {
	t.Helper()
	it, err := meta.ItemsOf(s).ItemGet(t.Context(), "BLOB#"+string(d), "META")
	if err != nil {
		t.Fatalf("blob %s: %v", d, err)
	}
	return it.Count
}

// manifestWith links n blobs into repo and returns a manifest put of them.
func manifestWith(t *testing.T, s *meta.Store, repo string, n int, seed string) (meta.ManifestPut, []oci.Digest) {
	t.Helper()
	var layers []oci.Descriptor
	var ds []oci.Digest
	for i := 0; i < n; i++ {
		b := []byte(fmt.Sprintf("%s-%d", seed, i))
		d := oci.FromBytes(oci.SHA256, b)
		if err := s.BlobLinkPut(t.Context(), repo, d, int64(len(b))); err != nil {
			t.Fatal(err)
		}
		layers = append(layers, oci.Descriptor{MediaType: "application/octet-stream", Digest: d, Size: int64(len(b))})
		ds = append(ds, d)
	}
	cfg := layers[0]
	body := []byte(fmt.Sprintf(`{"seed":%q,"n":%d}`, seed, n))
	return meta.ManifestPut{
		Repo: repo, Digest: oci.FromBytes(oci.SHA256, body), Body: body,
		Parsed: &oci.Manifest{MediaType: oci.MediaTypeImageManifest, Config: &cfg, Layers: layers[1:]},
	}, ds
}

func TestRefcounts(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	p, ds := manifestWith(t, s, "a", 3, "x")
	for _, d := range ds {
		if c := refcount(t, s, d); c != 0 {
			t.Fatalf("fresh blob count %d", c)
		}
	}
	p.Tag = "v1"
	if err := s.ManifestPut(ctx, p); err != nil {
		t.Fatal(err)
	}
	// Re-putting (another tag) does not count twice.
	p.Tag = "v2"
	if err := s.ManifestPut(ctx, p); err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if c := refcount(t, s, d); c != 1 {
			t.Fatalf("count %d after put", c)
		}
	}
	// The same manifest in another repository counts again.
	for _, d := range ds {
		if err := s.BlobLinkPut(ctx, "b", d, int64(len("x-0"))); err != nil {
			t.Fatal(err)
		}
	}
	p2 := p
	p2.Repo, p2.Tag = "b", ""
	if err := s.ManifestPut(ctx, p2); err != nil {
		t.Fatal(err)
	}
	if c := refcount(t, s, ds[0]); c != 2 {
		t.Fatalf("count %d after second repo", c)
	}
	if err := s.ManifestDelete(ctx, "a", p.Digest); err != nil {
		t.Fatal(err)
	}
	if c := refcount(t, s, ds[0]); c != 1 {
		t.Fatalf("count %d after delete", c)
	}
	if _, err := s.TagGet(ctx, "a", "v1"); !errors.Is(err, meta.ErrTagUnknown) {
		t.Fatalf("tag after delete: %v", err)
	}
	if ok, _ := s.RepoExists(ctx, "a"); ok {
		t.Fatal("repo a still exists")
	}
	if err := s.ManifestDelete(ctx, "b", p.Digest); err != nil {
		t.Fatal(err)
	}
	if c := refcount(t, s, ds[0]); c != 0 {
		t.Fatalf("count %d after last delete", c)
	}
}

// More referenced blobs than one transaction holds: counts are raised in
// batches, and a failure compensates them.
func TestRefcountsBatched(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	p, ds := manifestWith(t, s, "big", 250, "b")
	if err := s.ManifestPut(ctx, p); err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if c := refcount(t, s, d); c != 1 {
			t.Fatalf("count %d", c)
		}
	}
	// A second manifest sharing all blobs, one of whose blobs vanished from
	// the global records (as garbage collection would remove it).
	q, qds := manifestWith(t, s, "big", 250, "b")
	q.Body = []byte(`{"other":1}`)
	q.Digest = oci.FromBytes(oci.SHA256, q.Body)
	gone := qds[230]
	if err := meta.ItemsOf(s).ItemDelete(ctx, "BLOB#"+string(gone), "META", storage.IfNone); err != nil {
		t.Fatal(err)
	}
	var missing *meta.MissingError
	if err := s.ManifestPut(ctx, q); !errors.As(err, &missing) || missing.Digest != gone {
		t.Fatalf("want missing %s, got %v", gone, err)
	}
	for i, d := range qds {
		if d == gone {
			continue
		}
		if c := refcount(t, s, d); c != 1 {
			t.Fatalf("blob %d: count %d after a failed put (not compensated)", i, c)
		}
	}
	if _, err := s.ManifestGet(ctx, "big", q.Digest); !errors.Is(err, meta.ErrManifestUnknown) {
		t.Fatalf("failed manifest visible: %v", err)
	}
	if err := s.ManifestDelete(ctx, "big", p.Digest); err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d == gone {
			continue
		}
		if c := refcount(t, s, d); c != 0 {
			t.Fatalf("count %d after delete", c)
		}
	}
}

func TestMissingAndSize(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	p, ds := manifestWith(t, s, "m", 2, "s")
	p.Parsed.Layers[0].Size++
	var missing *meta.MissingError
	if err := s.ManifestPut(ctx, p); !errors.As(err, &missing) || !errors.Is(err, meta.ErrBlobSize) || missing.Digest != ds[1] {
		t.Fatalf("size mismatch: %v", err)
	}
	p.Parsed.Layers[0].Size--
	p.Repo = "elsewhere"
	if err := s.ManifestPut(ctx, p); !errors.Is(err, meta.ErrBlobUnknown) {
		t.Fatalf("unlinked: %v", err)
	}
}

func TestImmutableTags(t *testing.T) {
	s := newStore(t, meta.WithImmutableTags(func(repo, tag string) bool { return tag != "latest" }))
	ctx := t.Context()
	p, _ := manifestWith(t, s, "imm", 1, "i")
	p.Tag = "v1"
	if err := s.ManifestPut(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := s.ManifestPut(ctx, p); err != nil {
		t.Fatalf("same digest again: %v", err)
	}
	q, _ := manifestWith(t, s, "imm", 1, "j")
	q.Tag = "v1"
	if err := s.ManifestPut(ctx, q); !errors.Is(err, meta.ErrTagImmutable) {
		t.Fatalf("moved immutable tag: %v", err)
	}
	if err := s.TagDelete(ctx, "imm", "v1"); !errors.Is(err, meta.ErrTagImmutable) {
		t.Fatalf("deleted immutable tag: %v", err)
	}
	q.Tag = "latest"
	if err := s.ManifestPut(ctx, q); err != nil {
		t.Fatal(err)
	}
	if tg, _ := s.TagGet(ctx, "imm", "v1"); tg.Digest != p.Digest {
		t.Fatal("immutable tag changed")
	}
}

func TestExternalManifestCounts(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	p, _ := manifestWith(t, s, "ext", 1, "e")
	p.External = true
	if err := s.ManifestPut(ctx, p); err != nil {
		t.Fatal(err)
	}
	if c := refcount(t, s, p.Digest); c != 1 {
		t.Fatalf("external body count %d", c)
	}
	m, err := s.ManifestGet(ctx, "ext", p.Digest)
	if err != nil || !m.External || m.Body != nil {
		t.Fatalf("external record %+v %v", m, err)
	}
	if err := s.ManifestDelete(ctx, "ext", p.Digest); err != nil {
		t.Fatal(err)
	}
	if c := refcount(t, s, p.Digest); c != 0 {
		t.Fatalf("external body count %d after delete", c)
	}
}

// noScan fails any table scan: the sweep must read only its index.
type noScan struct{ storage.Items }

func (noScan) ItemScan(context.Context, string, string, int) ([]storage.Item, string, error) {
	return nil, "", errors.New("scan on the sweep path")
}

func TestUploadsExpiredUsesIndex(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	items := testenv.NewEmbedded(t, boltdb.WithClock(func() time.Time { return now })).Items
	s := meta.New(noScan{items}, meta.WithClock(func() time.Time { return now }))
	ctx := t.Context()
	for i := 0; i < 40; i++ {
		exp := now.Add(-time.Minute) // expired
		if i%2 == 1 {
			exp = now.Add(time.Hour)
		}
		if _, err := s.UploadCreate(ctx, meta.Upload{ID: fmt.Sprintf("up%02d", i), Repo: "r", Created: now.Unix(), ExpiresAt: exp.Unix()}); err != nil {
			t.Fatal(err)
		}
	}
	// A session whose record vanished (its TTL ran): only the index remains.
	if err := items.ItemDelete(ctx, "UPLOAD#up00", "META", storage.IfNone); err != nil {
		t.Fatal(err)
	}
	var expired []meta.Upload
	if err := s.UploadsExpired(ctx, func(u meta.Upload) error { expired = append(expired, u); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(expired) != 19 {
		t.Fatalf("expired %d sessions: %v", len(expired), expired)
	}
	for _, u := range expired {
		if err := s.UploadDelete(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	// Only the 20 live sessions are left in the index: the orphan and the
	// deleted ones are gone.
	left, _, err := items.ItemScan(ctx, "UPLOADS#", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 20 {
		t.Fatalf("%d index entries left, want 20", len(left))
	}
}
