// Package apigwemu emulates, in process, what stands in front of a Berth
// Lambda function in AWS: an API Gateway HTTP API ($default stage, Lambda
// proxy integration, payload format 2.0) and the Lambda service.
//
// Emulator is an http.Handler that builds the exact event API Gateway
// builds, serializes it, enforces the real size and time limits and
// answers as API Gateway does when one is hit. A Function is what it
// invokes: Func runs a handler in process through the same JSON round trip
// the runtime does, RuntimeAPI runs a real bootstrap binary. Emulate(h)
// wraps h in the production adapter (pkg/apigw) and all of the above.
//
// It is test and local-development support (tests/lambda, tests/bench,
// internal/cloudfront, berth serve --via-lambda), kept out of pkg/ so no
// function binary links it. docs/lambda.md describes the whole path.
package apigwemu

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/berth-registry/berth/pkg/apigw"
)

// The limits API Gateway HTTP APIs enforce (docs/lambda.md cites the
// sources); Lambda's own are in function.go.
const (
	// MaxRequestBytes is the HTTP API payload quota (10 MB). Larger requests
	// are answered 413 by API Gateway before any Lambda runs.
	MaxRequestBytes = 10 << 20
	// DefaultTimeout is the HTTP API integration timeout (maximum 30 s).
	DefaultTimeout = 30 * time.Second
)

// Emulator is API Gateway (HTTP API, $default stage, Lambda proxy
// integration with payload format 2.0) in front of one Function.
type Emulator struct {
	fn       Function
	routes   []route
	timeout  time.Duration
	domain   string
	account  string
	log      *slog.Logger
	now      func() time.Time
	observer func(Invocation)
	stageVar map[string]string
}

// Invocation describes one call the emulator made, for tests and benchmarks.
type Invocation struct {
	Event      events.APIGatewayV2HTTPRequest
	EventBytes int // serialized event size
	RespBytes  int // serialized response size (0 when the invoke failed)
	Status     int // status sent to the client
	Err        error
}

// Option configures an Emulator.
type Option func(*Emulator)

// WithRoutes sets the API's route keys ("ANY /v2/{proxy+}", "GET /token").
// A request no route matches gets API Gateway's 404. Without routes every
// request takes the $default route.
func WithRoutes(keys ...string) Option {
	return func(e *Emulator) {
		for _, k := range keys {
			e.routes = append(e.routes, parseRoute(k))
		}
	}
}

// WithTimeout sets the integration timeout (default 30 s).
func WithTimeout(d time.Duration) Option { return func(e *Emulator) { e.timeout = d } }

// WithDomainName fixes requestContext.domainName and the host header;
// default: the Host of each request, as a custom domain would be.
func WithDomainName(d string) Option { return func(e *Emulator) { e.domain = d } }

// WithLogger logs every invocation at debug level and failures at warn.
func WithLogger(l *slog.Logger) Option { return func(e *Emulator) { e.log = l } }

// WithClock sets the clock used for requestContext.time.
func WithClock(now func() time.Time) Option { return func(e *Emulator) { e.now = now } }

// WithStageVariables sets the $default stage's variables, which every
// event carries as stageVariables (the origin-verify value of pkg/apigw
// among them).
func WithStageVariables(vars map[string]string) Option {
	return func(e *Emulator) { e.stageVar = vars }
}

// WithObserver is called after every request that reached the Lambda stage.
func WithObserver(f func(Invocation)) Option { return func(e *Emulator) { e.observer = f } }

