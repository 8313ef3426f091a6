package cloudfront

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/pkg/edge"
)

// recorder is an origin that remembers what reached it and answers with a
// fixed status.
type recorder struct {
	mu     sync.Mutex
	status int
	header http.Header // added to the answer
	got    []*http.Request
	bodies []string
}

func (o *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	o.mu.Lock()
	o.got = append(o.got, r)
	o.bodies = append(o.bodies, string(b))
	o.mu.Unlock()
	for n, vs := range o.header {
		w.Header()[n] = vs
	}
	st := o.status
	if st == 0 {
		st = http.StatusOK
	}
	w.WriteHeader(st)
	_, _ = io.WriteString(w, "origin body")
}

func (o *recorder) last(t *testing.T) *http.Request {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.got) == 0 {
		t.Fatal("origin was not asked")
	}
	return o.got[len(o.got)-1]
}

// distribution puts viewer-request function src (and viewer-response
// function resp, if not empty) on /f/* in front of origin "a"; origin "b"
// is selectable.
func distribution(t *testing.T, src, resp string, a, b http.Handler, opts ...func(*Config)) *Distribution {
	t.Helper()
	beh := Behavior{PathPattern: "/f/*", Origin: "a"}
	if src != "" {
		fn, err := NewFunction("req.js", src)
		if err != nil {
			t.Fatal(err)
		}
		beh.ViewerRequest = fn
	}
	if resp != "" {
		fn, err := NewFunction("resp.js", resp)
		if err != nil {
			t.Fatal(err)
		}
		beh.ViewerResponse = fn
	}
	store := edge.NewMemoryStore()
	if err := store.KeyPut(context.Background(), "k", "v"); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Behaviors:     []Behavior{beh},
		Default:       Behavior{Origin: "b"},
		Origins:       map[string]http.Handler{"a": a, "b": b},
		KeyValueStore: store,
	}
	for _, o := range opts {
		o(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func serve(d http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	d.ServeHTTP(w, r)
	return w
}

func TestFunctionRules(t *testing.T) {
	const passThrough = `async function handler(event) { return event.request; }`
	tests := []struct {
		name   string
		src    string
		req    func() *http.Request
		status int
		xcache string // CloudFront's error kind, when the function failed
	}{
		{name: "pass through", src: passThrough, status: 200},
		{name: "method is read-only", src: `function handler(e) { e.request.method = 'GET'; return e.request; }`,
			status: 502, xcache: "FunctionValidationError"},
		{name: "host is read-only", src: `function handler(e) { e.request.headers.host = {value: 'evil.example'}; return e.request; }`,
			status: 502, xcache: "FunctionValidationError"},
		{name: "content-length is read-only", src: `function handler(e) { e.request.headers['content-length'] = {value: '1'}; return e.request; }`,
			status: 502, xcache: "FunctionValidationError"},
		{name: "content-length cannot be removed", src: `function handler(e) { delete e.request.headers['content-length']; return e.request; }`,
			status: 502, xcache: "FunctionValidationError"},
		{name: "via cannot be added", src: `function handler(e) { e.request.headers.via = {value: '1.1 x'}; return e.request; }`,
			status: 502, xcache: "FunctionValidationError"},
		{name: "disallowed header", src: `function handler(e) { e.request.headers['x-forwarded-proto'] = {value: 'http'}; return e.request; }`,
			status: 502, xcache: "FunctionValidationError"},
		{name: "disallowed header prefix", src: `function handler(e) { e.request.headers['x-amz-cf-pop'] = {value: 'x'}; return e.request; }`,
			status: 502, xcache: "FunctionValidationError"},
		{name: "x-amz-checksum-sha256 is allowed", src: `function handler(e) { e.request.headers['x-amz-checksum-sha256'] = {value: 'x'}; return e.request; }`,
			status: 200},
		{name: "uri must start with a slash", src: `function handler(e) { e.request.uri = 'f/x'; return e.request; }`,
			status: 502, xcache: "FunctionValidationError"},
		{name: "uri plus query under 8192", src: `function handler(e) { e.request.uri = '/' + 'a'.repeat(8191); return e.request; }`,
			status: 502, xcache: "FunctionValidationError"},
		{name: "exception", src: `function handler(e) { throw new Error('boom'); }`,
			status: 502, xcache: "FunctionExecutionError"},
		{name: "rejected promise", src: `async function handler(e) { await Promise.reject(new Error('no')); }`,
			status: 502, xcache: "FunctionExecutionError"},
		{name: "promise that never settles", src: `function handler(e) { return new Promise(() => {}); }`,
			status: 502, xcache: "FunctionExecutionError"},
		{name: "runs out of time", src: `function handler(e) { for (;;) {} }`,
			status: 503, xcache: "FunctionThrottledError"},
		{name: "unknown origin", src: `import cf from 'cloudfront';
function handler(e) { cf.selectRequestOriginById('nope'); return e.request; }`,
			status: 502, xcache: "FunctionExecutionError"},
		{name: "missing kvs key rejects", src: `import cf from 'cloudfront';
async function handler(e) { await cf.kvs().get('absent'); return e.request; }`,
			status: 502, xcache: "FunctionExecutionError"},
		{name: "generated response", src: `function handler(e) {
  return {statusCode: 418, statusDescription: 'Teapot', headers: {'x-a': {value: 'b'}}, body: {encoding: 'text', data: 'short'}};
}`, status: 418},
		{name: "no body in the event", src: `function handler(e) {
  return e.request.body === undefined && e.body === undefined ? e.request : {statusCode: 500};
}`, status: 200},
		{name: "over-long viewer URL", src: passThrough, req: func() *http.Request {
			return httptest.NewRequest("GET", "/f/x?"+strings.Repeat("a", 8190), nil)
		}, status: 414},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			origin := &recorder{}
			d := distribution(t, tc.src, "", origin, &recorder{}, func(c *Config) { c.FunctionTimeout = 200 * time.Millisecond })
			r := httptest.NewRequest("PUT", "/f/x", strings.NewReader("body"))
			if tc.req != nil {
				r = tc.req()
			}
			w := serve(d, r)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d (body %q)", w.Code, tc.status, w.Body.String())
			}
			if got := w.Header().Get("X-Cache"); tc.xcache != "" && !strings.HasPrefix(got, tc.xcache) {
				t.Fatalf("X-Cache %q, want %s", got, tc.xcache)
			}
			asked := len(origin.got) > 0
			if asked != (tc.status == 200) {
				t.Fatalf("origin asked: %v with status %d", asked, w.Code)
			}
			if tc.status == 418 && (w.Body.String() != "short" || w.Header().Get("X-A") != "b") {
				t.Fatalf("generated response: %q %v", w.Body.String(), w.Header())
			}
		})
	}
}

