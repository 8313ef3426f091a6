package cloudfront

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/dop251/goja"
)

// Lambda@Edge, as far as an origin-response function needs it. What is
// emulated, with the AWS documentation it follows (CloudFront Developer
// Guide; docs/lambda.md, "The oversize 413 at the edge", has the URLs):
//
//   - the event: Records[0].cf with config (distributionDomainName,
//     distributionId, eventType "origin-response", requestId), request
//     (the request CloudFront forwarded to the origin: clientIp, method,
//     uri, querystring as one string, headers) and response (status as a
//     string, statusDescription, headers); headers are maps of lowercase
//     name → [{key, value}] ("Lambda@Edge event structure");
//   - origin-response functions run for every origin answer, 4xx and 5xx
//     included ("Restrictions on all edge functions", HTTP status codes);
//   - the origin's body is not exposed; a function may set body (with
//     bodyEncoding text or base64) to replace it, and if it sets none the
//     origin's body goes on ("Update HTTP responses in origin response
//     triggers");
//   - the returned status must lie in 200–599; Transfer-Encoding and Via
//     are read-only; disallowed headers are neither exposed nor may be
//     added; the updated response is at most 1 MB, headers included
//     (Lambda@Edge quotas); any of these answers 502 (Lambda validation
//     error), a function that throws, rejects or runs out of time 503
//     (Lambda execution error);
//   - the Node.js handler contract: exports.handler(event, context,
//     callback), answered by the promise it returns or by callback(err,
//     result).
//
// Not emulated: request.origin, the include-body option, Node.js modules
// (require throws: the functions Berth deploys use none), the 30 s
// timeout (FunctionTimeout applies), caching of the updated response.

// MaxEdgeResponseBytes is the most an origin-response function may return,
// headers and body (Lambda@Edge quota for origin events: 1 MB).
const MaxEdgeResponseBytes = 1 << 20

// EdgeFunction is a compiled Lambda@Edge function.
type EdgeFunction struct {
	name string
	prog *goja.Program
}

// NewEdgeFunction compiles source, a CommonJS module setting
// exports.handler (the form an inline Node.js function takes). It is
// wrapped the way Node.js wraps a module, on the source's first line so
// that line numbers in errors stay right.
func NewEdgeFunction(name, source string) (*EdgeFunction, error) {
	prog, err := goja.Compile(name, "(function (exports, require, module) {"+source+"\n})", false)
	if err != nil {
		return nil, fmt.Errorf("cloudfront: compiling Lambda@Edge function %s: %w", name, err)
	}
	return &EdgeFunction{name: name, prog: prog}, nil
}

// The Lambda@Edge event structure.
type (
	lambdaHeader struct {
		Key   string `json:"key,omitempty"`
		Value string `json:"value"`
	}
	lambdaHeaders map[string][]lambdaHeader
	lambdaConfig  struct {
		DistributionDomainName string `json:"distributionDomainName"`
		DistributionID         string `json:"distributionId"`
		EventType              string `json:"eventType"`
		RequestID              string `json:"requestId"`
	}
	lambdaRequest struct {
		ClientIP    string        `json:"clientIp"`
		Headers     lambdaHeaders `json:"headers"`
		Method      string        `json:"method"`
		Querystring string        `json:"querystring"`
		URI         string        `json:"uri"`
	}
	lambdaResponse struct {
		Status            json.RawMessage `json:"status"`
		StatusDescription string          `json:"statusDescription,omitempty"`
		Headers           lambdaHeaders   `json:"headers"`
		Body              *string         `json:"body,omitempty"`
		BodyEncoding      string          `json:"bodyEncoding,omitempty"`
	}
	lambdaCF struct {
		Config   lambdaConfig    `json:"config"`
		Request  lambdaRequest   `json:"request"`
		Response *lambdaResponse `json:"response,omitempty"`
	}
	lambdaRecord struct {
		CF lambdaCF `json:"cf"`
	}
	lambdaEvent struct {
		Records []lambdaRecord `json:"Records"`
	}
)

