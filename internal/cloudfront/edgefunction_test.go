package cloudfront

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// edgeDistribution attaches Lambda@Edge function src on origin response to
// /f/* (viewer-response CloudFront Function resp too, if not empty) in
// front of origin.
func edgeDistribution(t *testing.T, src, resp string, origin http.Handler, opts ...func(*Config)) *Distribution {
	t.Helper()
	fn, err := NewEdgeFunction("edge.js", src)
	if err != nil {
		t.Fatal(err)
	}
	return distribution(t, "", resp, origin, origin, append([]func(*Config){func(c *Config) {
		c.Behaviors[0].OriginResponse = fn
	}}, opts...)...)
}

func TestEdgeFunctionEvent(t *testing.T) {
	// The function hands the event back as the body.
	const echo = `exports.handler = async (event) => {
		const res = event.Records[0].cf.response;
		res.body = JSON.stringify(event);
		return res;
	};`
	origin := &recorder{status: 418, header: http.Header{"X-Origin": {"a", "b"}, "X-Amzn-Requestid": {"hidden"}}}
	var ex Exchange
	d := edgeDistribution(t, echo, "", origin, func(c *Config) { c.Observer = func(x Exchange) { ex = x } })
	r := httptest.NewRequest(http.MethodPatch, "/f/x%2Fy?digest=sha256%3Aab&b", strings.NewReader("hello"))
	r.Header.Set("Authorization", "Bearer t")
	w := serve(d, r)
	if w.Code != 418 || !ex.OriginResponse || ex.OriginStatus != 418 {
		t.Fatalf("status %d (origin %d, function ran %v)", w.Code, ex.OriginStatus, ex.OriginResponse)
	}
	// Headers the function never saw still reach the viewer.
	if w.Header().Get("X-Amzn-Requestid") != "hidden" || len(w.Header().Values("X-Origin")) != 2 {
		t.Errorf("headers %v", w.Header())
	}
	var ev struct {
		Records []struct {
			CF struct {
				Config  map[string]string
				Request struct {
					ClientIP    string `json:"clientIp"`
					Method, URI string
					Querystring *string
					Headers     map[string][]map[string]string
				}
				Response struct {
					Status            any
					StatusDescription string
					Headers           map[string][]map[string]string
				}
			} `json:"cf"`
		}
	}
	if err := json.Unmarshal(w.Body.Bytes(), &ev); err != nil || len(ev.Records) != 1 {
		t.Fatalf("event %s: %v", w.Body.Bytes(), err)
	}
	cf := ev.Records[0].CF
	if cf.Config["eventType"] != "origin-response" || cf.Config["distributionId"] == "" || cf.Config["requestId"] == "" {
		t.Errorf("config %v", cf.Config)
	}
	if cf.Request.Method != "PATCH" || cf.Request.URI != "/f/x%2Fy" || cf.Request.Querystring == nil ||
		*cf.Request.Querystring != "digest=sha256%3Aab&b" || cf.Request.ClientIP == "" {
		t.Errorf("request %+v", cf.Request)
	}
	if a := cf.Request.Headers["authorization"]; len(a) != 1 || a[0]["key"] != "Authorization" || a[0]["value"] != "Bearer t" {
		t.Errorf("request authorization header %v", a)
	}
	if _, ok := cf.Request.Headers["x-amz-cf-id"]; ok {
		t.Error("the function saw X-Amz-Cf-Id, a disallowed header")
	}
	// The status is a string; headers are lowercase name → [{key, value}].
	if cf.Response.Status != "418" || cf.Response.StatusDescription != "I'm a teapot" {
		t.Errorf("response status %#v %q", cf.Response.Status, cf.Response.StatusDescription)
	}
	if o := cf.Response.Headers["x-origin"]; len(o) != 2 || o[0]["key"] != "X-Origin" || o[1]["value"] != "b" {
		t.Errorf("response x-origin %v", o)
	}
	if _, ok := cf.Response.Headers["x-amzn-requestid"]; ok {
		t.Error("the function saw X-Amzn-RequestId, a disallowed header")
	}
}

