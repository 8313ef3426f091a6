package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/driver/boltdb"
	"github.com/berth-registry/berth/pkg/driver/dynamo"
	"github.com/berth-registry/berth/pkg/driver/s3blob"
	"github.com/berth-registry/berth/pkg/edge"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/storage"
	"github.com/berth-registry/berth/pkg/storage/storagetest"
)

// Sessions stored by their first write (issue 10): an upload POST stores
// nothing, its id describes the session, and the session's end leaves a
// tombstone so that the id never starts over (docs/architecture.md,
// "Upload sessions"). Every case runs on the embedded store and on
// DynamoDB Local + versitygw.

// lazyEnv is a registry on a test clock over counted metadata and hooked
// blob drivers.
type lazyEnv struct {
	g     http.Handler
	clk   *clock
	items *storagetest.Probe
	blobs *hookBlobs
}

func lazyBackends(cfg registry.Config) map[string]func(t *testing.T) *lazyEnv {
	start := func() *clock {
		c := &clock{}
		// Real time: versitygw checks the S3 client's signatures against it.
		c.ns.Store(time.Now().Truncate(time.Second).UnixNano())
		return c
	}
	mk := func(clk *clock, items storage.Items, blobs storage.Blobs) *lazyEnv {
		e := &lazyEnv{clk: clk, items: storagetest.NewProbe(items), blobs: &hookBlobs{Blobs: blobs}}
		cfg.UploadTTL, cfg.Now = time.Hour, clk.now
		e.g = registry.New(cfg, e.items, e.blobs)
		return e
	}
	return map[string]func(t *testing.T) *lazyEnv{
		"embedded": func(t *testing.T) *lazyEnv {
			clk := start()
			e := testenv.NewEmbedded(t, boltdb.WithClock(clk.now))
			return mk(clk, e.Items, e.Blobs)
		},
		"aws": func(t *testing.T) *lazyEnv {
			clk := start()
			ddb := testenv.DynamoDB(t)
			s3c, presign := testenv.S3(t)
			items := dynamo.New(ddb, testenv.FreshTable(t, ddb), dynamo.WithClock(clk.now))
			return mk(clk, items, s3blob.WithoutRedirect(s3blob.New(s3c, presign, testenv.FreshBucket(t, s3c))))
		},
	}
}

func runLazy(t *testing.T, test func(t *testing.T, e *lazyEnv)) {
	runLazyWith(t, registry.Config{}, test)
}

func runLazyWith(t *testing.T, cfg registry.Config, test func(t *testing.T, e *lazyEnv)) {
	for name, open := range lazyBackends(cfg) {
		t.Run(name, func(t *testing.T) { test(t, open(t)) })
	}
}

