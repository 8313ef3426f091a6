package gc_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/driver/dynamo"
	"github.com/berth-registry/berth/pkg/driver/s3blob"
	"github.com/berth-registry/berth/pkg/gc"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/metrics"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/registry/registrytest"
	"github.com/berth-registry/berth/pkg/storage"
)

// backend is one pair of drivers under test.
type backend struct {
	name string
	open func(t *testing.T) (storage.Items, blobStore)
}

// blobStore is what the collector needs of a driver, with listing.
type blobStore interface {
	storage.Blobs
	storage.BlobLister
}

func backends() []backend {
	return []backend{{
		name: "embedded",
		open: func(t *testing.T) (storage.Items, blobStore) {
			e := testenv.NewEmbedded(t)
			return e.Items, e.Blobs
		},
	}, {
		name: "aws",
		open: func(t *testing.T) (storage.Items, blobStore) {
			ddb := testenv.DynamoDB(t)
			s3c, presign := testenv.S3(t)
			table := testenv.FreshTable(t, ddb)
			bucket := testenv.FreshBucket(t, s3c)
			return dynamo.New(ddb, table), listable{s3blob.WithoutRedirect(s3blob.New(s3c, presign, bucket)), s3blob.New(s3c, presign, bucket)}
		},
	}}
}

// listable is a driver without redirects (tests read bytes through the
// handler) that still lists.
type listable struct {
	storage.Blobs
	storage.BlobLister
}

// stored lists every stored blob.
func stored(t testing.TB, l storage.BlobLister) map[oci.Digest]bool {
	t.Helper()
	out := map[oci.Digest]bool{}
	var after oci.Digest
	for {
		objs, more, err := l.BlobList(context.Background(), after, 1000)
		if err != nil {
			t.Fatalf("list blobs: %v", err)
		}
		for _, o := range objs {
			out[o.Digest] = true
		}
		if !more || len(objs) == 0 {
			return out
		}
		after = objs[len(objs)-1].Digest
	}
}

type env struct {
	t     *testing.T
	items storage.Items
	blobs blobStore
	reg   http.Handler
	store *meta.Store
}

func newEnv(t *testing.T, b backend) *env {
	items, blobs := b.open(t)
	return &env{t: t, items: items, blobs: blobs, reg: registry.New(registry.Config{}, items, blobs), store: meta.New(items)}
}

// collector runs as if at now+ahead, so everything older than grace is due.
// The store shares the collector's clock, as one process's do.
func (e *env) collector(ahead time.Duration) gc.Collector {
	now := func() time.Time { return time.Now().Add(ahead) }
	return gc.Collector{Store: meta.New(e.items, meta.WithClock(now)), Blobs: e.blobs, Grace: time.Hour, Orphans: e.blobs, OrphanGrace: 2 * time.Hour, Now: now}
}

func (e *env) pass(c gc.Collector) gc.Stats {
	e.t.Helper()
	st, err := c.Pass(context.Background())
	if err != nil {
		e.t.Fatalf("pass: %v", err)
	}
	return st
}

func (e *env) do(method, path string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	w := httptest.NewRecorder()
	e.reg.ServeHTTP(w, req)
	return w
}

// pulls requires that repo:ref and every blob it references read back
// byte for byte.
func (e *env) pulls(repo, ref string, img registrytest.Image) {
	e.t.Helper()
	if w := e.do("GET", "/v2/"+repo+"/manifests/"+ref, nil); w.Code != 200 || !bytes.Equal(w.Body.Bytes(), img.Manifest) {
		e.t.Fatalf("pull %s:%s manifest: %d %.200s", repo, ref, w.Code, w.Body)
	}
	for _, b := range append([][]byte{img.Config}, img.Layers...) {
		d := oci.FromBytes(oci.SHA256, b)
		if w := e.do("GET", "/v2/"+repo+"/blobs/"+string(d), nil); w.Code != 200 || !bytes.Equal(w.Body.Bytes(), b) {
			e.t.Fatalf("pull %s:%s blob %s: %d %.200s", repo, ref, d, w.Code, w.Body)
		}
	}
}

