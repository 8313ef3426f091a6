package meta_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
	"github.com/berth-registry/berth/pkg/storage/storagetest"
)

// clock is a settable test clock.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}

func (c *clock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration) { c.set(c.now().Add(d)) }

// pullDay0 is late in a UTC day, so that an hour later is the next day.
var pullDay0 = time.Date(2026, 11, 20, 23, 0, 0, 0, time.UTC)

// pull resolves ref and records the pull as a GET does, and returns the
// driver calls both took.
func pull(t *testing.T, s *meta.Store, p *storagetest.Probe, repo string, ref oci.Reference) map[string]int {
	t.Helper()
	p.Reset()
	_, rec, err := s.ManifestPull(t.Context(), repo, ref)
	if err != nil {
		t.Fatalf("pull %s %v: %v", repo, ref, err)
	}
	if err := s.PullRecord(t.Context(), rec); err != nil {
		t.Fatalf("record pull %s %v: %v", repo, ref, err)
	}
	return p.Reset()
}

func lastPulled(t *testing.T, s *meta.Store, repo string, d oci.Digest) time.Time {
	t.Helper()
	list, err := s.ManifestList(t.Context(), repo)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range list {
		if m.Digest == d {
			return time.Unix(m.LastPulled, 0).UTC()
		}
	}
	t.Fatalf("%s not listed in %s", d, repo)
	return time.Time{}
}

func wantCalls(t *testing.T, what string, got, want map[string]int) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: driver calls %v, want %v", what, got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s: driver calls %v, want %v", what, got, want)
		}
	}
}

// A pull is recorded at most once per manifest and per tag a UTC day,
// with one conditional write and no read beyond the resolve's own: none on
// the day of the push, one add on the manifest by digest, one transaction
// of tag and manifest by tag.
func TestPullRecordOncePerDay(t *testing.T) {
	eachBackend(t, func(t *testing.T, items storage.Items) {
		c := newClock(pullDay0)
		p := storagetest.NewProbe(items)
		s := meta.New(p, meta.WithClock(c.now))
		a, _ := manifestWith(t, s, "r", 2, "a")
		putTagged(t, s, a, "v1")
		byTag, byDigest := oci.Reference{Tag: "v1"}, oci.Reference{Digest: a.Digest}
		read := map[string]int{"ItemGet": 1}
		tagWrite := map[string]int{"ItemGet": 1, "Transact": 1}
		digestWrite := map[string]int{"ItemGet": 1, "ItemAdd": 1}

		// The day of the push: the manifest and its tag count as pulled.
		wantCalls(t, "by tag, day of the push", pull(t, s, p, "r", byTag), read)
		wantCalls(t, "by digest, day of the push", pull(t, s, p, "r", byDigest), read)
		if got := lastPulled(t, s, "r", a.Digest); !got.Equal(pullDay0) {
			t.Fatalf("never pulled: LastPulled %v, want the push %v", got, pullDay0)
		}

		c.add(time.Hour) // the next UTC day
		wantCalls(t, "by tag, next day", pull(t, s, p, "r", byTag), tagWrite)
		wantCalls(t, "by tag again", pull(t, s, p, "r", byTag), read)
		// The tag's record marked the manifest too.
		wantCalls(t, "by digest after the tag", pull(t, s, p, "r", byDigest), read)
		if got, want := lastPulled(t, s, "r", a.Digest), pullDay0.Add(time.Hour); !got.Equal(want) {
			t.Fatalf("LastPulled %v, want %v", got, want)
		}

		c.add(48 * time.Hour)
		wantCalls(t, "by digest, two days on", pull(t, s, p, "r", byDigest), digestWrite)
		wantCalls(t, "by digest again", pull(t, s, p, "r", byDigest), read)
		// The tag has its own mark: its first pull today still writes.
		wantCalls(t, "by tag after the digest", pull(t, s, p, "r", byTag), tagWrite)
		wantCalls(t, "by tag again", pull(t, s, p, "r", byTag), read)
		if got, want := lastPulled(t, s, "r", a.Digest), pullDay0.Add(49*time.Hour); !got.Equal(want) {
			t.Fatalf("LastPulled %v, want %v", got, want)
		}

		// A tag added to the existing manifest is unmarked: its first pull
		// records, a pushed-today mark would have hidden it.
		c.add(24 * time.Hour)
		putTagged(t, s, a, "v2")
		wantCalls(t, "by a new tag of an old manifest", pull(t, s, p, "r", oci.Reference{Tag: "v2"}), tagWrite)
		if got, want := lastPulled(t, s, "r", a.Digest), pullDay0.Add(73*time.Hour); !got.Equal(want) {
			t.Fatalf("LastPulled %v, want %v", got, want)
		}
		checkNoOrphanTags(t, s, "r")
	})
}