// post starts an upload of repo and returns its Location.
func (e *lazyEnv) post(t *testing.T, repo string) string {
	t.Helper()
	rec := call(t, e.g, "POST", "/v2/"+repo+"/blobs/uploads/", nil)
	if rec.Code != http.StatusAccepted || rec.Header().Get("Location") == "" {
		t.Fatalf("POST: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	return rec.Header().Get("Location")
}

// stored returns the upload items in the table: sessions and tombstones
// (UPLOAD#<id>), and entries of the sweep's index (UPLOADS#nn).
func (e *lazyEnv) stored(t *testing.T) (sessions, tombstones, index int) {
	t.Helper()
	ups, _, err := e.items.Items.ItemScan(t.Context(), "UPLOAD#", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range ups {
		var rec struct {
			End bool `json:"end"`
		}
		if err := json.Unmarshal(it.Data, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.End {
			tombstones++
		} else {
			sessions++
		}
	}
	idx, _, err := e.items.Items.ItemScan(t.Context(), "UPLOADS#", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	return sessions, tombstones, len(idx)
}

func (e *lazyEnv) expectStored(t *testing.T, sessions, tombstones, index int) {
	t.Helper()
	if s, ts, i := e.stored(t); s != sessions || ts != tombstones || i != index {
		t.Fatalf("stored: %d sessions, %d tombstones, %d index entries; want %d, %d, %d", s, ts, i, sessions, tombstones, index)
	}
}

// expectUnknown requires 404 BLOB_UPLOAD_UNKNOWN from every request.
func expectUnknown(t *testing.T, g http.Handler, what string, reqs ...*httptest.ResponseRecorder) {
	t.Helper()
	for i, rec := range reqs {
		if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "BLOB_UPLOAD_UNKNOWN") {
			t.Fatalf("%s, request %d: %d %s, want 404 BLOB_UPLOAD_UNKNOWN", what, i, rec.Code, rec.Body)
		}
	}
}

// allMethods sends GET, PATCH, PUT (closing, with a digest) and DELETE to
// an upload URL.
func allMethods(t *testing.T, g http.Handler, loc string) []*httptest.ResponseRecorder {
	t.Helper()
	chunk := []byte("replayed bytes")
	return []*httptest.ResponseRecorder{
		call(t, g, "GET", loc, nil),
		call(t, g, "PATCH", loc, chunk),
		call(t, g, "PATCH", loc, chunk, "Content-Range", fmt.Sprintf("0-%d", len(chunk)-1)),
		call(t, g, "PUT", loc+"?digest=sha256:"+sha256hex(chunk), chunk),
		call(t, g, "PUT", loc+"?digest=sha256:"+sha256hex(nil), nil),
		call(t, g, "DELETE", loc, nil),
	}
}

// The POST costs no metadata request at all; the GET of the session it
// stands for answers exactly what a stored session without bytes answers.
func TestLazyPostWritesNothing(t *testing.T) {
	runLazy(t, func(t *testing.T, e *lazyEnv) {
		e.items.Reset()
		loc := e.post(t, "lazy")
		if calls := e.items.Reset(); len(calls) != 0 {
			t.Fatalf("POST made metadata requests %v, want none", calls)
		}
		e.expectStored(t, 0, 0, 0)

		virtual := call(t, e.g, "GET", loc, nil)
		if virtual.Code != http.StatusNoContent || virtual.Header().Get("Range") != "0-0" ||
			virtual.Header().Get("Location") != loc || !strings.HasSuffix(loc, "/"+virtual.Header().Get("Docker-Upload-UUID")) {
			t.Fatalf("GET of a session not written yet: %d %v", virtual.Code, virtual.Header())
		}
		if calls := e.items.Reset(); !maps.Equal(calls, map[string]int{"ItemGet": 1}) {
			t.Errorf("GET made %v, want one ItemGet", calls)
		}

		// An empty PATCH stores the session with no bytes: the same answer.
		if rec := call(t, e.g, "PATCH", loc, nil); rec.Code != http.StatusAccepted || rec.Header().Get("Range") != "0-0" {
			t.Fatalf("empty PATCH: %d %v %s", rec.Code, rec.Header(), rec.Body)
		}
		e.expectStored(t, 1, 0, 1)
		stored := call(t, e.g, "GET", loc, nil)
		if stored.Code != virtual.Code || !maps.EqualFunc(stored.Header(), virtual.Header(), func(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }) {
			t.Fatalf("GET of a session not written yet:\n%d %v\nof the same session stored without bytes:\n%d %v", virtual.Code, virtual.Header(), stored.Code, stored.Header())
		}
	})
}

// The first PATCH stores the session, leased, and saves it after the
// chunk: two writes. The closing PUT leases it and ends it with the link:
// two more. Crane's flow (POST, one PATCH, closing PUT) costs four.
func TestLazyPatchCreates(t *testing.T) {
	runLazy(t, func(t *testing.T, e *lazyEnv) {
		loc := e.post(t, "lazy")
		blob := []byte("the whole blob in one PATCH")
		e.items.Reset()
		rec := call(t, e.g, "PATCH", loc, blob)
		if rec.Code != http.StatusAccepted || rec.Header().Get("Range") != fmt.Sprintf("0-%d", len(blob)-1) {
			t.Fatalf("PATCH: %d %v %s", rec.Code, rec.Header(), rec.Body)
		}
		if calls := e.items.Reset(); !maps.Equal(calls, map[string]int{"Transact": 1, "ItemPut": 1}) {
			t.Errorf("first PATCH made %v, want one Transact (create, leased) and one ItemPut (save, released)", calls)
		}
		e.expectStored(t, 1, 0, 1)
		if rec := call(t, e.g, "GET", loc, nil); rec.Code != http.StatusNoContent || rec.Header().Get("Range") != fmt.Sprintf("0-%d", len(blob)-1) {
			t.Fatalf("GET after PATCH: %d %v", rec.Code, rec.Header())
		}
		d := "sha256:" + sha256hex(blob)
		e.items.Reset()
		if rec := call(t, e.g, "PUT", loc+"?digest="+d, nil); rec.Code != http.StatusCreated {
			t.Fatalf("close: %d %s", rec.Code, rec.Body)
		}
		if calls := e.items.Reset(); !maps.Equal(calls, map[string]int{"ItemAdd": 1, "Transact": 1}) {
			t.Errorf("closing PUT made %v, want one ItemAdd (lease) and one Transact (link + end)", calls)
		}
		e.expectStored(t, 0, 1, 0)
		if rec := call(t, e.g, "GET", "/v2/lazy/blobs/"+d, nil); rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), blob) {
			t.Fatalf("GET blob: %d", rec.Code)
		}

		// A PUT with the whole blob right after the POST (oras without
		// the edge path) stores the session in its first write too.
		loc = e.post(t, "lazy")
		blob2 := []byte("a monolithic PUT")
		if rec := call(t, e.g, "PUT", loc+"?digest=sha256:"+sha256hex(blob2), blob2); rec.Code != http.StatusCreated {
			t.Fatalf("PUT with the blob: %d %s", rec.Code, rec.Body)
		}
		// So does a chunked upload's first chunk; the later ones lease it.
		loc = e.post(t, "lazy")
		for off, c := range []string{"chunk one,", "chunk two"} {
			start := off * len("chunk one,")
			rng := fmt.Sprintf("%d-%d", start, start+len(c)-1)
			if rec := call(t, e.g, "PATCH", loc, []byte(c), "Content-Range", rng); rec.Code != http.StatusAccepted {
				t.Fatalf("PATCH %s: %d %s", rng, rec.Code, rec.Body)
			}
		}
		if rec := call(t, e.g, "PUT", loc+"?digest=sha256:"+sha256hex([]byte("chunk one,chunk two")), nil); rec.Code != http.StatusCreated {
			t.Fatalf("close of the chunked upload: %d %s", rec.Code, rec.Body)
		}
		// A range that does not start at 0 cannot be a session's first
		// write: refused, and nothing is stored for it.
		loc = e.post(t, "lazy")
		if rec := call(t, e.g, "PATCH", loc, []byte("abc"), "Content-Range", "5-7"); rec.Code != http.StatusRequestedRangeNotSatisfiable || rec.Header().Get("Range") != "0-0" {
			t.Fatalf("PATCH at offset 5 of a session not written: %d %v", rec.Code, rec.Header())
		}
		e.expectStored(t, 0, 3, 0)
	})
}

// Two first PATCHes at once: exactly one stores the session and holds its
// lease while it writes; the other is told to retry (503, Retry-After) and,
// retried, continues after the first chunk. Bytes never interleave.
func TestLazyConcurrentFirstPatches(t *testing.T) {
	runLazy(t, func(t *testing.T, e *lazyEnv) {
		loc := e.post(t, "race")
		inWrite, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		e.blobs.onWrite = func(context.Context, string) {
			once.Do(func() {
				close(inWrite)
				<-release
			})
		}
		a, b := bytes.Repeat([]byte{'a'}, 1000), bytes.Repeat([]byte{'b'}, 700)
		first := make(chan *httptest.ResponseRecorder, 1)
		go func() {
			rec := httptest.NewRecorder()
			e.g.ServeHTTP(rec, httptest.NewRequest("PATCH", loc, bytes.NewReader(a)))
			first <- rec
		}()
		<-inWrite
		rec := call(t, e.g, "PATCH", loc, b)
		close(release)
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
			t.Fatalf("second first PATCH while the first writes: %d %v %s, want 503 with Retry-After", rec.Code, rec.Header(), rec.Body)
		}
		if rec := <-first; rec.Code != http.StatusAccepted {
			t.Fatalf("first PATCH: %d %s", rec.Code, rec.Body)
		}
		if rec := call(t, e.g, "PATCH", loc, b); rec.Code != http.StatusAccepted || rec.Header().Get("Range") != fmt.Sprintf("0-%d", len(a)+len(b)-1) {
			t.Fatalf("retried PATCH: %d %v %s", rec.Code, rec.Header(), rec.Body)
		}
		whole := append(append([]byte{}, a...), b...)
		d := "sha256:" + sha256hex(whole)
		if rec := call(t, e.g, "PUT", loc+"?digest="+d, nil); rec.Code != http.StatusCreated {
			t.Fatalf("close: %d %s", rec.Code, rec.Body)
		}
		if rec := call(t, e.g, "GET", "/v2/race/blobs/"+d, nil); rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), whole) {
			t.Fatalf("GET blob: %d, %d bytes", rec.Code, rec.Body.Len())
		}
	})
}

