package scan_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/scanfixture"
	"github.com/berth-registry/berth/internal/scanfixture/osvfixture"
	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/driver/dynamo"
	"github.com/berth-registry/berth/pkg/driver/s3blob"
	"github.com/berth-registry/berth/pkg/events"
	"github.com/berth-registry/berth/pkg/inventory"
	"github.com/berth-registry/berth/pkg/layerindex"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/registry/registrytest"
	"github.com/berth-registry/berth/pkg/sbom"
	"github.com/berth-registry/berth/pkg/scan"
	"github.com/berth-registry/berth/pkg/storage"
	"github.com/berth-registry/berth/pkg/vulndb"
)

// backend is one pair of drivers under test.
type backend struct {
	name string
	open func(t *testing.T) (storage.Items, storage.Blobs)
}

func backends() []backend {
	return []backend{{
		name: "embedded",
		open: func(t *testing.T) (storage.Items, storage.Blobs) {
			e := testenv.NewEmbedded(t)
			return e.Items, e.Blobs
		},
	}, {
		name: "aws",
		open: func(t *testing.T) (storage.Items, storage.Blobs) {
			ddb := testenv.DynamoDB(t)
			s3c, presign := testenv.S3(t)
			return dynamo.New(ddb, testenv.FreshTable(t, ddb)), s3blob.New(s3c, presign, testenv.FreshBucket(t, s3c))
		},
	}}
}

// forEachBackend runs fn on every backend, in parallel.
func forEachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			fn(t, b)
		})
	}
}

// fixtures builds the four fixture images once per test binary.
var fixtures = sync.OnceValues(func() ([]*scanfixture.Image, error) {
	dir, err := os.MkdirTemp("", "scanfixture-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	return scanfixture.All(context.Background(), dir)
})

func fixture(t *testing.T, name string) *scanfixture.Image {
	t.Helper()
	imgs, err := fixtures()
	if err != nil {
		t.Fatalf("fixtures: %v", err)
	}
	for _, img := range imgs {
		if img.Name == name {
			return img
		}
	}
	t.Fatalf("no fixture %q", name)
	return nil
}

// recorder keeps every event.
type recorder struct {
	mu  sync.Mutex
	evs []events.Event
}

func (r *recorder) Emit(_ context.Context, ev events.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
}

// scans returns the "Berth Image Scan" events.
func (r *recorder) scans() []events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []events.Event
	for _, ev := range r.evs {
		if ev.DetailType == events.DetailImageScan {
			out = append(out, ev)
		}
	}
	return out
}

// countingIndexer counts the layers it reads.
type countingIndexer struct {
	inner scan.Indexer
	mu    sync.Mutex
	reads map[oci.Digest]int
	gate  chan struct{} // when set, every Index waits for it to close
}

func (c *countingIndexer) Index(ctx context.Context, d oci.Descriptor, r io.Reader) (*inventory.Layer, error) {
	c.mu.Lock()
	c.reads[d.Digest]++
	gate := c.gate
	c.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return c.inner.Index(ctx, d, r)
}

func (c *countingIndexer) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.reads {
		n += v
	}
	return n
}

// data is vulnerability data the test swaps.
type data struct {
	mu sync.Mutex
	db *vulndb.DB
}

func (d *data) set(t *testing.T, fsys fs.FS) {
	t.Helper()
	db, err := vulndb.Open(fsys)
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	d.db = db
	d.mu.Unlock()
}

func (d *data) matcher(context.Context) (scan.Matcher, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.db == nil {
		return nil, errors.New("no data")
	}
	return d.db, nil
}

type env struct {
	t       *testing.T
	items   storage.Items
	blobs   storage.Blobs
	reg     *registry.Registry
	sc      *scan.Scanner
	events  *recorder
	metrics *counters
	indexer *countingIndexer
	data    *data
	// sink receives the registry's events besides the recorder (a Pool).
	sink atomic.Pointer[events.Emitter]
}

// tick is a clock that moves one second per reading, so every artifact
// has its own creation time.
func tick() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Second)
		return t
	}
}

