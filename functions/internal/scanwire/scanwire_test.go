package scanwire_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"

	"github.com/berth-registry/berth/functions/internal/lambdaenv"
	"github.com/berth-registry/berth/functions/internal/scanwire"
	"github.com/berth-registry/berth/internal/scanfixture"
	"github.com/berth-registry/berth/internal/scanfixture/osvfixture"
	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/awsbackend"
	"github.com/berth-registry/berth/pkg/inventory"
	"github.com/berth-registry/berth/pkg/layerindex"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/registry/registrytest"
	"github.com/berth-registry/berth/pkg/sbom"
	"github.com/berth-registry/berth/pkg/scan"
)

// fixtureIndexer answers for the fixture's layers what the fixture says
// indexing them finds (the indexer itself is pkg/layerindex's, tested
// there): the handler's wiring is what is under test here.
type fixtureIndexer struct {
	layers    map[oci.Digest]scanfixture.Layer
	osRelease map[string]string
	calls     int
}

func (f *fixtureIndexer) Index(_ context.Context, d oci.Descriptor, r io.Reader) (*inventory.Layer, error) {
	f.calls++
	l := &inventory.Layer{Schema: inventory.Schema, Digest: d.Digest, MediaType: d.MediaType, Size: d.Size, Indexer: "fixture/1"}
	fl, ok := f.layers[d.Digest]
	if !ok {
		l.NotLayer = true
		return l, nil
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, err
	}
	l.Packages, l.OSRelease, l.Entries = fl.Packages, f.osRelease, 2
	for _, p := range fl.Packages {
		l.Files = append(l.Files, p.Path)
	}
	return l, nil
}

// env is a scan function over the emulators (DynamoDB Local, versitygw)
// with the alpine fixture pushed and the fixture OSV data synced.
type env struct {
	handler func(context.Context, json.RawMessage) error
	scanner *scan.Scanner
	reg     http.Handler
	bucket  string
	img     *scanfixture.Image
	ix      *fixtureIndexer
	logs    *bytes.Buffer
	calls   *iamCalls
}

func newEnv(t *testing.T) env { return newEnvWith(t, nil) }

// newEnvWith is newEnv with the scanner's indexer (nil: the fixture's).
func newEnvWith(t testing.TB, indexer scan.Indexer) env {
	t.Helper()
	testenv.UseEmulators(t)
	s3c, _ := testenv.S3(t)
	bucket := testenv.FreshBucket(t, s3c)
	table := testenv.FreshTable(t, testenv.DynamoDB(t))
	cfg, err := config.LoadDefaultConfig(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	backend := awsbackend.Settings{Table: table, Bucket: bucket, S3PathStyle: true}

	img, err := scanfixture.Alpine()
	if err != nil {
		t.Fatal(err)
	}
	ix := &fixtureIndexer{layers: map[oci.Digest]scanfixture.Layer{}, osRelease: map[string]string{"ID": "alpine", "VERSION_ID": "3.20.3"}}
	for _, l := range img.Layers {
		ix.layers[l.Descriptor.Digest] = l
	}
	var logs bytes.Buffer
	log := lambdaenv.Logger(&logs, slog.LevelDebug)
	calls := &iamCalls{seen: map[string]bool{}}
	scanCfg := cfg.Copy()
	scanCfg.APIOptions = append(scanCfg.APIOptions, calls.record)
	var use scan.Indexer = ix
	if indexer != nil {
		use = indexer
	}
	sc, err := scanwire.New(t.Context(), scanCfg, scanwire.Settings{Backend: backend, DataDir: t.TempDir()}, use, log)
	if err != nil {
		t.Fatal(err)
	}

	// The api function's side: the image is pushed through a registry on
	// the same table and bucket.
	served := backend
	served.NoRedirect = true // the test reads the report's bytes back
	be, err := awsbackend.Open(t.Context(), cfg, served, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(registry.Config{Open: true}, be.Items, be.Blobs)
	for _, b := range img.Blobs() {
		registrytest.PushBlob(t, reg, "scanfixture/alpine", b)
	}
	registrytest.PutManifest(t, reg, "scanfixture/alpine", "3.20", img.ManifestDescriptor.MediaType, img.Manifest)

	// What the osvsync function would have stored.
	data, err := osvfixture.Host()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := data.WriteZip(dir); err != nil {
		t.Fatal(err)
	}
	for _, eco := range []string{"Alpine", "Debian", "Go", "PyPI"} {
		b, err := os.ReadFile(dir + "/" + eco + "/all.zip")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s3c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("osv/" + eco + "/all.zip"), Body: bytes.NewReader(b)}); err != nil {
			t.Fatal(err)
		}
	}
	return env{handler: scanwire.Handler(sc, bucket, log), scanner: sc, reg: reg, bucket: bucket, img: img, ix: ix, logs: &logs, calls: calls}
}

