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