func newEnv(t *testing.T, b backend) *env {
	items, blobs := b.open(t)
	e := &env{t: t, items: items, blobs: blobs, events: &recorder{}, metrics: &counters{n: map[string]float64{}}, data: &data{},
		indexer: &countingIndexer{inner: layerindex.New(layerindex.Limits{}), reads: map[oci.Digest]int{}}}
	e.data.set(t, osvData(t, nil))
	fan := emitFunc(func(ctx context.Context, ev events.Event) {
		e.events.Emit(ctx, ev)
		if s := e.sink.Load(); s != nil {
			(*s).Emit(ctx, ev)
		}
	})
	e.reg = registry.New(registry.Config{Events: fan}, items, blobs)
	e.sc = scan.New(scan.Config{
		Blobs: blobs, Items: items, Indexer: e.indexer, Data: e.data.matcher,
		Registry: e.reg, Events: e.events, Metrics: e.metrics, Now: tick(),
	})
	return e
}

// counters records what the scanner counts (its metrics.Recorder).
type counters struct {
	mu sync.Mutex
	n  map[string]float64
}

func (c *counters) Add(name string, v float64) { c.mu.Lock(); c.n[name] += v; c.mu.Unlock() }

func (c *counters) get() map[string]float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

type emitFunc func(context.Context, events.Event)

func (f emitFunc) Emit(ctx context.Context, ev events.Event) { f(ctx, ev) }

// push pushes a fixture image to repo:tag.
func (e *env) push(repo, tag string, img *scanfixture.Image) oci.Descriptor {
	e.t.Helper()
	for _, b := range img.Blobs() {
		registrytest.PushBlob(e.t, e.reg, repo, b)
	}
	return registrytest.PutManifest(e.t, e.reg, repo, tag, oci.MediaTypeImageManifest, img.Manifest)
}

func (e *env) get(path string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	e.reg.ServeHTTP(w, req)
	return w
}

// referrers lists subject's referrers of artifactType through the
// referrers API.
func (e *env) referrers(repo string, subject oci.Digest, artifactType string) []oci.Descriptor {
	e.t.Helper()
	w := e.get("/v2/"+repo+"/referrers/"+string(subject)+"?artifactType="+url.QueryEscape(artifactType), nil)
	if w.Code != http.StatusOK {
		e.t.Fatalf("referrers of %s: %d %s", subject, w.Code, w.Body)
	}
	var idx oci.Index
	if err := json.Unmarshal(w.Body.Bytes(), &idx); err != nil {
		e.t.Fatal(err)
	}
	return idx.Manifests
}

// artifact returns the one referrer of artifactType of subject, its
// manifest and the bytes of its one layer.
func (e *env) artifact(repo string, subject oci.Digest, artifactType string) (oci.Descriptor, *oci.Manifest, []byte) {
	e.t.Helper()
	refs := e.referrers(repo, subject, artifactType)
	if len(refs) != 1 {
		e.t.Fatalf("%d referrers of type %s of %s, want 1: %+v", len(refs), artifactType, subject, refs)
	}
	w := e.get("/v2/"+repo+"/manifests/"+string(refs[0].Digest), map[string]string{"Accept": oci.MediaTypeImageManifest})
	if w.Code != http.StatusOK {
		e.t.Fatalf("artifact manifest: %d %s", w.Code, w.Body)
	}
	m, err := oci.ParseManifest(w.Header().Get("Content-Type"), w.Body.Bytes())
	if err != nil {
		e.t.Fatal(err)
	}
	if m.Subject == nil || m.Subject.Digest != subject || m.ArtifactType != artifactType || len(m.Layers) != 1 {
		e.t.Fatalf("artifact manifest: %s", w.Body)
	}
	// Read through storage: the AWS driver answers blob GETs with a
	// redirect.
	f, err := e.blobs.BlobOpen(context.Background(), m.Layers[0].Digest)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		e.t.Fatal(err)
	}
	return refs[0], m, b
}

