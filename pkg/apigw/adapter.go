// Package apigw puts an http.Handler behind Amazon API Gateway HTTP APIs
// (payload format 2.0) and Lambda: Handler is the production adapter a
// Lambda main hands to lambda.Start. It is all a function binary links of
// this path; the emulation of API Gateway and the Lambda service that tests
// and berth serve --via-lambda put in front of Handler lives in
// internal/apigwemu. docs/lambda.md describes the whole path.
//
// Handler does its own conversion rather than use aws-lambda-go-api-proxy
// v0.16.2, which splits every comma-joined request header into several
// values (dates such as If-Range break), injects the request context into a
// request header, answers 504 when a handler never calls WriteHeader,
// returns bodies for HEAD and ignores the 6 MB budget when choosing between
// text and base64 response bodies.
package apigw

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
)

// HandlerFunc is the Lambda handler signature Handler returns.
type HandlerFunc func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error)

// OriginVerifyStageVariable and OriginVerifyHeader keep the execute-api
// endpoint from being a way around CloudFront (docs/deploy.md, "Only
// through CloudFront"): when the stage has the variable, CloudFront's
// origin adds the header with the same value, and a request without it did
// not come through the distribution. The value travels in every event, so
// the functions need no setting of their own. It marks the path a request
// took; it is not a credential (tokens still authorize every request).
const (
	OriginVerifyStageVariable = "berthOriginVerify"
	OriginVerifyHeader        = "X-Berth-Origin-Verify"
)

// Handler adapts h to a Lambda handler for API Gateway HTTP API events
// (payload format 2.0).
func Handler(h http.Handler) HandlerFunc {
	return func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		if !originVerified(ev) {
			return notThroughCloudFront(), nil
		}
		r, err := NewRequest(ctx, ev)
		if err != nil {
			return events.APIGatewayV2HTTPResponse{}, err
		}
		// The handler and its logs never see the marker.
		r.Header.Del(OriginVerifyHeader)
		w := newResponseWriter()
		h.ServeHTTP(w, r)
		return w.response(r.Method), nil
	}
}

// originVerified reports whether ev came the way the stage requires: any
// way when the stage sets no OriginVerifyStageVariable, else only with the
// matching OriginVerifyHeader (compared in constant time).
func originVerified(ev events.APIGatewayV2HTTPRequest) bool {
	want := ev.StageVariables[OriginVerifyStageVariable]
	if want == "" {
		return true
	}
	got := ev.Headers[strings.ToLower(OriginVerifyHeader)]
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// notThroughCloudFront is the answer to a request that skipped CloudFront:
// an OCI error body, so registry clients show the reason.
func notThroughCloudFront() events.APIGatewayV2HTTPResponse {
	const body = `{"errors":[{"code":"DENIED","message":"requested access to the resource is denied: use the registry's CloudFront address, not the execute-api endpoint"}]}`
	return events.APIGatewayV2HTTPResponse{
		StatusCode: http.StatusForbidden,
		Headers:    map[string]string{"Content-Type": "application/json", "Content-Length": strconv.Itoa(len(body))},
		Body:       body,
	}
}

// NewRequest turns an API Gateway event into the request a net/http server
// would have handed to the handler. Header values arrive comma-joined from
// API Gateway and stay joined (one value per name): that is equivalent for
// list-valued headers and the only correct reading of the others.
func NewRequest(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (*http.Request, error) {
	var body []byte
	if ev.IsBase64Encoded {
		b, err := base64.StdEncoding.DecodeString(ev.Body)
		if err != nil {
			return nil, fmt.Errorf("apigw: decode base64 body: %w", err)
		}
		body = b
	} else {
		body = []byte(ev.Body)
	}
	// HTTP APIs deliver rawPath (and requestContext.http.path) already
	// percent-decoded (docs/lambda.md, "Paths arrive decoded"): it is the
	// decoded path, taken as is. Parsing it as a request URI would decode it
	// a second time: an escaped "?" in it would end the path, a literal
	// "%zz" would fail the request and a literal "%41" would become "A".
	// URL.RawPath stays empty, so URL.EscapedPath re-encodes Path and the
	// two always agree.
	path := ev.RawPath
	if path == "" {
		path = ev.RequestContext.HTTP.Path
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	host := ev.Headers["host"]
	if host == "" {
		host = ev.RequestContext.DomainName
	}
	u := &url.URL{Path: path, RawQuery: ev.RawQueryString}

	method := strings.ToUpper(ev.RequestContext.HTTP.Method)
	if id := ev.RequestContext.RequestID; id != "" {
		ctx = context.WithValue(ctx, requestIDKey{}, id)
	}
	r, err := http.NewRequestWithContext(ctx, method, "/", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("apigw: build request: %w", err)
	}
	r.URL = u // a server-side request carries only the path and query
	r.RequestURI = u.RequestURI()
	r.Host = host
	r.RemoteAddr = ev.RequestContext.HTTP.SourceIP
	if p := ev.RequestContext.HTTP.Protocol; p != "" {
		if major, minor, ok := http.ParseHTTPVersion(p); ok {
			r.Proto, r.ProtoMajor, r.ProtoMinor = p, major, minor
		}
	}
	for k, v := range ev.Headers {
		r.Header[http.CanonicalHeaderKey(k)] = []string{v}
	}
	if len(ev.Cookies) > 0 {
		r.Header.Set("Cookie", strings.Join(ev.Cookies, "; "))
	}
	r.Header.Del("Content-Length")
	r.ContentLength = int64(len(body))
	if len(body) == 0 {
		r.Body = http.NoBody
	}
	return r, nil
}

type requestIDKey struct{}

// RequestID returns API Gateway's id of the request (requestContext.requestId,
// also in API Gateway's access log and its apigw-requestid response header),
// or "" for a request that did not come through NewRequest. It travels in
// the context because it is the platform's, not the HTTP request's: a
// header would let a client choose it.
func RequestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey{}).(string)
	return id
}

// PublicURL returns the origin (scheme://host) the client used to reach the
// registry, for building absolute URLs. Behind API Gateway the host is the
// API's domain (custom or execute-api) and the scheme comes from
// X-Forwarded-Proto; the $default stage adds no path prefix. Locations the
// registry sends are relative, so clients resolve them against whatever
// domain they called (CloudFront included): prefer relative URLs.
func PublicURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p != "" {
		scheme, _, _ = strings.Cut(p, ",")
		scheme = strings.ToLower(strings.TrimSpace(scheme))
	}
	return scheme + "://" + r.Host
}

