package registry_test

import (
	"bytes"
	"context"
	"crypto/sha512"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/driver/boltdb"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/storage"
	"github.com/berth-registry/berth/pkg/storage/storagetest"
)

// hookBlobs runs test code inside the blob driver's upload calls, to put a
// concurrent request exactly where a race needs it.
type hookBlobs struct {
	storage.Blobs
	// onWrite runs at the start of every UploadWrite.
	onWrite func(ctx context.Context, id string)
	// onCommit runs at the start of every UploadCommit.
	onCommit func(id string)
	// afterAbort runs after every UploadAbort.
	afterAbort func(id string)
}

func (h *hookBlobs) UploadAbort(ctx context.Context, id string, state []byte) error {
	err := h.Blobs.UploadAbort(ctx, id, state)
	if h.afterAbort != nil {
		h.afterAbort(id)
	}
	return err
}

func (h *hookBlobs) UploadWrite(ctx context.Context, id string, state []byte, off int64, r io.Reader) ([]byte, int64, error) {
	if h.onWrite != nil {
		h.onWrite(ctx, id)
	}
	return h.Blobs.UploadWrite(ctx, id, state, off, r)
}

func (h *hookBlobs) UploadCommit(ctx context.Context, id string, state []byte, d oci.Digest, size int64, verify func(io.Reader) error) error {
	if h.onCommit != nil {
		h.onCommit(id)
	}
	return h.Blobs.UploadCommit(ctx, id, state, d, size, verify)
}

// failItems fails the next metadata transaction once armed, before it is
// applied (a lost DynamoDB call).
type failItems struct {
	storage.Items
	armed atomic.Bool
}

func (f *failItems) Transact(ctx context.Context, ops []storage.Op) error {
	if f.armed.CompareAndSwap(true, false) {
		return fmt.Errorf("injected: %w", storage.ErrUnavailable)
	}
	return f.Items.Transact(ctx, ops)
}

// statesEnv is an embedded registry on a test clock whose drivers the test
// can hook.
type statesEnv struct {
	g     *registry.Registry
	clk   *clock
	dir   string
	blobs *hookBlobs
	items *failItems
}

func newStatesEnv(t *testing.T) *statesEnv {
	t.Helper()
	clk := &clock{}
	clk.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	e := testenv.NewEmbedded(t, boltdb.WithClock(clk.now))
	s := &statesEnv{clk: clk, dir: e.Dir, blobs: &hookBlobs{Blobs: e.Blobs}, items: &failItems{Items: e.Items}}
	s.g = registry.New(registry.Config{Now: clk.now}, s.items, s.blobs)
	return s
}

func (s *statesEnv) start(t *testing.T, repo string) string {
	t.Helper()
	rec := call(t, s.g, "POST", "/v2/"+repo+"/blobs/uploads/", nil)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("POST: %d %s", rec.Code, rec.Body)
	}
	return rec.Header().Get("Location")
}

// Issue 11 point 1: a PATCH whose body stalls past its lease keeps writing
// after the session was completed by other requests; its late bytes must
// not reach the committed blob, which every repository linking the digest
// shares.
func TestStalledPatchCannotChangeCommittedBlob(t *testing.T) {
	s := newStatesEnv(t)
	loc := s.start(t, "stall")

	gate := storagetest.NewStallReader(bytes.Repeat([]byte{'x'}, 100), bytes.Repeat([]byte{'Z'}, 100))
	stalled := make(chan int, 1)
	go func() {
		req := httptest.NewRequest("PATCH", loc, gate)
		req.ContentLength = 200
		rec := httptest.NewRecorder()
		s.g.ServeHTTP(rec, req)
		stalled <- rec.Code
	}()
	<-gate.Stalled

	// The stalled request's lease lapses; the client starts the session
	// over from offset 0 and completes it.
	s.clk.advance(16 * time.Minute)
	content := bytes.Repeat([]byte("content!"), 125)
	if rec := call(t, s.g, "PATCH", loc, content, "Content-Range", fmt.Sprintf("0-%d", len(content)-1)); rec.Code != http.StatusAccepted {
		t.Fatalf("PATCH after the lease lapsed: %d %s", rec.Code, rec.Body)
	}
	d := "sha256:" + sha256hex(content)
	if rec := call(t, s.g, "PUT", loc+"?digest="+d, nil); rec.Code != http.StatusCreated {
		t.Fatalf("close: %d %s", rec.Code, rec.Body)
	}

	gate.Release()
	if code := <-stalled; code < 400 {
		t.Errorf("the stalled PATCH of a completed session answered %d, want an error", code)
	}
	got, err := os.ReadFile(filepath.Join(s.dir, "blobs", "sha256", sha256hex(content)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, content) {
		t.Fatalf("committed blob changed after commit: %q", got)
	}
	if rec := call(t, s.g, "GET", "/v2/stall/blobs/"+d, nil); rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), content) {
		t.Fatalf("GET blob: %d, %d bytes", rec.Code, rec.Body.Len())
	}
}