// findings reads the report attached to subject.
func (e *env) findings(repo string, subject oci.Descriptor) (oci.Descriptor, []inventory.Finding) {
	e.t.Helper()
	d, _, raw := e.artifact(repo, subject.Digest, sbom.ArtifactTypeReport)
	fs, err := sbom.ParseReport(raw)
	if err != nil {
		e.t.Fatalf("report: %v", err)
	}
	return d, fs
}

// checkFindings requires exactly img's expected findings, each in the
// layer that holds its package.
func checkFindings(t *testing.T, img *scanfixture.Image, got []inventory.Finding) {
	t.Helper()
	want := hostData(t).Expected[img.Name]
	if p := osvfixture.Project(got); !reflect.DeepEqual(p, want) {
		t.Fatalf("findings of %s:\n got %+v\nwant %+v", img.Name, p, want)
	}
	for _, f := range got {
		found := false
		for _, p := range img.Expected {
			found = found || p.Name == f.Package.Name && p.Version == f.Package.Version && p.Layer == f.Package.Layer
		}
		if !found {
			t.Errorf("finding %s: package %s %s in layer %s is none of the image's", f.ID, f.Package.Name, f.Package.Version, f.Package.Layer)
		}
	}
}

// hostData is the OSV fixture records for this machine's dpkg database.
var hostData = func() func(t *testing.T) *osvfixture.Data {
	once := sync.OnceValues(osvfixture.Host)
	return func(t *testing.T) *osvfixture.Data {
		t.Helper()
		d, err := once()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
}()

// osvData writes the fixture records as OSV exports (all.zip), minus the
// records named in without, plus an unrelated record per name in plus.
func osvData(t *testing.T, without []string, plus ...string) fs.FS {
	t.Helper()
	src := hostData(t)
	d := &osvfixture.Data{Records: map[string][]osvfixture.Record{}}
	for eco, recs := range src.Records {
		for _, r := range recs {
			if !slices.Contains(without, r.ID) {
				d.Records[eco] = append(d.Records[eco], r)
			}
		}
	}
	for _, id := range plus {
		b, _ := json.Marshal(map[string]any{
			"schema_version": "1.6.0", "id": id, "modified": "2026-12-02T00:00:00Z", "summary": "matches nothing here",
			"affected": []any{map[string]any{
				"package": map[string]any{"ecosystem": "PyPI", "name": "berth-no-such-package"},
				"ranges":  []any{map[string]any{"type": "ECOSYSTEM", "events": []any{map[string]any{"introduced": "0"}, map[string]any{"fixed": "1.0"}}}},
			}},
		})
		d.Records["PyPI"] = append(d.Records["PyPI"], osvfixture.Record{ID: id, JSON: b})
	}
	dir := t.TempDir()
	if err := d.WriteZip(dir); err != nil {
		t.Fatal(err)
	}
	return os.DirFS(dir)
}

func (e *env) scanManifest(repo string, d oci.Digest) {
	e.t.Helper()
	if err := e.sc.ScanManifest(context.Background(), repo, d); err != nil {
		e.t.Fatalf("ScanManifest %s@%s: %v", repo, d, err)
	}
}

// TestFixtures: each fixture image, pushed and scanned, gets exactly its
// expected findings in a report and an SBOM listing its packages, both
// visible through the referrers API with the image as subject; the scan is
// recorded and announced.
func TestFixtures(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		for _, name := range []string{"debian", "alpine", "gobinary", "whiteout"} {
			t.Run(name, func(t *testing.T) {
				img := fixture(t, name)
				repo := "fixtures/" + name
				desc := e.push(repo, "v1", img)
				e.scanManifest(repo, desc.Digest)

				_, got := e.findings(repo, desc)
				checkFindings(t, img, got)
				_, m, raw := e.artifact(repo, desc.Digest, sbom.ArtifactTypeSBOM)
				if m.Annotations[scan.AnnotationDataVersion] == "" || m.Annotations[scan.AnnotationCreated] == "" {
					t.Fatalf("SBOM annotations: %v", m.Annotations)
				}
				for _, p := range img.Expected {
					if !bytes.Contains(raw, []byte(`"`+p.Name+`"`)) {
						t.Errorf("SBOM does not name package %s", p.Name)
					}
				}

				rec, err := e.sc.Record(context.Background(), repo, desc.Digest)
				if err != nil || rec.Status != scan.StatusComplete || rec.Report == "" || rec.SBOM == "" {
					t.Fatalf("record: %+v, %v", rec, err)
				}
				var ev *events.Event
				for _, x := range e.events.scans() {
					if x.Detail.ImageDigest == string(desc.Digest) {
						ev = &x
					}
				}
				if ev == nil {
					t.Fatal("no scan event")
				}
				total := 0
				for _, n := range *ev.Detail.FindingSeverityCounts {
					total += n
				}
				if ev.Detail.ScanStatus != events.ScanComplete || ev.Detail.RepositoryName != repo ||
					!slices.Equal(ev.Detail.ImageTags, []string{"v1"}) || total != len(got) {
					t.Fatalf("scan event: %+v", ev.Detail)
				}
			})
		}
		// One layer each but whiteout's two, every one indexed once and
		// clean; four reports, no failure.
		want := map[string]float64{"ScanLayersIndexed": 5, "ScanImagesReported": 4}
		if got := e.metrics.get(); !maps.Equal(got, want) {
			t.Fatalf("metrics %v, want %v", got, want)
		}
	})
}

