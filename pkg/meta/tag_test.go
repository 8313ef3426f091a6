package meta_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/driver/dynamo"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
	"github.com/berth-registry/berth/pkg/storage/storagetest"
)

// eachBackend runs fn on the embedded store (bbolt) and on DynamoDB Local:
// the tag copy rests on transaction semantics both drivers must share.
func eachBackend(t *testing.T, fn func(t *testing.T, items storage.Items)) {
	t.Run("bbolt", func(t *testing.T) { fn(t, testenv.NewEmbedded(t).Items) })
	t.Run("dynamodb", func(t *testing.T) {
		client := testenv.DynamoDB(t)
		fn(t, dynamo.New(client, testenv.FreshTable(t, client)))
	})
}

// resolveCost resolves repo:tag through s (over p) and returns the
// manifest and the driver calls it took.
func resolveCost(t *testing.T, s *meta.Store, p *storagetest.Probe, repo, tag string) (meta.Manifest, map[string]int) {
	t.Helper()
	p.Reset()
	m, err := s.ManifestResolve(t.Context(), repo, oci.Reference{Tag: tag})
	if err != nil {
		t.Fatalf("resolve %s:%s: %v", repo, tag, err)
	}
	return m, p.Reset()
}

// wantSame fails unless the manifest resolved by tag is the one stored
// under d, field for field.
func wantSame(t *testing.T, s *meta.Store, repo string, d oci.Digest, got meta.Manifest) {
	t.Helper()
	want, err := s.ManifestGet(t.Context(), repo, d)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("resolved by tag:\n%+v\nby digest:\n%+v", got, want)
	}
}

var oneGet = map[string]int{"ItemGet": 1}

// checkNoOrphanTags asserts invariant 6 of docs/architecture.md on repo:
// every tag's manifest exists, and a tag's copy is that manifest's record.
func checkNoOrphanTags(t *testing.T, s *meta.Store, repo string) {
	t.Helper()
	items, _, err := meta.ItemsOf(s).ItemQuery(t.Context(), "REPO#"+repo, "TAG#", "", 10_000)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		var tg meta.Tag
		if err := json.Unmarshal(it.Data, &tg); err != nil {
			t.Fatal(err)
		}
		m, err := s.ManifestGet(t.Context(), repo, tg.Digest)
		if err != nil {
			t.Fatalf("%s points at %s: %v", it.SK, tg.Digest, err)
		}
		if tg.Manifest != nil {
			tg.Manifest.Digest = tg.Digest
			if !reflect.DeepEqual(*tg.Manifest, m) {
				t.Fatalf("%s: copy %+v differs from the manifest %+v", it.SK, *tg.Manifest, m)
			}
		}
	}
}

// putTagged pushes p under tag.
func putTagged(t *testing.T, s *meta.Store, p meta.ManifestPut, tag string) {
	t.Helper()
	p.Tag = tag
	if err := s.ManifestPut(t.Context(), p); err != nil {
		t.Fatalf("put %s as %s: %v", p.Digest, tag, err)
	}
}

func wantTagUnknown(t *testing.T, s *meta.Store, repo, tag string) {
	t.Helper()
	if tg, err := s.TagGet(t.Context(), repo, tag); !errors.Is(err, meta.ErrTagUnknown) {
		t.Fatalf("tag %s: %+v, %v; want it gone", tag, tg, err)
	}
}

