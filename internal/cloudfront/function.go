package cloudfront

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/dop251/goja"

	"github.com/berth-registry/berth/pkg/edge"
)

// MaxFunctionBytes is CloudFront's limit on a function's source (10 KB).
const MaxFunctionBytes = 10240

// ErrFunctionTooLarge: the source is over MaxFunctionBytes; CloudFront
// refuses to create such a function.
var ErrFunctionTooLarge = errors.New("cloudfront: function source over 10240 bytes")

// Function is a compiled CloudFront Function (JavaScript runtime 2.0).
//
// goja runs scripts, not ES modules, and runtime 2.0 functions import their
// two built-in modules with `import X from 'crypto'` and
// `import X from 'cloudfront'`. NewFunction rewrites exactly those import
// forms (default import, one per line) into `const X = <module object>;`
// on the same line, so line numbers in errors stay right; any other import
// is an error, as it is in CloudFront (no other modules exist there).
type Function struct {
	name string
	prog *goja.Program
}

var importRE = regexp.MustCompile(`(?m)^[ \t]*import[ \t]+([A-Za-z_$][\w$]*)[ \t]+from[ \t]+['"]([^'"]*)['"][ \t]*;?`)

// NewFunction checks and compiles source.
func NewFunction(name, source string) (*Function, error) {
	if len(source) > MaxFunctionBytes {
		return nil, fmt.Errorf("%w: %s is %d bytes", ErrFunctionTooLarge, name, len(source))
	}
	var bad []string
	src := importRE.ReplaceAllStringFunc(source, func(m string) string {
		sub := importRE.FindStringSubmatch(m)
		switch sub[2] {
		case "crypto", "cloudfront":
			return fmt.Sprintf("const %s = __berth_import(%q);", sub[1], sub[2])
		default:
			bad = append(bad, sub[2])
			return m
		}
	})
	if len(bad) > 0 {
		return nil, fmt.Errorf("cloudfront: %s imports %q: only 'crypto' and 'cloudfront' exist", name, bad)
	}
	// Modules are strict mode code.
	prog, err := goja.Compile(name, src, true)
	if err != nil {
		return nil, fmt.Errorf("cloudfront: compiling %s: %w", name, err)
	}
	return &Function{name: name, prog: prog}, nil
}

// invocation is what one function run may touch.
type invocation struct {
	ctx     context.Context
	kvs     edge.KeyStore
	origins map[string]bool // ids selectRequestOriginById accepts
	log     *slog.Logger
	timeout time.Duration

	selected string // origin the function selected, if any
}

// errTimeout: the function did not finish in time; CloudFront answers 503.
var errTimeout = errors.New("function exceeded its execution time")

// run calls handler(event) in a fresh runtime (CloudFront isolates every
// invocation) and returns the JSON of what it resolved to.
func (f *Function) run(inv *invocation, event any) (out json.RawMessage, err error) {
	rt := goja.New()
	rt.SetMaxCallStackSize(512)
	env := &jsEnv{rt: rt, inv: inv, bufSym: goja.NewSymbol("buffer")}
	if err := env.install(); err != nil {
		return nil, err
	}
	timer := time.AfterFunc(inv.timeout, func() { rt.Interrupt(errTimeout) })
	defer timer.Stop()
	defer func() {
		// A Go panic inside a host function is a function error, not a
		// crash of the distribution.
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("%s: %v", f.name, p)
		}
	}()
	if _, err := rt.RunProgram(f.prog); err != nil {
		return nil, jsError(f.name, err)
	}
	handler, ok := goja.AssertFunction(rt.Get("handler"))
	if !ok {
		return nil, fmt.Errorf("%s: no function named handler", f.name)
	}
	ev, err := jsonParse(rt, event)
	if err != nil {
		return nil, jsError(f.name, err)
	}
	// The call returns once goja has drained its job queue, so every
	// promise that can settle (kvs.get settles at once) has settled.
	res, err := handler(goja.Undefined(), ev)
	if err != nil {
		return nil, jsError(f.name, err)
	}
	if res, err = settled(f.name, res); err != nil {
		return nil, err
	}
	return jsonOf(rt, f.name, res)
}

// jsonParse hands event to JavaScript through JSON, as the services do:
// what does not survive serialization fails in tests too.
func jsonParse(rt *goja.Runtime, event any) (goja.Value, error) {
	raw, err := json.Marshal(event)
	if err != nil {
		return nil, err
	}
	parse, _ := goja.AssertFunction(rt.Get("JSON").ToObject(rt).Get("parse"))
	return parse(goja.Undefined(), rt.ToValue(string(raw)))
}

