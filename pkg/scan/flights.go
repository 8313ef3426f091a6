package scan

import (
	"context"
	"sync"
)

// flights runs one call per key at a time: a caller that finds a call for
// its key in flight waits for that call's result instead of starting its
// own. It is what makes concurrent IndexLayer calls of one digest read the
// layer once in this process (across processes the index is idempotent:
// a second writer stores the same document).
type flights[T any] struct {
	mu    sync.Mutex
	calls map[string]*flight[T]
}

type flight[T any] struct {
	done chan struct{}
	val  T
	err  error
}

// do runs fn for key unless a call for key is in flight, and returns that
// call's result. A waiter whose ctx ends stops waiting; the call goes on.
func (f *flights[T]) do(ctx context.Context, key string, fn func() (T, error)) (T, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]*flight[T]{}
	}
	if c, ok := f.calls[key]; ok {
		f.mu.Unlock()
		select {
		case <-c.done:
			return c.val, c.err
		case <-ctx.Done():
			var zero T
			return zero, ctx.Err()
		}
	}
	c := &flight[T]{done: make(chan struct{})}
	f.calls[key] = c
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.calls, key)
		f.mu.Unlock()
		close(c.done)
	}()
	c.val, c.err = fn()
	return c.val, c.err
}