func TestNewFunctionLimits(t *testing.T) {
	body := "function handler(e) { return e.request; }\n"
	big := body + "// " + strings.Repeat("x", 11*1024) + "\n"
	if _, err := NewFunction("big.js", big); !errors.Is(err, ErrFunctionTooLarge) {
		t.Fatalf("11 KB source: %v", err)
	}
	if _, err := NewFunction("ok.js", body+"// "+strings.Repeat("x", MaxFunctionBytes-len(body)-4)+"\n"); err != nil {
		t.Fatalf("10240-byte source refused: %v", err)
	}
	if _, err := NewFunction("fs.js", "import fs from 'fs';\n"+body); err == nil || !strings.Contains(err.Error(), "fs") {
		t.Fatalf("import of fs: %v", err)
	}
	if _, err := NewFunction("syntax.js", "function handler(e) {"); err == nil {
		t.Fatal("syntax error compiled")
	}
}

func TestForwarding(t *testing.T) {
	// The function sees the query as it arrived, drops a header, adds one,
	// rewrites the URI and picks origin b.
	const src = `import cf from 'cloudfront';
async function handler(e) {
  const r = e.request;
  if (r.querystring.d.value !== 'sha256%3Aab' || r.querystring.m.multiValue.length !== 2) {
    return {statusCode: 400, body: JSON.stringify(r.querystring)};
  }
  delete r.headers['x-drop'];
  r.headers['x-added'] = {value: await cf.kvs().get('k')};
  r.uri = '/rewritten/p';
  cf.selectRequestOriginById('b');
  return r;
}`
	a, b := &recorder{}, &recorder{}
	var seen []Exchange
	d := distribution(t, src, "", a, b, func(c *Config) { c.Observer = func(e Exchange) { seen = append(seen, e) } })
	r := httptest.NewRequest("POST", "/f/x?d=sha256%3Aab&m=1&m=2", strings.NewReader("payload"))
	r.Header.Set("X-Drop", "1")
	r.Header.Set("X-Keep", "2")
	r.Header.Set("X-Forwarded-Proto", "https") // hidden from the function, not forwarded
	w := serve(d, r)
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body.String())
	}
	if len(a.got) != 0 {
		t.Fatal("default origin asked although the function selected b")
	}
	got := b.last(t)
	if got.URL.Path != "/rewritten/p" || got.URL.RawQuery != "d=sha256%3Aab&m=1&m=2" {
		t.Fatalf("origin request %s?%s", got.URL.Path, got.URL.RawQuery)
	}
	if got.Header.Get("X-Drop") != "" || got.Header.Get("X-Keep") != "2" || got.Header.Get("X-Added") != "v" ||
		got.Header.Get("X-Forwarded-Proto") != "" || got.Header.Get("X-Amz-Cf-Id") == "" {
		t.Fatalf("origin headers %v", got.Header)
	}
	if b.bodies[0] != "payload" || got.Method != "POST" {
		t.Fatalf("origin got %s %q", got.Method, b.bodies[0])
	}
	if len(seen) != 1 || seen[0].Origin != "b" || seen[0].URI != "/rewritten/p" || seen[0].OriginStatus != 200 {
		t.Fatalf("observer: %+v", seen)
	}
}

