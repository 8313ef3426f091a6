package osvsync_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/osvsync"
)

// source is a fake OSV export bucket: one body per ecosystem, an ETag per
// version, If-None-Match honoured, x-goog-hash sent, and knobs to break it.
type source struct {
	mu      sync.Mutex
	files   map[string][]byte // by ecosystem name (unescaped path segment)
	version map[string]int
	badMD5  map[string]bool
	short   map[string]bool // announce more bytes than sent
	log     []string        // "GET /Red Hat/all.zip inm=..."
}

func newSource() *source {
	return &source{files: map[string][]byte{}, version: map[string]int{}, badMD5: map[string]bool{}, short: map[string]bool{}}
}

func (s *source) put(eco string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[eco] = b
	s.version[eco]++
}

func (s *source) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.log
	s.log = nil
	return out
}

func (s *source) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.log = append(s.log, fmt.Sprintf("%s %s inm=%s", r.Method, r.URL.Path, r.Header.Get("If-None-Match")))
	eco, ok := cutAll(r.URL.Path)
	body, found := s.files[eco]
	etag := fmt.Sprintf(`"v%d-%x"`, s.version[eco], md5.Sum([]byte(eco)))
	bad, short := s.badMD5[eco], s.short[eco]
	s.mu.Unlock()
	if !ok || !found {
		http.Error(w, "NoSuchKey", http.StatusNotFound)
		return
	}
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	sum := md5.Sum(body)
	if bad {
		sum[0] ^= 0xff
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Last-Modified", "Thu, 03 Dec 2026 10:00:00 GMT")
	w.Header().Set("X-Goog-Hash", "crc32c=AAAAAA==")
	w.Header().Add("X-Goog-Hash", "md5="+base64.StdEncoding.EncodeToString(sum[:]))
	w.Header().Set("Content-Type", "application/zip")
	n := len(body)
	if short {
		n += 100
	}
	w.Header().Set("Content-Length", strconv.Itoa(n))
	_, _ = w.Write(body)
}

// cutAll parses /<Ecosystem>/all.zip (the path arrives unescaped).
func cutAll(p string) (string, bool) {
	if len(p) < len("//all.zip") || p[0] != '/' || p[len(p)-len("/all.zip"):] != "/all.zip" {
		return "", false
	}
	return p[1 : len(p)-len("/all.zip")], true
}

