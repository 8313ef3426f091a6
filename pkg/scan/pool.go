package scan

import (
	"context"
	"sync"

	"github.com/berth-registry/berth/pkg/events"
	"github.com/berth-registry/berth/pkg/oci"
)

// Pool runs a Scanner's jobs in the background on a fixed number of
// workers (`berth serve --scan`). It is an events.Emitter, so it sits
// beside the other event sinks and takes its work from the registry's own
// events; Add takes the rest (stored blobs). Emit never blocks the
// request that emitted: jobs wait in a queue that holds each job once (a
// burst of pushes of one image is one scan), so it is bounded by the
// distinct images and layers waiting, not by the number of events.
type Pool struct {
	s       *Scanner
	workers int

	mu      sync.Mutex
	queue   []Job
	queued  map[Job]bool
	running int
	// wake holds up to one token per worker: each Add wakes one sleeping
	// worker, and a worker that finds the queue empty sleeps again.
	wake chan struct{}
	idle chan struct{} // closed and replaced whenever the pool goes idle
}

// NewPool returns a pool of workers (at least 1) running jobs on s.
func NewPool(s *Scanner, workers int) *Pool {
	return &Pool{s: s, workers: max(workers, 1), queued: map[Job]bool{}, wake: make(chan struct{}, max(workers, 1)), idle: make(chan struct{})}
}

// Emit implements events.Emitter: the job the event asks for, if any, is
// queued.
func (p *Pool) Emit(_ context.Context, ev events.Event) {
	if j, ok := JobOf(ev.DetailType, ev.Detail); ok {
		p.Add(j)
	}
}

// IndexBlob queues the indexing of a stored blob (ObserveUploads calls it).
func (p *Pool) IndexBlob(d oci.Digest) { p.Add(Job{Kind: JobIndex, Digest: d}) }

// Add queues j unless it is queued already.
func (p *Pool) Add(j Job) {
	p.mu.Lock()
	if !p.queued[j] {
		p.queued[j] = true
		p.queue = append(p.queue, j)
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// next takes the next job; ok is false when the queue is empty.
func (p *Pool) next() (Job, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 {
		return Job{}, false
	}
	j := p.queue[0]
	p.queue = p.queue[1:]
	delete(p.queued, j)
	p.running++
	return j, true
}

// done marks a job finished, and the pool idle if nothing is left.
func (p *Pool) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running--
	if p.running == 0 && len(p.queue) == 0 {
		close(p.idle)
		p.idle = make(chan struct{})
	}
}

// Run runs the workers until ctx ends. Queued jobs not started by then
// are dropped (the next start's Rematch, or the next push, catches up).
func (p *Pool) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.work(ctx)
		}()
	}
	wg.Wait()
}

func (p *Pool) work(ctx context.Context) {
	for {
		j, ok := p.next()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
				continue
			}
		}
		if err := p.s.Do(ctx, j); err != nil && ctx.Err() == nil {
			p.s.log.Warn("scan job failed", "kind", int(j.Kind), "repo", j.Repo, "digest", j.Digest, "error", err)
		}
		p.done()
		if ctx.Err() != nil {
			return
		}
	}
}

// Idle waits until no job is queued or running (tests; a graceful stop),
// or ctx ends.
func (p *Pool) Idle(ctx context.Context) error {
	for {
		p.mu.Lock()
		if p.running == 0 && len(p.queue) == 0 {
			p.mu.Unlock()
			return nil
		}
		ch := p.idle
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
