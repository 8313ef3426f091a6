package sweep_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/driver/boltdb"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/sweep"
)

type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// env is an embedded store with a registry in front (to create sessions the
// way clients do) and a sweeper on the same drivers, all on one clock.
type env struct {
	reg   http.Handler
	sw    sweep.Sweeper
	items *boltdb.Store
	dir   string
	clock *clock
}

func newEnv(t *testing.T) env {
	t.Helper()
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	e := testenv.NewEmbedded(t, boltdb.WithClock(c.now))
	reg := registry.New(registry.Config{UploadTTL: time.Hour, Now: c.now}, e.Items, e.Blobs)
	sw := sweep.Sweeper{Store: meta.New(e.Items, meta.WithClock(c.now)), Blobs: e.Blobs, Purger: e.Items}
	return env{reg: reg, sw: sw, items: e.Items, dir: e.Dir, clock: c}
}

func call(t *testing.T, h http.Handler, method, path string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, bytes.NewReader(body)))
	return rec
}

// startUpload opens a session holding 1000 staged bytes; it returns the
// session's URL.
func startUpload(t *testing.T, h http.Handler) string {
	t.Helper()
	loc := call(t, h, "POST", "/v2/sweep/blobs/uploads/", nil).Header().Get("Location")
	if rec := call(t, h, "PATCH", loc, bytes.Repeat([]byte{'x'}, 1000)); rec.Code != 202 {
		t.Fatalf("patch %d %s", rec.Code, rec.Body)
	}
	return loc
}

// Expired sessions disappear and their staged bytes with them; live ones
// stay, and activity extends a session.
func TestUploads(t *testing.T) {
	e := newEnv(t)
	var locs []string
	for range 3 {
		locs = append(locs, startUpload(t, e.reg))
		e.clock.advance(20 * time.Minute)
	}
	// Now: first session 60 min idle (expired), second 40, third 20.
	n, err := e.sw.Uploads(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("swept %d, %v", n, err)
	}
	if rec := call(t, e.reg, "GET", locs[0], nil); rec.Code != 404 {
		t.Fatalf("expired session: %d", rec.Code)
	}
	if rec := call(t, e.reg, "GET", locs[1], nil); rec.Code != 204 {
		t.Fatalf("live session: %d", rec.Code)
	}
	if rec := call(t, e.reg, "PATCH", locs[1], []byte("more")); rec.Code != 202 {
		t.Fatalf("patch %d", rec.Code)
	}
	e.clock.advance(50 * time.Minute)
	if n, err := e.sw.Uploads(t.Context()); err != nil || n != 1 {
		t.Fatalf("second sweep %d, %v", n, err)
	}
	if rec := call(t, e.reg, "GET", locs[1], nil); rec.Code != 204 {
		t.Fatalf("refreshed session: %d", rec.Code)
	}
	e.clock.advance(2 * time.Hour)
	if n, err := e.sw.Uploads(t.Context()); err != nil || n != 1 {
		t.Fatalf("third sweep %d, %v", n, err)
	}
	entries, err := os.ReadDir(filepath.Join(e.dir, "uploads"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Fatalf("staged data left: %d entries", len(entries))
	}
	if n, err := e.sw.Uploads(t.Context()); err != nil || n != 0 {
		t.Fatalf("sweep of an empty store: %d, %v", n, err)
	}
}

// failingAborter cannot drop staged data (S3 unavailable, access denied).
type failingAborter struct{ calls int }

func (f *failingAborter) UploadAbort(context.Context, string, []byte) error {
	f.calls++
	return errors.New("AccessDenied: s3:AbortMultipartUpload")
}

// A session whose staged data cannot be dropped keeps its record, so the
// next sweep tries again instead of orphaning the data; the failure is
// logged.
func TestUploadsKeepsSessionWhenAbortFails(t *testing.T) {
	e := newEnv(t)
	loc := startUpload(t, e.reg)
	e.clock.advance(2 * time.Hour)
	var logs bytes.Buffer
	sw := e.sw
	ab := &failingAborter{}
	sw.Blobs, sw.Log = ab, slog.New(slog.NewTextHandler(&logs, nil))
	if n, err := sw.Uploads(t.Context()); err != nil || n != 0 || ab.calls != 1 {
		t.Fatalf("swept %d, %v, %d abort calls", n, err, ab.calls)
	}
	if !strings.Contains(logs.String(), "AbortMultipartUpload") {
		t.Errorf("failure not logged: %q", logs.String())
	}
	// The record is still there: the real driver's sweep removes it.
	if n, err := e.sw.Uploads(t.Context()); err != nil || n != 1 {
		t.Fatalf("retry swept %d, %v", n, err)
	}
	if rec := call(t, e.reg, "GET", loc, nil); rec.Code != 404 {
		t.Fatalf("session after the retry: %d", rec.Code)
	}
}

// countingPurger records what the wrapped purger removed.
type countingPurger struct {
	sweep.Purger
	removed atomic.Int64
}

func (c *countingPurger) PurgeExpired(ctx context.Context) (int, error) {
	n, err := c.Purger.PurgeExpired(ctx)
	c.removed.Add(int64(n))
	return n, err
}

// Every runs Once on its interval until the context ends: the expired
// session's staged bytes go, and on a store without TTL the expired items
// are purged.
func TestEvery(t *testing.T) {
	e := newEnv(t)
	// Session a outlives its record's TTL (expiry + 24 h grace): the store
	// hides it and only the purge removes the item. Session b expired
	// within the grace: the sweep finds it and drops its staged bytes.
	startUpload(t, e.reg)
	e.clock.advance(24 * time.Hour)
	startUpload(t, e.reg)
	e.clock.advance(2 * time.Hour)
	purger := &countingPurger{Purger: e.items}
	sw := e.sw
	sw.Purger = purger
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); sw.Every(ctx, time.Millisecond) }()
	staged := func() int {
		entries, err := os.ReadDir(filepath.Join(e.dir, "uploads"))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return len(entries)
	}
	if n := staged(); n != 2 {
		t.Fatalf("%d staged uploads before the sweep, want 2", n)
	}
	for deadline := time.Now().Add(5 * time.Second); staged() != 1 || purger.removed.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("after 5 s: %d staged uploads left, %d items purged", staged(), purger.removed.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Every did not return after its context ended")
	}
}