// A pull by tag reads one item, whichever write put the tag there: the
// transaction that created the manifest, a re-tag of an existing
// manifest, a tag move, an immutable tag re-pushed, an external body.
func TestTagResolveOneRead(t *testing.T) {
	eachBackend(t, func(t *testing.T, items storage.Items) {
		p := storagetest.NewProbe(items)
		s := meta.New(p, meta.WithImmutableTags(func(_, tag string) bool { return tag == "release" }))
		a, _ := manifestWith(t, s, "r", 2, "a")
		b, _ := manifestWith(t, s, "r", 1, "b")
		ext, _ := manifestWith(t, s, "r", 1, "ext")
		ext.External = true

		putTagged(t, s, a, "v1")         // created with its tag
		putTagged(t, s, a, "latest")     // re-tag of an existing manifest
		putTagged(t, s, b, "moved")      // created with b's tag...
		putTagged(t, s, a, "moved")      // ...then moved to a
		putTagged(t, s, a, "release")    // immutable, new
		putTagged(t, s, a, "release")    // immutable, same digest again
		putTagged(t, s, ext, "external") // body stored as a blob
		p.Reset()
		putTagged(t, s, a, "again")
		if c := p.Reset(); !reflect.DeepEqual(c, map[string]int{"ItemGetBatch": 1, "Transact": 1}) {
			t.Errorf("re-tag cost %v, want one batch read and one transaction", c)
		}
		for tag, d := range map[string]oci.Digest{"v1": a.Digest, "latest": a.Digest, "moved": a.Digest, "release": a.Digest, "again": a.Digest, "external": ext.Digest} {
			m, cost := resolveCost(t, s, p, "r", tag)
			if !reflect.DeepEqual(cost, oneGet) {
				t.Errorf("resolve %s: %v, want one ItemGet", tag, cost)
			}
			wantSame(t, s, "r", d, m)
		}
		if m, _ := resolveCost(t, s, p, "r", "external"); !m.External || m.Body != nil {
			t.Errorf("external copy %+v", m)
		}
		// Immutability still holds on the re-tag path.
		b.Tag = "release"
		if err := s.ManifestPut(t.Context(), b); !errors.Is(err, meta.ErrTagImmutable) {
			t.Fatalf("moved an immutable tag: %v", err)
		}
		checkNoOrphanTags(t, s, "r")
	})
}

// Tags written before the copy existed hold only the digest: they still
// resolve (with a second read), and a delete removes them with the rest.
func TestTagOldFormat(t *testing.T) {
	eachBackend(t, func(t *testing.T, items storage.Items) {
		ctx := t.Context()
		p := storagetest.NewProbe(items)
		s := meta.New(p)
		a, _ := manifestWith(t, s, "old", 1, "a")
		if err := s.ManifestPut(ctx, a); err != nil {
			t.Fatal(err)
		}
		old := func(tag string, d oci.Digest) {
			t.Helper()
			data := fmt.Sprintf(`{"d":%q,"mt":%q,"at_push":1700000000}`, d, oci.MediaTypeImageManifest)
			if err := items.ItemPut(ctx, storage.Item{PK: "REPO#old", SK: "TAG#" + tag, Data: []byte(data)}, storage.IfNone); err != nil {
				t.Fatal(err)
			}
		}
		old("v1", a.Digest)
		m, cost := resolveCost(t, s, p, "old", "v1")
		if !reflect.DeepEqual(cost, map[string]int{"ItemGet": 2}) {
			t.Errorf("old-format resolve: %v, want two ItemGets", cost)
		}
		wantSame(t, s, "old", a.Digest, m)

		// An old tag whose manifest is gone (left by the delete that used
		// to remove tags afterwards) is an unknown manifest (404), not a 500.
		gone := oci.FromBytes(oci.SHA256, []byte("gone"))
		old("orphan", gone)
		if _, err := s.ManifestResolve(ctx, "old", oci.Reference{Tag: "orphan"}); !errors.Is(err, meta.ErrManifestUnknown) {
			t.Fatalf("orphaned old tag: %v", err)
		}
		if err := items.ItemDelete(ctx, "REPO#old", "TAG#orphan", storage.IfNone); err != nil {
			t.Fatal(err)
		}

		// Re-tagging rewrites it with a copy.
		putTagged(t, s, a, "v1")
		if _, cost := resolveCost(t, s, p, "old", "v1"); !reflect.DeepEqual(cost, oneGet) {
			t.Errorf("rewritten tag: %v, want one ItemGet", cost)
		}
		old("v0", a.Digest)
		if err := s.ManifestDelete(ctx, "old", a.Digest); err != nil {
			t.Fatal(err)
		}
		wantTagUnknown(t, s, "old", "v0")
		wantTagUnknown(t, s, "old", "v1")
	})
}