// NewEmulator returns API Gateway in front of fn.
func NewEmulator(fn Function, opts ...Option) *Emulator {
	e := &Emulator{fn: fn, timeout: DefaultTimeout, account: "123456789012", log: slog.New(slog.DiscardHandler), now: time.Now}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Emulate is NewEmulator(Func(apigw.Handler(h)), opts...): h behind the
// production adapter, behind the emulated API Gateway and Lambda.
func Emulate(h http.Handler, opts ...Option) *Emulator {
	return NewEmulator(Func(apigw.Handler(h)), opts...)
}

// gatewayError writes one of API Gateway's own responses.
func gatewayError(w http.ResponseWriter, requestID string, status int, msg string) {
	b, _ := json.Marshal(map[string]string{"message": msg})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Apigw-Requestid", requestID)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// ServeHTTP does what API Gateway and Lambda do with one request.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	requestID := newRequestID()
	if r.ContentLength > MaxRequestBytes {
		gatewayError(w, requestID, http.StatusRequestEntityTooLarge, "Request Entity Too Large")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBytes+1))
	if err != nil {
		gatewayError(w, requestID, http.StatusBadRequest, "Bad Request")
		return
	}
	if len(body) > MaxRequestBytes {
		gatewayError(w, requestID, http.StatusRequestEntityTooLarge, "Request Entity Too Large")
		return
	}
	ev, ok := e.Event(r, body, requestID)
	if !ok {
		gatewayError(w, requestID, http.StatusNotFound, "Not Found")
		return
	}
	inv := Invocation{Event: ev}
	status := e.invoke(w, r, &inv)
	inv.Status = status
	if inv.Err != nil {
		e.log.WarnContext(r.Context(), "lambda invoke failed", slog.String("path", r.URL.Path), slog.Int("status", status), slog.Any("error", inv.Err))
	}
	if e.observer != nil {
		e.observer(inv)
	}
}

// invoke runs the function and writes the response; it returns the status.
func (e *Emulator) invoke(w http.ResponseWriter, r *http.Request, inv *Invocation) int {
	requestID := inv.Event.RequestContext.RequestID
	payload, err := json.Marshal(inv.Event)
	if err != nil {
		inv.Err = err
		gatewayError(w, requestID, http.StatusInternalServerError, "Internal Server Error")
		return http.StatusInternalServerError
	}
	inv.EventBytes = len(payload)
	if len(payload) > MaxInvokeBytes {
		// Lambda refuses the invoke (RequestEntityTooLargeException, HTTP
		// 413) and API Gateway passes the 413 on.
		inv.Err = fmt.Errorf("RequestEntityTooLargeException: %d byte event exceeds %d", len(payload), MaxInvokeBytes)
		gatewayError(w, requestID, http.StatusRequestEntityTooLarge, "Request Entity Too Large")
		return http.StatusRequestEntityTooLarge
	}
	ctx, cancel := context.WithTimeout(r.Context(), e.timeout)
	defer cancel()
	ctx = lambdacontext.NewContext(ctx, &lambdacontext.LambdaContext{AwsRequestID: requestID})
	done := make(chan result, 1)
	go func() {
		out, err := e.fn.Invoke(ctx, payload)
		done <- result{out, err}
	}()
	var out []byte
	select {
	case res := <-done:
		out, err = res.out, res.err
	case <-ctx.Done():
		err = ctx.Err()
	}
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		inv.Err = fmt.Errorf("integration timeout after %s: %w", e.timeout, context.DeadlineExceeded)
		gatewayError(w, requestID, http.StatusServiceUnavailable, "Service Unavailable")
		return http.StatusServiceUnavailable
	case err != nil:
		inv.Err = err
		gatewayError(w, requestID, http.StatusInternalServerError, "Internal Server Error")
		return http.StatusInternalServerError
	}
	inv.RespBytes = len(out)
	if len(out) > MaxResponseBytes {
		inv.Err = fmt.Errorf("Function.ResponseSizeTooLarge: %d byte response exceeds %d", len(out), MaxResponseBytes)
		gatewayError(w, requestID, http.StatusInternalServerError, "Internal Server Error")
		return http.StatusInternalServerError
	}
	resp, err := parseResponse(out)
	if err != nil {
		inv.Err = err
		gatewayError(w, requestID, http.StatusInternalServerError, "Internal Server Error")
		return http.StatusInternalServerError
	}
	return writeResponse(w, r, resp, requestID)
}