// TestRematch: new data re-matches recorded images from their stored
// layer indexes, without reading a layer; a report is replaced only when
// the findings changed, and the old one is deleted; the SBOM stays.
func TestRematch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		ctx := context.Background()
		img := fixture(t, "alpine")
		const repo = "rematch/alpine"
		missing := []string{hostData(t).Expected["alpine"][0].ID}
		e.data.set(t, osvData(t, missing))
		desc := e.push(repo, "v1", img)
		e.scanManifest(repo, desc.Digest)
		oldReport, got := e.findings(repo, desc)
		if len(got) != 0 {
			t.Fatalf("findings without %s's record: %+v", missing, got)
		}
		sbomBefore := e.referrers(repo, desc.Digest, sbom.ArtifactTypeSBOM)
		reads := e.indexer.total()

		// The same data: nothing to do.
		st, err := e.sc.RematchStats(ctx)
		if err != nil || st.Current != 1 || st.Replaced+st.Unchanged+st.Rescanned != 0 {
			t.Fatalf("rematch with the same data: %+v, %v", st, err)
		}

		// Data with the record: the report is replaced.
		e.data.set(t, osvData(t, nil))
		st, err = e.sc.RematchStats(ctx)
		if err != nil || st.Replaced != 1 {
			t.Fatalf("rematch with new data: %+v, %v", st, err)
		}
		newReport, got := e.findings(repo, desc) // exactly one report
		checkFindings(t, img, got)
		if newReport.Digest == oldReport.Digest {
			t.Fatal("report not replaced")
		}
		if w := e.get("/v2/"+repo+"/manifests/"+string(oldReport.Digest), nil); w.Code != http.StatusNotFound {
			t.Fatalf("old report still there: %d", w.Code)
		}
		if after := e.referrers(repo, desc.Digest, sbom.ArtifactTypeSBOM); len(after) != 1 || after[0].Digest != sbomBefore[0].Digest {
			t.Fatalf("SBOM changed by a rematch: %v → %v", sbomBefore, after)
		}
		if n := e.indexer.total(); n != reads {
			t.Fatalf("rematch read %d layers", n-reads)
		}

		// Data that changes nothing for this image: the record moves on,
		// the report stays.
		e.data.set(t, osvData(t, nil, "BERTH-TEST-UNRELATED"))
		st, err = e.sc.RematchStats(ctx)
		if err != nil || st.Unchanged != 1 || st.Replaced != 0 {
			t.Fatalf("rematch with unrelated new data: %+v, %v", st, err)
		}
		if again, _ := e.findings(repo, desc); again.Digest != newReport.Digest {
			t.Fatal("report replaced though the findings did not change")
		}
		m, _ := e.data.matcher(ctx)
		if rec, err := e.sc.Record(ctx, repo, desc.Digest); err != nil || rec.DataVersion != m.Version() {
			t.Fatalf("record after rematch: %+v, %v", rec, err)
		}

		// A deleted image's record goes.
		if w := send(e.reg, http.MethodDelete, "/v2/"+repo+"/manifests/"+string(desc.Digest)); w.Code != http.StatusAccepted {
			t.Fatalf("delete: %d", w.Code)
		}
		e.data.set(t, osvData(t, missing))
		if st, err = e.sc.RematchStats(ctx); err != nil || st.Gone != 1 {
			t.Fatalf("rematch after delete: %+v, %v", st, err)
		}
		if _, err := e.sc.Record(ctx, repo, desc.Digest); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("record of a deleted image: %v", err)
		}
	})
}

