package apigwemu_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/berth-registry/berth/internal/apigwemu"
	"github.com/berth-registry/berth/pkg/apigw"
)

// TestMain doubles as a Lambda bootstrap: with BERTH_APIGWEMU_TEST_BOOTSTRAP
// set, the test binary serves testHandler through the Runtime API, so the
// RuntimeAPI tests run a real runtime client without building anything.
func TestMain(m *testing.M) {
	if os.Getenv("BERTH_APIGWEMU_TEST_BOOTSTRAP") == "1" {
		lambda.Start(apigw.Handler(testHandler()))
		return
	}
	os.Exit(m.Run())
}

// testHandler echoes what it received and answers per path.
func testHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"method": r.Method, "uri": r.RequestURI, "host": r.Host, "headers": r.Header,
			"len": r.ContentLength, "body": body, "public": apigw.PublicURL(r),
		})
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Location", "/v2/a/b/blobs/uploads/123?state=x&y=1")
		h.Set("Docker-Content-Digest", "sha256:0123")
		h.Set("Docker-Distribution-API-Version", "registry/2.0")
		h.Set("Range", "0-99")
		h.Set("Content-Range", "bytes 0-99/100")
		h.Set("WWW-Authenticate", `Bearer realm="https://r.example/token",service="r.example",scope="repository:a/b:pull,push"`)
		h.Add("Link", `</v2/_catalog?last=a&n=1>; rel="next"`)
		h.Add("Link", `</v2/x>; rel="other"`)
		h.Set("OCI-Chunk-Min-Length", "5242880")
		h.Set("OCI-Subject", "sha256:abcd")
		h.Add("Set-Cookie", "a=1; Path=/")
		h.Add("Set-Cookie", "b=2; Path=/")
		h.Set("Connection", "close")
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://bucket.s3.amazonaws.com/blobs/sha256/ab?X-Amz-Signature=1&X-Amz-Expires=60", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		var n int
		_, _ = fmt.Sscan(r.URL.Query().Get("n"), &n)
		b := make([]byte, n)
		if r.URL.Query().Get("text") != "" {
			for i := range b {
				b[i] = 'a'
			}
		} else {
			_, _ = rand.Read(b)
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", fmt.Sprint(n))
		_, _ = w.Write(b)
	})
	mux.HandleFunc("/nowrite", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
		_, _ = w.Write([]byte("ignored"))
	})
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) { panic("boom") })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	return mux
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, h http.Handler, method, target string, body []byte, hdr map[string]string) reply {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, err := http.NewRequest(method, srv.URL+target, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body = http.NoBody
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

func TestRequestFidelity(t *testing.T) {
	em := apigwemu.Emulate(testHandler())
	blob := make([]byte, 70000)
	_, _ = rand.Read(blob)
	r := do(t, em, "PUT", "/echo?digest=sha256%3Aab&x=1&x=2", blob, map[string]string{
		"Content-Type":  "application/octet-stream",
		"Authorization": "Bearer abc.def",
		"Range":         "bytes=0-9",
		"If-Range":      "Wed, 21 Oct 2015 07:28:00 GMT",
		"Accept":        "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
		"Cookie":        "c1=v1; c2=v2",
	})
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var got struct {
		Method  string
		URI     string
		Host    string
		Headers http.Header
		Len     int64
		Body    []byte
		Public  string
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Method != "PUT" || got.URI != "/echo?digest=sha256%3Aab&x=1&x=2" {
		t.Errorf("method/uri = %s %s", got.Method, got.URI)
	}
	if !bytes.Equal(got.Body, blob) || got.Len != int64(len(blob)) {
		t.Errorf("binary body changed: %d bytes, content-length %d", len(got.Body), got.Len)
	}
	for k, want := range map[string]string{
		"Authorization": "Bearer abc.def", "Range": "bytes=0-9",
		"If-Range":          "Wed, 21 Oct 2015 07:28:00 GMT",
		"Accept":            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
		"Cookie":            "c1=v1; c2=v2",
		"X-Forwarded-Proto": "http",
	} {
		if g := got.Headers[k]; len(g) != 1 || g[0] != want {
			t.Errorf("header %s = %q, want %q", k, g, want)
		}
	}
	if got.Public != "http://"+got.Host || got.Host == "" {
		t.Errorf("PublicURL = %q (host %q)", got.Public, got.Host)
	}
}

func TestEventShape(t *testing.T) {
	var ev events.APIGatewayV2HTTPRequest
	em := apigwemu.Emulate(testHandler(), apigwemu.WithRoutes("ANY /v2/{proxy+}", "ANY /v2/", "POST /token"),
		apigwemu.WithDomainName("abc123.execute-api.us-east-1.amazonaws.com"),
		apigwemu.WithObserver(func(inv apigwemu.Invocation) { ev = inv.Event }))
	body := []byte(`{"schemaVersion":2}`)
	r := do(t, em, "PUT", "/v2/a/b/manifests/latest?x=1&x=2", body, map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json", "Cookie": "k=v"})
	if r.status != 404 { // the test handler has no /v2/ route: the function's 404
		t.Fatalf("status %d", r.status)
	}
	if r.header.Get("Apigw-Requestid") == "" {
		t.Error("no apigw-requestid header")
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"version", ev.Version, "2.0"},
		{"routeKey", ev.RouteKey, "ANY /v2/{proxy+}"},
		{"rawPath", ev.RawPath, "/v2/a/b/manifests/latest"},
		{"rawQueryString", ev.RawQueryString, "x=1&x=2"},
		{"query x", ev.QueryStringParameters["x"], "1,2"},
		{"proxy", ev.PathParameters["proxy"], "a/b/manifests/latest"},
		{"cookies", strings.Join(ev.Cookies, "|"), "k=v"},
		{"host", ev.Headers["host"], "abc123.execute-api.us-east-1.amazonaws.com"},
		{"content-length", ev.Headers["content-length"], fmt.Sprint(len(body))},
		{"domainPrefix", ev.RequestContext.DomainPrefix, "abc123"},
		{"stage", ev.RequestContext.Stage, "$default"},
		{"method", ev.RequestContext.HTTP.Method, "PUT"},
		{"protocol", ev.RequestContext.HTTP.Protocol, "HTTP/1.1"},
		{"sourceIp", ev.RequestContext.HTTP.SourceIP, "127.0.0.1"},
		{"base64 for vendor +json", ev.IsBase64Encoded, true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if _, ok := ev.Headers["cookie"]; ok {
		t.Error("cookie header left in headers")
	}
	if ev.RequestContext.TimeEpoch == 0 || ev.RequestContext.Time == "" || ev.RequestContext.RequestID == "" {
		t.Errorf("request context incomplete: %+v", ev.RequestContext)
	}
	do(t, em, "POST", "/token", []byte(`{"a":1}`), map[string]string{"Content-Type": "application/json"})
	if ev.IsBase64Encoded || ev.Body != `{"a":1}` {
		t.Errorf("application/json body should be text: %q base64=%v", ev.Body, ev.IsBase64Encoded)
	}
}

func TestRoutes(t *testing.T) {
	em := apigwemu.Emulate(testHandler(), apigwemu.WithRoutes("ANY /v2/{proxy+}", "ANY /v2/", "GET /token", "POST /token"))
	r := do(t, em, "GET", "/echo", nil, nil)
	if r.status != 404 || string(r.body) != `{"message":"Not Found"}` {
		t.Errorf("unrouted path: %d %s", r.status, r.body)
	}
	if r := do(t, em, "DELETE", "/token", nil, nil); r.status != 404 || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("DELETE /token: %d", r.status)
	}
}

func TestResponseHeaders(t *testing.T) {
	for _, name := range []string{"in-process", "runtime-api"} {
		t.Run(name, func(t *testing.T) {
			em := apigwemu.Emulate(testHandler())
			if name == "runtime-api" {
				em = apigwemu.NewEmulator(startBootstrap(t))
			}
			r := do(t, em, "POST", "/headers", nil, nil)
			if r.status != http.StatusAccepted {
				t.Fatalf("status %d", r.status)
			}
			for k, want := range map[string]string{
				"Location":                        "/v2/a/b/blobs/uploads/123?state=x&y=1",
				"Docker-Content-Digest":           "sha256:0123",
				"Docker-Distribution-Api-Version": "registry/2.0",
				"Range":                           "0-99",
				"Content-Range":                   "bytes 0-99/100",
				"Www-Authenticate":                `Bearer realm="https://r.example/token",service="r.example",scope="repository:a/b:pull,push"`,
				"Link":                            `</v2/_catalog?last=a&n=1>; rel="next", </v2/x>; rel="other"`,
				"Oci-Chunk-Min-Length":            "5242880",
				"Oci-Subject":                     "sha256:abcd",
				"Content-Length":                  "0",
			} {
				if g := r.header.Values(k); len(g) != 1 || g[0] != want {
					t.Errorf("%s = %q, want %q", k, g, want)
				}
			}
			if c := r.header.Values("Set-Cookie"); len(c) != 2 {
				t.Errorf("Set-Cookie = %q", c)
			}
			if r.header.Get("Connection") == "close" {
				t.Error("hop-by-hop Connection header forwarded")
			}

			r = do(t, em, "GET", "/redirect", nil, nil)
			if r.status != 307 || !strings.HasPrefix(r.header.Get("Location"), "https://bucket.s3.amazonaws.com/blobs/sha256/ab?X-Amz-Signature=1&") {
				t.Errorf("redirect: %d %q", r.status, r.header.Get("Location"))
			}
			r = do(t, em, "GET", "/bytes?n=100000", nil, nil)
			if r.status != 200 || len(r.body) != 100000 {
				t.Errorf("binary response: %d, %d bytes", r.status, len(r.body))
			}
			r = do(t, em, "HEAD", "/bytes?n=1234", nil, nil)
			if r.status != 200 || r.header.Get("Content-Length") != "1234" || len(r.body) != 0 {
				t.Errorf("HEAD: %d, Content-Length %q, %d body bytes", r.status, r.header.Get("Content-Length"), len(r.body))
			}
			if r := do(t, em, "GET", "/nowrite", nil, nil); r.status != 200 {
				t.Errorf("handler without WriteHeader: %d", r.status)
			}
			if r := do(t, em, "GET", "/nocontent", nil, nil); r.status != 204 || len(r.body) != 0 {
				t.Errorf("204: %d %q", r.status, r.body)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	var last apigwemu.Invocation
	var mu sync.Mutex
	em := apigwemu.Emulate(testHandler(), apigwemu.WithObserver(func(inv apigwemu.Invocation) {
		mu.Lock()
		last = inv
		mu.Unlock()
	}))
	const tooLarge = `{"message":"Request Entity Too Large"}`
	const ise = `{"message":"Internal Server Error"}`
	bin := func(n int) []byte { b := make([]byte, n); _, _ = rand.Read(b); return b }
	octet := map[string]string{"Content-Type": "application/octet-stream"}

	// API Gateway's own answers carry none of the function's headers: the
	// Lambda@Edge function (pkg/edge/lambdaedge) tells them from the
	// registry's by the missing Docker-Distribution-API-Version.
	gatewayHeaders := func(what string, h http.Header) {
		t.Helper()
		if h.Get("Docker-Distribution-API-Version") != "" || h.Get("Content-Type") != "application/json" || h.Get("Apigw-Requestid") == "" {
			t.Errorf("%s: headers %v, want API Gateway's own", what, h)
		}
	}
	r := do(t, em, "PUT", "/echo", bin(apigwemu.MaxRequestBytes+1), octet)
	if r.status != 413 || string(r.body) != tooLarge {
		t.Errorf("> 10 MB: %d %s", r.status, r.body)
	}
	gatewayHeaders("> 10 MB", r.header)
	// 5 MB of binary is 6.67 MB as base64: Lambda refuses the event.
	r = do(t, em, "PUT", "/echo", bin(5<<20), octet)
	if r.status != 413 || string(r.body) != tooLarge || last.EventBytes <= apigwemu.MaxInvokeBytes {
		t.Errorf("5 MB binary: %d %s (event %d bytes)", r.status, r.body, last.EventBytes)
	}
	gatewayHeaders("5 MB binary", r.header)
	// The largest binary body that fits: fill the event to the byte.
	do(t, em, "PUT", "/echo", bin(3), octet)
	overhead := last.EventBytes - 4                          // "base64 of 3 bytes" is 4 bytes
	fit := (apigwemu.MaxInvokeBytes - overhead - 16) / 4 * 3 // the content-length header grows by 6 digits
	r = do(t, em, "PUT", "/nowrite", bin(fit), octet)
	if r.status != 200 || last.EventBytes > apigwemu.MaxInvokeBytes {
		t.Errorf("%d bytes (event %d) should fit: %d %s", fit, last.EventBytes, r.status, r.body)
	}
	r = do(t, em, "PUT", "/nowrite", bin(fit+48), octet)
	if r.status != 413 || last.EventBytes <= apigwemu.MaxInvokeBytes {
		t.Errorf("%d bytes (event %d) should not fit: %d", fit+48, last.EventBytes, r.status)
	}
	t.Logf("largest binary body through Lambda: %d bytes (event overhead %d bytes)", fit, overhead)

	// Responses: 4.5 MB of random bytes is 6 MB as base64, over the limit;
	// the same length of text fits.
	r = do(t, em, "GET", "/bytes?n=4800000", nil, nil)
	if r.status != 500 || string(r.body) != ise {
		t.Errorf("oversized response: %d %s (response %d bytes)", r.status, r.body, last.RespBytes)
	}
	r = do(t, em, "GET", "/bytes?n=4800000&text=1", nil, nil)
	if r.status != 200 || len(r.body) != 4800000 {
		t.Errorf("4.8 MB text response: %d, %d bytes", r.status, len(r.body))
	}

	r = do(t, em, "GET", "/panic", nil, nil)
	if r.status != 500 || string(r.body) != ise {
		t.Errorf("panic: %d %s", r.status, r.body)
	}
	var fe *apigwemu.FunctionError
	if !errors.As(last.Err, &fe) {
		t.Errorf("panic error = %v", last.Err)
	}
	r = do(t, apigwemu.Emulate(testHandler(), apigwemu.WithTimeout(100*time.Millisecond)), "GET", "/slow", nil, nil)
	if r.status != 503 || string(r.body) != `{"message":"Service Unavailable"}` {
		t.Errorf("timeout: %d %s", r.status, r.body)
	}
}

func TestFunctionErrorAndRawResponses(t *testing.T) {
	fail := apigwemu.Func(func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		return events.APIGatewayV2HTTPResponse{}, errors.New("no table")
	})
	if r := do(t, apigwemu.NewEmulator(fail), "GET", "/", nil, nil); r.status != 500 || string(r.body) != `{"message":"Internal Server Error"}` {
		t.Errorf("function error: %d %s", r.status, r.body)
	}
	raw := rawFunction(`"hello"`)
	if r := do(t, apigwemu.NewEmulator(raw), "GET", "/", nil, nil); r.status != 200 || string(r.body) != "hello" || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("raw string response: %d %q %q", r.status, r.body, r.header.Get("Content-Type"))
	}
	bad := rawFunction(`{"statusCode":"x"}`)
	if r := do(t, apigwemu.NewEmulator(bad), "GET", "/", nil, nil); r.status != 500 {
		t.Errorf("malformed response: %d", r.status)
	}
}

type rawFunction string

func (f rawFunction) Invoke(context.Context, []byte) ([]byte, error) { return []byte(f), nil }

// startBootstrap runs this test binary as a Lambda bootstrap behind a
// RuntimeAPI.
func startBootstrap(t *testing.T) *apigwemu.RuntimeAPI {
	t.Helper()
	rt, err := apigwemu.NewRuntimeAPI()
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rt.Stderr = io.Discard
	if err := rt.Supervise(ctx, exe, "BERTH_APIGWEMU_TEST_BOOTSTRAP=1"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = rt.Close()
	})
	select {
	case <-rt.Polled():
	case <-time.After(20 * time.Second):
		t.Fatal("bootstrap never polled the runtime API")
	}
	return rt
}

func TestRuntimeAPIErrors(t *testing.T) {
	em := apigwemu.NewEmulator(startBootstrap(t), apigwemu.WithTimeout(5*time.Second))
	// The runtime client recovers the panic and posts it to /error.
	if r := do(t, em, "GET", "/panic", nil, nil); r.status != 500 {
		t.Errorf("panic through the runtime: %d %s", r.status, r.body)
	}
	if r := do(t, em, "GET", "/bytes?n=4800000", nil, nil); r.status != 500 {
		t.Errorf("oversized response through the runtime: %d", r.status)
	}
	if r := do(t, em, "GET", "/bytes?n=10", nil, nil); r.status != 200 || len(r.body) != 10 {
		t.Errorf("runtime still serves after errors: %d", r.status)
	}
}

// HTTP APIs decode the path before they route and build the event: rawPath,
// requestContext.http.path and the {proxy+} parameter are all decoded, and
// rawQueryString stays encoded (docs/lambda.md, "Paths arrive decoded").
// The emulator must send exactly that, or the adapter's handling of it goes
// untested; and behind it the handler must see the path the client meant:
// an escaped "?" stays in the path, a literal "%zz" is no 500, nothing is
// decoded twice.
func TestEventPathDecoded(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"path": r.URL.Path, "uri": r.RequestURI, "query": r.URL.RawQuery})
	})
	for _, c := range []struct {
		target                   string
		rawPath, proxy, rawQuery string
		handlerURI               string
	}{
		{"/v2/a/b/manifests/we%3Fird", "/v2/a/b/manifests/we?ird", "a/b/manifests/we?ird", "", "/v2/a/b/manifests/we%3Fird"},
		{"/v2/a/b/manifests/we%3Fird?n=1&last=x%2Fy", "/v2/a/b/manifests/we?ird", "a/b/manifests/we?ird", "n=1&last=x%2Fy", "/v2/a/b/manifests/we%3Fird?n=1&last=x%2Fy"},
		{"/v2/a/b/manifests/%25zz", "/v2/a/b/manifests/%zz", "a/b/manifests/%zz", "", "/v2/a/b/manifests/%25zz"},
		{"/v2/a/b/manifests/%2541", "/v2/a/b/manifests/%41", "a/b/manifests/%41", "", "/v2/a/b/manifests/%2541"},
		{"/v2/a%2Fb/tags/list", "/v2/a/b/tags/list", "a/b/tags/list", "", "/v2/a/b/tags/list"},
	} {
		t.Run(c.target, func(t *testing.T) {
			var ev events.APIGatewayV2HTTPRequest
			em := apigwemu.Emulate(echo, apigwemu.WithRoutes("ANY /v2/{proxy+}", "ANY /v2"),
				apigwemu.WithObserver(func(inv apigwemu.Invocation) { ev = inv.Event }))
			r := do(t, em, "GET", c.target, nil, nil)
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			for _, f := range []struct{ name, got, want string }{
				{"rawPath", ev.RawPath, c.rawPath},
				{"requestContext.http.path", ev.RequestContext.HTTP.Path, c.rawPath},
				{"pathParameters.proxy", ev.PathParameters["proxy"], c.proxy},
				{"rawQueryString", ev.RawQueryString, c.rawQuery},
			} {
				if f.got != f.want {
					t.Errorf("event %s = %q, want %q", f.name, f.got, f.want)
				}
			}
			var got map[string]string
			if err := json.Unmarshal(r.body, &got); err != nil {
				t.Fatal(err)
			}
			if got["path"] != c.rawPath || got["uri"] != c.handlerURI || got["query"] != c.rawQuery {
				t.Errorf("handler saw path %q uri %q query %q, want %q %q %q", got["path"], got["uri"], got["query"], c.rawPath, c.handlerURI, c.rawQuery)
			}
		})
	}
}

// With the origin-verify stage variable set, a request straight to the API
// (no header) is refused by the adapter before the handler; one carrying
// the header CloudFront's origin adds goes through.
func TestStageVariablesOriginVerify(t *testing.T) {
	var ev events.APIGatewayV2HTTPRequest
	em := apigwemu.Emulate(testHandler(),
		apigwemu.WithStageVariables(map[string]string{apigw.OriginVerifyStageVariable: "marker-123"}),
		apigwemu.WithObserver(func(inv apigwemu.Invocation) { ev = inv.Event }))
	r := do(t, em, "GET", "/echo", nil, nil)
	if r.status != http.StatusForbidden || !strings.Contains(string(r.body), "DENIED") {
		t.Errorf("without the header: %d %s, want 403 DENIED", r.status, r.body)
	}
	if ev.StageVariables[apigw.OriginVerifyStageVariable] != "marker-123" {
		t.Errorf("event stageVariables = %v", ev.StageVariables)
	}
	r = do(t, em, "GET", "/echo", nil, map[string]string{apigw.OriginVerifyHeader: "marker-123"})
	if r.status != http.StatusOK {
		t.Fatalf("with the header: %d %s", r.status, r.body)
	}
	var got struct{ Headers map[string][]string }
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Headers[apigw.OriginVerifyHeader]; ok {
		t.Error("the handler saw the origin-verify header")
	}
}