// lambdaHeadersOf is h as an event shows it; disallowed headers are not
// exposed.
func lambdaHeadersOf(h http.Header) lambdaHeaders {
	out := lambdaHeaders{}
	for name, vs := range h {
		n := strings.ToLower(name)
		if disallowed(n) {
			continue
		}
		for _, v := range vs {
			out[n] = append(out[n], lambdaHeader{Key: name, Value: v})
		}
	}
	return out
}

// run calls exports.handler(event, context, callback) in a fresh runtime
// and returns the JSON of its answer.
func (f *EdgeFunction) run(inv *invocation, event any) (out json.RawMessage, err error) {
	rt := goja.New()
	rt.SetMaxCallStackSize(512)
	timer := time.AfterFunc(inv.timeout, func() { rt.Interrupt(errTimeout) })
	defer timer.Stop()
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("%s: %v", f.name, p)
		}
	}()
	console := rt.NewObject()
	for _, level := range []string{"log", "info", "warn", "error"} {
		must(console.Set(level, func(call goja.FunctionCall) goja.Value {
			parts := make([]string, len(call.Arguments))
			for i, a := range call.Arguments {
				parts[i] = a.String()
			}
			inv.log.Debug("lambda@edge function", slog.String("function", f.name), slog.String("console", strings.Join(parts, " ")))
			return goja.Undefined()
		}))
	}
	if err := rt.Set("console", console); err != nil {
		return nil, err
	}
	wrapper, err := rt.RunProgram(f.prog)
	if err != nil {
		return nil, jsError(f.name, err)
	}
	load, _ := goja.AssertFunction(wrapper)
	module, exports := rt.NewObject(), rt.NewObject()
	must(module.Set("exports", exports))
	require := func(name string) goja.Value {
		panic(rt.NewTypeError(fmt.Sprintf("require(%q): the emulator provides no Node.js modules", name)))
	}
	if _, err := load(goja.Undefined(), exports, rt.ToValue(require), module); err != nil {
		return nil, jsError(f.name, err)
	}
	handler, ok := goja.AssertFunction(module.Get("exports").ToObject(rt).Get("handler"))
	if !ok {
		return nil, fmt.Errorf("%s: exports.handler is not a function", f.name)
	}
	ev, err := jsonParse(rt, event)
	if err != nil {
		return nil, jsError(f.name, err)
	}
	lctx := rt.NewObject()
	must(lctx.Set("functionName", "us-east-1."+f.name))
	must(lctx.Set("awsRequestId", newRequestID()))
	var called bool
	var cbErr, cbRes goja.Value
	callback := func(call goja.FunctionCall) goja.Value {
		if !called {
			called, cbErr, cbRes = true, call.Argument(0), call.Argument(1)
		}
		return goja.Undefined()
	}
	res, err := handler(goja.Undefined(), ev, lctx, rt.ToValue(callback))
	if err != nil {
		return nil, jsError(f.name, err)
	}
	switch {
	case called:
		if !goja.IsUndefined(cbErr) && !goja.IsNull(cbErr) {
			return nil, fmt.Errorf("%s: callback error: %v", f.name, cbErr)
		}
		res = cbRes
	case isPromise(res):
		if res, err = settled(f.name, res); err != nil {
			return nil, err
		}
	default:
		// A handler that is not async answers through its callback;
		// without one the runtime has nothing to return.
		return nil, fmt.Errorf("%s: handler returned without a promise and never called its callback", f.name)
	}
	return jsonOf(rt, f.name, res)
}

func isPromise(v goja.Value) bool {
	_, ok := v.Export().(*goja.Promise)
	return ok
}

// lambdaError classifies a Lambda@Edge failure as CloudFront reports it.
func lambdaExecError(err error) *functionError { return &functionError{"LambdaExecutionError", err} }