// settled is what a handler's return value resolved to: a promise must
// have settled by the time the call returned.
func settled(name string, res goja.Value) (goja.Value, error) {
	if p, ok := res.Export().(*goja.Promise); ok {
		switch p.State() {
		case goja.PromiseStateFulfilled:
			res = p.Result()
		case goja.PromiseStateRejected:
			return nil, fmt.Errorf("%s: handler rejected: %v", name, p.Result())
		default:
			return nil, fmt.Errorf("%s: handler's promise never settled", name)
		}
	}
	return res, nil
}

// jsonOf is the JSON of a handler's result, which must be an object.
func jsonOf(rt *goja.Runtime, name string, res goja.Value) (json.RawMessage, error) {
	if goja.IsUndefined(res) || goja.IsNull(res) {
		return nil, fmt.Errorf("%s: handler returned %v", name, res)
	}
	stringify, _ := goja.AssertFunction(rt.Get("JSON").ToObject(rt).Get("stringify"))
	s, err := stringify(goja.Undefined(), res)
	if err != nil {
		return nil, jsError(name, err)
	}
	return json.RawMessage(s.String()), nil
}

func jsError(name string, err error) error {
	var ie *goja.InterruptedError
	if errors.As(err, &ie) {
		if e, ok := ie.Value().(error); ok && errors.Is(e, errTimeout) {
			return fmt.Errorf("%s: %w", name, errTimeout)
		}
	}
	return fmt.Errorf("%s: %w", name, err)
}

// jsEnv is the global environment of one invocation: the two modules, a
// minimal Buffer and console.
type jsEnv struct {
	rt     *goja.Runtime
	inv    *invocation
	bufSym *goja.Symbol
}

type bufBytes struct{ b []byte }

func (e *jsEnv) install() error {
	rt := e.rt
	buffer := rt.NewObject()
	must(buffer.Set("from", func(call goja.FunctionCall) goja.Value {
		return e.newBuffer(e.bytesOf(call.Argument(0), call.Argument(1)))
	}))
	must(buffer.Set("isBuffer", func(v goja.Value) bool { _, ok := e.buffer(v); return ok }))
	console := rt.NewObject()
	must(console.Set("log", func(call goja.FunctionCall) goja.Value {
		parts := make([]string, len(call.Arguments))
		for i, a := range call.Arguments {
			parts[i] = a.String()
		}
		e.inv.log.Debug("cloudfront function", slog.String("console", strings.Join(parts, " ")))
		return goja.Undefined()
	}))
	modules := map[string]*goja.Object{"crypto": e.cryptoModule(), "cloudfront": e.cloudfrontModule()}
	for name, v := range map[string]any{
		"Buffer":  buffer,
		"console": console,
		"__berth_import": func(name string) *goja.Object {
			return modules[name]
		},
	} {
		if err := rt.Set(name, v); err != nil {
			return err
		}
	}
	return nil
}

// must: Set on a fresh plain object cannot fail.
func must(err error) {
	if err != nil {
		panic(err)
	}
}

func (e *jsEnv) throw(format string, args ...any) {
	panic(e.rt.NewTypeError(fmt.Sprintf(format, args...)))
}

func (e *jsEnv) newBuffer(b []byte) *goja.Object {
	o := e.rt.NewObject()
	must(o.SetSymbol(e.bufSym, e.rt.ToValue(&bufBytes{b})))
	must(o.Set("length", len(b)))
	must(o.Set("toString", func(call goja.FunctionCall) goja.Value {
		return e.rt.ToValue(e.encode(b, call.Argument(0)))
	}))
	return o
}

func (e *jsEnv) buffer(v goja.Value) ([]byte, bool) {
	o, ok := v.(*goja.Object)
	if !ok {
		return nil, false
	}
	bb, ok := o.GetSymbol(e.bufSym).Export().(*bufBytes)
	if !ok {
		return nil, false
	}
	return bb.b, true
}