func sha512digest(b []byte) string { return fmt.Sprintf("sha512:%x", sha512.Sum512(b)) }

// Issue 11 point 2: a DELETE landing while the closing PUT commits used to
// remove the staged bytes, and the close then linked whatever blob of that
// digest existed. With sha512 (not checked by the running hash) a pusher
// who knows only another repository's digest and size got its blob.
func TestCancelDuringCloseLinksNothing(t *testing.T) {
	s := newStatesEnv(t)
	secret := bytes.Repeat([]byte("victim's private layer "), 40)
	d := sha512digest(secret)
	if rec := call(t, s.g, "POST", "/v2/victim/blobs/uploads/?digest="+d, secret); rec.Code != http.StatusCreated {
		t.Fatalf("victim push: %d %s", rec.Code, rec.Body)
	}

	loc := s.start(t, "evil")
	junk := bytes.Repeat([]byte{'j'}, len(secret))
	if rec := call(t, s.g, "PATCH", loc, junk); rec.Code != http.StatusAccepted {
		t.Fatalf("PATCH: %d %s", rec.Code, rec.Body)
	}
	// The DELETE runs while the PUT commits; it is held right after it
	// removed the staged bytes (before it removes the session) until the
	// PUT has answered: the interleaving the attack needs.
	aborted, putDone, deleteDone := make(chan struct{}), make(chan struct{}), make(chan int, 1)
	var once sync.Once
	var committing, started atomic.Bool
	s.blobs.afterAbort = func(string) {
		if committing.Load() { // the DELETE's abort, not the PUT's own discard
			once.Do(func() {
				close(aborted)
				select {
				case <-putDone:
				case <-time.After(time.Minute): // never hang the suite on a regression
				}
			})
		}
	}
	s.blobs.onCommit = func(string) {
		if !started.CompareAndSwap(false, true) {
			return
		}
		committing.Store(true)
		defer committing.Store(false)
		go func() { deleteDone <- call(t, s.g, "DELETE", loc, nil).Code }()
		select {
		case <-aborted:
		case code := <-deleteDone:
			deleteDone <- code
		}
	}
	rec := call(t, s.g, "PUT", loc+"?digest="+d, nil)
	close(putDone)
	var deleteCode int
	select {
	case deleteCode = <-deleteDone:
	case <-time.After(time.Minute):
		t.Fatal("the DELETE racing the close never answered")
	}
	if rec.Code == http.StatusCreated {
		t.Fatalf("close of junk bytes with another repository's sha512 digest answered 201 (DELETE during the close: %d)", deleteCode)
	}
	if deleteCode == http.StatusNoContent {
		t.Errorf("DELETE succeeded while the closing PUT held the session")
	}
	if rec := call(t, s.g, "GET", "/v2/evil/blobs/"+d, nil); rec.Code != http.StatusNotFound {
		t.Fatalf("evil/blobs/%s: %d, want 404", d, rec.Code)
	}
}

