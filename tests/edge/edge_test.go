// Package edge_test proves the edge upload path end to end with real
// clients against `berth serve --via-lambda --lambda-cold-starts --edge
// --backend aws` on the emulators (harness.Edge): the emulated CloudFront
// distribution runs pkg/edge/cffunc/upload.js, sends upload PUTs straight
// to the S3 server and everything else to the emulated API Gateway and
// Lambda. Every request the registry logs is one Lambda invocation.
//
//	eval "$(bash tests/emulators.sh env)"
//	go test -count=1 ./tests/edge/
package edge_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/berth-registry/berth/tests/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// lambdaMaxBody is the most blob bytes one request through API Gateway and
// Lambda carries (functions/api's BERTH_MAX_BODY_BYTES default; the
// CloudFront Function's LAMBDA_MAX).
const lambdaMaxBody = 4_404_019

// exchange is one request a client sent, as the recording proxy saw it.
type exchange struct {
	Method        string
	Path          string
	ContentLength int64 // -1: not declared
	Chunked       bool  // Transfer-Encoding: chunked
	ContentRange  string
	Status        int
	Body          []byte // the response body of an error (status ≥ 400)
}

func (e exchange) String() string {
	p := e.Path
	if strings.HasPrefix(p, "/_upload/") {
		p = "/_upload/<token>"
	}
	shape := fmt.Sprintf("Content-Length %d", e.ContentLength)
	if e.Chunked {
		shape = "Transfer-Encoding: chunked"
	}
	if e.ContentRange != "" {
		shape += ", Content-Range " + e.ContentRange
	}
	return fmt.Sprintf("%s %s (%s) → %d", e.Method, p, shape, e.Status)
}

// recorder is a reverse proxy in front of the server that records what
// clients really send (method, length, chunked transfer encoding) and what
// they get back, including error bodies the client may not print.
type recorder struct {
	Addr string
	mu   sync.Mutex
	ex   []exchange
}

func record(t *testing.T, s *harness.Server) *recorder {
	t.Helper()
	target, err := url.Parse(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host // Locations stay on the proxy
		},
		ModifyResponse: func(resp *http.Response) error {
			in := resp.Request
			e := exchange{Method: in.Method, Path: in.URL.Path, ContentLength: in.ContentLength,
				Chunked: len(in.TransferEncoding) > 0 && in.TransferEncoding[0] == "chunked",
				ContentRange: in.Header.Get("Content-Range"), Status: resp.StatusCode}
			if resp.StatusCode >= 400 {
				b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
				resp.Body.Close()
				if err != nil {
					return err
				}
				e.Body = b
				resp.Body = io.NopCloser(bytes.NewReader(b))
				resp.ContentLength = int64(len(b))
				resp.Header.Set("Content-Length", fmt.Sprint(len(b)))
			}
			rec.mu.Lock()
			rec.ex = append(rec.ex, e)
			rec.mu.Unlock()
			return nil
		},
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	rec.Addr = strings.TrimPrefix(srv.URL, "http://")
	return rec
}

func (r *recorder) exchanges() []exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]exchange(nil), r.ex...)
}

// ociError is the first error of an OCI error body.
func ociError(b []byte) (code, message string) {
	var e struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if json.Unmarshal(b, &e) != nil || len(e.Errors) == 0 {
		return "", ""
	}
	return e.Errors[0].Code, e.Errors[0].Message
}