func send(h http.Handler, method, path string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w
}

// TestSkipsOwnArtifacts: the scanner's own artifacts (and any manifest
// with a subject) are neither scanned nor read: no index, no record, no
// event, no referrer of a referrer; their push events ask for no job. An
// image scanned with the current data is not scanned again.
func TestSkipsOwnArtifacts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		ctx := context.Background()
		const repo = "own/whiteout"
		desc := e.push(repo, "v1", fixture(t, "whiteout"))
		e.scanManifest(repo, desc.Digest)
		reads, scans := e.indexer.total(), len(e.events.scans())

		for _, at := range []string{sbom.ArtifactTypeSBOM, sbom.ArtifactTypeReport} {
			art, _, _ := e.artifact(repo, desc.Digest, at)
			e.scanManifest(repo, art.Digest)
			if refs := e.referrers(repo, art.Digest, sbom.ArtifactTypeReport); len(refs) != 0 {
				t.Fatalf("the %s artifact was scanned: %v", at, refs)
			}
			if _, err := e.sc.Record(ctx, repo, art.Digest); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("record of the %s artifact: %v", at, err)
			}
		}
		// Their push events ask nothing of the scanner.
		e.events.mu.Lock()
		for _, ev := range e.events.evs {
			if ev.DetailType != events.DetailImageAction || ev.Detail.ActionType != events.ActionPush {
				continue
			}
			j, ok := scan.JobOf(ev.DetailType, ev.Detail)
			isOwn := ev.Detail.ArtifactMediaType == sbom.ArtifactTypeSBOM || ev.Detail.ArtifactMediaType == sbom.ArtifactTypeReport
			if isOwn == ok || ok && (j.Kind != scan.JobScan || j.Digest != desc.Digest) {
				t.Errorf("JobOf(%s push of %s) = %+v, %v", ev.Detail.ArtifactMediaType, ev.Detail.ImageDigest, j, ok)
			}
		}
		e.events.mu.Unlock()

		// Scanned already with this data: nothing happens.
		e.scanManifest(repo, desc.Digest)
		if e.indexer.total() != reads || len(e.events.scans()) != scans {
			t.Fatalf("rescans: %d layer reads, %d scan events; want %d, %d", e.indexer.total(), len(e.events.scans()), reads, scans)
		}
		if n := len(e.referrers(repo, desc.Digest, sbom.ArtifactTypeReport)); n != 1 {
			t.Fatalf("%d reports", n)
		}
	})
}

