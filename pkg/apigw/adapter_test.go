package apigw_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/berth-registry/berth/pkg/apigw"
)

// The adapter's own tests work on events directly, as Lambda delivers them;
// internal/apigwemu tests the same adapter behind the emulated API Gateway
// with real HTTP clients on both sides.

func event(method, rawPath, rawQuery string, headers map[string]string) events.APIGatewayV2HTTPRequest {
	return events.APIGatewayV2HTTPRequest{
		Version: "2.0", RawPath: rawPath, RawQueryString: rawQuery, Headers: headers,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			DomainName: "abc123.execute-api.us-east-1.amazonaws.com",
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{
				Method: method, Path: rawPath, Protocol: "HTTP/1.1", SourceIP: "203.0.113.7",
			},
		},
	}
}

// API Gateway joins repeated headers with commas; dates (If-Range) contain
// commas too, so the adapter must keep one value per name, as net/http
// would have received a single header line.
func TestNewRequest(t *testing.T) {
	body := []byte{0, 1, 2, 0xff}
	ev := event("put", "/v2/a/b/blobs/uploads/u1", "digest=sha256%3Aab&x=1", map[string]string{
		"host":     "registry.example.com",
		"if-range": "Wed, 21 Oct 2015 07:28:00 GMT",
		"accept":   "application/vnd.oci.image.manifest.v1+json,application/vnd.oci.image.index.v1+json",
		// API Gateway's count of the bytes it received; the adapter trusts
		// the decoded body instead.
		"content-length": "999",
	})
	ev.Cookies = []string{"a=1", "b=2"}
	ev.Body, ev.IsBase64Encoded = base64.StdEncoding.EncodeToString(body), true
	r, err := apigw.NewRequest(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"method", r.Method, "PUT"},
		{"request uri", r.RequestURI, "/v2/a/b/blobs/uploads/u1?digest=sha256%3Aab&x=1"},
		{"query digest", r.URL.Query().Get("digest"), "sha256:ab"},
		{"url host (server-side requests carry only the path)", r.URL.Host, ""},
		{"host", r.Host, "registry.example.com"},
		{"remote addr", r.RemoteAddr, "203.0.113.7"},
		{"if-range values", len(r.Header.Values("If-Range")), 1},
		{"if-range", r.Header.Get("If-Range"), "Wed, 21 Oct 2015 07:28:00 GMT"},
		{"accept", r.Header.Get("Accept"), "application/vnd.oci.image.manifest.v1+json,application/vnd.oci.image.index.v1+json"},
		{"cookie", r.Header.Get("Cookie"), "a=1; b=2"},
		{"content-length header", r.Header.Get("Content-Length"), ""},
		{"content length", r.ContentLength, int64(len(body))},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	got, err := io.ReadAll(r.Body)
	if err != nil || string(got) != string(body) {
		t.Errorf("body = %v (%v), want %v", got, err, body)
	}

	// No host header: the API's domain; no body: http.NoBody.
	r, err = apigw.NewRequest(context.Background(), event("GET", "/v2/", "", nil))
	if err != nil {
		t.Fatal(err)
	}
	if r.Host != "abc123.execute-api.us-east-1.amazonaws.com" || r.Body != http.NoBody || r.ContentLength != 0 {
		t.Errorf("bodiless request: host %q, body %T, length %d", r.Host, r.Body, r.ContentLength)
	}

	bad := event("PUT", "/x", "", nil)
	bad.Body, bad.IsBase64Encoded = "not base64!", true
	if _, err := apigw.NewRequest(context.Background(), bad); err == nil {
		t.Error("invalid base64 body accepted")
	}
}

