// Package afterresponse runs work after a Lambda invocation's response has
// been sent, so that delivering an event (a PutEvents call) adds nothing
// to the latency a client sees.
//
// Lambda freezes an execution environment only when the runtime and every
// registered extension have asked for their next event (the Extensions
// API, docs.aws.amazon.com/lambda/latest/dg/runtimes-extensions-api.html),
// and it returns the function's response to the caller as soon as the
// runtime posts it. An internal extension, registered from the function's
// own process, therefore keeps the process running after the response for
// as long as it has not asked for its next event. This package is such an
// extension: work handed to Defer during an invocation runs after the
// handler returns and before the extension asks for the next event, so it
// always finishes before the environment freezes or is shut down. The
// invocation's billed duration includes it; the client's wait does not.
//
// Outside Lambda (no AWS_LAMBDA_RUNTIME_API) there is nothing to register
// with: callers keep doing the work synchronously.
package afterresponse

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Name is the name the extension registers under.
const Name = "berth-after-response"

// apiVersion is the Extensions API's path prefix.
const apiVersion = "/2020-01-01/extension"

// Extension queues work during an invocation and runs it after the
// invocation's handler returned. Use Register, then Wrap the handler and
// start Run in a goroutine before lambda.Start.
type Extension struct {
	base   string
	id     string
	client *http.Client
	log    *slog.Logger
	// limit bounds one invocation's deferred work: it runs with a context
	// that ends then, or at the invocation's deadline if sooner.
	limit time.Duration

	mu    sync.Mutex
	queue []func(context.Context)
	// dead: the event loop stopped (the Extensions API failed); Defer
	// runs work at once, as without the extension.
	dead bool
	// done carries one token per invocation whose handler returned.
	done chan struct{}
}

// Register registers an internal extension with the Extensions API at
// runtimeAPI (the AWS_LAMBDA_RUNTIME_API host:port) for INVOKE events
// (internal extensions cannot receive SHUTDOWN, and need not: nothing is
// left queued between invocations). It must be called during the
// function's init, before lambda.Start.
func Register(ctx context.Context, runtimeAPI string, log *slog.Logger) (*Extension, error) {
	if runtimeAPI == "" {
		return nil, errors.New("afterresponse: no Lambda runtime API (AWS_LAMBDA_RUNTIME_API unset)")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Extension{
		base: "http://" + runtimeAPI + apiVersion,
		// Next blocks until the next invocation, however long that is.
		client: &http.Client{},
		log:    log,
		limit:  5 * time.Second,
		done:   make(chan struct{}, 1),
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.base+"/register", jsonBody(`{"events":["INVOKE"]}`))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Lambda-Extension-Name", Name)
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("afterresponse: register: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("afterresponse: register: HTTP %d", resp.StatusCode)
	}
	if e.id = resp.Header.Get("Lambda-Extension-Identifier"); e.id == "" {
		return nil, errors.New("afterresponse: register: no Lambda-Extension-Identifier")
	}
	return e, nil
}

// Defer queues f to run after the current invocation's response. f gets a
// context that is not the request's (that one ends with the handler) and
// that ends when the deferred work's time is up.
func (e *Extension) Defer(f func(ctx context.Context)) {
	e.mu.Lock()
	if e.dead {
		e.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), e.limit)
		defer cancel()
		f(ctx)
		return
	}
	e.queue = append(e.queue, f)
	e.mu.Unlock()
}

// Wrap returns h signalling the extension when it returns, however it
// returns (a panic included: the Lambda library turns it into an error
// response after this deferred signal).
func Wrap[Req, Resp any](e *Extension, h func(context.Context, Req) (Resp, error)) func(context.Context, Req) (Resp, error) {
	return func(ctx context.Context, req Req) (Resp, error) {
		defer e.handlerDone()
		return h(ctx, req)
	}
}

func (e *Extension) handlerDone() {
	select {
	case e.done <- struct{}{}:
	default: // a token is already waiting; one per invocation is enough
	}
}

// event is what Next returns.
type event struct {
	EventType  string `json:"eventType"`
	DeadlineMs int64  `json:"deadlineMs"`
	RequestID  string `json:"requestId"`
}

// Run is the extension's event loop: ask for the next invocation, wait
// for its handler to return (at most until its deadline), run what it
// deferred, ask again. It returns when the Extensions API fails or ctx
// ends; from then on Defer runs work at once.
func (e *Extension) Run(ctx context.Context) error {
	defer e.stop()
	for {
		ev, err := e.next(ctx)
		if err != nil {
			return err
		}
		if ev.EventType != "INVOKE" {
			e.flush(time.Now().Add(e.limit))
			return nil
		}
		deadline := time.UnixMilli(ev.DeadlineMs)
		wait := time.Until(deadline)
		if ev.DeadlineMs == 0 || wait <= 0 {
			wait = e.limit
		}
		timer := time.NewTimer(wait)
		select {
		case <-e.done:
		case <-timer.C:
			e.log.Warn("after response: the handler did not return before its deadline", slog.String("request_id", ev.RequestID))
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		}
		timer.Stop()
		e.flush(deadline)
	}
}

// stop marks the loop dead and runs what is still queued.
func (e *Extension) stop() {
	e.mu.Lock()
	e.dead = true
	e.mu.Unlock()
	e.flush(time.Now().Add(e.limit))
}

// flush runs the queued work, bounded by limit and by the invocation's
// deadline (work past it would be cut off by the function timeout).
func (e *Extension) flush(deadline time.Time) {
	e.mu.Lock()
	work := e.queue
	e.queue = nil
	e.mu.Unlock()
	if len(work) == 0 {
		return
	}
	end := time.Now().Add(e.limit)
	if !deadline.IsZero() && deadline.After(time.Now()) && deadline.Before(end) {
		end = deadline
	}
	ctx, cancel := context.WithDeadline(context.Background(), end)
	defer cancel()
	for _, f := range work {
		f(ctx)
	}
}

// next asks for the next event; it blocks until there is one.
func (e *Extension) next(ctx context.Context) (event, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.base+"/event/next", nil)
	if err != nil {
		return event{}, err
	}
	req.Header.Set("Lambda-Extension-Identifier", e.id)
	resp, err := e.client.Do(req)
	if err != nil {
		return event{}, fmt.Errorf("afterresponse: next: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return event{}, fmt.Errorf("afterresponse: next: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return event{}, fmt.Errorf("afterresponse: next: HTTP %d", resp.StatusCode)
	}
	var ev event
	if err := json.Unmarshal(body, &ev); err != nil {
		return event{}, fmt.Errorf("afterresponse: next: %w", err)
	}
	return ev, nil
}

func jsonBody(s string) io.Reader { return strings.NewReader(s) }