// counts is a metrics recorder (gc.Counter).
type counts map[string]float64

func (c counts) Add(name string, v float64) { c[name] += v }

func digestOf(b []byte) oci.Digest { return oci.FromBytes(oci.SHA256, b) }

func image(seed string, layers ...[]byte) registrytest.Image {
	return registrytest.NewImage([]byte(fmt.Sprintf(`{"seed":%q}`, seed)), append(layers, []byte("own layer of "+seed))...)
}

// TestCollect: what no manifest references is deleted after the grace
// period, bytes and links; what is referenced stays and pulls.
func TestCollect(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b)
			base := []byte("shared base layer")
			one, two := image("one", base), image("two", base)
			registrytest.PushImage(t, e.reg, "a", "v1", one)
			registrytest.PushImage(t, e.reg, "b", "v1", two)
			stray := registrytest.PushBlob(t, e.reg, "a", []byte("uploaded, never referenced"))
			if w := e.do("DELETE", "/v2/a/manifests/"+string(one.Digest), nil); w.Code != 202 {
				t.Fatalf("delete manifest: %d %s", w.Code, w.Body)
			}

			if st := e.pass(e.collector(0)); st.Deleted != 0 || st.Orphans != 0 {
				t.Fatalf("within the grace period a pass deleted %+v", st)
			}
			c, rec := e.collector(2*time.Hour), counts{}
			c.Metrics = rec
			st := e.pass(c)
			// one's config and own layer, and the stray blob; the base stays.
			if st.Deleted != 3 || st.Orphans != 0 {
				t.Fatalf("pass: %+v, want 3 deleted", st)
			}
			if rec[metrics.GCBlobsDeleted] != 3 || rec[metrics.GCBytesFreed] != float64(st.Bytes) || st.Bytes == 0 || rec[metrics.GCFailures] != 0 {
				t.Errorf("metrics %v, want 3 blobs and %d bytes", rec, st.Bytes)
			}
			gone := []oci.Digest{digestOf(one.Config), digestOf(one.Layers[1]), stray}
			have := stored(t, e.blobs)
			for _, d := range gone {
				if have[d] {
					t.Errorf("%s still stored", d)
				}
				if w := e.do("HEAD", "/v2/a/blobs/"+string(d), nil); w.Code != 404 {
					t.Errorf("HEAD %s after GC: %d", d, w.Code)
				}
			}
			if len(have) != 3 { // base, two's config and own layer
				t.Errorf("%d blobs stored, want 3", len(have))
			}
			e.pulls("b", "v1", two)
			if w := e.do("HEAD", "/v2/a/blobs/"+string(digestOf(base)), nil); w.Code != 200 {
				t.Errorf("the shared layer's link in a: %d", w.Code)
			}

			// Idempotent: a second pass finds nothing to do.
			if st := e.pass(e.collector(2 * time.Hour)); st.Deleted != 0 || st.Candidates != 0 {
				t.Fatalf("second pass: %+v", st)
			}
			// Pushing the collected image again works and pulls.
			registrytest.PushImage(t, e.reg, "a", "v1", one)
			e.pulls("a", "v1", one)
		})
	}
}

// TestDeferAndDryRun: a blob used again within the grace period is moved,
// not deleted; a dry run reports and changes nothing.
func TestDeferAndDryRun(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b)
			d := registrytest.PushBlob(t, e.reg, "a", []byte("stray"))
			dry := e.collector(2 * time.Hour)
			dry.DryRun = true
			st := e.pass(dry)
			if len(st.Would) != 1 || st.Would[0] != d || st.Deleted != 0 {
				t.Fatalf("dry run: %+v", st)
			}
			if !stored(t, e.blobs)[d] {
				t.Fatal("a dry run deleted bytes")
			}
			// Used again "later": the entry written then is not due at +2h
			// from now, and the first entry is deferred to it.
			c := e.collector(2 * time.Hour)
			later := meta.New(e.items, meta.WithClock(func() time.Time { return time.Now().Add(90 * time.Minute) }))
			if err := later.BlobLinkPut(context.Background(), "b", d, 5); err != nil {
				t.Fatal(err)
			}
			st = e.pass(c)
			if st.Deleted != 0 || st.Deferred != 1 {
				t.Fatalf("pass after reuse: %+v", st)
			}
			st = e.pass(e.collector(4 * time.Hour))
			if st.Deleted != 1 {
				t.Fatalf("pass after the new grace: %+v", st)
			}
		})
	}
}