// An id names a session only in the repository it was minted for, only
// from a little before it was minted until UploadTTL after, and only as
// minted: otherwise it is unknown and nothing is stored for it.
func TestLazyIDBounds(t *testing.T) {
	runLazy(t, func(t *testing.T, e *lazyEnv) {
		// Another repository's id.
		loc := e.post(t, "mine")
		other := strings.Replace(loc, "/v2/mine/", "/v2/theirs/", 1)
		expectUnknown(t, e.g, "another repository's id", allMethods(t, e.g, other)...)
		// A changed id.
		id := loc[strings.LastIndex(loc, "/")+1:]
		flip := map[byte]byte{'A': 'B'}[id[3]]
		if flip == 0 {
			flip = 'A'
		}
		changed := loc[:len(loc)-len(id)] + id[:3] + string(flip) + id[4:]
		expectUnknown(t, e.g, "a changed id", allMethods(t, e.g, changed)...)
		e.expectStored(t, 0, 0, 0)

		// Dated ahead: minted on a clock 10 minutes ahead of ours.
		e.clk.advance(10 * time.Minute)
		ahead := e.post(t, "mine")
		e.clk.advance(-10 * time.Minute)
		expectUnknown(t, e.g, "an id dated 10 minutes ahead", allMethods(t, e.g, ahead)...)
		e.expectStored(t, 0, 0, 0)
		// Five minutes of skew are tolerated.
		e.clk.advance(6 * time.Minute)
		if rec := call(t, e.g, "GET", ahead, nil); rec.Code != http.StatusNoContent {
			t.Fatalf("GET of an id dated 4 minutes ahead: %d %s", rec.Code, rec.Body)
		}

		// Expired: UploadTTL (1 h) after it was minted.
		old := e.post(t, "mine")
		e.clk.advance(time.Hour - time.Second)
		if rec := call(t, e.g, "GET", old, nil); rec.Code != http.StatusNoContent {
			t.Fatalf("GET of an id minted 59:59 ago: %d %s", rec.Code, rec.Body)
		}
		e.clk.advance(time.Second)
		expectUnknown(t, e.g, "an id minted an hour ago", allMethods(t, e.g, old)...)
		e.expectStored(t, 0, 0, 0)

		// Ids of another form (Berth before issue 10 minted 18 random
		// bytes) name stored sessions only.
		expectUnknown(t, e.g, "an old-form id", allMethods(t, e.g, "/v2/mine/blobs/uploads/"+strings.Repeat("x", 24))...)
	})
}

