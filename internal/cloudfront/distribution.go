// Package cloudfront emulates the parts of an Amazon CloudFront
// distribution the edge upload path uses (docs/clients.md, "Upload paths"), faithful to
// the documented limits collected in shared/research/edge-upload-path.md §A:
// cache behaviours by path pattern, origins (S3 signed like origin access
// control, or any http.Handler), CloudFront Functions (JavaScript runtime
// 2.0, run in goja) on viewer request and viewer response, Lambda@Edge
// functions (Node.js handlers, run in goja) on origin response
// (edgefunction.go lists what of Lambda@Edge is emulated), and a
// KeyValueStore.
//
// What it enforces, as CloudFront does: a function's source is at most
// 10 KB; a viewer-request function sees no body and cannot change the
// method or the read-only headers (host, content-length,
// transfer-encoding, via); adding a disallowed header, a URI not starting
// with '/', or a URI plus query of 8192 characters or more is a function
// validation error; any function error answers 502 (a timeout 503);
// viewer-response functions do not run when the origin answered 400 or
// above. Only the headers left in the (possibly rewritten) request reach
// the origin. Query string values are handed to the function as they
// arrived, still percent-encoded.
//
// Not emulated: caching (every behaviour acts as CachingDisabled),
// cookies beyond passing them through, origin groups, signed URLs.
package cloudfront

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/berth-registry/berth/pkg/edge"
)

// MaxURLLength bounds URI plus query string (CloudFront: under 8192).
const MaxURLLength = 8192

// Behavior is one cache behaviour.
type Behavior struct {
	// PathPattern as CloudFront takes it: '*' matches any run of
	// characters (slashes included), '?' one character. Empty: the
	// default behaviour.
	PathPattern string
	// Origin is the id of the origin requests go to unless a function
	// selects another.
	Origin string
	// ViewerRequest and ViewerResponse are the associated CloudFront
	// Functions.
	ViewerRequest  *Function
	ViewerResponse *Function
	// OriginResponse is the associated Lambda@Edge function: it sees every
	// answer of the origin, 4xx and 5xx included, before the viewer
	// response (CloudFront allows it beside CloudFront Functions on the
	// viewer events of the same behaviour).
	OriginResponse *EdgeFunction
}

// Exchange describes one viewer request, for tests and benchmarks: which
// origin it reached (empty when a function or the distribution answered
// itself) and with what.
type Exchange struct {
	Behavior     string // path pattern ("" for the default)
	Origin       string
	Method       string
	URI          string // as sent to the origin
	OriginStatus int    // 0 when no origin was asked
	Status       int    // what the viewer got
	Err          error  // a function error, if any
	// OriginResponse: a Lambda@Edge origin-response function ran (one
	// billed invocation).
	OriginResponse bool
}

// Config builds a Distribution.
type Config struct {
	// Behaviors in precedence order; the first whose pattern matches wins.
	Behaviors []Behavior
	// Default handles what no behaviour matches.
	Default Behavior
	// Origins by id.
	Origins map[string]http.Handler
	// KeyValueStore the functions read (cf.kvs()).
	KeyValueStore edge.KeyStore
	// DomainName of the distribution (event.context.distributionDomainName).
	DomainName string
	// FunctionTimeout bounds one function run (default 1s: CloudFront's
	// real budget is about a millisecond of compute, but an interpreter on
	// a loaded test machine needs slack).
	FunctionTimeout time.Duration
	// ViewerResponseSeesOriginalRequest: the request a viewer-response
	// function sees is the one the viewer sent, not the one the
	// viewer-request function returned. CloudFront does not document
	// which; the function must work with both, so tests run both.
	ViewerResponseSeesOriginalRequest bool
	// Observer, when set, is called once per viewer request, from the
	// request's goroutine (so concurrently).
	Observer func(Exchange)
	Logger   *slog.Logger
}

// Distribution is an http.Handler standing in for a CloudFront distribution.
type Distribution struct {
	cfg      Config
	patterns []*regexp.Regexp
	origins  map[string]bool
}