// TestOrphans: bytes no metadata points at are deleted after the orphan
// grace; bytes with a record are not.
func TestOrphans(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b)
			ctx := context.Background()
			orphan := []byte("written, then the process died before linking it")
			if err := e.blobs.BlobPut(ctx, digestOf(orphan), int64(len(orphan)), bytes.NewReader(orphan)); err != nil {
				t.Fatal(err)
			}
			img := image("kept")
			registrytest.PushImage(t, e.reg, "a", "v1", img)
			if st := e.pass(e.collector(time.Hour)); st.Orphans != 0 {
				t.Fatalf("an orphan younger than the orphan grace was deleted: %+v", st)
			}
			c := e.collector(3 * time.Hour)
			c.OrphanBudget = 1 // one object per pass: the cursor carries on
			total := gc.Stats{}
			for i := 0; i < 4; i++ {
				st := e.pass(c)
				total.Orphans += st.Orphans
				total.OrphansScanned += st.OrphansScanned
			}
			if total.Orphans != 1 || total.OrphansScanned < 3 {
				t.Fatalf("orphan passes: %+v", total)
			}
			if stored(t, e.blobs)[digestOf(orphan)] {
				t.Fatal("orphan still stored")
			}
			e.pulls("a", "v1", img)
			// Pushing the orphan's content properly afterwards works.
			registrytest.PushBlob(t, e.reg, "a", orphan)
			if w := e.do("GET", "/v2/a/blobs/"+string(digestOf(orphan)), nil); w.Code != 200 || !bytes.Equal(w.Body.Bytes(), orphan) {
				t.Fatalf("re-pushed orphan: %d", w.Code)
			}
		})
	}
}

// TestConcurrentPasses: passes at once delete each blob once and lose
// nothing.
func TestConcurrentPasses(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b)
			keep := image("keep")
			registrytest.PushImage(t, e.reg, "a", "keep", keep)
			for i := 0; i < 10; i++ {
				registrytest.PushBlob(t, e.reg, "a", []byte(fmt.Sprintf("stray %d", i)))
			}
			var wg sync.WaitGroup
			stats := make([]gc.Stats, 4)
			for i := range stats {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var err error
					stats[i], err = e.collector(2 * time.Hour).Pass(context.Background())
					if err != nil {
						t.Errorf("pass %d: %v", i, err)
					}
				}()
			}
			wg.Wait()
			deleted := 0
			for _, st := range stats {
				deleted += st.Deleted + st.Orphans
			}
			if deleted != 10 {
				t.Fatalf("passes deleted %d blobs in all, want 10: %+v", deleted, stats)
			}
			e.pulls("a", "keep", keep)
			if n := len(stored(t, e.blobs)); n != 2 {
				t.Fatalf("%d blobs stored, want 2", n)
			}
		})
	}
}