func TestEdgeFunctionRules(t *testing.T) {
	tests := []struct {
		name   string
		src    string
		status int
		body   string // "" : not checked
		xcache string // CloudFront's error kind, when the function failed
	}{
		{name: "unchanged: the origin's body goes on", src: `exports.handler = async (e) => e.Records[0].cf.response;`,
			status: 413, body: "origin body"},
		{name: "callback", src: `exports.handler = (e, ctx, cb) => { const r = e.Records[0].cf.response; r.status = '404'; cb(null, r); };`,
			status: 404, body: "origin body"},
		{name: "body replaced", src: `exports.handler = async (e) => ({status: '413', headers: {'content-type': [{key: 'Content-Type', value: 'text/plain'}]}, body: 'mine'});`,
			status: 413, body: "mine"},
		{name: "base64 body", src: `exports.handler = async (e) => ({status: '200', body: 'aGk=', bodyEncoding: 'base64'});`,
			status: 200, body: "hi"},
		{name: "empty body removes the origin's", src: `exports.handler = async (e) => { const r = e.Records[0].cf.response; r.body = ''; return r; };`,
			status: 413, body: "-"},
		{name: "status must be a string", src: `exports.handler = async (e) => ({status: 413});`,
			status: 502, xcache: "LambdaValidationError"},
		{name: "status below 200", src: `exports.handler = async (e) => ({status: '100'});`,
			status: 502, xcache: "LambdaValidationError"},
		{name: "bad body encoding", src: `exports.handler = async (e) => ({status: '200', body: 'x', bodyEncoding: 'gzip'});`,
			status: 502, xcache: "LambdaValidationError"},
		{name: "invalid base64", src: `exports.handler = async (e) => ({status: '200', body: '%%', bodyEncoding: 'base64'});`,
			status: 502, xcache: "LambdaValidationError"},
		{name: "via is read-only", src: `exports.handler = async (e) => { const r = e.Records[0].cf.response; r.headers.via = [{key: 'Via', value: 'x'}]; return r; };`,
			status: 502, xcache: "LambdaValidationError"},
		{name: "disallowed header", src: `exports.handler = async (e) => { const r = e.Records[0].cf.response; r.headers['x-cache'] = [{key: 'X-Cache', value: 'x'}]; return r; };`,
			status: 502, xcache: "LambdaValidationError"},
		{name: "header keys are lowercase", src: `exports.handler = async (e) => ({status: '200', headers: {'X-A': [{value: '1'}]}});`,
			status: 502, xcache: "LambdaValidationError"},
		{name: "key matches its name", src: `exports.handler = async (e) => ({status: '200', headers: {'x-a': [{key: 'X-B', value: '1'}]}});`,
			status: 502, xcache: "LambdaValidationError"},
		{name: "over 1 MB", src: `exports.handler = async (e) => ({status: '200', body: 'x'.repeat(1048577)});`,
			status: 502, xcache: "LambdaValidationError"},
		{name: "throws", src: `exports.handler = async (e) => { throw new Error('boom'); };`,
			status: 503, xcache: "LambdaExecutionError"},
		{name: "callback error", src: `exports.handler = (e, ctx, cb) => cb(new Error('boom'));`,
			status: 503, xcache: "LambdaExecutionError"},
		{name: "no promise, no callback", src: `exports.handler = (e) => e.Records[0].cf.response;`,
			status: 503, xcache: "LambdaExecutionError"},
		{name: "no modules", src: `const https = require('https'); exports.handler = async (e) => e.Records[0].cf.response;`,
			status: 503, xcache: "LambdaExecutionError"},
		{name: "time limit", src: `exports.handler = async (e) => { for (;;) {} };`,
			status: 503, xcache: "LambdaExecutionError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := edgeDistribution(t, tt.src, "", &recorder{status: 413}, func(c *Config) { c.FunctionTimeout = 200 * time.Millisecond })
			w := serve(d, httptest.NewRequest(http.MethodPatch, "/f/x", strings.NewReader("body")))
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if tt.xcache != "" && w.Header().Get("X-Cache") != tt.xcache+" from cloudfront" {
				t.Errorf("X-Cache %q, want %s", w.Header().Get("X-Cache"), tt.xcache)
			}
			switch tt.body {
			case "":
			case "-":
				if w.Body.Len() != 0 || w.Header().Get("Content-Length") != "0" {
					t.Errorf("body %q, Content-Length %q; want none", w.Body, w.Header().Get("Content-Length"))
				}
			default:
				if w.Body.String() != tt.body {
					t.Errorf("body %q, want %q", w.Body, tt.body)
				}
			}
		})
	}
}

// TestEdgeFunctionBeforeViewerResponse: the origin-response function runs
// first; the viewer-response function sees its status and is skipped when
// that is 400 or above.
func TestEdgeFunctionBeforeViewerResponse(t *testing.T) {
	const mark = `async function handler(e) { e.response.headers['x-viewer'] = {value: String(e.response.statusCode)}; return e.response; }`
	for _, tt := range []struct {
		name, src      string
		origin, status int
		viewer         string
	}{
		{"error made a success", `exports.handler = async (e) => ({status: '200', body: 'ok'});`, 404, 200, "200"},
		{"success made an error", `exports.handler = async (e) => ({status: '500', body: 'no'});`, 200, 500, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := edgeDistribution(t, tt.src, mark, &recorder{status: tt.origin})
			w := serve(d, httptest.NewRequest(http.MethodGet, "/f/x", nil))
			if w.Code != tt.status || w.Header().Get("X-Viewer") != tt.viewer {
				t.Errorf("status %d, viewer-response saw %q; want %d, %q", w.Code, w.Header().Get("X-Viewer"), tt.status, tt.viewer)
			}
		})
	}
}

func TestEdgeFunctionCompileError(t *testing.T) {
	if _, err := NewEdgeFunction("bad.js", "exports.handler = async (e) => {"); err == nil {
		t.Fatal("compiled a syntax error")
	}
}