// A session cancelled before anything was written ends with a tombstone
// alone (one write; nothing is staged), and its id stays unknown.
func TestLazyDeleteUnwritten(t *testing.T) {
	runLazy(t, func(t *testing.T, e *lazyEnv) {
		loc := e.post(t, "gone")
		e.items.Reset()
		if rec := call(t, e.g, "DELETE", loc, nil); rec.Code != http.StatusNoContent {
			t.Fatalf("DELETE: %d %s", rec.Code, rec.Body)
		}
		if calls := e.items.Reset(); calls["ItemPut"] != 1 || calls["Transact"] != 0 {
			t.Errorf("DELETE of a session not written made %v, want one ItemPut (the tombstone)", calls)
		}
		e.expectStored(t, 0, 1, 0)
		expectUnknown(t, e.g, "a cancelled session", allMethods(t, e.g, loc)...)
		// Until the id could not stand for a session anyway.
		e.clk.advance(time.Hour - time.Second)
		expectUnknown(t, e.g, "a cancelled session, just before its id expires", allMethods(t, e.g, loc)...)
		e.expectStored(t, 0, 1, 0)
	})
}

// A completed session's id, replayed, finds its tombstone: no request can
// start it again, through the rest of the id's lifetime.
func TestLazyReplayAfterCompletion(t *testing.T) {
	runLazy(t, func(t *testing.T, e *lazyEnv) {
		loc := e.post(t, "done")
		blob := []byte("pushed once")
		d := "sha256:" + sha256hex(blob)
		if rec := call(t, e.g, "PATCH", loc, blob); rec.Code != http.StatusAccepted {
			t.Fatalf("PATCH: %d %s", rec.Code, rec.Body)
		}
		if rec := call(t, e.g, "PUT", loc+"?digest="+d, nil); rec.Code != http.StatusCreated {
			t.Fatalf("close: %d %s", rec.Code, rec.Body)
		}
		expectUnknown(t, e.g, "a completed session", allMethods(t, e.g, loc)...)
		e.clk.advance(time.Hour - time.Second)
		expectUnknown(t, e.g, "a completed session, just before its id expires", allMethods(t, e.g, loc)...)
		e.expectStored(t, 0, 1, 0)
		if rec := call(t, e.g, "GET", "/v2/done/blobs/"+d, nil); rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), blob) {
			t.Fatalf("GET blob: %d", rec.Code)
		}
	})
}

