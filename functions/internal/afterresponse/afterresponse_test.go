package afterresponse

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAPI is the Extensions API as Lambda serves it to one execution
// environment: register, then event/next, which blocks until the test
// starts an invocation (or fails when broken).
type fakeAPI struct {
	invokes chan event
	mu      sync.Mutex
	log     []string // "register", "next"
	broken  bool
}

func newFakeAPI(t *testing.T) (*fakeAPI, string) {
	f := &fakeAPI{invokes: make(chan event)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == apiVersion+"/register":
			var body struct{ Events []string }
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil || r.Header.Get("Lambda-Extension-Name") != Name ||
				len(body.Events) != 1 || body.Events[0] != "INVOKE" {
				// Internal extensions may not register for SHUTDOWN.
				http.Error(w, "bad register", http.StatusBadRequest)
				return
			}
			f.record("register")
			w.Header().Set("Lambda-Extension-Identifier", "ext-1")
			_, _ = w.Write([]byte(`{"functionName":"api"}`))
		case r.Method == http.MethodGet && r.URL.Path == apiVersion+"/event/next":
			if r.Header.Get("Lambda-Extension-Identifier") != "ext-1" {
				http.Error(w, "unknown extension", http.StatusForbidden)
				return
			}
			f.record("next")
			f.mu.Lock()
			broken := f.broken
			f.mu.Unlock()
			if broken {
				http.Error(w, "gone", http.StatusInternalServerError)
				return
			}
			select {
			case ev := <-f.invokes:
				_ = json.NewEncoder(w).Encode(ev)
			case <-r.Context().Done():
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return f, strings.TrimPrefix(srv.URL, "http://")
}

func (f *fakeAPI) record(s string) {
	f.mu.Lock()
	f.log = append(f.log, s)
	f.mu.Unlock()
}

func (f *fakeAPI) calls() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.log, ",")
}

// waitCalls waits until the API saw want (the extension's calls so far).
func (f *fakeAPI) waitCalls(t *testing.T, want string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if f.calls() == want {
			return
		}
	}
	t.Fatalf("extension calls %q, want %q", f.calls(), want)
}

// Work deferred during an invocation runs after the handler returned (the
// handler does not wait for it), and the extension asks for its next
// event, which is what lets Lambda freeze the environment, only after
// that work finished.
func TestDeferredWorkRunsAfterTheHandlerBeforeNext(t *testing.T) {
	api, addr := newFakeAPI(t)
	ext, err := Register(t.Context(), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = ext.Run(ctx) }()
	api.waitCalls(t, "register,next") // init done: the extension waits for an invocation

	release, ran := make(chan struct{}), make(chan string, 4)
	handler := Wrap(ext, func(_ context.Context, req string) (string, error) {
		ext.Defer(func(ctx context.Context) {
			<-release // a slow PutEvents
			if _, ok := ctx.Deadline(); !ok {
				t.Error("deferred work without a deadline")
			}
			ran <- req
		})
		return "response to " + req, nil
	})

	for i, req := range []string{"first", "second"} {
		api.invokes <- event{EventType: "INVOKE", RequestID: req, DeadlineMs: time.Now().Add(time.Minute).UnixMilli()}
		resp, err := handler(t.Context(), req)
		if err != nil || resp != "response to "+req {
			t.Fatalf("handler: %q %v", resp, err)
		}
		// The response is out; the work has not run, and the extension
		// has not asked for the next event.
		select {
		case r := <-ran:
			t.Fatalf("deferred work %q ran before it was released", r)
		case <-time.After(50 * time.Millisecond):
		}
		want := "register" + strings.Repeat(",next", i+1)
		if got := api.calls(); got != want {
			t.Fatalf("calls before the work finished: %q, want %q", got, want)
		}
		release <- struct{}{}
		if r := <-ran; r != req {
			t.Fatalf("ran %q, want %q", r, req)
		}
		api.waitCalls(t, want+",next")
	}
}

// When the Extensions API fails, Run returns and Defer runs work at once,
// so nothing waits for a loop that is gone.
func TestDeadExtensionRunsWorkAtOnce(t *testing.T) {
	api, addr := newFakeAPI(t)
	ext, err := Register(t.Context(), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	api.mu.Lock()
	api.broken = true
	api.mu.Unlock()
	if err := ext.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "HTTP 500") {
		t.Fatalf("Run: %v", err)
	}
	ran := false
	ext.Defer(func(context.Context) { ran = true })
	if !ran {
		t.Fatal("Defer queued work on a dead extension")
	}
}

func TestRegisterFailures(t *testing.T) {
	if _, err := Register(t.Context(), "", nil); err == nil {
		t.Fatal("registered without a runtime API")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK) // no extension identifier
	}))
	defer srv.Close()
	if _, err := Register(t.Context(), strings.TrimPrefix(srv.URL, "http://"), nil); err == nil {
		t.Fatal("registered without an identifier")
	}
}