// The deployed wiring (functions/scan) with the real indexer: the S3
// event indexes the alpine fixture's layer with pkg/layerindex, and the
// push event's report holds exactly the fixture's expected finding.
func TestHandlerRealIndexer(t *testing.T) {
	e := newEnvWith(t, layerindex.New(layerindex.Limits{TempDir: t.TempDir()}))
	layer := e.img.Layers[0].Descriptor
	ev := sample(t, "scan-s3-object-created.json",
		"berth-blobs-123456789012-eu-west-1", e.bucket,
		"44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", layer.Digest.Encoded())
	if err := e.handler(t.Context(), ev); err != nil {
		t.Fatalf("S3 event: %v\n%s", err, e.logs)
	}
	idx, err := e.scanner.LayerIndex(t.Context(), layer.Digest)
	if err != nil || idx.Error != "" || len(idx.Packages) != len(e.img.Layers[0].Packages) {
		t.Fatalf("index %+v, %v", idx, err)
	}
	push := sample(t, "scan-image-push.json", "team/api", "scanfixture/alpine",
		"sha256:8f2b2f6f3a6a4c0f6f5d0b7e6c1e2d9b0a4f3e2d1c0b9a8f7e6d5c4b3a291817", string(e.img.ManifestDescriptor.Digest))
	if err := e.handler(t.Context(), push); err != nil {
		t.Fatalf("push event: %v\n%s", err, e.logs)
	}
	for _, r := range referrers(t, e.reg, "scanfixture/alpine", e.img.ManifestDescriptor.Digest) {
		if r.ArtifactType == sbom.ArtifactTypeReport {
			if got := reportFindings(t, e.reg, "scanfixture/alpine", r.Digest); !slices.Equal(got, []string{"BERTH-TEST-APK-1 libcrypto3"}) {
				t.Errorf("findings %v", got)
			}
			return
		}
	}
	t.Errorf("no report attached\n%s", e.logs)
}