// bytesOf is what Buffer.from and update() take: a Buffer, or a string in
// an encoding (utf8 by default).
func (e *jsEnv) bytesOf(v, encoding goja.Value) []byte {
	if b, ok := e.buffer(v); ok {
		return b
	}
	s, ok := v.Export().(string)
	if !ok {
		e.throw("expected a string or Buffer, got %s", v)
	}
	enc := "utf8"
	if !goja.IsUndefined(encoding) {
		enc = encoding.String()
	}
	var (
		b   []byte
		err error
	)
	switch enc {
	case "utf8", "utf-8":
		b = []byte(s)
	case "hex":
		b, err = hex.DecodeString(s)
	case "base64", "base64url":
		// Node accepts both alphabets and optional padding for either name.
		s = strings.NewReplacer("-", "+", "_", "/").Replace(strings.TrimRight(s, "="))
		b, err = base64.RawStdEncoding.DecodeString(s)
	default:
		e.throw("unknown encoding %q", enc)
	}
	if err != nil {
		e.throw("invalid %s string: %v", enc, err)
	}
	return b
}

func (e *jsEnv) encode(b []byte, encoding goja.Value) string {
	enc := "utf8"
	if !goja.IsUndefined(encoding) {
		enc = encoding.String()
	}
	switch enc {
	case "utf8", "utf-8":
		return string(b)
	case "hex":
		return hex.EncodeToString(b)
	case "base64":
		return base64.StdEncoding.EncodeToString(b)
	case "base64url":
		return base64.RawURLEncoding.EncodeToString(b)
	}
	e.throw("unknown encoding %q", enc)
	return ""
}

// cryptoModule: createHash and createHmac with md5, sha1 and sha256, the
// algorithms CloudFront Functions offer.
func (e *jsEnv) cryptoModule() *goja.Object {
	algs := map[string]func() hash.Hash{"md5": md5.New, "sha1": sha1.New, "sha256": sha256.New}
	hasher := func(h hash.Hash) *goja.Object {
		o := e.rt.NewObject()
		done := false
		must(o.Set("update", func(call goja.FunctionCall) goja.Value {
			if done {
				e.throw("digest already called")
			}
			h.Write(e.bytesOf(call.Argument(0), call.Argument(1)))
			return o
		}))
		must(o.Set("digest", func(call goja.FunctionCall) goja.Value {
			if done {
				e.throw("digest already called")
			}
			done = true
			sum := h.Sum(nil)
			if goja.IsUndefined(call.Argument(0)) {
				return e.newBuffer(sum)
			}
			return e.rt.ToValue(e.encode(sum, call.Argument(0)))
		}))
		return o
	}
	alg := func(name string) func() hash.Hash {
		f, ok := algs[name]
		if !ok {
			e.throw("unsupported hash algorithm %q", name)
		}
		return f
	}
	m := e.rt.NewObject()
	must(m.Set("createHash", func(name string) *goja.Object { return hasher(alg(name)()) }))
	must(m.Set("createHmac", func(call goja.FunctionCall) goja.Value {
		f := alg(call.Argument(0).String())
		return hasher(hmac.New(f, e.bytesOf(call.Argument(1), goja.Undefined())))
	}))
	return m
}

// cloudfrontModule: kvs() over the distribution's key store, and
// selectRequestOriginById.
func (e *jsEnv) cloudfrontModule() *goja.Object {
	m := e.rt.NewObject()
	must(m.Set("kvs", func() *goja.Object {
		k := e.rt.NewObject()
		// get resolves to the value or rejects when the key is absent,
		// as CloudFront's does.
		must(k.Set("get", func(call goja.FunctionCall) goja.Value {
			key := call.Argument(0).String()
			format := "string"
			if o, ok := call.Argument(1).(*goja.Object); ok {
				if f := o.Get("format"); f != nil && !goja.IsUndefined(f) {
					format = f.String()
				}
			}
			p, resolve, reject := e.rt.NewPromise()
			v, err := e.inv.kvs.KeyGet(e.inv.ctx, key)
			switch {
			case err != nil:
				must(reject(e.rt.NewGoError(fmt.Errorf("KeyValueStore: %w", err))))
			case format == "json":
				var x any
				if err := json.Unmarshal([]byte(v), &x); err != nil {
					must(reject(e.rt.NewGoError(err)))
				} else {
					must(resolve(x))
				}
			case format == "bytes":
				must(resolve(e.newBuffer([]byte(v))))
			default:
				must(resolve(v))
			}
			return e.rt.ToValue(p)
		}))
		must(k.Set("exists", func(key string) goja.Value {
			p, resolve, _ := e.rt.NewPromise()
			_, err := e.inv.kvs.KeyGet(e.inv.ctx, key)
			must(resolve(err == nil))
			return e.rt.ToValue(p)
		}))
		return k
	}))
	must(m.Set("selectRequestOriginById", func(id string) {
		if !e.inv.origins[id] {
			e.throw("selectRequestOriginById: no origin %q in this distribution", id)
		}
		e.inv.selected = id
	}))
	return m
}
