// Package lambda_test runs the registry through the emulated API Gateway →
// Lambda path (pkg/apigw) with the limits AWS enforces: the conformance
// suite, the documented 413s, chunked pushes, the largest manifest, and the
// real functions/* bootstraps (coldstart_test.go).
package lambda_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/apigwemu"
	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/apigw"
	"github.com/berth-registry/berth/pkg/driver/fsblob"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/registry/registrytest"
)

// maxBodyBytes is BERTH_MAX_BODY_BYTES's default.
const maxBodyBytes = apigw.MaxBodyBytes

// apiRoutes are the routes template.yaml gives ApiFunction.
var apiRoutes = []string{"ANY /v2/{proxy+}", "ANY /v2"}

// newRegistry is the registry as functions/api configures it, over the
// embedded drivers. Blob GETs redirect to a plain file server standing in
// for S3 presigned URLs, as in AWS: no blob bytes go back through Lambda.
func newRegistry(t *testing.T, dir string) (*registry.Registry, func()) {
	t.Helper()
	e := testenv.OpenEmbedded(t, dir)
	store := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc, err := e.Blobs.BlobOpen(r.Context(), oci.Digest(strings.TrimPrefix(r.URL.Path, "/blobs/")))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer rc.Close()
		http.ServeContent(w, r, "", time.Time{}, rc)
	}))
	blobs := redirecting{Store: e.Blobs, base: store.URL}
	reg := registry.New(registry.Config{MaxBodyBytes: maxBodyBytes, Logger: testLogger(t)}, e.Items, blobs)
	return reg, func() { store.Close(); _ = e.Items.Close() }
}

// redirecting adds the S3 driver's BlobRedirector capability to fsblob.
type redirecting struct {
	*fsblob.Store
	base string
}

func (r redirecting) BlobURL(_ context.Context, d oci.Digest) (string, error) {
	return r.base + "/blobs/" + string(d), nil
}

// TestConformanceThroughLambda runs the HTTP conformance suite with every
// request and response going through the API Gateway emulation.
func TestConformanceThroughLambda(t *testing.T) {
	registrytest.Run(t, func(t *testing.T) registrytest.Env {
		dir := t.TempDir()
		reg, closeReg := newRegistry(t, dir)
		t.Cleanup(func() { closeReg() })
		return registrytest.Env{
			Handler:      apigwemu.Emulate(reg, apigwemu.WithRoutes(apiRoutes...)),
			MaxBodyBytes: maxBodyBytes,
			Restart: func(t *testing.T) http.Handler {
				closeReg()
				reg, closeReg = newRegistry(t, dir)
				return apigwemu.Emulate(reg, apigwemu.WithRoutes(apiRoutes...))
			},
		}
	})
}

type client struct {
	t     *testing.T
	srv   *httptest.Server
	calls atomic.Int64
	last  atomic.Pointer[apigwemu.Invocation]
}