// sample reads events/<name> and applies the replacements.
func sample(t testing.TB, name string, replace ...string) json.RawMessage {
	t.Helper()
	b, err := os.ReadFile("../../../events/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return json.RawMessage(strings.NewReplacer(replace...).Replace(string(b)))
}

// The three events of the scan function, as AWS delivers them (the
// samples under events/ with this test's bucket and digests), against
// the emulators: the S3 notification indexes the layer and stores its
// index, the push event attaches an SBOM and a vulnerability report as
// referrers of the image, the osvsync function's request re-matches.
func TestHandlerEvents(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	layer := e.img.Layers[0].Descriptor

	// 1. S3 ObjectCreated for the layer blob (the sample's first record,
	// retargeted; its second, a malformed key, is logged and dropped).
	ev := sample(t, "scan-s3-object-created.json",
		"berth-blobs-123456789012-eu-west-1", e.bucket,
		"44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", layer.Digest.Encoded())
	if err := e.handler(ctx, ev); err != nil {
		t.Fatalf("S3 event: %v\n%s", err, e.logs)
	}
	idx, err := e.scanner.LayerIndex(ctx, layer.Digest)
	if err != nil {
		t.Fatalf("no layer index stored: %v\n%s", err, e.logs)
	}
	if idx.NotLayer || len(idx.Packages) != 3 || idx.Digest != layer.Digest {
		t.Errorf("stored index %+v", idx)
	}
	if !strings.Contains(e.logs.String(), "scan: not a blob key") {
		t.Errorf("malformed key not reported:\n%s", e.logs)
	}
	// The same event again (S3 delivers at least once): not re-read.
	if err := e.handler(ctx, ev); err != nil || e.ix.calls != 1 {
		t.Errorf("redelivery indexed again: %d calls, %v", e.ix.calls, err)
	}

	// 2. The registry's push event for the manifest.
	push := sample(t, "scan-image-push.json",
		"team/api", "scanfixture/alpine",
		"sha256:8f2b2f6f3a6a4c0f6f5d0b7e6c1e2d9b0a4f3e2d1c0b9a8f7e6d5c4b3a291817", string(e.img.ManifestDescriptor.Digest))
	if err := e.handler(ctx, push); err != nil {
		t.Fatalf("push event: %v\n%s", err, e.logs)
	}
	refs := referrers(t, e.reg, "scanfixture/alpine", e.img.ManifestDescriptor.Digest)
	types := []string{}
	var reportDigest oci.Digest
	for _, r := range refs {
		types = append(types, r.ArtifactType)
		if r.ArtifactType == sbom.ArtifactTypeReport {
			reportDigest = r.Digest
		}
	}
	slices.Sort(types)
	if !slices.Equal(types, []string{sbom.ArtifactTypeSBOM, sbom.ArtifactTypeReport}) {
		t.Fatalf("referrers %v, want an SBOM and a report\n%s", types, e.logs)
	}
	findings := reportFindings(t, e.reg, "scanfixture/alpine", reportDigest)
	if !slices.Equal(findings, []string{"BERTH-TEST-APK-1 libcrypto3"}) {
		t.Errorf("report findings %v", findings)
	}

	// The push events of the scanner's own artifacts ask nothing (the
	// rule leaves them out; the handler would skip them too).
	own := sample(t, "scan-image-push.json", "application/vnd.oci.image.config.v1+json", sbom.ArtifactTypeSBOM)
	before := e.logs.Len()
	if err := e.handler(ctx, own); err != nil || !strings.Contains(e.logs.String()[before:], "nothing to do") {
		t.Errorf("own artifact push: %v\n%s", err, e.logs.String()[before:])
	}

	// 3. The re-match request: the data has not changed since the scan,
	// so the one record is current and nothing is re-attached.
	if err := e.handler(ctx, sample(t, "scan-rematch.json")); err != nil {
		t.Fatalf("rematch: %v\n%s", err, e.logs)
	}
	var line map[string]any
	for l := range strings.Lines(e.logs.String()) {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "scan: rematch" {
			line = m
		}
	}
	if line == nil || line["records"] != 1.0 || line["current"] != 1.0 {
		t.Errorf("rematch log %v", line)
	}
	if got := referrers(t, e.reg, "scanfixture/alpine", e.img.ManifestDescriptor.Digest); len(got) != 2 {
		t.Errorf("%d referrers after the re-match, want 2", len(got))
	}

	// Every AWS call the scanner made is allowed by the scan function's
	// role (infra/berth/scanning.go, template.yaml): the grants are
	// checked against what the code does, not only written down.
	for _, c := range e.calls.list() {
		action, resource, _ := strings.Cut(c, " ")
		if !slices.Contains(scanGrants[resource], action) {
			t.Errorf("the scanner calls %s on %s, which the scan role does not allow", action, resource)
		}
	}
	t.Logf("IAM actions used: %v", e.calls.list())

	// Events of other shapes and sources are dropped, not retried.
	for _, raw := range []string{`{"foo":1}`, `{"detail-type":"Berth Image Action","source":"someone.else","detail":{}}`, `not json`} {
		if err := e.handler(ctx, json.RawMessage(raw)); err != nil {
			t.Errorf("%s: %v", raw, err)
		}
	}
}

// Without OSV data in the bucket a push fails (and Lambda retries it)
// rather than attach a report that calls the image clean.
func TestPushWithoutDataFails(t *testing.T) {
	e := newEnv(t)
	s3c, _ := testenv.S3(t)
	for _, eco := range []string{"Alpine", "Debian", "Go", "PyPI"} {
		if _, err := s3c.DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: aws.String(e.bucket), Key: aws.String("osv/" + eco + "/all.zip")}); err != nil {
			t.Fatal(err)
		}
	}
	push := sample(t, "scan-image-push.json",
		"team/api", "scanfixture/alpine",
		"sha256:8f2b2f6f3a6a4c0f6f5d0b7e6c1e2d9b0a4f3e2d1c0b9a8f7e6d5c4b3a291817", string(e.img.ManifestDescriptor.Digest))
	err := e.handler(t.Context(), push)
	if err == nil || !strings.Contains(err.Error(), "no OSV data") {
		t.Errorf("push without data: %v", err)
	}
	if got := referrers(t, e.reg, "scanfixture/alpine", e.img.ManifestDescriptor.Digest); len(got) != 0 {
		t.Errorf("referrers attached without data: %v", got)
	}
}