// A sha512 close whose commit succeeded but whose link was lost may be
// retried: the session recorded that its own bytes were verified.
func TestRetriedSHA512CloseAfterLostLink(t *testing.T) {
	s := newStatesEnv(t)
	blob := bytes.Repeat([]byte("sha512 blob "), 50)
	d := sha512digest(blob)
	loc := s.start(t, "retry")
	if rec := call(t, s.g, "PATCH", loc, blob); rec.Code != http.StatusAccepted {
		t.Fatalf("PATCH: %d %s", rec.Code, rec.Body)
	}
	s.items.armed.Store(true)
	if rec := call(t, s.g, "PUT", loc+"?digest="+d, nil); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("close with a lost link: %d %s, want 503", rec.Code, rec.Body)
	}
	if rec := call(t, s.g, "PUT", loc+"?digest="+d, nil); rec.Code != http.StatusCreated {
		t.Fatalf("retried close: %d %s", rec.Code, rec.Body)
	}
	if rec := call(t, s.g, "GET", "/v2/retry/blobs/"+d, nil); rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), blob) {
		t.Fatalf("GET: %d", rec.Code)
	}
}

// Issue 11 point 3: a request killed by the Lambda timeout never releases
// its lease. The lease is bounded by the request's own deadline, so a
// retried PATCH succeeds soon after, not 15 minutes later.
func TestLeaseEndsWithRequestDeadline(t *testing.T) {
	s := newStatesEnv(t)
	loc := s.start(t, "timeout")

	frozen := make(chan struct{})
	inWrite := make(chan struct{})
	var first atomic.Bool
	s.blobs.onWrite = func(context.Context, string) {
		if first.CompareAndSwap(false, true) {
			// The invocation is frozen here and never comes back in time,
			// as when Lambda kills it at its timeout.
			close(inWrite)
			<-frozen
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req := httptest.NewRequest("PATCH", loc, bytes.NewReader([]byte("lost"))).WithContext(ctx)
		s.g.ServeHTTP(httptest.NewRecorder(), req)
	}()
	<-inWrite
	defer func() { close(frozen); <-done }()

	content := []byte("the retried chunk")
	if rec := call(t, s.g, "PATCH", loc, content); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("PATCH while the first holds the lease: %d, want 503", rec.Code)
	}
	s.clk.advance(time.Minute)
	if rec := call(t, s.g, "PATCH", loc, content); rec.Code != http.StatusAccepted {
		t.Fatalf("PATCH a minute after a 30 s request died: %d %s", rec.Code, rec.Body)
	}
	d := "sha256:" + sha256hex(content)
	if rec := call(t, s.g, "PUT", loc+"?digest="+d, nil); rec.Code != http.StatusCreated {
		t.Fatalf("close: %d %s", rec.Code, rec.Body)
	}
}

// A cancel that removed the staged bytes but failed to remove the session
// leaves a session whose bytes are gone. A close of it must not take "gone"
// for "committed" and link another repository's sha512 blob of that size.
func TestCloseAfterHalfCancelLinksNothing(t *testing.T) {
	s := newStatesEnv(t)
	secret := bytes.Repeat([]byte("someone else's layer "), 30)
	d := sha512digest(secret)
	if rec := call(t, s.g, "POST", "/v2/victim/blobs/uploads/?digest="+d, secret); rec.Code != http.StatusCreated {
		t.Fatalf("victim push: %d %s", rec.Code, rec.Body)
	}
	loc := s.start(t, "evil")
	if rec := call(t, s.g, "PATCH", loc, bytes.Repeat([]byte{'j'}, len(secret))); rec.Code != http.StatusAccepted {
		t.Fatalf("PATCH: %d %s", rec.Code, rec.Body)
	}
	s.items.armed.Store(true) // the session delete of the cancel is lost
	if rec := call(t, s.g, "DELETE", loc, nil); rec.Code == http.StatusNoContent {
		t.Fatalf("cancel with a lost delete answered 204")
	}
	if rec := call(t, s.g, "PUT", loc+"?digest="+d, nil); rec.Code == http.StatusCreated {
		t.Fatalf("close of a cancelled session linked %s", d)
	}
	if rec := call(t, s.g, "GET", "/v2/evil/blobs/"+d, nil); rec.Code != http.StatusNotFound {
		t.Fatalf("evil/blobs/%s: %d, want 404", d, rec.Code)
	}
}