// TestIndexLayerConcurrent: concurrent IndexLayer calls of one digest
// read the layer once and store one index; later calls read nothing.
func TestIndexLayerConcurrent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		ctx := context.Background()
		img := fixture(t, "debian")
		const repo = "concurrent/debian"
		e.push(repo, "", img)
		layer := img.Layers[0].Descriptor.Digest

		gate := make(chan struct{})
		e.indexer.mu.Lock()
		e.indexer.gate = gate
		e.indexer.mu.Unlock()
		const callers = 8
		errs := make(chan error, callers)
		for range callers {
			go func() { errs <- e.sc.IndexLayer(ctx, layer) }()
		}
		// Every caller is either in the indexer or waiting on the one that
		// is; let the read finish only once one caller is in.
		for e.indexer.total() == 0 {
			time.Sleep(time.Millisecond)
		}
		close(gate)
		for range callers {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if err := e.sc.IndexLayer(ctx, layer); err != nil {
			t.Fatal(err)
		}
		if n := e.indexer.total(); n != 1 {
			t.Fatalf("layer read %d times, want 1", n)
		}
		l, err := e.sc.LayerIndex(ctx, layer)
		if err != nil || l.Digest != layer || l.Schema != inventory.Schema || len(l.Packages) != len(img.Layers[0].Packages) {
			t.Fatalf("stored index: %+v, %v", l, err)
		}
		// The config blob is no layer: recorded as such, the indexer never
		// asked.
		cfg := img.ConfigDescriptor.Digest
		if err := e.sc.IndexLayer(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		if l, err := e.sc.LayerIndex(ctx, cfg); err != nil || !l.NotLayer {
			t.Fatalf("index of the config: %+v, %v", l, err)
		}
		if n := e.indexer.total(); n != 1 {
			t.Fatalf("indexer asked about the config")
		}
		// Garbage collection deleting the blob drops the index.
		j, ok := scan.JobOf(events.DetailBlobAction, events.BlobDeletion(time.Now(), string(layer), 1).Detail)
		if !ok || j.Kind != scan.JobDropIndex {
			t.Fatalf("JobOf(blob deletion) = %+v, %v", j, ok)
		}
		if err := e.sc.Do(ctx, j); err != nil {
			t.Fatal(err)
		}
		if _, err := e.sc.LayerIndex(ctx, layer); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("index after the blob's deletion: %v", err)
		}
	})
}

// TestPool: with the pool as an event sink, a push is scanned in the
// background, once, and the scanner's own pushes start nothing more.
func TestPool(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		ctx, cancel := context.WithCancel(context.Background())
		pool := scan.NewPool(e.sc, 2)
		var sink events.Emitter = pool
		e.sink.Store(&sink)
		done := make(chan struct{})
		go func() { defer close(done); pool.Run(ctx) }()
		defer func() { cancel(); <-done }()

		const repo = "pool/gobinary"
		img := fixture(t, "gobinary")
		desc := e.push(repo, "v1", img)
		if err := pool.Idle(ctx); err != nil {
			t.Fatal(err)
		}
		_, got := e.findings(repo, desc)
		checkFindings(t, img, got)
		if n := len(e.events.scans()); n != 1 {
			t.Fatalf("%d scan events, want 1", n)
		}
		if n := len(e.referrers(repo, desc.Digest, sbom.ArtifactTypeSBOM)); n != 1 {
			t.Fatalf("%d SBOMs", n)
		}
		// Deleting the image forgets its scan.
		if w := send(e.reg, http.MethodDelete, "/v2/"+repo+"/manifests/"+string(desc.Digest)); w.Code != http.StatusAccepted {
			t.Fatalf("delete: %d", w.Code)
		}
		if err := pool.Idle(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := e.sc.Record(context.Background(), repo, desc.Digest); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("record of a deleted image: %v", err)
		}
	})
}

// TestIndex: an index gets a report per platform image; its attestation
// manifest is no image.
func TestIndex(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		const repo = "index/multi"
		deb, alp := fixture(t, "debian"), fixture(t, "alpine")
		dd, ad := e.push(repo, "", deb), e.push(repo, "", alp)
		// An attestation manifest as BuildKit writes one.
		att := registrytest.NewImage([]byte(`{"architecture":"unknown","os":"unknown"}`), []byte("in-toto"))
		registrytest.PushImage(t, e.reg, repo, "", att)
		idx, _ := json.Marshal(oci.Index{SchemaVersion: 2, MediaType: oci.MediaTypeImageIndex, Manifests: []oci.Descriptor{
			{MediaType: dd.MediaType, Digest: dd.Digest, Size: dd.Size, Platform: &oci.Platform{OS: "linux", Architecture: "amd64"}},
			{MediaType: ad.MediaType, Digest: ad.Digest, Size: ad.Size, Platform: &oci.Platform{OS: "linux", Architecture: "arm64"}},
			{MediaType: oci.MediaTypeImageManifest, Digest: att.Digest, Size: int64(len(att.Manifest)), Platform: &oci.Platform{OS: "unknown", Architecture: "unknown"},
				Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": string(dd.Digest)}},
		}})
		id := registrytest.PutManifest(t, e.reg, repo, "v1", oci.MediaTypeImageIndex, idx)
		e.scanManifest(repo, id.Digest)
		for _, c := range []struct {
			d   oci.Descriptor
			img *scanfixture.Image
		}{{dd, deb}, {ad, alp}} {
			_, got := e.findings(repo, c.d)
			checkFindings(t, c.img, got)
		}
		for _, d := range []oci.Digest{id.Digest, att.Digest} {
			if refs := e.referrers(repo, d, sbom.ArtifactTypeReport); len(refs) != 0 {
				t.Fatalf("report attached to %s", d)
			}
		}
	})
}