func referrers(t testing.TB, h http.Handler, repo string, d oci.Digest) []oci.Descriptor {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/v2/"+repo+"/referrers/"+string(d), nil))
	if w.Code != http.StatusOK {
		t.Fatalf("referrers: %d %s", w.Code, w.Body)
	}
	var idx struct {
		Manifests []oci.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &idx); err != nil {
		t.Fatal(err)
	}
	return idx.Manifests
}

// reportFindings reads the report artifact back: "<id> <package>" each.
func reportFindings(t testing.TB, h http.Handler, repo string, d oci.Digest) []string {
	t.Helper()
	get := func(path string) []byte {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
		}
		return w.Body.Bytes()
	}
	var m struct {
		Layers []oci.Descriptor `json:"layers"`
	}
	if err := json.Unmarshal(get("/v2/"+repo+"/manifests/"+string(d)), &m); err != nil || len(m.Layers) != 1 {
		t.Fatalf("report manifest: %v", err)
	}
	fs, err := sbom.ParseReport(get("/v2/" + repo + "/blobs/" + string(m.Layers[0].Digest)))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%s %s", f.ID, f.Package.Name))
	}
	slices.Sort(out)
	return out
}

// scanGrants is the scan role's policy (infra/berth/scanning.go scanSpec,
// template.yaml ScanFunction), by resource.
var scanGrants = map[string][]string{
	"table": {"dynamodb:BatchGetItem", "dynamodb:ConditionCheckItem", "dynamodb:DeleteItem", "dynamodb:GetItem",
		"dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"},
	"blobs/*":  {"s3:GetObject", "s3:PutObject"},
	"scan/*":   {"s3:DeleteObject", "s3:GetObject", "s3:PutObject"},
	"osv/*":    {"s3:GetObject"},
	"bucket":   {"s3:ListBucket"},
	"eventbus": {"events:PutEvents"},
}

// iamCalls records the IAM action and resource of each AWS call, as
// "<action> <resource>" (resource as in scanGrants).
type iamCalls struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (c *iamCalls) list() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for k := range c.seen {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (c *iamCalls) add(action, resource string) {
	c.mu.Lock()
	c.seen[action+" "+resource] = true
	c.mu.Unlock()
}

// prefix names an object key's grant: "blobs/*" for blobs/sha256/….
func prefix(key *string) string {
	first, _, _ := strings.Cut(aws.ToString(key), "/")
	return first + "/*"
}

func (c *iamCalls) record(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("iamCalls", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
		op := awsmiddleware.GetOperationName(ctx)
		switch p := in.Parameters.(type) {
		case *dynamodb.TransactWriteItemsInput:
			// IAM authorizes each contained item action.
			for _, it := range p.TransactItems {
				switch {
				case it.Put != nil:
					c.add("dynamodb:PutItem", "table")
				case it.Update != nil:
					c.add("dynamodb:UpdateItem", "table")
				case it.Delete != nil:
					c.add("dynamodb:DeleteItem", "table")
				case it.ConditionCheck != nil:
					c.add("dynamodb:ConditionCheckItem", "table")
				}
			}
		case *dynamodb.TransactGetItemsInput:
			c.add("dynamodb:GetItem", "table")
		case *s3.GetObjectInput:
			c.add("s3:GetObject", prefix(p.Key))
		case *s3.HeadObjectInput:
			c.add("s3:GetObject", prefix(p.Key))
		case *s3.PutObjectInput:
			c.add("s3:PutObject", prefix(p.Key))
		case *s3.CreateMultipartUploadInput:
			c.add("s3:PutObject", prefix(p.Key))
		case *s3.UploadPartInput:
			c.add("s3:PutObject", prefix(p.Key))
		case *s3.CompleteMultipartUploadInput:
			c.add("s3:PutObject", prefix(p.Key))
		case *s3.AbortMultipartUploadInput:
			c.add("s3:AbortMultipartUpload", prefix(p.Key))
		case *s3.CopyObjectInput:
			c.add("s3:PutObject", prefix(p.Key))
			_, src, _ := strings.Cut(aws.ToString(p.CopySource), "/")
			c.add("s3:GetObject", prefix(&src))
		case *s3.DeleteObjectInput:
			c.add("s3:DeleteObject", prefix(p.Key))
		case *s3.ListObjectsV2Input:
			c.add("s3:ListBucket", "bucket")
		default:
			svc := strings.ToLower(awsmiddleware.GetServiceID(ctx))
			switch svc {
			case "dynamodb":
				c.add("dynamodb:"+op, "table")
			case "eventbridge":
				c.add("events:"+op, "eventbus")
			default:
				c.add(svc+":"+op, "?")
			}
		}
		return next.HandleInitialize(ctx, in)
	}), middleware.After)
}