// Where the POST must store the session (the edge path: the claim of the
// bytes that go to S3 needs it), the id says so: a PATCH through the API
// leases the stored session at once instead of first trying to store it,
// and once the session is gone the id stands for nothing.
func TestStoredAtPost(t *testing.T) {
	// A keyring without a key: sessions are stored as on the edge path,
	// and the Location is the API's own (edgeLocation).
	runLazyWith(t, registry.Config{EdgeTokens: edge.NewKeyring(edge.NewMemoryStore(), 0)}, func(t *testing.T, e *lazyEnv) {
		e.items.Reset()
		loc := e.post(t, "edge")
		if calls := e.items.Reset(); !maps.Equal(calls, map[string]int{"Transact": 1}) {
			t.Fatalf("POST with the edge path made %v, want one Transact", calls)
		}
		blob := []byte("through the API after all")
		if rec := call(t, e.g, "PATCH", loc, blob); rec.Code != http.StatusAccepted {
			t.Fatalf("PATCH: %d %s", rec.Code, rec.Body)
		}
		if calls := e.items.Reset(); !maps.Equal(calls, map[string]int{"ItemAdd": 1, "ItemPut": 1}) {
			t.Errorf("PATCH of a session stored at the POST made %v, want one ItemAdd (lease) and one ItemPut (save)", calls)
		}
		if rec := call(t, e.g, "PUT", loc+"?digest=sha256:"+sha256hex(blob), nil); rec.Code != http.StatusCreated {
			t.Fatalf("close: %d %s", rec.Code, rec.Body)
		}
		expectUnknown(t, e.g, "a completed session stored at the POST", allMethods(t, e.g, loc)...)

		// Its item gone (the table's TTL, say): unknown, never fresh.
		loc = e.post(t, "edge")
		id := loc[strings.LastIndex(loc, "/")+1:]
		if err := e.items.Items.ItemDelete(t.Context(), "UPLOAD#"+id, "META", storage.IfNone); err != nil {
			t.Fatal(err)
		}
		expectUnknown(t, e.g, "an id stored at the POST, its item gone", allMethods(t, e.g, loc)...)
	})
}