// The response follows net/http's rules, since handlers are written for a
// net/http server: 200 when nothing was written, no body for HEAD and 204,
// cookies apart from the other headers, connection headers dropped.
func TestHandlerResponse(t *testing.T) {
	h := apigw.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/headers":
			w.Header().Add("Link", `</a>; rel="next"`)
			w.Header().Add("Link", `</b>; rel="other"`)
			w.Header().Add("Set-Cookie", "a=1")
			w.Header().Add("Set-Cookie", "b=2")
			w.Header().Set("Connection", "close")
			w.Header().Set("Transfer-Encoding", "chunked")
			w.WriteHeader(http.StatusAccepted)
		case "/blob":
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write([]byte{0xff, 0xfe, 0})
		case "/sniff":
			_, _ = io.WriteString(w, "plain words")
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
			_, _ = io.WriteString(w, "dropped")
		}
	}))
	call := func(method, path string) events.APIGatewayV2HTTPResponse {
		t.Helper()
		resp, err := h(context.Background(), event(method, path, "", nil))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	resp := call("POST", "/headers")
	if resp.StatusCode != 202 || resp.Headers["Link"] != `</a>; rel="next", </b>; rel="other"` || resp.Headers["Content-Length"] != "0" {
		t.Errorf("headers: %d %v", resp.StatusCode, resp.Headers)
	}
	if strings.Join(resp.Cookies, "|") != "a=1|b=2" || resp.Headers["Set-Cookie"] != "" {
		t.Errorf("cookies %q, Set-Cookie header %q", resp.Cookies, resp.Headers["Set-Cookie"])
	}
	if _, ok := resp.Headers["Connection"]; ok {
		t.Error("Connection header passed on")
	}
	if _, ok := resp.Headers["Transfer-Encoding"]; ok {
		t.Error("Transfer-Encoding header passed on")
	}

	resp = call("GET", "/blob")
	b, err := base64.StdEncoding.DecodeString(resp.Body)
	if resp.StatusCode != 200 || !resp.IsBase64Encoded || err != nil || string(b) != "\xff\xfe\x00" || resp.Headers["Content-Length"] != "3" {
		t.Errorf("binary body: %d base64=%v %q %v", resp.StatusCode, resp.IsBase64Encoded, resp.Body, resp.Headers)
	}
	resp = call("HEAD", "/blob")
	if resp.StatusCode != 200 || resp.Body != "" {
		t.Errorf("HEAD: %d body %q", resp.StatusCode, resp.Body)
	}
	if resp = call("GET", "/sniff"); resp.Headers["Content-Type"] != "text/plain; charset=utf-8" || resp.Body != "plain words" {
		t.Errorf("sniffed response: %v %q", resp.Headers, resp.Body)
	}
	if resp = call("GET", "/nothing"); resp.StatusCode != 200 || resp.Body != "" {
		t.Errorf("handler that writes nothing: %d %q", resp.StatusCode, resp.Body)
	}
	if resp = call("DELETE", "/nocontent"); resp.StatusCode != 204 || resp.Body != "" {
		t.Errorf("204: %d %q", resp.StatusCode, resp.Body)
	}
}