// A manifest record so close to the item limit that the tag with a copy
// would not fit is tagged without one, and a pull by that tag reads twice.
func TestTagCopyTooLarge(t *testing.T) {
	eachBackend(t, func(t *testing.T, items storage.Items) {
		ctx := t.Context()
		now := time.Unix(1_800_000_000, 0)
		p := storagetest.NewProbe(items)
		s := meta.New(p, meta.WithClock(func() time.Time { return now }))
		// About 1,200 referenced digests beside an inline body near
		// InlineLimit is what it takes to fill a record (docs/dynamodb.md).
		const n = 1200
		put, ds := manifestWithParallel(t, s, "huge", n)
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		// The largest body whose record still fits the item: its tag's own
		// fields (the digest alone is 77 bytes) then push it over.
		record := func(l int) int {
			b, err := json.Marshal(meta.Manifest{MediaType: oci.MediaTypeImageManifest, Size: int64(l), Body: make([]byte, l), Blobs: ds, PushedAt: now.Unix()})
			if err != nil {
				t.Fatal(err)
			}
			return len(b)
		}
		l := sort.Search(meta.InlineLimit+1, func(l int) bool { return record(l) > storage.MaxItemBytes }) - 1
		if l < 0 || l >= meta.InlineLimit || record(l) < storage.MaxItemBytes-60 {
			t.Fatalf("no inline body fills the record: l=%d, record %d bytes", l, record(l))
		}
		put.Body = make([]byte, l)
		put.Digest = oci.FromBytes(oci.SHA256, put.Body)
		put.Tag = "v1"
		if err := s.ManifestPut(ctx, put); err != nil {
			t.Fatal(err)
		}
		it, err := items.ItemGet(ctx, "REPO#huge", "MANIFEST#"+string(put.Digest))
		if err != nil {
			t.Fatal(err)
		}
		if len(it.Data) != record(l) {
			t.Fatalf("manifest record is %d bytes, the test sized it %d", len(it.Data), record(l))
		}
		putTagged(t, s, put, "v2") // the re-tag path decides the same way
		for _, tag := range []string{"v1", "v2"} {
			ti, err := items.ItemGet(ctx, "REPO#huge", "TAG#"+tag)
			if err != nil {
				t.Fatal(err)
			}
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(ti.Data, &raw); err != nil {
				t.Fatal(err)
			}
			if _, ok := raw["m"]; ok {
				t.Fatalf("tag %s holds a copy: %d bytes", tag, len(ti.Data))
			}
			if len(ti.Data)+len(it.Data) <= storage.MaxItemBytes {
				t.Fatalf("tag %s (%d bytes) and the record (%d) would have fit together", tag, len(ti.Data), len(it.Data))
			}
			m, cost := resolveCost(t, s, p, "huge", tag)
			if !reflect.DeepEqual(cost, map[string]int{"ItemGet": 2}) {
				t.Errorf("resolve %s: %v, want two ItemGets", tag, cost)
			}
			wantSame(t, s, "huge", put.Digest, m)
		}
		// The decision is per manifest: a small one beside it keeps its copy.
		small, _ := manifestWith(t, s, "huge", 1, "small")
		putTagged(t, s, small, "small")
		if _, cost := resolveCost(t, s, p, "huge", "small"); !reflect.DeepEqual(cost, oneGet) {
			t.Errorf("small manifest: %v, want one ItemGet", cost)
		}
	})
}

