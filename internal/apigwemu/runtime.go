package apigwemu

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RuntimeAPI is the Lambda Runtime API (2018-06-01) served in process, so a
// real bootstrap binary can run as a Function: start the binary with
// AWS_LAMBDA_RUNTIME_API set to Addr (Command does), then Invoke. Like one
// Lambda execution environment it handles one invocation at a time; further
// invocations queue.
type RuntimeAPI struct {
	srv     *http.Server
	ln      net.Listener
	queue   chan *invocation
	mu      sync.Mutex
	pending map[string]*invocation
	nextID  int
	current *invocation // handed to the runtime, not yet answered
	initErr chan *FunctionError
	// Stderr receives the supervised bootstrap's output; nil discards it.
	Stderr io.Writer
	polled chan struct{}
	once   sync.Once
	// exts are the registered extensions (the Extensions API, 2020-01-01):
	// like Lambda, the next invocation goes to the runtime only once every
	// extension has asked for its next event, and each gets an INVOKE
	// event with every invocation.
	exts []*extension
}

// extension is one registered extension.
type extension struct {
	id string
	// ready holds a token while the extension waits for its next event:
	// it is done with the previous invocation.
	ready  chan struct{}
	events chan []byte
}

type invocation struct {
	id       string
	payload  []byte
	deadline time.Time
	done     chan result
}

type result struct {
	out []byte
	err error
}

// NewRuntimeAPI listens on a loopback port and serves the Runtime API.
func NewRuntimeAPI() (*RuntimeAPI, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("apigwemu: runtime api listen: %w", err)
	}
	rt := &RuntimeAPI{
		ln:      ln,
		queue:   make(chan *invocation),
		pending: map[string]*invocation{},
		initErr: make(chan *FunctionError, 1),
		polled:  make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", rt.next)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", rt.response)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", rt.error)
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", rt.initError)
	mux.HandleFunc("POST /2020-01-01/extension/register", rt.extRegister)
	mux.HandleFunc("GET /2020-01-01/extension/event/next", rt.extNext)
	rt.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = rt.srv.Serve(ln) }()
	return rt, nil
}

// Addr is the host:port for AWS_LAMBDA_RUNTIME_API.
func (rt *RuntimeAPI) Addr() string { return rt.ln.Addr().String() }

// Polled is closed when the runtime first asks for an invocation: the
// function's init phase is over.
func (rt *RuntimeAPI) Polled() <-chan struct{} { return rt.polled }

// Close stops serving; a bootstrap still polling sees its connection fail
// and exits.
func (rt *RuntimeAPI) Close() error { return rt.srv.Close() }

// Command returns the command that runs a bootstrap binary against rt with
// the environment Lambda sets for a provided.al2023 function, plus env.
func (rt *RuntimeAPI) Command(ctx context.Context, bootstrap string, env ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bootstrap)
	cmd.Env = append(os.Environ(),
		"AWS_LAMBDA_RUNTIME_API="+rt.Addr(),
		"AWS_LAMBDA_FUNCTION_NAME=berth-local",
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024",
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/berth-local",
		"AWS_LAMBDA_LOG_STREAM_NAME=local",
		"_HANDLER=bootstrap",
	)
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// Invoke queues payload for the runtime and waits for its answer.
func (rt *RuntimeAPI) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	rt.mu.Lock()
	rt.nextID++
	inv := &invocation{id: "req-" + strconv.Itoa(rt.nextID), payload: payload, done: make(chan result, 1)}
	rt.pending[inv.id] = inv
	rt.mu.Unlock()
	defer func() {
		rt.mu.Lock()
		delete(rt.pending, inv.id)
		rt.mu.Unlock()
	}()
	inv.deadline = time.Now().Add(15 * time.Minute)
	if d, ok := ctx.Deadline(); ok {
		inv.deadline = d
	}
	select {
	case rt.queue <- inv:
	case fe := <-rt.initErr:
		rt.initErr <- fe // every later invoke fails the same way
		return nil, fe
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case r := <-inv.done:
		return r.out, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (rt *RuntimeAPI) next(w http.ResponseWriter, r *http.Request) {
	rt.once.Do(func() { close(rt.polled) })
	// Frozen until every extension is done with the last invocation.
	rt.mu.Lock()
	exts := rt.exts
	rt.mu.Unlock()
	for _, x := range exts {
		select {
		case <-x.ready:
		case <-r.Context().Done():
			return
		}
	}
	select {
	case inv := <-rt.queue:
		rt.mu.Lock()
		rt.current = inv
		rt.mu.Unlock()
		invoke, _ := json.Marshal(map[string]any{"eventType": "INVOKE", "requestId": inv.id, "deadlineMs": inv.deadline.UnixMilli(),
			"invokedFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:berth-local"})
		for _, x := range exts {
			x.events <- invoke
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Lambda-Runtime-Aws-Request-Id", inv.id)
		h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(inv.deadline.UnixMilli(), 10))
		h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:berth-local")
		h.Set("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000;Sampled=0")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(inv.payload)
	case <-r.Context().Done():
	}
}

// finish answers inv once.
func (rt *RuntimeAPI) finish(inv *invocation, r result) {
	rt.mu.Lock()
	if rt.current == inv {
		rt.current = nil
	}
	rt.mu.Unlock()
	select {
	case inv.done <- r:
	default:
	}
}

// Supervise runs bootstrap against rt and, like Lambda replacing a crashed
// execution environment, starts it again whenever it exits, until ctx ends.
// An invocation in flight when the process dies fails with Runtime.ExitError.
// It returns once the first process has started.
func (rt *RuntimeAPI) Supervise(ctx context.Context, bootstrap string, env ...string) error {
	start := func() (*exec.Cmd, error) {
		cmd := rt.Command(ctx, bootstrap, env...)
		cmd.Stdout, cmd.Stderr = rt.Stderr, rt.Stderr
		return cmd, cmd.Start()
	}
	cmd, err := start()
	if err != nil {
		return fmt.Errorf("apigwemu: start %s: %w", bootstrap, err)
	}
	go func() {
		for {
			werr := cmd.Wait()
			rt.mu.Lock()
			inv := rt.current
			rt.mu.Unlock()
			if inv != nil {
				rt.finish(inv, result{err: &FunctionError{Type: "Runtime.ExitError", Message: fmt.Sprintf("runtime exited: %v", werr)}})
			}
			if ctx.Err() != nil {
				return
			}
			if cmd, err = start(); err != nil {
				return
			}
		}
	}()
	return nil
}

func (rt *RuntimeAPI) take(id string) *invocation {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.pending[id]
}

func (rt *RuntimeAPI) response(w http.ResponseWriter, r *http.Request) {
	inv := rt.take(r.PathValue("id"))
	if inv == nil {
		http.Error(w, `{"errorMessage":"unknown request id","errorType":"InvalidRequestID"}`, http.StatusBadRequest)
		return
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxResponseBytes+1))
	switch {
	case err != nil:
		rt.finish(inv, result{err: &FunctionError{Type: "Runtime.InvalidResponse", Message: err.Error()}})
		http.Error(w, "", http.StatusBadRequest)
		return
	case len(b) > MaxResponseBytes:
		// Lambda refuses the response; the Go runtime client then exits and
		// the next invoke gets a fresh environment (Supervise restarts it).
		msg := fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", MaxResponseBytes)
		rt.finish(inv, result{err: &FunctionError{Type: "Function.ResponseSizeTooLarge", Message: msg}})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		_ = json.NewEncoder(w).Encode(FunctionError{Type: "RequestEntityTooLarge", Message: msg})
		return
	}
	rt.finish(inv, result{out: b})
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte(`{"status":"OK"}`))
}