func newClient(t *testing.T) *client {
	t.Helper()
	reg, closeReg := newRegistry(t, t.TempDir())
	c := &client{t: t}
	em := apigwemu.Emulate(reg, apigwemu.WithRoutes(apiRoutes...), apigwemu.WithObserver(func(inv apigwemu.Invocation) {
		c.calls.Add(1)
		c.last.Store(&inv)
	}))
	c.srv = httptest.NewServer(em)
	t.Cleanup(func() { c.srv.Close(); closeReg() })
	return c
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (c *client) do(method, path string, body []byte, hdr ...string) reply {
	c.t.Helper()
	req, err := http.NewRequest(method, c.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.srv.Client().Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}
}

// testLogger sends the registry's warnings and errors to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) { w.t.Log(strings.TrimSpace(string(p))); return len(p), nil }

func random(n int) []byte { b := make([]byte, n); _, _ = rand.Read(b); return b }

func digest(b []byte) string { s := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(s[:]) }

func ociCode(body []byte) string {
	var e struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if json.Unmarshal(body, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	return e.Errors[0].Code
}

// TestMonolithicLimit: what a client sees for single-request pushes by size.
func TestMonolithicLimit(t *testing.T) {
	c := newClient(t)
	// 5 MB: 6.67 MB as a base64 event. Lambda refuses the invoke before any
	// registry code runs, so the 413 is API Gateway's, not an OCI error.
	b := random(5 << 20)
	r := c.do("POST", "/v2/limits/blobs/uploads/?digest="+digest(b), b, "Content-Type", "application/octet-stream")
	if r.status != 413 || string(r.body) != `{"message":"Request Entity Too Large"}` {
		t.Errorf("5 MB monolithic: %d %s", r.status, r.body)
	}
	t.Logf("5 MiB monolithic POST: %d %s (event %d bytes > %d)", r.status, r.body, c.last.Load().EventBytes, apigwemu.MaxInvokeBytes)

	// Just over BERTH_MAX_BODY_BYTES but still inside the invoke limit: the
	// registry answers, with the OCI error that names the chunked path.
	b = random(maxBodyBytes + 100_000)
	r = c.do("POST", "/v2/limits/blobs/uploads/?digest="+digest(b), b, "Content-Type", "application/octet-stream")
	if r.status != 413 || ociCode(r.body) != "SIZE_INVALID" || !strings.Contains(string(r.body), "chunk") {
		t.Errorf("%d bytes monolithic: %d %s", len(b), r.status, r.body)
	}
	// Exactly the cap goes through.
	b = random(maxBodyBytes)
	r = c.do("POST", "/v2/limits/blobs/uploads/?digest="+digest(b), b, "Content-Type", "application/octet-stream")
	if r.status != 201 {
		t.Errorf("%d bytes (the cap) monolithic: %d %s", len(b), r.status, r.body)
	}
	t.Logf("cap %d bytes: event %d bytes of %d", len(b), c.last.Load().EventBytes, apigwemu.MaxInvokeBytes)
}

// TestChunkedPush: the 5 MB blob that failed monolithically, in chunks.
func TestChunkedPush(t *testing.T) {
	c := newClient(t)
	b := random(5 << 20)
	start := c.calls.Load()
	r := c.do("POST", "/v2/limits/blobs/uploads/", nil)
	if r.status != 202 {
		t.Fatalf("POST: %d %s", r.status, r.body)
	}
	loc := r.header.Get("Location")
	const chunk = 4 << 20
	for off := 0; off < len(b); off += chunk {
		end := min(off+chunk, len(b))
		r = c.do("PATCH", loc, b[off:end], "Content-Type", "application/octet-stream", "Content-Range", fmt.Sprintf("%d-%d", off, end-1))
		if r.status != 202 {
			t.Fatalf("PATCH %d-%d: %d %s", off, end-1, r.status, r.body)
		}
		loc = r.header.Get("Location")
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	r = c.do("PUT", loc+sep+"digest="+digest(b), nil)
	if r.status != 201 || r.header.Get("Docker-Content-Digest") != digest(b) {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	t.Logf("5 MiB chunked push: %d invocations", c.calls.Load()-start)
	r = c.do("GET", "/v2/limits/blobs/"+digest(b), nil) // follows the redirect
	if r.status != 200 || !bytes.Equal(r.body, b) {
		t.Errorf("GET blob: %d, %d bytes", r.status, len(r.body))
	}
	r = c.do("HEAD", "/v2/limits/blobs/"+digest(b), nil)
	if r.status != 200 || r.header.Get("Content-Length") != fmt.Sprint(len(b)) {
		t.Errorf("HEAD blob: %d Content-Length %q", r.status, r.header.Get("Content-Length"))
	}
}

// TestLargestManifest: a manifest at the registry's 4 MiB limit is 5.59 MB
// as a base64 event, inside Lambda's 6 MB, so it round-trips; one byte more
// is refused by the registry with an OCI error.
func TestLargestManifest(t *testing.T) {
	c := newClient(t)
	cfg := []byte(`{}`)
	if r := c.do("POST", "/v2/big/blobs/uploads/?digest="+digest(cfg), cfg); r.status != 201 {
		t.Fatalf("config blob: %d %s", r.status, r.body)
	}
	head := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[],"annotations":{"pad":"`, digest(cfg))
	tail := `"}}`
	m := []byte(head + strings.Repeat("x", 4<<20-len(head)-len(tail)) + tail)
	r := c.do("PUT", "/v2/big/manifests/max", m, "Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if r.status != 201 {
		t.Fatalf("4 MiB manifest PUT: %d %s", r.status, r.body)
	}
	t.Logf("4 MiB manifest PUT: event %d bytes of %d", c.last.Load().EventBytes, apigwemu.MaxInvokeBytes)
	r = c.do("GET", "/v2/big/manifests/max", nil, "Accept", "application/vnd.oci.image.manifest.v1+json")
	if r.status != 200 || !bytes.Equal(r.body, m) {
		t.Fatalf("4 MiB manifest GET: %d, %d bytes", r.status, len(r.body))
	}
	t.Logf("4 MiB manifest GET: response %d bytes of %d", c.last.Load().RespBytes, apigwemu.MaxResponseBytes)

	over := []byte(head + strings.Repeat("x", 4<<20-len(head)-len(tail)+1) + tail)
	r = c.do("PUT", "/v2/big/manifests/over", over, "Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if r.status != 413 || ociCode(r.body) == "" {
		t.Errorf("4 MiB + 1 manifest: %d %s", r.status, r.body)
	}
}