// TestRacingScanners: two scanners (two processes, two Lambda
// invocations) scanning one image at once leave one SBOM and one report,
// the latest, never none.
func TestRacingScanners(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		const repo = "race/whiteout"
		img := fixture(t, "whiteout")
		desc := e.push(repo, "v1", img)
		clock := tick()
		var scanners []*scan.Scanner
		for range 3 {
			scanners = append(scanners, scan.New(scan.Config{
				Blobs: e.blobs, Items: e.items, Indexer: e.indexer, Data: e.data.matcher, Registry: e.reg, Now: clock,
			}))
		}
		var wg sync.WaitGroup
		for _, s := range scanners {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.ScanManifest(context.Background(), repo, desc.Digest); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		_, got := e.findings(repo, desc) // exactly one
		checkFindings(t, img, got)
		sb, _, _ := e.artifact(repo, desc.Digest, sbom.ArtifactTypeSBOM)
		rep, _, _ := e.artifact(repo, desc.Digest, sbom.ArtifactTypeReport)
		rec, err := e.sc.Record(context.Background(), repo, desc.Digest)
		if err != nil || rec.Report != rep.Digest || rec.SBOM != sb.Digest {
			t.Fatalf("record %+v names other artifacts than the ones kept (%s, %s): %v", rec, sb.Digest, rep.Digest, err)
		}
	})
}

// TestFailedScan: a scan that cannot finish (no vulnerability data) is
// recorded FAILED and announced, and the next scan with data completes.
func TestFailedScan(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		e := newEnv(t, b)
		ctx := context.Background()
		const repo = "failed/gobinary"
		img := fixture(t, "gobinary")
		desc := e.push(repo, "v1", img)
		good := e.data.db
		e.data.mu.Lock()
		e.data.db = nil
		e.data.mu.Unlock()
		if err := e.sc.ScanManifest(ctx, repo, desc.Digest); err == nil {
			t.Fatal("scan without data succeeded")
		}
		if got := e.metrics.get(); got["ScanFailures"] != 1 || got["ScanImagesReported"] != 0 {
			t.Fatalf("metrics after a failed scan: %v", got)
		}
		rec, err := e.sc.Record(ctx, repo, desc.Digest)
		if err != nil || rec.Status != scan.StatusFailed || rec.Error == "" {
			t.Fatalf("record: %+v, %v", rec, err)
		}
		evs := e.events.scans()
		if len(evs) != 1 || evs[0].Detail.ScanStatus != events.ScanFailed || evs[0].Detail.FindingSeverityCounts != nil || evs[0].Detail.ScanError == "" {
			t.Fatalf("events: %+v", evs)
		}
		if refs := e.referrers(repo, desc.Digest, sbom.ArtifactTypeReport); len(refs) != 0 {
			t.Fatalf("a failed scan attached %v", refs)
		}
		// Rematch retries failed scans.
		e.data.mu.Lock()
		e.data.db = good
		e.data.mu.Unlock()
		st, err := e.sc.RematchStats(ctx)
		if err != nil || st.Rescanned != 1 {
			t.Fatalf("rematch: %+v, %v", st, err)
		}
		_, got := e.findings(repo, desc)
		checkFindings(t, img, got)
		if rec, _ := e.sc.Record(ctx, repo, desc.Digest); rec.Status != scan.StatusComplete {
			t.Fatalf("record after rematch: %+v", rec)
		}
	})
}