// manifestWithParallel is manifestWith for many blobs: the links are
// written a few at a time, which on DynamoDB Local saves most of the wait.
func manifestWithParallel(t *testing.T, s *meta.Store, repo string, n int) (meta.ManifestPut, []oci.Digest) {
	t.Helper()
	layers := make([]oci.Descriptor, n)
	ds := make([]oci.Digest, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		b := []byte(fmt.Sprintf("%s-%d", repo, i))
		d := oci.FromBytes(oci.SHA256, b)
		layers[i] = oci.Descriptor{MediaType: "application/octet-stream", Digest: d, Size: int64(len(b))}
		ds[i] = d
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := s.BlobLinkPut(context.Background(), repo, d, int64(len(b))); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	cfg := layers[0]
	return meta.ManifestPut{
		Repo:   repo,
		Parsed: &oci.Manifest{MediaType: oci.MediaTypeImageManifest, Config: &cfg, Layers: layers[1:]},
	}, ds
}

// A re-tag and a delete of the same manifest race, in both orders, with
// the other writer's transaction landing between the reads and the
// transaction of the first: no tag outlives its manifest.
func TestRetagRacesDelete(t *testing.T) {
	eachBackend(t, func(t *testing.T, items storage.Items) {
		ctx := t.Context()
		other := meta.New(items) // the concurrent writer, not probed

		t.Run("delete lands first", func(t *testing.T) {
			p := storagetest.NewProbe(items)
			s := meta.New(p)
			a, ds := manifestWith(t, s, "race1", 2, "race1a")
			putTagged(t, s, a, "v1")
			// The re-tag read the manifest; before its transaction the
			// manifest and its tag are deleted.
			p.Before("Transact", 1, func() {
				if err := other.ManifestDelete(ctx, "race1", a.Digest); err != nil {
					t.Errorf("delete: %v", err)
				}
			})
			putTagged(t, s, a, "v2")
			p.Disarm()
			// The re-tag found the manifest gone and pushed it anew (its
			// blobs are still linked): delete, then put.
			wantTagUnknown(t, s, "race1", "v1")
			m, cost := resolveCost(t, s, p, "race1", "v2")
			if !reflect.DeepEqual(cost, oneGet) {
				t.Errorf("resolve v2: %v", cost)
			}
			wantSame(t, s, "race1", a.Digest, m)
			for _, d := range ds {
				if c := refcount(t, s, d); c != 1 {
					t.Fatalf("refcount %d after delete and re-put", c)
				}
			}
			checkNoOrphanTags(t, s, "race1")
		})

		t.Run("retag lands first", func(t *testing.T) {
			p := storagetest.NewProbe(items)
			s := meta.New(p)
			a, ds := manifestWith(t, s, "race2", 2, "race2a")
			putTagged(t, s, a, "v1")
			// The delete read the manifest and its tags; before its
			// transaction a new tag points at the manifest.
			p.Before("Transact", 1, func() {
				a.Tag = "v2"
				if err := other.ManifestPut(ctx, a); err != nil {
					t.Errorf("re-tag: %v", err)
				}
			})
			if err := s.ManifestDelete(ctx, "race2", a.Digest); err != nil {
				t.Fatal(err)
			}
			p.Disarm()
			if c := p.Reset(); c["Transact"] != 2 {
				t.Errorf("delete made %d transactions, want 2 (one refused, one after reading again)", c["Transact"])
			}
			wantTagUnknown(t, s, "race2", "v1")
			wantTagUnknown(t, s, "race2", "v2")
			if _, err := s.ManifestGet(ctx, "race2", a.Digest); !errors.Is(err, meta.ErrManifestUnknown) {
				t.Fatalf("manifest after delete: %v", err)
			}
			for _, d := range ds {
				if c := refcount(t, s, d); c != 0 {
					t.Fatalf("refcount %d after delete", c)
				}
			}
			checkNoOrphanTags(t, s, "race2")
		})

		t.Run("tag moved away during delete", func(t *testing.T) {
			p := storagetest.NewProbe(items)
			s := meta.New(p)
			a, _ := manifestWith(t, s, "race3", 1, "race3a")
			b, _ := manifestWith(t, s, "race3", 1, "race3b")
			putTagged(t, s, a, "v1")
			putTagged(t, s, b, "other")
			p.Before("Transact", 1, func() {
				b.Tag = "v1"
				if err := other.ManifestPut(ctx, b); err != nil {
					t.Errorf("move: %v", err)
				}
			})
			if err := s.ManifestDelete(ctx, "race3", a.Digest); err != nil {
				t.Fatal(err)
			}
			p.Disarm()
			// The delete must not take the tag that now names b with it.
			m, _ := resolveCost(t, s, p, "race3", "v1")
			wantSame(t, s, "race3", b.Digest, m)
			checkNoOrphanTags(t, s, "race3")
		})

		t.Run("writer keeps winning", func(t *testing.T) {
			p := storagetest.NewProbe(items)
			s := meta.New(p)
			a, _ := manifestWith(t, s, "race4", 1, "race4a")
			putTagged(t, s, a, "v0")
			// Every delete transaction loses to a new re-tag: the delete
			// gives up with ErrConflict and leaves a consistent state.
			p.Hook(func(method string, n int) {
				if method == "Transact" {
					a.Tag = fmt.Sprintf("v%d", n)
					if err := other.ManifestPut(ctx, a); err != nil {
						t.Errorf("re-tag: %v", err)
					}
				}
			})
			if err := s.ManifestDelete(ctx, "race4", a.Digest); !errors.Is(err, meta.ErrConflict) {
				t.Fatalf("delete under constant re-tags: %v", err)
			}
			p.Disarm()
			checkNoOrphanTags(t, s, "race4")
		})
	})
}

// A manifest with more tags than one transaction holds is deleted with all
// of them: the excess first, then the manifest with the rest. A tag added
// between the two is caught by the manifest's version and deleted too.
func TestManifestDeleteManyTags(t *testing.T) {
	eachBackend(t, func(t *testing.T, items storage.Items) {
		ctx := t.Context()
		p := storagetest.NewProbe(items)
		s := meta.New(p)
		other := meta.New(items)
		a, ds := manifestWith(t, s, "many", 2, "a")
		b, _ := manifestWith(t, s, "many", 1, "b")
		putTagged(t, s, b, "keep")
		const tags = 120
		putTagged(t, s, a, "t000")
		// The other tags are written directly, 25 per transaction, to keep
		// the setup short: as the tag writes make them, each with its copy.
		m, err := s.ManifestGet(ctx, "many", a.Digest)
		if err != nil {
			t.Fatal(err)
		}
		data, err := json.Marshal(meta.Tag{Digest: a.Digest, MediaType: m.MediaType, PushedAt: 1, Manifest: &m})
		if err != nil {
			t.Fatal(err)
		}
		var ops []storage.Op
		for i := 1; i < tags; i++ {
			ops = append(ops, storage.Op{Kind: storage.OpPut, Item: storage.Item{PK: "REPO#many", SK: fmt.Sprintf("TAG#t%03d", i), Data: data}})
			if len(ops) == 25 || i == tags-1 {
				if err := items.Transact(ctx, ops); err != nil {
					t.Fatal(err)
				}
				ops = nil
			}
		}
		// Between the excess tags' transaction and the final one, another
		// writer tags the manifest once more.
		p.Before("Transact", 2, func() {
			a.Tag = "late"
			if err := other.ManifestPut(ctx, a); err != nil {
				t.Errorf("late tag: %v", err)
			}
		})
		if err := s.ManifestDelete(ctx, "many", a.Digest); err != nil {
			t.Fatal(err)
		}
		p.Disarm()
		// 120 tags + manifest + catalog: 22 excess, the final transaction
		// refused once (the late tag), then 99 + 2 again: 1 excess.
		if c := p.Reset(); c["Transact"] != 4 {
			t.Errorf("delete made %d transactions, want 4", c["Transact"])
		}
		left, _, err := items.ItemQuery(ctx, "REPO#many", "TAG#", "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != 1 || left[0].SK != "TAG#keep" {
			var names []string
			for _, it := range left {
				names = append(names, it.SK)
			}
			t.Fatalf("tags left: %v, want only TAG#keep", names)
		}
		if _, err := s.ManifestGet(ctx, "many", a.Digest); !errors.Is(err, meta.ErrManifestUnknown) {
			t.Fatalf("manifest after delete: %v", err)
		}
		for _, d := range ds {
			if c := refcount(t, s, d); c != 0 {
				t.Fatalf("refcount %d after delete", c)
			}
		}
		if ok, _ := s.RepoExists(ctx, "many"); !ok {
			t.Fatal("repository gone while b is still in it")
		}
		checkNoOrphanTags(t, s, "many")
	})
}
