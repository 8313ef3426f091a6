package events

import "sync/atomic"

// Stats counts an emitter's deliveries.
type Stats struct {
	// Sent: events delivered.
	Sent int64 `json:"sent"`
	// Failed: events given up on after the emitter's attempts.
	Failed int64 `json:"failed"`
	// Dropped: events never attempted because the queue was full or the
	// emitter was closed.
	Dropped int64 `json:"dropped"`
	// Retries: extra attempts made.
	Retries int64 `json:"retries"`
}

// Counter is the counters an emitter keeps; safe for concurrent use.
type Counter struct {
	sent, failed, dropped, retries atomic.Int64
}

// Stats returns the counts so far.
func (c *Counter) Stats() Stats {
	return Stats{Sent: c.sent.Load(), Failed: c.failed.Load(), Dropped: c.dropped.Load(), Retries: c.retries.Load()}
}

// AddSent, AddFailed, AddDropped and AddRetry count one event each.
func (c *Counter) AddSent()    { c.sent.Add(1) }
func (c *Counter) AddFailed()  { c.failed.Add(1) }
func (c *Counter) AddDropped() { c.dropped.Add(1) }
func (c *Counter) AddRetry()   { c.retries.Add(1) }