// TestLinkDuringCollection: a push of a blob at each point of its
// collection either wins (the blob stays) or is refused with a retryable
// 503 while its bytes are being deleted; afterwards it pushes and pulls.
func TestLinkDuringCollection(t *testing.T) {
	for _, b := range backends() {
		for _, at := range []string{"before-condemn", "before-delete", "before-mark"} {
			t.Run(b.name+"/"+at, func(t *testing.T) {
				e := newEnv(t, b)
				body := []byte("pushed again while collected: " + at)
				d := registrytest.PushBlob(t, e.reg, "a", body)
				var status int
				hooked := &hookItems{Items: e.items}
				hooks := &hookBlobs{Blobs: e.blobs}
				push := func() { status = e.do("POST", "/v2/c/blobs/uploads/?digest="+string(d), body).Code }
				switch at {
				case "before-condemn":
					hooked.beforeTx = func(ops []storage.Op) {
						if len(ops) > 1 && ops[1].Item.SK == "GONE" && ops[1].Kind == storage.OpPut {
							push()
						}
					}
				case "before-delete":
					hooks.beforeDelete = push
				case "before-mark":
					hooks.afterDelete = push
				}
				now := func() time.Time { return time.Now().Add(2 * time.Hour) }
				c := gc.Collector{Store: meta.New(hooked, meta.WithClock(now)), Blobs: hooks, Grace: time.Hour, Now: now}
				st := e.pass(c)
				switch at {
				case "before-condemn":
					if status != 201 || st.Deleted != 0 || st.Raced != 1 {
						t.Fatalf("push %d, pass %+v: the push must win", status, st)
					}
				default:
					if status != 503 || st.Deleted != 1 {
						t.Fatalf("push %d, pass %+v: the push must be refused with 503", status, st)
					}
					registrytest.PushBlob(t, e.reg, "c", body)
				}
				if w := e.do("GET", "/v2/c/blobs/"+string(d), nil); w.Code != 200 || !bytes.Equal(w.Body.Bytes(), body) {
					t.Fatalf("pull after the race: %d", w.Code)
				}
				// Nothing a later pass does changes that.
				e.pass(e.collector(time.Minute))
				if w := e.do("GET", "/v2/c/blobs/"+string(d), nil); w.Code != 200 {
					t.Fatalf("pull after a later pass: %d", w.Code)
				}
			})
		}
	}
}

type hookItems struct {
	storage.Items
	beforeTx func([]storage.Op)
}

func (h *hookItems) Transact(ctx context.Context, ops []storage.Op) error {
	if f := h.beforeTx; f != nil {
		h.beforeTx = nil
		f(ops)
	}
	return h.Items.Transact(ctx, ops)
}

type hookBlobs struct {
	storage.Blobs
	beforeDelete, afterDelete func()
}

func (h *hookBlobs) BlobDelete(ctx context.Context, d oci.Digest) error {
	if f := h.beforeDelete; f != nil {
		h.beforeDelete = nil
		f()
	}
	err := h.Blobs.BlobDelete(ctx, d)
	if f := h.afterDelete; f != nil {
		h.afterDelete = nil
		f()
	}
	return err
}

// TestFaults fails each call a pass makes, before or after it takes
// effect; a later pass must finish the work, and nothing referenced may
// lose bytes.
func TestFaults(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			// A clean run counts the calls a pass makes.
			probe := newEnv(t, b)
			setupFaults(t, probe)
			counter := &faulty{}
			calls := countCalls(t, probe, counter)
			if calls < 8 {
				t.Fatalf("a pass made only %d calls", calls)
			}
			for n := 1; n <= calls; n++ {
				for _, after := range []bool{false, true} {
					e := newEnv(t, b)
					keep := setupFaults(t, e)
					f := &faulty{nth: n, after: after}
					c := faultCollector(e, f)
					if _, err := c.Pass(context.Background()); err == nil && f.fired && !after {
						t.Errorf("call %d: the pass hid an injected failure", n)
					}
					// Later passes (after the take-over time) finish the work.
					for i := 0; i < 2; i++ {
						e.pass(e.collector(3*time.Hour + gc.TakeOverAfter + time.Minute))
					}
					e.pulls("a", "keep", keep)
					if have := stored(t, e.blobs); len(have) != 2 {
						t.Errorf("call %d (after=%v): %d blobs stored, want 2", n, after, len(have))
					}
				}
			}
		})
	}
}