func TestHandlerTextOrBase64(t *testing.T) {
	h := apigw.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, r.URL.Query().Get("s"))
	}))
	for s, b64 := range map[string]bool{`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`: false, `{"a":"b"}`: true, strings.Repeat(`"`, 100): true, strings.Repeat("<", 10): true, "plain": false} {
		resp, err := h(context.Background(), events.APIGatewayV2HTTPRequest{
			RawPath: "/", RawQueryString: "s=" + urlQueryEscape(s),
			RequestContext: events.APIGatewayV2HTTPRequestContext{HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "GET"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if resp.IsBase64Encoded != b64 {
			t.Errorf("%q: base64 = %v, want %v", s, resp.IsBase64Encoded, b64)
		}
	}
}

func urlQueryEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

func TestPublicURL(t *testing.T) {
	r := httptest.NewRequest("GET", "/v2/", nil)
	r.Host = "registry.example.com"
	r.Header.Set("X-Forwarded-Proto", "https")
	if got := apigw.PublicURL(r); got != "https://registry.example.com" {
		t.Errorf("PublicURL = %q", got)
	}
	r.Header.Del("X-Forwarded-Proto")
	if got := apigw.PublicURL(r); got != "http://registry.example.com" {
		t.Errorf("PublicURL without proxy = %q", got)
	}
}

// HTTP APIs deliver rawPath (and requestContext.http.path) already
// percent-decoded (docs/lambda.md cites the evidence): the adapter must take
// it as the decoded path and never decode it again. Decoding it again made
// an escaped "?" in a reference cut the path (the rest became the query),
// a literal "%zz" (sent as %25zz) fail the whole request with a 500, and a
// literal "%41" (sent as %2541) turn into "A".
func TestNewRequestDecodedRawPath(t *testing.T) {
	for _, c := range []struct {
		name, rawPath, rawQuery string
		wantPath, wantURI       string
		wantQuery               string
	}{
		{"decoded question mark", "/v2/a/b/manifests/we?ird", "", "/v2/a/b/manifests/we?ird", "/v2/a/b/manifests/we%3Fird", ""},
		{"decoded question mark with a query", "/v2/a/b/manifests/x?y", "n=1", "/v2/a/b/manifests/x?y", "/v2/a/b/manifests/x%3Fy?n=1", "n=1"},
		{"literal percent", "/v2/a/b/manifests/%zz", "", "/v2/a/b/manifests/%zz", "/v2/a/b/manifests/%25zz", ""},
		{"no double decoding", "/v2/a/b/manifests/%41", "", "/v2/a/b/manifests/%41", "/v2/a/b/manifests/%2541", ""},
		{"decoded hash", "/v2/a/b/manifests/t#frag", "", "/v2/a/b/manifests/t#frag", "/v2/a/b/manifests/t%23frag", ""},
		{"decoded space", "/v2/a b/tags/list", "", "/v2/a b/tags/list", "/v2/a%20b/tags/list", ""},
		{"plain", "/v2/a/b/blobs/uploads/u1", "digest=sha256%3Aab", "/v2/a/b/blobs/uploads/u1", "/v2/a/b/blobs/uploads/u1?digest=sha256%3Aab", "digest=sha256%3Aab"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := apigw.NewRequest(context.Background(), event("GET", c.rawPath, c.rawQuery, nil))
			if err != nil {
				t.Fatalf("NewRequest: %v", err)
			}
			if r.URL.Path != c.wantPath {
				t.Errorf("URL.Path = %q, want %q", r.URL.Path, c.wantPath)
			}
			if r.RequestURI != c.wantURI {
				t.Errorf("RequestURI = %q, want %q", r.RequestURI, c.wantURI)
			}
			if r.URL.RequestURI() != c.wantURI {
				t.Errorf("URL.RequestURI() = %q, want %q (URL.Path and URL.RawPath disagree)", r.URL.RequestURI(), c.wantURI)
			}
			if r.URL.RawQuery != c.wantQuery {
				t.Errorf("URL.RawQuery = %q, want %q", r.URL.RawQuery, c.wantQuery)
			}
		})
	}
}

// A stage that sets the origin-verify variable only accepts events that
// carry the matching header (CloudFront's origin adds it); anything else
// came straight to the execute-api endpoint and gets an OCI 403 without
// reaching the handler. The handler never sees the header.
func TestOriginVerify(t *testing.T) {
	var reached []string
	h := apigw.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached = append(reached, r.Header.Get(apigw.OriginVerifyHeader))
		w.WriteHeader(http.StatusNoContent)
	}))
	for _, c := range []struct {
		name, stageVar, header string
		send                   bool
		want                   int
	}{
		{"no stage variable: every request", "", "", false, 204},
		{"no stage variable, header ignored", "", "anything", true, 204},
		{"through CloudFront", "s3cr3t-marker", "s3cr3t-marker", true, 204},
		{"straight to execute-api", "s3cr3t-marker", "", false, 403},
		{"wrong value", "s3cr3t-marker", "s3cr3t-markex", true, 403},
		{"prefix of the value", "s3cr3t-marker", "s3cr3t", true, 403},
	} {
		t.Run(c.name, func(t *testing.T) {
			reached = nil
			ev := event("GET", "/v2/", "", map[string]string{})
			if c.stageVar != "" {
				ev.StageVariables = map[string]string{apigw.OriginVerifyStageVariable: c.stageVar}
			}
			if c.send {
				ev.Headers["x-berth-origin-verify"] = c.header
			}
			resp, err := h(context.Background(), ev)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.want)
			}
			if c.want == 403 {
				if len(reached) != 0 {
					t.Error("handler reached")
				}
				if !strings.Contains(resp.Body, `"code":"DENIED"`) || resp.Headers["Content-Type"] != "application/json" {
					t.Errorf("403 body %q headers %v, want an OCI DENIED error", resp.Body, resp.Headers)
				}
				return
			}
			if len(reached) != 1 || reached[0] != "" {
				t.Errorf("handler calls %q, want one without the origin header", reached)
			}
		})
	}
}