func TestViewerResponse(t *testing.T) {
	const resp = `function handler(e) {
  const r = e.response;
  r.statusCode = 201;
  r.statusDescription = 'Created';
  r.headers['x-seen-uri'] = {value: e.request.uri};
  delete r.headers['x-secret'];
  return r;
}`
	const req = `function handler(e) { e.request.uri = '/new'; return e.request; }`
	for _, original := range []bool{false, true} {
		origin := &recorder{header: http.Header{"X-Secret": {"s"}}}
		d := distribution(t, req, resp, origin, &recorder{}, func(c *Config) { c.ViewerResponseSeesOriginalRequest = original })
		w := serve(d, httptest.NewRequest("GET", "/f/old", nil))
		wantURI := "/new"
		if original {
			wantURI = "/f/old"
		}
		if w.Code != 201 || w.Header().Get("X-Secret") != "" || w.Header().Get("X-Seen-Uri") != wantURI || w.Body.String() != "origin body" {
			t.Fatalf("original=%v: %d %v %q", original, w.Code, w.Header(), w.Body.String())
		}
	}
	// Not run for origin errors: the 404 passes as it is.
	origin := &recorder{status: 404, header: http.Header{"X-Secret": {"s"}}}
	d := distribution(t, req, resp, origin, &recorder{})
	if w := serve(d, httptest.NewRequest("GET", "/f/old", nil)); w.Code != 404 || w.Header().Get("X-Secret") != "s" {
		t.Fatalf("viewer response ran on a 404: %d %v", w.Code, w.Header())
	}
	// A failing viewer-response function: 502, the origin body is dropped.
	d = distribution(t, req, `function handler(e) { throw new Error('x'); }`, &recorder{}, &recorder{})
	if w := serve(d, httptest.NewRequest("GET", "/f/old", nil)); w.Code != 502 || strings.Contains(w.Body.String(), "origin body") {
		t.Fatalf("failing viewer response: %d %q", w.Code, w.Body.String())
	}
}

func TestRuntimeModules(t *testing.T) {
	// The crypto and Buffer the emulator offers agree with Go's.
	const src = `import crypto from 'crypto';
function handler(e) {
  const checks = [
    crypto.createHmac('sha256', 'key').update('msg').digest('base64url') === 'LZPLwb4We8sWN6SiPL_wGnh48MUO6DOVTqUiG7G4xig',
    crypto.createHash('sha256').update('abc').digest('hex') === 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    crypto.createHash('sha256').update(Buffer.from('616263', 'hex')).digest('base64') === 'ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=',
    Buffer.from('ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=', 'base64').toString('hex') === 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    Buffer.from('eyJhIjoxfQ', 'base64').toString('utf8') === '{"a":1}',
    Buffer.isBuffer(crypto.createHash('md5').update('').digest()) && crypto.createHash('md5').update('').digest().length === 16,
  ];
  const bad = checks.map((ok, i) => ok ? -1 : i).filter((i) => i >= 0);
  return bad.length ? {statusCode: 500, body: 'failed checks ' + bad.join(',')} : e.request;
}`
	d := distribution(t, src, "", &recorder{}, &recorder{})
	if w := serve(d, httptest.NewRequest("GET", "/f/x", nil)); w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body.String())
	}
}