// New checks cfg and returns the distribution.
func New(cfg Config) (*Distribution, error) {
	if cfg.FunctionTimeout <= 0 {
		cfg.FunctionTimeout = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DomainName == "" {
		cfg.DomainName = "d111111abcdef8.cloudfront.net"
	}
	d := &Distribution{cfg: cfg, origins: map[string]bool{}}
	for id := range cfg.Origins {
		d.origins[id] = true
	}
	var errs []error
	for _, b := range append(append([]Behavior(nil), cfg.Behaviors...), cfg.Default) {
		if !d.origins[b.Origin] {
			errs = append(errs, fmt.Errorf("cloudfront: behaviour %q names unknown origin %q", b.PathPattern, b.Origin))
		}
	}
	for _, b := range cfg.Behaviors {
		if b.PathPattern == "" {
			errs = append(errs, errors.New("cloudfront: a behaviour other than the default needs a path pattern"))
			continue
		}
		d.patterns = append(d.patterns, globRE(b.PathPattern))
	}
	if cfg.KeyValueStore == nil {
		errs = append(errs, errors.New("cloudfront: no KeyValueStore"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return d, nil
}

func globRE(p string) *regexp.Regexp {
	var sb strings.Builder
	sb.WriteString("^")
	for _, c := range p {
		switch c {
		case '*':
			sb.WriteString(".*")
		case '?':
			sb.WriteString(".")
		default:
			sb.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	sb.WriteString("$")
	return regexp.MustCompile(sb.String())
}

func (d *Distribution) behavior(path string) Behavior {
	for i, re := range d.patterns {
		if re.MatchString(path) {
			return d.cfg.Behaviors[i]
		}
	}
	return d.cfg.Default
}

// The event structure of CloudFront Functions.
type (
	field struct {
		Value      string       `json:"value"`
		MultiValue []fieldValue `json:"multiValue,omitempty"`
	}
	fieldValue struct {
		Value string `json:"value"`
	}
	fields       map[string]field
	eventRequest struct {
		Method      string `json:"method"`
		URI         string `json:"uri"`
		Querystring fields `json:"querystring"`
		Headers     fields `json:"headers"`
		Cookies     fields `json:"cookies"`
	}
	eventBody struct {
		Encoding string `json:"encoding"`
		Data     string `json:"data"`
	}
	eventResponse struct {
		StatusCode        int             `json:"statusCode"`
		StatusDescription string          `json:"statusDescription,omitempty"`
		Headers           fields          `json:"headers"`
		Cookies           fields          `json:"cookies"`
		Body              json.RawMessage `json:"body,omitempty"`
	}
	eventContext struct {
		DistributionDomainName string `json:"distributionDomainName"`
		DistributionID         string `json:"distributionId"`
		EventType              string `json:"eventType"`
		RequestID              string `json:"requestId"`
	}
	event struct {
		Version  string            `json:"version"`
		Context  eventContext      `json:"context"`
		Viewer   map[string]string `json:"viewer"`
		Request  eventRequest      `json:"request"`
		Response *eventResponse    `json:"response,omitempty"`
	}
)

func (f field) values() []string {
	if len(f.MultiValue) == 0 {
		return []string{f.Value}
	}
	out := make([]string, len(f.MultiValue))
	for i, v := range f.MultiValue {
		out[i] = v.Value
	}
	return out
}

func fieldOf(vs []string) field {
	f := field{Value: vs[0]}
	if len(vs) > 1 {
		for _, v := range vs {
			f.MultiValue = append(f.MultiValue, fieldValue{v})
		}
	}
	return f
}

// readOnlyHeaders may not be changed by a viewer-request function.
var readOnlyHeaders = []string{"host", "content-length", "transfer-encoding", "via"}

// disallowed reports whether a function may not set header name (research
// §A(c)): CloudFront answers 502 when one does.
func disallowed(name string) bool {
	switch name {
	case "connection", "expect", "keep-alive", "proxy-authenticate", "proxy-authorization",
		"proxy-connection", "trailer", "upgrade", "x-accel-buffering", "x-accel-charset",
		"x-accel-limit-rate", "x-accel-redirect", "x-amzn-auth", "x-amzn-cf-billing",
		"x-amzn-cf-id", "x-amzn-cf-xff", "x-amzn-errortype", "x-amzn-fle-profile",
		"x-amzn-header-count", "x-amzn-header-order", "x-amzn-lambda-integration-tag",
		"x-amzn-requestid", "x-cache", "x-forwarded-proto", "x-real-ip":
		return true
	}
	return strings.HasPrefix(name, "x-amz-cf-") || strings.HasPrefix(name, "x-edge-")
}

// viewerEvent is the request as a viewer-request function sees it.
func viewerEvent(r *http.Request) eventRequest {
	er := eventRequest{
		Method:      r.Method,
		URI:         r.URL.EscapedPath(),
		Querystring: fields{},
		Headers:     fields{},
		Cookies:     fields{},
	}
	for name, vs := range r.Header {
		n := strings.ToLower(name)
		if disallowed(n) || n == "cookie" {
			continue
		}
		er.Headers[n] = fieldOf(vs)
	}
	er.Headers["host"] = field{Value: r.Host}
	if len(r.TransferEncoding) > 0 {
		er.Headers["transfer-encoding"] = field{Value: strings.Join(r.TransferEncoding, ", ")}
	} else if _, ok := er.Headers["content-length"]; !ok && r.ContentLength > 0 {
		er.Headers["content-length"] = field{Value: strconv.FormatInt(r.ContentLength, 10)}
	}
	for _, c := range r.Cookies() {
		f := er.Cookies[c.Name]
		f.MultiValue = append(f.MultiValue, fieldValue{c.Value})
		f.Value = f.MultiValue[0].Value
		er.Cookies[c.Name] = f
	}
	for name, f := range er.Cookies {
		if len(f.MultiValue) == 1 {
			f.MultiValue = nil
			er.Cookies[name] = f
		}
	}
	// Values stay as they arrived: CloudFront does not document decoding
	// them, so the function has to decode once itself.
	multi := map[string][]string{}
	var order []string
	for _, kv := range strings.Split(r.URL.RawQuery, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if _, ok := multi[k]; !ok {
			order = append(order, k)
		}
		multi[k] = append(multi[k], v)
	}
	for _, k := range order {
		er.Querystring[k] = fieldOf(multi[k])
	}
	return er
}

func rawQuery(q fields) string {
	names := make([]string, 0, len(q))
	for n := range q {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		for _, v := range q[n].values() {
			if v == "" {
				parts = append(parts, n)
			} else {
				parts = append(parts, n+"="+v)
			}
		}
	}
	return strings.Join(parts, "&")
}

// functionError is CloudFront's answer when a function fails: for a
// CloudFront Function 502 (validation or execution error) or 503 (over its
// time); for Lambda@Edge 502 (validation error) or 503 (execution error,
// timeouts included).
type functionError struct {
	// FunctionValidationError | FunctionExecutionError | FunctionThrottledError |
	// LambdaValidationError | LambdaExecutionError
	kind string
	err  error
}

func (e *functionError) Error() string { return e.kind + ": " + e.err.Error() }

func (e *functionError) status() int {
	switch e.kind {
	case "FunctionThrottledError", "LambdaExecutionError":
		return http.StatusServiceUnavailable
	}
	return http.StatusBadGateway
}

func execError(err error) *functionError {
	if errors.Is(err, errTimeout) {
		return &functionError{"FunctionThrottledError", err}
	}
	return &functionError{"FunctionExecutionError", err}
}

func validationError(format string, args ...any) *functionError {
	return &functionError{"FunctionValidationError", fmt.Errorf(format, args...)}
}

func (d *Distribution) writeFunctionError(w http.ResponseWriter, fe *functionError, requestID string) int {
	d.cfg.Logger.Warn("cloudfront function failed", slog.String("request_id", requestID), slog.Any("error", fe))
	h := w.Header()
	for k := range h {
		delete(h, k)
	}
	h.Set("Content-Type", "text/html")
	edgeHeaders(h, fe.kind, d.cfg.DomainName)
	st := fe.status()
	w.WriteHeader(st)
	fmt.Fprintf(w, "<html><body><h1>%d ERROR</h1><p>The request could not be satisfied.</p></body></html>\n", st)
	return st
}

// edgeHeaders are what CloudFront adds to every answer, after any
// function ran (functions neither see nor can remove them). CloudFront
// also sends X-Amz-Cf-Id and X-Amz-Cf-Pop; the emulator leaves them out
// so that tests can assert that no x-amz-* header of S3 reaches a client
// without an exception list (the request id is in the log).
func edgeHeaders(h http.Header, cache, domain string) {
	h.Set("X-Cache", cache+" from cloudfront")
	h.Add("Via", "1.1 "+domain+" (CloudFront)")
}

func newRequestID() string {
	var b [30]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (d *Distribution) invocation(ctx context.Context) *invocation {
	return &invocation{
		ctx:     ctx,
		kvs:     d.cfg.KeyValueStore,
		origins: d.origins,
		log:     d.cfg.Logger,
		timeout: d.cfg.FunctionTimeout,
	}
}

func (d *Distribution) newEvent(eventType, requestID string, r *http.Request, req eventRequest) event {
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	return event{
		Version: "1.0",
		Context: eventContext{
			DistributionDomainName: d.cfg.DomainName,
			DistributionID:         "EDFDVBD6EXAMPLE",
			EventType:              eventType,
			RequestID:              requestID,
		},
		Viewer:  map[string]string{"ip": ip},
		Request: req,
	}
}

// ServeHTTP implements http.Handler.
func (d *Distribution) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	requestID := newRequestID()
	b := d.behavior(r.URL.Path)
	ex := Exchange{Behavior: b.PathPattern, Method: r.Method}
	defer func() {
		if d.cfg.Observer != nil {
			d.cfg.Observer(ex)
		}
	}()
	if len(r.URL.EscapedPath())+len(r.URL.RawQuery) >= MaxURLLength {
		ex.Status = http.StatusRequestURITooLong
		http.Error(w, "414 URI Too Long", ex.Status)
		return
	}
	original := viewerEvent(r)
	req := viewerEvent(r)
	origin := b.Origin
	if b.ViewerRequest != nil {
		inv := d.invocation(r.Context())
		out, err := b.ViewerRequest.run(inv, d.newEvent("viewer-request", requestID, r, req))
		var fe *functionError
		if err != nil {
			fe = execError(err)
		}
		var resp *eventResponse
		if fe == nil {
			resp, req, fe = d.checkRequestResult(out, original)
		}
		if fe != nil {
			ex.Err = fe
			ex.Status = d.writeFunctionError(w, fe, requestID)
			return
		}
		if resp != nil {
			edgeHeaders(w.Header(), "FunctionGeneratedResponse", d.cfg.DomainName)
			drainBody(r)
			ex.Status = writeGenerated(w, resp)
			return
		}
		if inv.selected != "" {
			origin = inv.selected
		}
	}
	ex.Origin, ex.URI = origin, req.URI
	fwd, err := d.forward(r, original, req, origin, requestID)
	if err != nil {
		ex.Err = err
		ex.Status = d.writeFunctionError(w, validationError("%w", err), requestID)
		return
	}
	iw := &interceptor{w: w, header: http.Header{}, fail: func(fe *functionError) int {
		return d.writeFunctionError(w, fe, requestID)
	}, edge: func(h http.Header) { edgeHeaders(h, "Miss", d.cfg.DomainName) }}
	if b.OriginResponse != nil || b.ViewerResponse != nil {
		seen := req
		if d.cfg.ViewerResponseSeesOriginalRequest {
			seen = original
		}
		// Origin response first, then viewer response, which CloudFront
		// skips for a status of 400 or above: the status the origin-response
		// function left (CloudFront does not say which of the two it
		// means; it matters only to a function that turns an error into a
		// success, which Berth's does not).
		iw.onHeader = func(status int, h http.Header) (int, http.Header, []byte, error) {
			var body []byte
			if b.OriginResponse != nil {
				ex.OriginResponse = true
				var err error
				if status, h, body, err = d.originResponse(r, b.OriginResponse, requestID, fwd, status, h); err != nil {
					return 0, nil, nil, err
				}
			}
			if b.ViewerResponse != nil {
				st, nh, vb, err := d.viewerResponse(r, b.ViewerResponse, requestID, seen, status, h)
				if err != nil {
					return 0, nil, nil, err
				}
				status, h = st, nh
				if vb != nil {
					body = vb
				}
			}
			return status, h, body, nil
		}
	}
	d.cfg.Origins[origin].ServeHTTP(iw, fwd)
	if !iw.wrote {
		iw.WriteHeader(http.StatusOK)
	}
	ex.OriginStatus, ex.Status, ex.Err = iw.originStatus, iw.status, iw.err
}

// checkRequestResult decodes what a viewer-request function returned: a
// response to send as is, or the request to forward, checked against the
// rules CloudFront enforces.
func (d *Distribution) checkRequestResult(out json.RawMessage, original eventRequest) (*eventResponse, eventRequest, *functionError) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(out, &probe); err != nil {
		return nil, eventRequest{}, validationError("function returned %s", out)
	}
	if _, ok := probe["statusCode"]; ok {
		resp, fe := checkResponse(out)
		return resp, eventRequest{}, fe
	}
	var req eventRequest
	if err := json.Unmarshal(out, &req); err != nil {
		return nil, req, validationError("returned request: %v", err)
	}
	req.Headers = lowerKeys(req.Headers)
	switch {
	case req.Method != original.Method:
		return nil, req, validationError("method is read-only (%s → %s)", original.Method, req.Method)
	case !strings.HasPrefix(req.URI, "/"):
		return nil, req, validationError("uri %q does not start with /", req.URI)
	case len(req.URI)+len(rawQuery(req.Querystring)) >= MaxURLLength:
		return nil, req, validationError("uri and query string are %d characters or more", MaxURLLength)
	}
	for _, n := range readOnlyHeaders {
		was, had := original.Headers[n]
		now, has := req.Headers[n]
		if had != has || strings.Join(was.values(), ",") != strings.Join(now.values(), ",") {
			return nil, req, validationError("header %s is read-only", n)
		}
	}
	for n := range req.Headers {
		if disallowed(n) {
			return nil, req, validationError("header %s may not be set by a function", n)
		}
	}
	if req.Querystring == nil {
		req.Querystring = fields{}
	}
	return nil, req, nil
}

func lowerKeys(f fields) fields {
	out := make(fields, len(f))
	for n, v := range f {
		out[strings.ToLower(n)] = v
	}
	return out
}

func checkResponse(out json.RawMessage) (*eventResponse, *functionError) {
	var resp eventResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		return nil, validationError("returned response: %v", err)
	}
	resp.Headers = lowerKeys(resp.Headers)
	if resp.StatusCode < 100 || resp.StatusCode > 599 {
		return nil, validationError("statusCode %d", resp.StatusCode)
	}
	for n := range resp.Headers {
		if disallowed(n) {
			return nil, validationError("header %s may not be set by a function", n)
		}
	}
	if _, err := resp.body(); err != nil {
		return nil, validationError("%v", err)
	}
	return &resp, nil
}

// body decodes a generated body: {encoding: 'text'|'base64', data} or, as
// runtime 1.0 allowed, a plain string. nil: none.
func (r *eventResponse) body() ([]byte, error) {
	if len(r.Body) == 0 || string(r.Body) == "null" {
		return nil, nil
	}
	var s string
	if json.Unmarshal(r.Body, &s) == nil {
		return []byte(s), nil
	}
	var b eventBody
	if err := json.Unmarshal(r.Body, &b); err != nil {
		return nil, fmt.Errorf("response body: %w", err)
	}
	switch b.Encoding {
	case "text", "":
		return []byte(b.Data), nil
	case "base64":
		return base64.StdEncoding.DecodeString(b.Data)
	}
	return nil, fmt.Errorf("response body encoding %q", b.Encoding)
}

func setHeaders(dst http.Header, f fields) {
	for n, v := range f {
		for _, s := range v.values() {
			dst.Add(n, s)
		}
	}
}

// maxDrain bounds how much of an unread request body is read and
// discarded before a generated response goes out.
const maxDrain = 64 << 20

// drainBody reads what is left of a request body the function answered
// without an origin (an over-limit upload refused with 413). Otherwise
// net/http closes the connection while the client is still sending, and a
// client that writes its whole body before reading gets "connection reset"
// instead of the OCI error, depending on timing. Whether CloudFront itself
// drains such bodies is not documented; the emulator picks the behaviour
// under which clients can read the answer, and the live check
// (tests/live/edge-check.sh) is where the real one shows.
func drainBody(r *http.Request) {
	if r.Body != nil && r.ContentLength != 0 {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxDrain))
	}
}

// writeGenerated sends a response a viewer-request function generated.
func writeGenerated(w http.ResponseWriter, resp *eventResponse) int {
	body, _ := resp.body() // checked in checkResponse
	h := w.Header()
	setHeaders(h, resp.Headers)
	if body != nil {
		h.Del("Content-Length")
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(resp.StatusCode)
	if body != nil {
		_, _ = w.Write(body)
	}
	return resp.StatusCode
}

// forward builds the request the origin gets: the function's URI, query
// and headers, the viewer's body. CloudFront adds Via and X-Amz-Cf-Id.
func (d *Distribution) forward(r *http.Request, original, req eventRequest, origin, requestID string) (*http.Request, error) {
	path, err := url.PathUnescape(req.URI)
	if err != nil {
		return nil, fmt.Errorf("uri %q: %w", req.URI, err)
	}
	// An untouched query string goes on byte for byte.
	q := r.URL.RawQuery
	if rawQuery(req.Querystring) != rawQuery(original.Querystring) {
		q = rawQuery(req.Querystring)
	}
	fwd := r.Clone(r.Context())
	fwd.URL = &url.URL{Path: path, RawPath: req.URI, RawQuery: q}
	fwd.RequestURI = fwd.URL.RequestURI()
	fwd.Header = http.Header{}
	for n, v := range req.Headers {
		switch n {
		case "host", "content-length", "transfer-encoding":
			continue // carried by the request itself
		}
		for _, s := range v.values() {
			fwd.Header.Add(n, s)
		}
	}
	if len(req.Cookies) > 0 {
		var cs []string
		for n, v := range req.Cookies {
			for _, s := range v.values() {
				cs = append(cs, n+"="+s)
			}
		}
		sort.Strings(cs)
		fwd.Header.Set("Cookie", strings.Join(cs, "; "))
	}
	fwd.Header.Add("Via", "1.1 "+d.cfg.DomainName+" (CloudFront)")
	fwd.Header.Set("X-Amz-Cf-Id", requestID)
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		// CloudFront appends the viewer's address to what it was sent.
		if prior := r.Header.Get("X-Forwarded-For"); prior != "" {
			ip = prior + ", " + ip
		}
		fwd.Header.Set("X-Forwarded-For", ip)
	}
	d.cfg.Logger.Debug("cloudfront origin request", slog.String("origin", origin),
		slog.String("method", fwd.Method), slog.String("uri", fwd.RequestURI))
	return fwd, nil
}

// viewerResponse runs fn on the origin's status and headers (not for 400
// and above: CloudFront skips viewer-response functions then).
func (d *Distribution) viewerResponse(r *http.Request, fn *Function, requestID string, req eventRequest, status int, h http.Header) (int, http.Header, []byte, error) {
	if status >= 400 {
		return status, h, nil, nil
	}
	er := &eventResponse{StatusCode: status, StatusDescription: http.StatusText(status), Headers: fields{}, Cookies: fields{}}
	for n, vs := range h {
		er.Headers[strings.ToLower(n)] = fieldOf(vs)
	}
	ev := d.newEvent("viewer-response", requestID, r, req)
	ev.Response = er
	out, err := fn.run(d.invocation(r.Context()), ev)
	if err != nil {
		return 0, nil, nil, execError(err)
	}
	resp, fe := checkResponse(out)
	if fe != nil {
		return 0, nil, nil, fe
	}
	nh := http.Header{}
	setHeaders(nh, resp.Headers)
	body, _ := resp.body()
	return resp.StatusCode, nh, body, nil
}

// interceptor stands between an origin and the viewer: it holds the
// origin's headers until the status is known, lets the viewer-response
// function replace status and headers, then streams the body through.
type interceptor struct {
	w        http.ResponseWriter
	header   http.Header
	onHeader func(status int, h http.Header) (int, http.Header, []byte, error)

	wrote        bool
	discard      bool // a generated body replaced the origin's
	originStatus int
	status       int
	err          error
	fail         func(*functionError) int // writes CloudFront's error answer
	edge         func(http.Header)        // adds CloudFront's own headers
}

func (i *interceptor) Header() http.Header { return i.header }

func (i *interceptor) WriteHeader(status int) {
	if i.wrote {
		return
	}
	i.wrote, i.originStatus, i.status = true, status, status
	h := i.header
	var body []byte
	if i.onHeader != nil {
		st, nh, b, err := i.onHeader(status, i.header)
		if err != nil {
			var fe *functionError
			if !errors.As(err, &fe) {
				fe = execError(err)
			}
			i.err, i.discard = fe, true
			i.status = i.fail(fe)
			return
		}
		i.status, h, body = st, nh, b
	}
	dst := i.w.Header()
	for n, vs := range h {
		dst[http.CanonicalHeaderKey(n)] = vs
	}
	i.edge(dst)
	if body != nil {
		dst.Set("Content-Length", strconv.Itoa(len(body)))
		i.discard = true
	}
	i.w.WriteHeader(i.status)
	if body != nil {
		_, _ = i.w.Write(body)
	}
}

func (i *interceptor) Write(p []byte) (int, error) {
	if !i.wrote {
		i.WriteHeader(http.StatusOK)
	}
	if i.discard {
		return len(p), nil
	}
	return i.w.Write(p)
}

// Flush lets streaming origins stream.
func (i *interceptor) Flush() {
	if f, ok := i.w.(http.Flusher); ok && !i.discard {
		f.Flush()
	}
}