// BenchmarkScanLayer200MiB runs the scan function's S3 path (the handler,
// pkg/layerindex reading the blob from versitygw, the index stored) on a
// 200 MiB layer: a dpkg database and Debian's os-release, 400 Python
// distributions, and 190 one-MiB files half random, half text (so gzip
// shrinks it about as much as real layers). It reports MB/s of the blob
// as stored and of the tar, packages/s, and the peak Go heap in use.
func BenchmarkScanLayer200MiB(b *testing.B) {
	e := newEnvWith(b, layerindex.New(layerindex.Limits{TempDir: b.TempDir()}))
	path := filepath.Join(b.TempDir(), "layer.tar.gz")
	tarSize, err := writeBigLayer(path)
	if err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	h := sha256.New()
	blobSize, _ := io.Copy(h, f)
	d := oci.Digest("sha256:" + hex.EncodeToString(h.Sum(nil)))
	_, _ = f.Seek(0, io.SeekStart)
	s3c, _ := testenv.S3(b)
	if _, err := s3c.PutObject(b.Context(), &s3.PutObjectInput{Bucket: aws.String(e.bucket), Key: aws.String("blobs/sha256/" + d.Encoded()), Body: f, ContentLength: aws.Int64(blobSize)}); err != nil {
		b.Fatal(err)
	}
	f.Close()
	ev := sample(b, "scan-s3-object-created.json",
		"berth-blobs-123456789012-eu-west-1", e.bucket,
		"44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", d.Encoded())

	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	runtime.GC()
	var pkgs int
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		if err := e.scanner.DeleteLayerIndex(b.Context(), d); err != nil {
			b.Fatal(err)
		}
		if err := e.handler(b.Context(), ev); err != nil {
			b.Fatal(err)
		}
		idx, err := e.scanner.LayerIndex(b.Context(), d)
		if err != nil || idx.Error != "" {
			b.Fatalf("index: %v %+v", err, idx)
		}
		pkgs = len(idx.Packages)
	}
	per := time.Since(start).Seconds() / float64(b.N)
	close(stop)
	<-done
	b.ReportMetric(float64(blobSize)/1e6/per, "blobMB/s")
	b.ReportMetric(float64(tarSize)/1e6/per, "tarMB/s")
	b.ReportMetric(float64(pkgs)/per, "packages/s")
	b.ReportMetric(float64(peak.Load())/(1<<20), "peakHeapMiB")
	b.ReportMetric(float64(blobSize)/1e6, "blobMB")
	b.ReportMetric(float64(pkgs), "packages")
}

// writeBigLayer writes the benchmark layer (gzip, default level) to path
// and returns the tar's size.
func writeBigLayer(path string) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	cw := &countWriter{w: zw}
	tw := tar.NewWriter(cw)
	add := func(name string, body []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg, ModTime: time.Unix(1700000000, 0)}); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	status, err := os.ReadFile(scanfixture.HostDpkgStatus)
	if err != nil {
		return 0, err
	}
	if err := add("etc/os-release", []byte("ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n")); err != nil {
		return 0, err
	}
	if err := add("var/lib/dpkg/status", status); err != nil {
		return 0, err
	}
	for i := range 400 {
		name := fmt.Sprintf("pkg%03d", i)
		if err := add(fmt.Sprintf("usr/lib/python3.11/site-packages/%s-1.%d.0.dist-info/METADATA", name, i), scanfixture.PythonMetadata(name, fmt.Sprintf("1.%d.0", i), "bench")); err != nil {
			return 0, err
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog 0123456789\n"), 1<<19/55+1)[:1<<19]
	buf := make([]byte, 1<<20)
	for i := range 190 {
		for j := 0; j < 1<<19; j += 8 {
			v := rng.Uint64()
			for k := range 8 {
				buf[j+k] = byte(v >> (8 * k))
			}
		}
		copy(buf[1<<19:], text)
		if err := add(fmt.Sprintf("opt/app/data/%03d.bin", i), buf); err != nil {
			return 0, err
		}
	}
	if err := tw.Close(); err != nil {
		return 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	return cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