// parseResponse reads a function's answer the way HTTP APIs do for payload
// format 2.0: an object with statusCode is a full response; anything else is
// a 200 application/json body.
func parseResponse(out []byte) (events.APIGatewayV2HTTPResponse, error) {
	var probe map[string]json.RawMessage
	if json.Unmarshal(out, &probe) == nil {
		if _, ok := probe["statusCode"]; ok {
			var resp events.APIGatewayV2HTTPResponse
			if err := json.Unmarshal(out, &resp); err != nil {
				return resp, fmt.Errorf("malformed Lambda proxy response: %w", err)
			}
			if resp.StatusCode < 100 || resp.StatusCode > 599 {
				return resp, fmt.Errorf("malformed Lambda proxy response: status %d", resp.StatusCode)
			}
			return resp, nil
		}
	}
	body := string(out)
	var s string
	if json.Unmarshal(out, &s) == nil {
		body = s
	}
	return events.APIGatewayV2HTTPResponse{StatusCode: 200, Body: body, Headers: map[string]string{"content-type": "application/json"}}, nil
}

// writeResponse sends the function's response to the client. Headers pass
// through as the function set them (one comma-joined value each); cookies
// become Set-Cookie headers; API Gateway computes Content-Length itself
// except for HEAD, where the function's value (the GET length) is kept.
func writeResponse(w http.ResponseWriter, r *http.Request, resp events.APIGatewayV2HTTPResponse, requestID string) int {
	body := []byte(resp.Body)
	if resp.IsBase64Encoded {
		b, err := base64.StdEncoding.DecodeString(resp.Body)
		if err != nil {
			gatewayError(w, requestID, http.StatusInternalServerError, "Internal Server Error")
			return http.StatusInternalServerError
		}
		body = b
	}
	h := w.Header()
	for k, v := range resp.Headers {
		ck := http.CanonicalHeaderKey(k)
		if isHopByHop(ck) || ck == "Content-Length" && r.Method != http.MethodHead {
			continue
		}
		h[ck] = []string{v}
	}
	for _, c := range resp.Cookies {
		h.Add("Set-Cookie", c)
	}
	h.Set("Apigw-Requestid", requestID)
	if r.Method != http.MethodHead && resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusNotModified {
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(resp.StatusCode)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	return resp.StatusCode
}

// isHopByHop reports the response headers API Gateway does not pass on to
// the client from a function's response: they describe a connection, and
// it sets its own.
func isHopByHop(canonical string) bool {
	switch canonical {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// Event builds the event API Gateway sends for r with the given body, and
// reports whether a route matched.
func (e *Emulator) Event(r *http.Request, body []byte, requestID string) (events.APIGatewayV2HTTPRequest, bool) {
	// HTTP APIs decode the path before routing, and rawPath,
	// requestContext.http.path and {proxy+} carry it decoded despite the
	// name; rawQueryString stays as sent (docs/lambda.md, "Paths arrive
	// decoded"). Sending the encoded path here hid the adapter decoding it
	// a second time.
	rawPath := r.URL.Path
	routeKey, params, ok := e.match(r.Method, rawPath)
	if !ok {
		return events.APIGatewayV2HTTPRequest{}, false
	}
	now := e.now().UTC()
	host := e.domain
	if host == "" {
		host = r.Host
	}
	sourceIP := r.RemoteAddr
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		sourceIP = h
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	port := "443"
	if proto == "http" {
		port = "80"
	}
	if _, p, err := net.SplitHostPort(host); err == nil {
		port = p
	}

	headers := map[string]string{}
	var cookies []string
	for k, vs := range r.Header {
		lk := strings.ToLower(k)
		switch lk {
		case "cookie":
			for _, v := range vs {
				for c := range strings.SplitSeq(v, ";") {
					if c = strings.TrimSpace(c); c != "" {
						cookies = append(cookies, c)
					}
				}
			}
			continue
		case "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "expect", "content-length", "host":
			continue
		}
		headers[lk] = strings.Join(vs, ",")
	}
	headers["host"] = host
	if len(body) > 0 || r.ContentLength == 0 && (r.Method == http.MethodPut || r.Method == http.MethodPost || r.Method == http.MethodPatch) {
		headers["content-length"] = strconv.Itoa(len(body))
	}
	if xff := headers["x-forwarded-for"]; xff != "" {
		headers["x-forwarded-for"] = xff + ", " + sourceIP
	} else {
		headers["x-forwarded-for"] = sourceIP
	}
	headers["x-forwarded-port"] = port
	headers["x-forwarded-proto"] = proto
	headers["x-amzn-trace-id"] = "Root=1-" + strconv.FormatInt(now.Unix(), 16) + "-" + randomHex(12)

	domainPrefix, _, _ := strings.Cut(host, ".")
	ev := events.APIGatewayV2HTTPRequest{
		Version:        "2.0",
		RouteKey:       routeKey,
		RawPath:        rawPath,
		RawQueryString: r.URL.RawQuery,
		Cookies:        cookies,
		Headers:        headers,
		PathParameters: params,
		StageVariables: e.stageVar,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey:     routeKey,
			AccountID:    e.account,
			Stage:        "$default",
			RequestID:    requestID,
			APIID:        domainPrefix,
			DomainName:   host,
			DomainPrefix: domainPrefix,
			Time:         now.Format("02/Jan/2006:15:04:05 -0700"),
			TimeEpoch:    now.UnixMilli(),
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{
				Method:    r.Method,
				Path:      rawPath,
				Protocol:  "HTTP/1.1",
				SourceIP:  sourceIP,
				UserAgent: r.UserAgent(),
			},
		},
	}
	if q, err := url.ParseQuery(r.URL.RawQuery); err == nil && len(q) > 0 {
		ev.QueryStringParameters = make(map[string]string, len(q))
		for k, vs := range q {
			ev.QueryStringParameters[k] = strings.Join(vs, ",")
		}
	}
	if len(body) > 0 {
		if isText(r.Header.Get("Content-Type")) && utf8.Valid(body) {
			ev.Body = string(body)
		} else {
			ev.Body = base64.StdEncoding.EncodeToString(body)
			ev.IsBase64Encoded = true
		}
	}
	return ev, true
}

// isText reports whether HTTP APIs pass a request body of this type as text.
// They infer it from Content-Type: text/* and application/json go as text,
// everything else base64 (vendor +json types such as OCI manifests
// included: the conservative reading, which costs 4/3 in size).
func isText(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return strings.HasPrefix(mt, "text/") || mt == "application/json"
}

// route is one parsed route key.
type route struct {
	key    string
	method string // "ANY" matches every method
	path   string // without a trailing {proxy+}
	greedy bool   // path ends in /{proxy+}
}

func parseRoute(key string) route {
	method, path, _ := strings.Cut(key, " ")
	rt := route{key: key, method: method, path: path}
	if p, ok := strings.CutSuffix(path, "/{proxy+}"); ok {
		rt.path, rt.greedy = p+"/", true
	}
	return rt
}

// match finds the route for a request the way HTTP APIs choose: an exact
// path beats a greedy one, a specific method beats ANY, the longest greedy
// prefix wins. A trailing slash does not matter to an exact route: HTTP
// APIs send /v2 and /v2/ to "ANY /v2" (and reject route keys ending in /).
func (e *Emulator) match(method, rawPath string) (string, map[string]string, bool) {
	if len(e.routes) == 0 {
		return "$default", nil, true
	}
	best, bestScore := route{}, -1
	for _, rt := range e.routes {
		if rt.method != "ANY" && rt.method != method {
			continue
		}
		score := 0
		switch {
		case !rt.greedy && (rt.path == rawPath || rawPath != "/" && rt.path == strings.TrimSuffix(rawPath, "/")):
			score = 1 << 20
		case rt.greedy && strings.HasPrefix(rawPath, rt.path) && len(rawPath) > len(rt.path):
			score = len(rt.path)
		default:
			continue
		}
		if rt.method != "ANY" {
			score++
		}
		if score > bestScore {
			best, bestScore = rt, score
		}
	}
	if bestScore < 0 {
		return "", nil, false
	}
	if best.greedy {
		return best.key, map[string]string{"proxy": strings.TrimPrefix(rawPath, best.path)}, true
	}
	return best.key, nil, true
}

func newRequestID() string {
	// API Gateway HTTP API request ids look like "JZcM7hBxIAMEPOQ=".
	var b [10]byte
	_, _ = rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