// The upload session's states and the answers in each (docs/architecture.md,
// "Upload sessions"): created → idle (PATCH) → committed (closing PUT);
// cancelled (DELETE) and expired (idle past UploadTTL) end it too. Writing
// (leased) and committing are covered by TestLeaseEndsWithRequestDeadline,
// TestConcurrentPatchSameSession and TestRetriedSHA512CloseAfterLostLink.
func TestUploadSessionStates(t *testing.T) {
	s := newStatesEnv(t)
	status := func(loc string) (int, string) {
		rec := call(t, s.g, "GET", loc, nil)
		return rec.Code, rec.Header().Get("Range")
	}
	chunk := []byte("0123456789")

	// created: no bytes.
	loc := s.start(t, "states")
	if code, rng := status(loc); code != http.StatusNoContent || rng != "0-0" {
		t.Fatalf("created: %d Range %q", code, rng)
	}
	// idle after a PATCH: the offset moved; a PATCH at a wrong offset is refused.
	if rec := call(t, s.g, "PATCH", loc, chunk, "Content-Range", "0-9"); rec.Code != http.StatusAccepted {
		t.Fatalf("PATCH: %d", rec.Code)
	}
	if code, rng := status(loc); code != http.StatusNoContent || rng != "0-9" {
		t.Fatalf("idle: %d Range %q", code, rng)
	}
	if rec := call(t, s.g, "PATCH", loc, chunk, "Content-Range", "0-9"); rec.Code != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("PATCH at a stale offset: %d", rec.Code)
	}
	// committed: the blob is linked; the session is gone for every method.
	all := append(append([]byte{}, chunk...), chunk...)
	if rec := call(t, s.g, "PUT", loc+"?digest=sha256:"+sha256hex(all), chunk, "Content-Range", "10-19"); rec.Code != http.StatusCreated {
		t.Fatalf("close: %d %s", rec.Code, rec.Body)
	}
	for _, m := range []string{"GET", "PATCH", "PUT", "DELETE"} {
		if rec := call(t, s.g, m, loc+"?digest=sha256:"+sha256hex(all), nil); rec.Code != http.StatusNotFound {
			t.Fatalf("%s of a committed session: %d", m, rec.Code)
		}
	}

	// cancelled: DELETE under the lease, then the session is unknown.
	loc = s.start(t, "states")
	if rec := call(t, s.g, "PATCH", loc, chunk); rec.Code != http.StatusAccepted {
		t.Fatalf("PATCH: %d", rec.Code)
	}
	if rec := call(t, s.g, "DELETE", loc, nil); rec.Code != http.StatusNoContent {
		t.Fatalf("DELETE: %d", rec.Code)
	}
	if rec := call(t, s.g, "PUT", loc+"?digest=sha256:"+sha256hex(chunk), nil); rec.Code != http.StatusNotFound {
		t.Fatalf("close of a cancelled session: %d", rec.Code)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(s.dir, "uploads", "*", "*")); len(leftovers) != 0 {
		t.Fatalf("cancel left %v", leftovers)
	}

	// expired: idle past UploadTTL (1 h by default).
	loc = s.start(t, "states")
	if rec := call(t, s.g, "PATCH", loc, chunk); rec.Code != http.StatusAccepted {
		t.Fatalf("PATCH: %d", rec.Code)
	}
	s.clk.advance(time.Hour + time.Second)
	for _, m := range []string{"GET", "PATCH", "DELETE"} {
		if rec := call(t, s.g, m, loc, chunk); rec.Code != http.StatusNotFound {
			t.Fatalf("%s of an expired session: %d", m, rec.Code)
		}
	}
}