func start(t *testing.T) *harness.Server {
	t.Helper()
	if !harness.EmulatorsRunning() {
		t.Fatalf("the edge suite needs the emulators: eval \"$(bash tests/emulators.sh env)\" after tests/emulators.sh start")
	}
	return harness.Start(t, harness.Config{Backend: harness.Edge})
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// blobRoutes are the registry routes a blob upload uses.
func blobRequest(r harness.Request) bool {
	return r.Route == "blob" || r.Route == "upload-start" || r.Route == "upload"
}

// checkEdgePush asserts what the brief requires of a push through the edge:
// no request through Lambda carried a layer's bytes, each layer went to S3
// in one PUT on /_upload/, and the Lambda invocations for the blobs are at
// most two per blob (HEAD and POST; the PUT goes to S3).
func checkEdgePush(t *testing.T, s *harness.Server, mark int, rec *recorder, img harness.Image) {
	t.Helper()
	reqs := s.RequestsSince(mark)
	var blobInvocations int
	for _, r := range reqs {
		if r.BytesIn > lambdaMaxBody || r.BytesIn >= img.Layers[0].Size {
			t.Errorf("%s %s carried %d bytes through Lambda", r.Method, r.Path, r.BytesIn)
		}
		if blobRequest(r) {
			blobInvocations++
		}
		t.Logf("lambda: %s %s (%s) → %d, %d bytes in", r.Method, r.Path, r.Route, r.Status, r.BytesIn)
	}
	blobs := append([]harness.Descriptor{img.Config}, img.Layers...)
	if blobInvocations > 2*len(blobs) {
		t.Errorf("%d Lambda invocations for %d blobs, want ≤ 2 per blob", blobInvocations, len(blobs))
	}
	t.Logf("%d Lambda invocations for %d blobs (%.1f per blob), %d in all", blobInvocations, len(blobs),
		float64(blobInvocations)/float64(len(blobs)), len(reqs))
	for _, l := range img.Layers {
		var put bool
		for _, e := range rec.exchanges() {
			if e.Method == http.MethodPut && strings.HasPrefix(e.Path, "/_upload/") && e.ContentLength == l.Size && e.Status == http.StatusCreated {
				put = true
			}
		}
		if !put {
			t.Errorf("layer %s (%d bytes) was not PUT to /_upload/ and answered 201: %v", l.Digest, l.Size, rec.exchanges())
		}
	}
}

// TestPOSTThenPUTClients: oras and regctl with no configuration push an
// image with a 64 MiB layer through the edge and pull it back identical.
func TestPOSTThenPUTClients(t *testing.T) {
	s := start(t)
	rec := record(t, s)
	l := harness.WriteImage(t, "v1", 64<<20)
	img := l.Images[0]
	layer := img.Layers[0]

	t.Run("oras", func(t *testing.T) {
		c := harness.Client(t, "oras")
		ref := rec.Addr + "/edge/oras:v1"
		mark := s.Mark()
		c.Run("cp", "--to-plain-http", "--from-oci-layout", l.Oras(), ref)
		checkEdgePush(t, s, mark, rec, img)
		out := filepath.Join(t.TempDir(), "back")
		c.Run("cp", "--from-plain-http", ref, "--to-oci-layout", out+":v1")
		if got := mustRead(t, filepath.Join(out, "blobs", "sha256", strings.TrimPrefix(layer.Digest, "sha256:"))); !bytes.Equal(got, l.Blob(t, layer.Digest)) {
			t.Fatalf("pulled layer differs: %d bytes, want %d", len(got), layer.Size)
		}
		if got := mustRead(t, filepath.Join(out, "blobs", "sha256", strings.TrimPrefix(l.Digest(), "sha256:"))); !bytes.Equal(got, l.Blob(t, l.Digest())) {
			t.Fatal("pulled manifest differs")
		}
	})
	t.Run("regctl", func(t *testing.T) {
		c := harness.Client(t, "regctl")
		c.Run("registry", "set", rec.Addr, "--tls", "disabled") // plain HTTP only; no chunk settings
		ref := rec.Addr + "/edge/regctl:v1"
		mark := s.Mark()
		c.Run("image", "copy", l.Regctl(), ref)
		checkEdgePush(t, s, mark, rec, img)
		out := filepath.Join(t.TempDir(), "back")
		c.Run("image", "copy", ref, "ocidir://"+out+":v1")
		if got := mustRead(t, filepath.Join(out, "blobs", "sha256", strings.TrimPrefix(layer.Digest, "sha256:"))); !bytes.Equal(got, l.Blob(t, layer.Digest)) {
			t.Fatalf("pulled layer differs: %d bytes, want %d", len(got), layer.Size)
		}
		if got := strings.TrimSpace(c.Run("image", "digest", ref)); got != l.Digest() {
			t.Fatalf("regctl image digest %s, want %s", got, l.Digest())
		}
	})
}