// responseWriter buffers a response for one Lambda invocation.
type responseWriter struct {
	header http.Header
	body   bytes.Buffer
	status int
}

func newResponseWriter() *responseWriter { return &responseWriter{header: http.Header{}} }

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 { // 1xx informational responses are not forwarded
		w.status = code
	}
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(b)
}

// hopByHop are response headers that describe the Lambda response, not the
// HTTP message API Gateway sends; it sets its own.
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// response builds the event answer with net/http's semantics: status 200
// when none was written, no body for HEAD, 204 and 304, a sniffed
// Content-Type when the handler set none and wrote a body.
func (w *responseWriter) response(method string) events.APIGatewayV2HTTPResponse {
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	body := w.body.Bytes()
	bodyAllowed := method != http.MethodHead && status != http.StatusNoContent && status != http.StatusNotModified
	if !bodyAllowed {
		body = nil
	}
	h := w.header
	for _, k := range hopByHop {
		h.Del(k)
	}
	if _, set := h["Content-Type"]; !set && len(body) > 0 {
		h.Set("Content-Type", http.DetectContentType(body))
	}
	if bodyAllowed {
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	headers := make(map[string]string, len(h))
	var cookies []string
	for k, vs := range h {
		if len(vs) == 0 {
			continue
		}
		if k == "Set-Cookie" {
			cookies = append(cookies, vs...)
			continue
		}
		headers[k] = strings.Join(vs, ", ")
	}
	out := events.APIGatewayV2HTTPResponse{StatusCode: status, Headers: headers, Cookies: cookies}
	out.Body, out.IsBase64Encoded = encodeBody(body)
	return out
}

// encodeBody picks the smaller serialized form of body: a JSON string (valid
// UTF-8 only; quotes, backslashes, control and HTML characters are escaped
// by the runtime's encoding/json) or base64 (4/3 of the size). A 4 MiB
// manifest full of quotes would not fit 6 MB as text but does as base64.
func encodeBody(body []byte) (string, bool) {
	if len(body) == 0 {
		return "", false
	}
	b64 := base64.StdEncoding.EncodedLen(len(body))
	if utf8.Valid(body) && jsonStringLen(body) <= b64 {
		return string(body), false
	}
	return base64.StdEncoding.EncodeToString(body), true
}

// jsonStringLen is the length encoding/json gives s, without the quotes.
func jsonStringLen(s []byte) int {
	n := 0
	for _, c := range s {
		switch {
		case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f':
			n += 2
		case c < 0x20 || c == '<' || c == '>' || c == '&':
			n += 6
		default:
			n++
		}
	}
	// U+2028 and U+2029 are escaped too (3 bytes become 6).
	n += 3 * (bytes.Count(s, []byte("\u2028")) + bytes.Count(s, []byte("\u2029")))
	return n
}