// uploadItems counts the upload records in the store: sessions and
// tombstones (UPLOAD#<id>, whatever their expiry says, hidden or not is
// the driver's business) and index entries (UPLOADS#nn).
func uploadItems(t *testing.T, e env) (records, index int) {
	t.Helper()
	ups, _, err := e.items.ItemScan(t.Context(), "UPLOAD#", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	idx, _, err := e.items.ItemScan(t.Context(), "UPLOADS#", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	return len(ups), len(idx)
}

// Ended sessions leave tombstones without index entries (so that their
// ids cannot start over): the sweep never takes them for sessions, and
// the purge removes them once they expire, a day after the session would
// have. A session the sweep ends leaves one too.
func TestTombstones(t *testing.T) {
	e := newEnv(t)
	// Completed, cancelled after a write, cancelled before any, expired.
	done := startUpload(t, e.reg)
	if rec := call(t, e.reg, "PUT", done+"?digest=sha256:"+sha256hex(bytes.Repeat([]byte{'x'}, 1000)), nil); rec.Code != 201 {
		t.Fatalf("close %d %s", rec.Code, rec.Body)
	}
	cancelled := startUpload(t, e.reg)
	unwritten := call(t, e.reg, "POST", "/v2/sweep/blobs/uploads/", nil).Header().Get("Location")
	for _, loc := range []string{cancelled, unwritten} {
		if rec := call(t, e.reg, "DELETE", loc, nil); rec.Code != 204 {
			t.Fatalf("DELETE %d %s", rec.Code, rec.Body)
		}
	}
	expired := startUpload(t, e.reg)
	if recs, idx := uploadItems(t, e); recs != 4 || idx != 1 {
		t.Fatalf("%d upload records, %d index entries; want 3 tombstones and a session, 1 entry", recs, idx)
	}
	e.clock.advance(time.Hour)
	if n, err := e.sw.Uploads(t.Context()); err != nil || n != 1 {
		t.Fatalf("swept %d, %v; want the expired session only", n, err)
	}
	if recs, idx := uploadItems(t, e); recs != 4 || idx != 0 {
		t.Fatalf("after the sweep: %d upload records, %d index entries; want 4 tombstones, none", recs, idx)
	}
	for _, loc := range []string{done, cancelled, unwritten, expired} {
		if rec := call(t, e.reg, "GET", loc, nil); rec.Code != 404 {
			t.Fatalf("GET %s: %d", loc, rec.Code)
		}
	}
	if n, err := e.sw.Uploads(t.Context()); err != nil || n != 0 {
		t.Fatalf("second sweep %d, %v", n, err)
	}
	// A day after the sessions' expiry the tombstones expire and go.
	e.clock.advance(24 * time.Hour)
	if _, err := e.items.PurgeExpired(t.Context()); err != nil {
		t.Fatal(err)
	}
	if recs, idx := uploadItems(t, e); recs != 0 || idx != 0 {
		t.Fatalf("after the purge: %d upload records, %d index entries", recs, idx)
	}
}

func sha256hex(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }
