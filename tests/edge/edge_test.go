// Package edge_test proves the edge upload path end to end with real
// clients against `berth serve --via-lambda --lambda-cold-starts --edge
// --backend aws` on the emulators (harness.Edge): the emulated CloudFront
// distribution runs pkg/edge/cffunc/upload.js (and the Lambda@Edge
// function pkg/edge/lambdaedge/oversize.js on the upload URLs), sends
// upload PUTs straight to the S3 server and everything else to the
// emulated API Gateway and Lambda. Every request the registry logs is one
// Lambda invocation.
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
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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
				Chunked:      len(in.TransferEncoding) > 0 && in.TransferEncoding[0] == "chunked",
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

// TestTamperedBody: bytes that do not match the digest of an edge PUT are
// refused by the S3 server, and the blob never becomes visible.
func TestTamperedBody(t *testing.T) {
	s := start(t)
	ctx := t.Context()
	const repo = "edge/tamper"
	layer := harness.Random(6 << 20)
	d := harness.Digest(layer)

	resp, body, err := s.Do(ctx, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil, nil)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST upload: %v %v %s", err, resp, body)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "/_upload/") {
		t.Fatalf("upload Location %q, want /_upload/<token>", loc)
	}
	other := bytes.Clone(layer)
	other[12345] ^= 0x01
	mark := s.Mark()
	resp, body, err = s.Do(ctx, http.MethodPut, loc+"?digest="+d, other, map[string]string{"Content-Type": "application/octet-stream"})
	if err != nil {
		t.Fatal(err)
	}
	// S3's own 400 reaches the client: CloudFront does not run viewer-response
	// functions for 400 and above, so the body is S3's XML error.
	if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(body, []byte("BadDigest")) {
		t.Fatalf("tampered PUT: %d %s; want 400 BadDigest from S3", resp.StatusCode, body)
	}
	// The POST's own log line may be read after the mark: count PUTs only.
	for _, r := range s.RequestsSince(mark) {
		if r.Method == http.MethodPut {
			t.Errorf("the tampered PUT reached Lambda (%s %s), want S3 to answer it", r.Method, r.Path)
		}
	}
	t.Logf("tampered PUT → %d %s", resp.StatusCode, bytes.TrimSpace(body))

	resp, _, err = s.Do(ctx, http.MethodHead, "/v2/"+repo+"/blobs/"+d, nil, nil)
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("HEAD blob after tampered PUT: %v %v, want 404", err, resp)
	}
	cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	if resp, body, err = s.Do(ctx, http.MethodPost, "/v2/"+repo+"/blobs/uploads/?digest="+harness.Digest(cfg), cfg, nil); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("push config: %v %v %s", err, resp, body)
	}
	m := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":%d},"layers":[{"mediaType":%q,"digest":%q,"size":%d}]}`,
		harness.MediaTypeManifest, harness.MediaTypeConfig, harness.Digest(cfg), len(cfg), harness.MediaTypeLayer, d, len(layer))
	resp, body, err = s.Do(ctx, http.MethodPut, "/v2/"+repo+"/manifests/v1", m, map[string]string{"Content-Type": harness.MediaTypeManifest})
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := ociError(body); resp.StatusCode != http.StatusBadRequest || code != "MANIFEST_BLOB_UNKNOWN" {
		t.Fatalf("manifest over the tampered blob: %d %s, want 400 MANIFEST_BLOB_UNKNOWN", resp.StatusCode, body)
	}
}

// patchClient is a client that uploads a blob with one PATCH carrying
// the whole layer, then a closing PUT without a body (research §D6).
type patchClient struct {
	name string
	push func(t *testing.T, rec *recorder, l harness.Layout, ref string) harness.Result
}

func patchClients() []patchClient {
	return []patchClient{
		{"crane", func(t *testing.T, rec *recorder, l harness.Layout, ref string) harness.Result {
			return harness.Client(t, "crane").Exec("push", "--insecure", l.Dir, ref)
		}},
		{"skopeo", func(t *testing.T, rec *recorder, l harness.Layout, ref string) harness.Result {
			env := harness.ContainersEnv(t, rec.Addr)
			c := harness.Client(t, "skopeo").With(env...)
			return c.Exec("copy", "--policy", harness.Policy(env), "--dest-tls-verify=false", l.Skopeo(), "docker://"+ref)
		}},
		{"skopeo-preserve-digests", func(t *testing.T, rec *recorder, l harness.Layout, ref string) harness.Result {
			env := harness.ContainersEnv(t, rec.Addr)
			c := harness.Client(t, "skopeo").With(env...)
			return c.Exec("copy", "--policy", harness.Policy(env), "--preserve-digests", "--dest-tls-verify=false", l.Skopeo(), "docker://"+ref)
		}},
		{"podman", func(t *testing.T, rec *recorder, l harness.Layout, ref string) harness.Result {
			// podman pushes from its own storage: put the layout there with
			// skopeo (same storage configuration), then push it.
			env := harness.ContainersEnv(t, rec.Addr)
			local := "localhost/edge/podman:" + l.Tag
			harness.Client(t, "skopeo").With(env...).Run("copy", "--policy", harness.Policy(env), l.Skopeo(), "containers-storage:"+local)
			return harness.Client(t, "podman").With(env...).Exec("push", "--tls-verify=false", local, "docker://"+ref)
		}},
	}
}

// TestPATCHClients: crane, skopeo and podman cannot use the edge (one
// PATCH per layer; neither a CloudFront Function nor S3 can turn it into a
// PUT). Small layers push fine through Lambda. A layer over the limit gets
// an OCI 413 (SIZE_INVALID, naming `berth push`) whatever the PATCH looks
// like. When it declares its Content-Length (crane, skopeo
// --preserve-digests) the CloudFront Function answers it before API
// Gateway sees the body. When it streams with Transfer-Encoding: chunked
// (podman, and skopeo when it gzips an uncompressed layer on the way) no
// function can see the size: API Gateway answers its own non-OCI 413 once
// the Lambda event would pass 6 MB, and the Lambda@Edge origin-response
// function pkg/edge/lambdaedge/oversize.js rewrites it (a 413 without the
// registry's Docker-Distribution-API-Version header).
func TestPATCHClients(t *testing.T) {
	s := start(t)
	rec := record(t, s)
	small := harness.WriteImage(t, "small", 1<<20, 64<<10)
	big := harness.WriteImage(t, "big", 8<<20)
	for _, c := range patchClients() {
		t.Run(c.name, func(t *testing.T) {
			t.Run("small", func(t *testing.T) {
				ref := rec.Addr + "/edge/" + c.name + "-small:v1"
				before := len(rec.exchanges())
				if r := c.push(t, rec, small, ref); r.Err != nil {
					t.Fatalf("%s push of a 1 MiB layer: %v\n%s", c.name, r.Err, r.Output())
				}
				for _, e := range rec.exchanges()[before:] {
					t.Logf("%s sent: %s", c.name, e)
				}
				resp, _, err := s.Do(t.Context(), http.MethodHead, "/v2/edge/"+c.name+"-small/manifests/v1", nil, nil)
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("HEAD manifest pushed by %s: %v %v", c.name, err, resp)
				}
			})
			t.Run("over the limit", func(t *testing.T) {
				ref := rec.Addr + "/edge/" + c.name + "-big:v1"
				before := len(rec.exchanges())
				r := c.push(t, rec, big, ref)
				if r.Err == nil {
					t.Fatalf("%s pushed an 8 MiB layer through Lambda; want a 413", c.name)
				}
				t.Logf("%s output:\n%s", c.name, r.Output())
				var got *exchange
				for _, e := range rec.exchanges()[before:] {
					t.Logf("%s sent: %s", c.name, e)
					if e.Status == http.StatusRequestEntityTooLarge && got == nil {
						got = &e
					}
				}
				if got == nil {
					t.Fatalf("%s never got a 413", c.name)
				}
				if !strings.Contains(r.Output(), "413") && !strings.Contains(r.Output(), "berth push") {
					t.Errorf("%s's error output names neither the 413 nor `berth push`", c.name)
				}
				code, msg := ociError(got.Body)
				t.Logf("%s: %s; body %s", c.name, got, got.Body)
				if code != "SIZE_INVALID" || !strings.Contains(msg, "`berth push`") {
					t.Fatalf("%s: 413 body %q, want OCI SIZE_INVALID naming `berth push`", c.name, got.Body)
				}
				// Which edge function answered: the CloudFront Function
				// (Content-Length) or the Lambda@Edge one (chunked).
				if got.Chunked != strings.Contains(msg, "docs/clients.md") {
					t.Errorf("%s: chunked %v, but the 413 came from the other function: %s", c.name, got.Chunked, got.Body)
				}
			})
		})
	}
}

// TestOverLimitRequestShapes reproduces each client's request shape with
// raw HTTP and records what an over-limit request gets: every one gets an
// OCI 413 naming `berth push`. A request that declares its Content-Length
// gets the CloudFront Function's, on the edge Location and on the API's
// own upload URL alike; a chunked PATCH just over the limit the registry's
// own; a chunked PATCH too big for the Lambda event API Gateway's 413,
// rewritten by the Lambda@Edge origin-response function.
func TestOverLimitRequestShapes(t *testing.T) {
	s := start(t)
	ctx := t.Context()
	const repo = "edge/shapes"
	b := harness.Random(lambdaMaxBody + 1)
	d := harness.Digest(b)
	upload := func() string {
		resp, body, err := s.Do(ctx, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil, nil)
		if err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST upload: %v %v %s", err, resp, body)
		}
		return resp.Header.Get("Location")
	}
	// apiURL turns an edge Location into the API's upload URL by sending an
	// empty PATCH through it (the API answers with its own Location).
	apiURL := func() string {
		resp, body, err := s.Do(ctx, http.MethodPatch, upload(), []byte{}, nil)
		if err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("empty PATCH: %v %v %s", err, resp, body)
		}
		return resp.Header.Get("Location")
	}
	ociCases := []struct {
		name, method string
		url          func() string
	}{
		{"crane: PATCH with Content-Length on the edge Location", http.MethodPatch, upload},
		{"PATCH with Content-Length on the API upload URL", http.MethodPatch, apiURL},
		{"monolithic POST ?digest=", http.MethodPost, func() string { return "/v2/" + repo + "/blobs/uploads/?digest=" + d }},
		{"closing PUT with a body on the API upload URL", http.MethodPut, func() string { return apiURL() + "?digest=" + d }},
	}
	for _, c := range ociCases {
		u := c.url()
		mark := s.Mark()
		resp, body, err := s.Do(ctx, c.method, u, b, map[string]string{"Content-Type": "application/octet-stream"})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		code, msg := ociError(body)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || code != "SIZE_INVALID" || !strings.Contains(msg, "berth push") {
			t.Errorf("%s: %d %s; want 413 SIZE_INVALID naming `berth push`", c.name, resp.StatusCode, body)
		}
		// Only the over-limit request itself counts: the log lines of the
		// setup requests (the POST, the empty PATCH) are read
		// asynchronously and may land after the mark.
		for _, r := range s.RequestsSince(mark) {
			if r.Method == c.method && r.BytesIn > lambdaMaxBody {
				t.Errorf("%s: reached Lambda (%s %s, %d bytes); the CloudFront Function should answer", c.name, r.Method, r.Path, r.BytesIn)
			}
		}
		t.Logf("%s: %d %s", c.name, resp.StatusCode, body)
	}

	// skopeo and podman: PATCH with Transfer-Encoding: chunked. The body
	// reader hides its length, so net/http streams it chunked. Just over the
	// limit the Lambda event still fits in 6 MB and the registry answers its
	// own OCI 413 (with Docker-Distribution-API-Version); the 8 MiB the
	// clients sent above makes API Gateway answer, and the Lambda@Edge
	// function turns that into the OCI error, on the edge Location and on
	// the API's upload URL.
	chunked := func(loc string, n int) (*http.Response, []byte) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPatch, s.URL()+loc, io.MultiReader(bytes.NewReader(harness.Random(n))))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	resp, body := chunked(upload(), lambdaMaxBody+1)
	if code, msg := ociError(body); resp.StatusCode != http.StatusRequestEntityTooLarge || code != "SIZE_INVALID" ||
		!strings.Contains(msg, "berth push") || resp.Header.Get("Docker-Distribution-API-Version") == "" {
		t.Errorf("chunked PATCH of %d bytes: %d %v %s; want the registry's own 413 SIZE_INVALID naming `berth push`", lambdaMaxBody+1, resp.StatusCode, resp.Header, body)
	}
	t.Logf("chunked PATCH of %d bytes: %d %s", lambdaMaxBody+1, resp.StatusCode, body)
	// The registry may log that request after its answer reached us: wait
	// for the line, so it does not count as one of the refused PATCHes below.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		logged := slices.ContainsFunc(s.Requests(), func(r harness.Request) bool {
			return r.Method == http.MethodPatch && r.BytesIn == lambdaMaxBody+1
		})
		if logged || time.Now().After(deadline) {
			break
		}
	}
	for name, loc := range map[string]func() string{"edge Location": upload, "API upload URL": apiURL} {
		mark := s.Mark()
		resp, body = chunked(loc(), 8<<20)
		if code, msg := ociError(body); resp.StatusCode != http.StatusRequestEntityTooLarge || code != "SIZE_INVALID" ||
			!strings.Contains(msg, "`berth push`") || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("chunked PATCH of 8 MiB to the %s: %d %v %s; want the OCI 413 SIZE_INVALID naming `berth push`", name, resp.StatusCode, resp.Header, body)
		}
		// API Gateway refused the event: no registry code ran for it.
		for _, r := range s.RequestsSince(mark) {
			if r.Method == http.MethodPatch && r.BytesIn > lambdaMaxBody {
				t.Errorf("chunked PATCH of 8 MiB reached the registry (%s %s, %d bytes)", r.Method, r.Path, r.BytesIn)
			}
		}
		t.Logf("chunked PATCH of 8 MiB to the %s: %d %s", name, resp.StatusCode, body)
	}
}