func lambdaValidationError(format string, args ...any) *functionError {
	return &functionError{"LambdaValidationError", fmt.Errorf(format, args...)}
}

var statusRE = regexp.MustCompile(`^[0-9]{3}$`)

// originResponse runs fn on the origin's answer. It returns the status and
// headers to go on and, when the function set one, the body replacing the
// origin's (nil: the origin's body goes on).
func (d *Distribution) originResponse(r *http.Request, fn *EdgeFunction, requestID string, fwd *http.Request, status int, h http.Header) (int, http.Header, []byte, error) {
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	reqHeaders := lambdaHeadersOf(fwd.Header)
	reqHeaders["host"] = []lambdaHeader{{Key: "Host", Value: fwd.Host}}
	in := &lambdaResponse{
		Status:            json.RawMessage(strconv.Quote(strconv.Itoa(status))),
		StatusDescription: http.StatusText(status),
		Headers:           lambdaHeadersOf(h),
	}
	ev := lambdaEvent{Records: []lambdaRecord{{CF: lambdaCF{
		Config: lambdaConfig{
			DistributionDomainName: d.cfg.DomainName,
			DistributionID:         "EDFDVBD6EXAMPLE",
			EventType:              "origin-response",
			RequestID:              requestID,
		},
		Request: lambdaRequest{
			ClientIP:    ip,
			Headers:     reqHeaders,
			Method:      fwd.Method,
			Querystring: fwd.URL.RawQuery,
			URI:         fwd.URL.EscapedPath(),
		},
		Response: in,
	}}}}
	out, err := fn.run(d.invocation(r.Context()), ev)
	if err != nil {
		return 0, nil, nil, lambdaExecError(err)
	}
	if len(out) > MaxEdgeResponseBytes {
		return 0, nil, nil, lambdaValidationError("response of %d bytes, over %d", len(out), MaxEdgeResponseBytes)
	}
	var resp lambdaResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		return 0, nil, nil, lambdaValidationError("returned response: %v", err)
	}
	var s string
	if json.Unmarshal(resp.Status, &s) != nil || !statusRE.MatchString(s) {
		return 0, nil, nil, lambdaValidationError("status %s is not a string holding an HTTP status code", resp.Status)
	}
	st, _ := strconv.Atoi(s)
	if st < 200 || st > 599 {
		return 0, nil, nil, lambdaValidationError("status %d outside 200–599", st)
	}
	nh := http.Header{}
	for n, vs := range resp.Headers {
		if n != strings.ToLower(n) {
			return 0, nil, nil, lambdaValidationError("header key %q is not lowercase", n)
		}
		if disallowed(n) {
			return 0, nil, nil, lambdaValidationError("header %s may not be set by a function", n)
		}
		for _, v := range vs {
			if v.Key != "" && strings.ToLower(v.Key) != n {
				return 0, nil, nil, lambdaValidationError("header %s holds an entry keyed %q", n, v.Key)
			}
			nh.Add(n, v.Value)
		}
	}
	for _, n := range []string{"transfer-encoding", "via"} {
		if strings.Join(h.Values(n), ",") != strings.Join(nh.Values(n), ",") {
			return 0, nil, nil, lambdaValidationError("header %s is read-only in origin response", n)
		}
	}
	// Headers the function never saw stay as the origin sent them.
	for name, vs := range h {
		if disallowed(strings.ToLower(name)) {
			nh[name] = vs
		}
	}
	if resp.Body == nil {
		return st, nh, nil, nil
	}
	body := []byte(*resp.Body)
	switch resp.BodyEncoding {
	case "", "text":
	case "base64":
		if body, err = base64.StdEncoding.DecodeString(*resp.Body); err != nil {
			return 0, nil, nil, lambdaValidationError("body is not valid base64: %v", err)
		}
	default:
		return 0, nil, nil, lambdaValidationError("bodyEncoding %q", resp.BodyEncoding)
	}
	return st, nh, body, nil
}
