package registrytest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/storage"
)

// Open returns fresh, empty drivers for one fault-injection run.
type Open func(t *testing.T) (storage.Items, storage.Blobs)

// errInjected is what a fault returns: a backend that gave up (as after
// exhausted retries) or a timeout.
var errInjected = fmt.Errorf("injected fault: %w", storage.ErrUnavailable)

// faults fails the nth call of one driver method, before or after the real
// call (after: the write happened but its answer was lost, as on a timeout).
type faults struct {
	mu     sync.Mutex
	method string
	nth    int
	after  bool
	calls  map[string]int
	fired  bool
}

func (f *faults) hit(method string) (before, after bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[method]++
	if f.fired || method != f.method || f.calls[method] != f.nth {
		return false, false
	}
	f.fired = true
	return !f.after, f.after
}

type faultItems struct {
	inner storage.Items
	f     *faults
}

func run1[T any](f *faults, m string, call func() (T, error)) (T, error) {
	var zero T
	before, after := f.hit(m)
	if before {
		return zero, errInjected
	}
	v, err := call()
	if after && err == nil {
		return zero, fmt.Errorf("%w (after the call)", context.DeadlineExceeded)
	}
	return v, err
}

func run0(f *faults, m string, call func() error) error {
	_, err := run1(f, m, func() (struct{}, error) { return struct{}{}, call() })
	return err
}

func (x faultItems) ItemGet(ctx context.Context, pk, sk string) (storage.Item, error) {
	return run1(x.f, "ItemGet", func() (storage.Item, error) { return x.inner.ItemGet(ctx, pk, sk) })
}
func (x faultItems) ItemPut(ctx context.Context, it storage.Item, c storage.Cond) error {
	return run0(x.f, "ItemPut", func() error { return x.inner.ItemPut(ctx, it, c) })
}
func (x faultItems) ItemAdd(ctx context.Context, it storage.Item, d int64, c storage.Cond) (storage.Item, error) {
	return run1(x.f, "ItemAdd", func() (storage.Item, error) { return x.inner.ItemAdd(ctx, it, d, c) })
}
func (x faultItems) ItemDelete(ctx context.Context, pk, sk string, c storage.Cond) error {
	return run0(x.f, "ItemDelete", func() error { return x.inner.ItemDelete(ctx, pk, sk, c) })
}
func (x faultItems) ItemQuery(ctx context.Context, pk, prefix, after string, limit int) ([]storage.Item, bool, error) {
	type r struct {
		items []storage.Item
		more  bool
	}
	v, err := run1(x.f, "ItemQuery", func() (r, error) {
		items, more, err := x.inner.ItemQuery(ctx, pk, prefix, after, limit)
		return r{items, more}, err
	})
	return v.items, v.more, err
}
func (x faultItems) ItemScan(ctx context.Context, pkPrefix, cursor string, limit int) ([]storage.Item, string, error) {
	return x.inner.ItemScan(ctx, pkPrefix, cursor, limit)
}
func (x faultItems) Transact(ctx context.Context, ops []storage.Op) error {
	return run0(x.f, "Transact", func() error { return x.inner.Transact(ctx, ops) })
}

type faultBlobs struct {
	inner storage.Blobs
	f     *faults
}

func (x faultBlobs) BlobPut(ctx context.Context, d oci.Digest, size int64, r io.Reader) error {
	return run0(x.f, "BlobPut", func() error { return x.inner.BlobPut(ctx, d, size, r) })
}
func (x faultBlobs) BlobOpen(ctx context.Context, d oci.Digest) (io.ReadSeekCloser, error) {
	return x.inner.BlobOpen(ctx, d)
}
func (x faultBlobs) BlobDelete(ctx context.Context, d oci.Digest) error {
	return x.inner.BlobDelete(ctx, d)
}
func (x faultBlobs) UploadInit(ctx context.Context, id string) ([]byte, error) {
	return run1(x.f, "UploadInit", func() ([]byte, error) { return x.inner.UploadInit(ctx, id) })
}
func (x faultBlobs) UploadWrite(ctx context.Context, id string, state []byte, off int64, r io.Reader) ([]byte, int64, error) {
	type res struct {
		state []byte
		n     int64
	}
	v, err := run1(x.f, "UploadWrite", func() (res, error) {
		s, n, err := x.inner.UploadWrite(ctx, id, state, off, r)
		return res{s, n}, err
	})
	return v.state, v.n, err
}
func (x faultBlobs) UploadCommit(ctx context.Context, id string, state []byte, d oci.Digest, size int64, verify func(io.Reader) error) error {
	return run0(x.f, "UploadCommit", func() error { return x.inner.UploadCommit(ctx, id, state, d, size, verify) })
}
func (x faultBlobs) UploadAbort(ctx context.Context, id string, state []byte) error {
	return x.inner.UploadAbort(ctx, id, state)
}