func readFunctionError(r *http.Request) *FunctionError {
	fe := &FunctionError{}
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if json.Unmarshal(b, fe) != nil || fe.Type == "" {
		fe.Type = r.Header.Get("Lambda-Runtime-Function-Error-Type")
		if fe.Message == "" {
			fe.Message = strings.TrimSpace(string(b))
		}
	}
	return fe
}

func (rt *RuntimeAPI) error(w http.ResponseWriter, r *http.Request) {
	inv := rt.take(r.PathValue("id"))
	if inv == nil {
		http.Error(w, `{"errorMessage":"unknown request id","errorType":"InvalidRequestID"}`, http.StatusBadRequest)
		return
	}
	rt.finish(inv, result{err: readFunctionError(r)})
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte(`{"status":"OK"}`))
}

func (rt *RuntimeAPI) initError(w http.ResponseWriter, r *http.Request) {
	fe := readFunctionError(r)
	select {
	case rt.initErr <- fe:
	default:
	}
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte(`{"status":"OK"}`))
}

// extRegister registers an extension for INVOKE events. Like Lambda it
// accepts registrations only during init (before the runtime's first
// poll), and refuses SHUTDOWN, which internal extensions cannot have (an
// external one, a separate process in /opt/extensions, is not emulated).
func (rt *RuntimeAPI) extRegister(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Events []string `json:"events"`
	}
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if json.Unmarshal(b, &body) != nil || r.Header.Get("Lambda-Extension-Name") == "" {
		http.Error(w, `{"errorMessage":"invalid registration","errorType":"InvalidRequest"}`, http.StatusBadRequest)
		return
	}
	for _, ev := range body.Events {
		if ev != "INVOKE" {
			http.Error(w, `{"errorMessage":"internal extensions register for INVOKE only","errorType":"InvalidRequest"}`, http.StatusBadRequest)
			return
		}
	}
	select {
	case <-rt.polled:
		http.Error(w, `{"errorMessage":"registration after init","errorType":"InvalidState"}`, http.StatusForbidden)
		return
	default:
	}
	rt.mu.Lock()
	x := &extension{id: "ext-" + strconv.Itoa(len(rt.exts)+1), ready: make(chan struct{}, 1), events: make(chan []byte, 1)}
	rt.exts = append(rt.exts, x)
	rt.mu.Unlock()
	w.Header().Set("Lambda-Extension-Identifier", x.id)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"functionName":"berth-local","functionVersion":"$LATEST","handler":"bootstrap"}`))
}

// extNext marks the extension done with the last invocation and answers
// with its next event.
func (rt *RuntimeAPI) extNext(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("Lambda-Extension-Identifier")
	rt.mu.Lock()
	var x *extension
	for _, e := range rt.exts {
		if e.id == id {
			x = e
		}
	}
	rt.mu.Unlock()
	if x == nil {
		http.Error(w, `{"errorMessage":"unknown extension","errorType":"Extension.UnknownExtensionIdentifier"}`, http.StatusForbidden)
		return
	}
	select {
	case x.ready <- struct{}{}:
	default:
	}
	select {
	case ev := <-x.events:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(ev)
	case <-r.Context().Done():
	}
}
