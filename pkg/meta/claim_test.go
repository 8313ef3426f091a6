package meta_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
)

func newUpload(t *testing.T, s *meta.Store, id, repo string) meta.Upload {
	t.Helper()
	u, err := s.UploadCreate(t.Context(), meta.Upload{ID: id, Repo: repo, ExpiresAt: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// Many claims of one session race: exactly one links, the others fail with
// ErrUploadUnknown, and the session and its index entry are gone.
func TestUploadClaimOnce(t *testing.T) {
	s := newStore(t)
	d := oci.FromBytes(oci.SHA256, []byte("claimed"))
	u := newUpload(t, s, "sess1", "r")
	indexPK := uploadIndexPK(t, s, "sess1")
	const n = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	won, lost := 0, 0
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.UploadClaim(t.Context(), u, d, 7)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case errors.Is(err, meta.ErrUploadUnknown):
				lost++
			default:
				t.Errorf("claim: %v", err)
			}
		}()
	}
	wg.Wait()
	if won != 1 || lost != n-1 {
		t.Fatalf("won %d, lost %d", won, lost)
	}
	link, err := s.BlobLink(t.Context(), "r", d)
	if err != nil || link.Size != 7 {
		t.Fatalf("link %+v, %v", link, err)
	}
	if refcount(t, s, d) != 0 {
		t.Fatalf("a claim must not count a reference")
	}
	if _, err := s.UploadGet(t.Context(), "sess1"); !errors.Is(err, meta.ErrUploadUnknown) {
		t.Fatalf("session after claim: %v", err)
	}
	entries, _, err := meta.ItemsOf(s).ItemQuery(t.Context(), indexPK, "", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.SK == "sess1" {
			t.Fatal("index entry left after the claim")
		}
	}
}

// uploadIndexPK returns the session index partition that lists id (found
// by scanning the index shards; the shard function is internal).
func uploadIndexPK(t *testing.T, s *meta.Store, id string) string {
	t.Helper()
	items, _, err := meta.ItemsOf(s).ItemScan(t.Context(), "UPLOADS#", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if it.SK == id {
			return it.PK
		}
	}
	t.Fatalf("no index entry for %s", id)
	return ""
}

// A session changed since it was read (a PATCH took its lease) cannot be
// claimed with the stale copy; nothing is linked.
func TestUploadClaimStale(t *testing.T) {
	s := newStore(t)
	d := oci.FromBytes(oci.SHA256, []byte("stale"))
	u := newUpload(t, s, "sess2", "r")
	if _, err := s.UploadLease(t.Context(), u, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.UploadClaim(t.Context(), u, d, 5); !errors.Is(err, meta.ErrUploadUnknown) {
		t.Fatalf("stale claim: %v", err)
	}
	if _, err := s.BlobLink(t.Context(), "r", d); err == nil {
		t.Fatal("a failed claim linked the blob")
	}
	if _, err := s.UploadGet(t.Context(), "sess2"); err != nil {
		t.Fatalf("session after a failed claim: %v", err)
	}
}

// UploadLinked links and keeps the session (now verified) in one step,
// conditioned on its version.
func TestUploadLinked(t *testing.T) {
	s := newStore(t)
	d := oci.FromBytes(oci.SHA256, []byte("verified"))
	u := newUpload(t, s, "sess3", "r")
	u.Direct = &meta.Direct{Digest: d, Size: 8, Multipart: true, State: meta.DirectVerified}
	stale := u
	u, err := s.UploadLinked(t.Context(), u, d, 8)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.UploadGet(t.Context(), "sess3")
	if err != nil || got.Direct == nil || got.Direct.State != meta.DirectVerified || got.Version != u.Version {
		t.Fatalf("session %+v, %v", got, err)
	}
	if link, err := s.BlobLink(t.Context(), "r", d); err != nil || link.Size != 8 {
		t.Fatalf("link %+v, %v", link, err)
	}
	if _, err := s.UploadLinked(t.Context(), stale, oci.FromBytes(oci.SHA256, []byte("other")), 5); !errors.Is(err, meta.ErrUploadBusy) {
		t.Fatalf("stale UploadLinked: %v", err)
	}
}

// Ended sessions are tombstones: unknown to every read, never leased (so
// naming one writes nothing), never created again, without index entry.
// An id with nothing stored is unknown and says so (ErrUploadNotStored).
func TestUploadTombstone(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	if _, err := s.UploadGet(ctx, "never"); !errors.Is(err, meta.ErrUploadUnknown) || !errors.Is(err, meta.ErrUploadNotStored) {
		t.Fatalf("absent session: %v", err)
	}
	if _, err := s.UploadAcquire(ctx, "never", time.Minute); !errors.Is(err, meta.ErrUploadNotStored) {
		t.Fatalf("lease of an absent session: %v", err)
	}

	ended := func(id string) {
		t.Helper()
		before, err := meta.ItemsOf(s).ItemGet(ctx, "UPLOAD#"+id, "META")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.UploadGet(ctx, id); !errors.Is(err, meta.ErrUploadUnknown) || errors.Is(err, meta.ErrUploadNotStored) {
			t.Errorf("%s: get %v", id, err)
		}
		if _, err := s.UploadAcquire(ctx, id, time.Minute); !errors.Is(err, meta.ErrUploadUnknown) || errors.Is(err, meta.ErrUploadNotStored) {
			t.Errorf("%s: lease %v", id, err)
		}
		if _, err := s.UploadCreateLeased(ctx, meta.Upload{ID: id, Repo: "r", ExpiresAt: time.Now().Add(time.Hour).Unix()}, time.Minute); !errors.Is(err, meta.ErrUploadExists) {
			t.Errorf("%s: create again %v", id, err)
		}
		if err := s.UploadEndUnwritten(ctx, meta.Upload{ID: id, Repo: "r"}); !errors.Is(err, meta.ErrUploadExists) {
			t.Errorf("%s: end again %v", id, err)
		}
		after, err := meta.ItemsOf(s).ItemGet(ctx, "UPLOAD#"+id, "META")
		if err != nil || after.Version != before.Version {
			t.Errorf("%s: tombstone version %d -> %d (%v): a request naming it wrote", id, before.Version, after.Version, err)
		}
		idx, _, err := meta.ItemsOf(s).ItemScan(ctx, "UPLOADS#", "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range idx {
			if e.SK == id {
				t.Errorf("%s: index entry left", id)
			}
		}
	}

	u := newUpload(t, s, "claimed", "r")
	if err := s.UploadClaim(ctx, u, oci.FromBytes(oci.SHA256, []byte("t")), 1); err != nil {
		t.Fatal(err)
	}
	ended("claimed")

	u, err := s.UploadCreateLeased(ctx, meta.Upload{ID: "cancelled", Repo: "r", ExpiresAt: time.Now().Add(time.Hour).Unix()}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UploadAcquire(ctx, "cancelled", time.Minute); !errors.Is(err, meta.ErrUploadBusy) {
		t.Fatalf("a session created leased: %v", err)
	}
	if err := s.UploadDelete(ctx, u); err != nil {
		t.Fatal(err)
	}
	ended("cancelled")

	if err := s.UploadEndUnwritten(ctx, meta.Upload{ID: "unwritten", Repo: "r", ExpiresAt: time.Now().Add(time.Hour).Unix()}); err != nil {
		t.Fatal(err)
	}
	ended("unwritten")
}