// RunFaults pushes an image while one driver call fails, before or after it
// takes effect, at each step a push makes; the client retries the failed
// operation as registry clients do. Afterwards the image must pull intact
// and every reference count must be exactly one.
func RunFaults(t *testing.T, open Open) {
	// A dry run counts how often a push calls each method, so every
	// injected fault below is one that really fires.
	items, blobs := open(t)
	counts := &faults{calls: map[string]int{}}
	pushWithRetries(t, newFaultServer(t, items, blobs, counts), items)
	methods := []string{"ItemGet", "ItemPut", "ItemAdd", "ItemDelete", "ItemQuery", "Transact",
		"BlobPut", "UploadInit", "UploadWrite", "UploadCommit"}
	injected := 0
	for _, m := range methods {
		for nth := 1; nth <= min(3, counts.calls[m]); nth++ {
			for _, after := range []bool{false, true} {
				name := fmt.Sprintf("%s/%d/before", m, nth)
				if after {
					name = fmt.Sprintf("%s/%d/after", m, nth)
				}
				injected++
				t.Run(name, func(t *testing.T) {
					items, blobs := open(t)
					f := &faults{method: m, nth: nth, after: after, calls: map[string]int{}}
					pushWithRetries(t, newFaultServer(t, items, blobs, f), items)
					if !f.fired {
						t.Fatalf("fault %s did not fire", name)
					}
				})
			}
		}
	}
	if injected < 20 {
		t.Fatalf("only %d fault points exercised (calls %v)", injected, counts.calls)
	}
}

func newFaultServer(t *testing.T, items storage.Items, blobs storage.Blobs, f *faults) *server {
	h := registry.New(registry.Config{}, faultItems{items, f}, faultBlobs{blobs, f})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &server{t: t, srv: srv, client: srv.Client(), noRedir: srv.Client()}
}

func retry(t *testing.T, what string, op func() error) {
	t.Helper()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = op(); err == nil {
			return
		}
	}
	t.Fatalf("%s: still failing after retries: %v", what, err)
}

func pushWithRetries(t *testing.T, s *server, items storage.Items) {
	const repo = "faults/repo"
	layer := randomBytes(t, 300_000)
	cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	retry(t, "chunked layer", func() error { return s.pushChunked(repo, layer, 100_000) })
	retry(t, "config", func() error { return s.pushMono(repo, cfg) })
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":%d},"layers":[{"mediaType":"application/octet-stream","digest":%q,"size":%d}]}`,
		oci.MediaTypeImageManifest, oci.MediaTypeImageConfig, sha(cfg), len(cfg), sha(layer), len(layer)))
	retry(t, "manifest", func() error {
		r, err := s.try("PUT", "/v2/"+repo+"/manifests/v1", m, map[string]string{"Content-Type": oci.MediaTypeImageManifest}, false)
		if err == nil && r.status != http.StatusCreated {
			err = fmt.Errorf("status %d %s", r.status, r.body)
		}
		return err
	})
	// Consistent: the image pulls intact.
	var r resp
	retry(t, "pull manifest", func() error {
		var err error
		r, err = s.try("GET", "/v2/"+repo+"/manifests/v1", nil, nil, false)
		if err == nil && r.status != http.StatusOK {
			err = fmt.Errorf("status %d", r.status)
		}
		return err
	})
	if string(r.body) != string(m) {
		t.Fatal("manifest differs")
	}
	for _, b := range [][]byte{layer, cfg} {
		retry(t, "pull blob", func() error {
			r, err := s.try("GET", "/v2/"+repo+"/blobs/"+string(sha(b)), nil, nil, true)
			if err == nil && (r.status != http.StatusOK || string(r.body) != string(b)) {
				err = fmt.Errorf("blob status %d, %d bytes", r.status, len(r.body))
			}
			return err
		})
		it, err := items.ItemGet(context.Background(), "BLOB#"+string(sha(b)), "META")
		if err != nil {
			t.Fatal(err)
		}
		if it.Count != 1 {
			t.Fatalf("blob %s refcount %d, want 1", sha(b), it.Count)
		}
	}
	// No live upload sessions are left but for those a failed request
	// abandoned (they expire); none may be mid-lease forever. Tombstones
	// of ended sessions are not sessions.
	ups, _, err := items.ItemScan(context.Background(), "UPLOAD#", "", 100)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	live := 0
	for _, it := range ups {
		var rec struct {
			End bool `json:"end"`
		}
		if err := json.Unmarshal(it.Data, &rec); err != nil {
			t.Fatalf("session %s: %v", it.PK, err)
		}
		if !rec.End {
			live++
		}
	}
	if live > 3 {
		t.Fatalf("%d upload sessions left", live)
	}
}