// Two pulls that read the same state both try to record; one writes, the
// other's condition fails quietly. A tag moved, or a manifest deleted,
// between the read and the record is left alone: no error, nothing
// marked, nothing created.
func TestPullRecordRaces(t *testing.T) {
	eachBackend(t, func(t *testing.T, items storage.Items) {
		c := newClock(pullDay0)
		s := meta.New(items, meta.WithClock(c.now))
		ctx := t.Context()
		a, _ := manifestWith(t, s, "r", 1, "a")
		b, _ := manifestWith(t, s, "r", 1, "b")
		putTagged(t, s, a, "v1")
		c.add(2 * 24 * time.Hour)

		version := func(sk string) int64 {
			t.Helper()
			it, err := items.ItemGet(ctx, "REPO#r", sk)
			if err != nil {
				t.Fatal(err)
			}
			return it.Version
		}
		// Concurrent pulls by digest and by tag.
		for _, ref := range []oci.Reference{{Digest: a.Digest}, {Tag: "v1"}} {
			_, first, err := s.ManifestPull(ctx, "r", ref)
			if err != nil {
				t.Fatal(err)
			}
			_, second, _ := s.ManifestPull(ctx, "r", ref)
			before := version("MANIFEST#" + string(a.Digest))
			if err := s.PullRecord(ctx, first); err != nil {
				t.Fatal(err)
			}
			if err := s.PullRecord(ctx, second); err != nil {
				t.Fatalf("the second record of %v: %v", ref, err)
			}
			if got := version("MANIFEST#" + string(a.Digest)); got != before+1 {
				t.Fatalf("%v: manifest version %d after two records, want %d (one write)", ref, got, before+1)
			}
			c.add(24 * time.Hour)
		}

		// The tag moves to b between the read and the record.
		_, rec, err := s.ManifestPull(ctx, "r", oci.Reference{Tag: "v1"})
		if err != nil {
			t.Fatal(err)
		}
		aBefore := lastPulled(t, s, "r", a.Digest)
		putTagged(t, s, b, "v1")
		if err := s.PullRecord(ctx, rec); err != nil {
			t.Fatal(err)
		}
		if got := lastPulled(t, s, "r", a.Digest); !got.Equal(aBefore) {
			t.Fatalf("a recorded through a tag that moved: LastPulled %v, was %v", got, aBefore)
		}

		// The manifest is deleted between the read and the record.
		c.add(24 * time.Hour)
		_, rec, err = s.ManifestPull(ctx, "r", oci.Reference{Digest: a.Digest})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ManifestDelete(ctx, "r", a.Digest); err != nil {
			t.Fatal(err)
		}
		if err := s.PullRecord(ctx, rec); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ManifestGet(ctx, "r", a.Digest); !errors.Is(err, meta.ErrManifestUnknown) {
			t.Fatalf("a deleted manifest after a late record: %v", err)
		}
		checkNoOrphanTags(t, s, "r")
	})
}

// A manifest written before pulls were recorded (Touched 0 on its items)
// counts from its push; the first pull after the upgrade records it.
func TestLastPulledOfOldManifests(t *testing.T) {
	c := newClock(pullDay0)
	s := newStore(t, meta.WithClock(c.now))
	a, _ := manifestWith(t, s, "r", 1, "a")
	putTagged(t, s, a, "v1")
	raw := meta.ItemsOf(s)
	ctx := t.Context()
	for _, sk := range []string{"MANIFEST#" + string(a.Digest), "TAG#v1"} {
		it, err := raw.ItemGet(ctx, "REPO#r", sk)
		if err != nil {
			t.Fatal(err)
		}
		it.Touched = 0
		if err := raw.ItemPut(ctx, it, storage.IfVersion(it.Version)); err != nil {
			t.Fatal(err)
		}
	}
	if got := lastPulled(t, s, "r", a.Digest); !got.Equal(pullDay0) {
		t.Fatalf("LastPulled %v, want the push %v", got, pullDay0)
	}
	c.add(10 * 24 * time.Hour)
	_, rec, err := s.ManifestPull(ctx, "r", oci.Reference{Tag: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PullRecord(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if got := lastPulled(t, s, "r", a.Digest); !got.Equal(c.now().UTC()) {
		t.Fatalf("LastPulled %v, want %v", got, c.now().UTC())
	}
}