func payload(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

type fixture struct {
	src    *source
	srv    *httptest.Server
	client *s3.Client
	bucket string
}

func setup(t *testing.T) fixture {
	t.Helper()
	src := newSource()
	srv := httptest.NewServer(src)
	t.Cleanup(srv.Close)
	client, _ := testenv.S3(t)
	return fixture{src: src, srv: srv, client: client, bucket: testenv.FreshBucket(t, client)}
}

func (f fixture) syncer(ecos []string, mod func(*osvsync.Config)) *osvsync.Syncer {
	cfg := osvsync.Config{Bucket: f.bucket, BaseURL: f.srv.URL + "/", Ecosystems: ecos, PartSize: 5 << 20}
	if mod != nil {
		mod(&cfg)
	}
	return osvsync.New(f.client, cfg)
}

func (f fixture) stored(t *testing.T, eco string) ([]byte, map[string]string) {
	t.Helper()
	out, err := f.client.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(f.bucket), Key: aws.String("osv/" + eco + "/all.zip")})
	if err != nil {
		t.Fatalf("get %s: %v", eco, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b, out.Metadata
}

func TestSyncStoresAndSkipsUnchanged(t *testing.T) {
	f := setup(t)
	ecos := []string{"Debian", "Red Hat", "crates.io"}
	// Red Hat is larger than one part: a multipart upload of 5 MiB parts
	// (versitygw enforces the 5 MiB minimum of every part but the last).
	sizes := map[string]int{"Debian": 70_000, "Red Hat": 12<<20 + 12345, "crates.io": 1}
	for i, eco := range ecos {
		f.src.put(eco, payload(uint64(i), sizes[eco]))
	}
	s := f.syncer(ecos, nil)

	rep := s.Sync(t.Context())
	if err := rep.Err(); err != nil {
		t.Fatal(err)
	}
	if got := rep.Changed(); !slices.Equal(got, ecos) {
		t.Errorf("changed %v, want %v", got, ecos)
	}
	for i, eco := range ecos {
		b, meta := f.stored(t, eco)
		if !bytes.Equal(b, payload(uint64(i), sizes[eco])) {
			t.Errorf("%s: stored %d bytes differ from the source's %d", eco, len(b), sizes[eco])
		}
		if meta[osvsync.MetaSourceETag] == "" || meta[osvsync.MetaSourceLastModified] == "" || meta[osvsync.MetaSourceURL] == "" {
			t.Errorf("%s metadata %v", eco, meta)
		}
		if rep.Results[i].Bytes != int64(sizes[eco]) {
			t.Errorf("%s: reported %d bytes", eco, rep.Results[i].Bytes)
		}
	}
	reqs := f.src.requests()
	want := []string{"GET /Debian/all.zip inm=", "GET /Red Hat/all.zip inm=", "GET /crates.io/all.zip inm="}
	if !slices.Equal(reqs, want) {
		t.Errorf("first run requests\n %q\nwant\n %q", reqs, want)
	}

	// Nothing changed: three conditional GETs, nothing stored.
	rep = s.Sync(t.Context())
	if err := rep.Err(); err != nil || len(rep.Changed()) != 0 {
		t.Errorf("second run: changed %v, err %v", rep.Changed(), err)
	}
	for _, r := range f.src.requests() {
		if r[len(r)-len("inm="):] == "inm=" {
			t.Errorf("unconditional request on the second run: %s", r)
		}
	}

	// One export changes: only it is fetched and stored again.
	f.src.put("crates.io", []byte("new"))
	rep = s.Sync(t.Context())
	if got := rep.Changed(); rep.Err() != nil || !slices.Equal(got, []string{"crates.io"}) {
		t.Errorf("third run: changed %v, err %v", got, rep.Err())
	}
	if b, _ := f.stored(t, "crates.io"); string(b) != "new" {
		t.Errorf("crates.io now %q", b)
	}
}

// A download that does not match what the source announced, a missing
// ecosystem and an oversize export each fail alone, leave the stored copy
// as it was, and leave no multipart upload behind.
func TestSyncBadDownloadsKeepStoredCopy(t *testing.T) {
	f := setup(t)
	ecos := []string{"Alpine", "Go", "PyPI", "npm"}
	for i, eco := range ecos {
		f.src.put(eco, payload(uint64(i), 6<<20+i))
	}
	s := f.syncer(ecos, nil)
	if err := s.Sync(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	f.src.put("Alpine", payload(100, 7<<20)) // multipart, bad MD5
	f.src.badMD5["Alpine"] = true
	f.src.put("Go", payload(101, 1000)) // single PUT, truncated
	f.src.short["Go"] = true
	f.src.put("npm", payload(102, 11<<20))
	f.src.put("Maven", []byte("not asked for"))

	rep := f.syncer(append(ecos, "Hackage"), func(c *osvsync.Config) { c.MaxBytes = 10 << 20 }).Sync(t.Context())
	errs := map[string]error{}
	for _, r := range rep.Results {
		errs[r.Ecosystem] = r.Err
		if r.Changed {
			t.Errorf("%s changed", r.Ecosystem)
		}
	}
	if errs["Alpine"] == nil || errs["Go"] == nil || errs["npm"] == nil || errs["Hackage"] == nil || errs["PyPI"] != nil {
		t.Errorf("errors %v", errs)
	}
	for i, eco := range ecos {
		if b, _ := f.stored(t, eco); !bytes.Equal(b, payload(uint64(i), 6<<20+i)) {
			t.Errorf("%s: stored copy replaced by a bad download", eco)
		}
	}
	ups, err := testenv.MultipartUploads(t.Context(), f.client, f.bucket)
	if err != nil || len(ups) != 0 {
		t.Errorf("multipart uploads left: %d, %v", len(ups), err)
	}
	if rep.Err() == nil {
		t.Error("report hides the failures")
	}
}

// No new export starts inside the reserve before the deadline.
func TestSyncStopsBeforeDeadline(t *testing.T) {
	f := setup(t)
	f.src.put("Go", []byte("x"))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	rep := f.syncer([]string{"Go", "PyPI"}, func(c *osvsync.Config) { c.Reserve = time.Hour }).Sync(ctx)
	if len(rep.Results) != 0 || !slices.Equal(rep.Skipped, []string{"Go", "PyPI"}) {
		t.Errorf("results %v skipped %v", rep.Results, rep.Skipped)
	}
	if reqs := f.src.requests(); len(reqs) != 0 {
		t.Errorf("requests %v", reqs)
	}
	if errors.Is(rep.Err(), context.DeadlineExceeded) {
		t.Error("skipping is not an error")
	}
}

func TestKey(t *testing.T) {
	if got := osvsync.Key(osvsync.DefaultPrefix, "Rocky Linux"); got != "osv/Rocky Linux/all.zip" {
		t.Error(got)
	}
}