// setupFaults leaves three unreferenced blobs (one orphan) and one image.
func setupFaults(t *testing.T, e *env) registrytest.Image {
	keep := image("keep")
	registrytest.PushImage(t, e.reg, "a", "keep", keep)
	gone := image("gone")
	registrytest.PushImage(t, e.reg, "a", "gone", gone)
	if w := e.do("DELETE", "/v2/a/manifests/"+string(gone.Digest), nil); w.Code != 202 {
		t.Fatalf("delete: %d", w.Code)
	}
	orphan := []byte("orphan")
	if err := e.blobs.BlobPut(context.Background(), digestOf(orphan), int64(len(orphan)), bytes.NewReader(orphan)); err != nil {
		t.Fatal(err)
	}
	return keep
}

func faultCollector(e *env, f *faulty) gc.Collector {
	now := func() time.Time { return time.Now().Add(3 * time.Hour) }
	return gc.Collector{Store: meta.New(faultItems{e.items, f}, meta.WithClock(now)), Blobs: faultDeleter{e.blobs, f}, Grace: time.Hour,
		Orphans: faultLister{e.blobs, f}, OrphanGrace: 2 * time.Hour, Now: now}
}

func countCalls(t *testing.T, e *env, f *faulty) int {
	st := e.pass(faultCollector(e, f))
	if st.Deleted != 2 || st.Orphans != 1 {
		t.Fatalf("clean pass: %+v", st)
	}
	return f.calls
}

var errInjected = fmt.Errorf("injected: %w", storage.ErrUnavailable)

// faulty fails the nth call, before it happens or after (its answer lost).
type faulty struct {
	mu    sync.Mutex
	nth   int
	after bool
	calls int
	fired bool
}

func (f *faulty) call(do func() error) error {
	f.mu.Lock()
	f.calls++
	fire := f.calls == f.nth
	f.fired = f.fired || fire
	f.mu.Unlock()
	if fire && !f.after {
		return errInjected
	}
	err := do()
	if fire && err == nil {
		return fmt.Errorf("answer lost: %w", errInjected)
	}
	return err
}

type faultItems struct {
	storage.Items
	f *faulty
}

func (x faultItems) ItemGet(ctx context.Context, pk, sk string) (it storage.Item, err error) {
	err = x.f.call(func() error { it, err = x.Items.ItemGet(ctx, pk, sk); return err })
	return it, err
}
func (x faultItems) ItemPut(ctx context.Context, it storage.Item, c storage.Cond) error {
	return x.f.call(func() error { return x.Items.ItemPut(ctx, it, c) })
}
func (x faultItems) ItemAdd(ctx context.Context, it storage.Item, d int64, c storage.Cond) (out storage.Item, err error) {
	err = x.f.call(func() error { out, err = x.Items.ItemAdd(ctx, it, d, c); return err })
	return out, err
}
func (x faultItems) ItemDelete(ctx context.Context, pk, sk string, c storage.Cond) error {
	return x.f.call(func() error { return x.Items.ItemDelete(ctx, pk, sk, c) })
}
func (x faultItems) ItemQuery(ctx context.Context, pk, prefix, after string, limit int) (items []storage.Item, more bool, err error) {
	err = x.f.call(func() error { items, more, err = x.Items.ItemQuery(ctx, pk, prefix, after, limit); return err })
	return items, more, err
}
func (x faultItems) Transact(ctx context.Context, ops []storage.Op) error {
	return x.f.call(func() error { return x.Items.Transact(ctx, ops) })
}

type faultDeleter struct {
	inner gc.Deleter
	f     *faulty
}

func (x faultDeleter) BlobDelete(ctx context.Context, d oci.Digest) error {
	return x.f.call(func() error { return x.inner.BlobDelete(ctx, d) })
}

type faultLister struct {
	inner gc.Lister
	f     *faulty
}

func (x faultLister) BlobList(ctx context.Context, after oci.Digest, limit int) (objs []storage.BlobObject, more bool, err error) {
	err = x.f.call(func() error { objs, more, err = x.inner.BlobList(ctx, after, limit); return err })
	return objs, more, err
}
