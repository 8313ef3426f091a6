// Package gc is the registry's garbage collector: it deletes the bytes of
// blobs no manifest has referenced for a grace period, online, while
// pushes, pulls and other passes go on. The protocol that makes that safe
// lives in pkg/meta (gc.go); this package drives it over the metadata
// store and the blob seam. The cleanup function runs a pass on its
// schedule, `berth serve --gc-interval` on a ticker, `berth gc` once.
// docs/gc.md explains the guarantees and the costs.
package gc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/metrics"
	"github.com/berth-registry/berth/pkg/oci"
)

// DefaultGrace is how long a blob must have been unreferenced (and not
// uploaded, linked or mounted) before a pass deletes it.
const DefaultGrace = 24 * time.Hour

// MaxPass bounds one pass, so that a pass may take over a blob another
// pass condemned more than TakeOverAfter ago: by then the other pass's
// deletion of those bytes is long over (it ran under this deadline).
const (
	MaxPass       = 10 * time.Minute
	TakeOverAfter = 15 * time.Minute
)

// Deleter is the part of the blob seam a pass uses.
type Deleter interface {
	BlobDelete(ctx context.Context, d oci.Digest) error
}

// Counter adds to a named counter (metrics.EMF, prom.Recorder).
type Counter interface {
	Add(name string, v float64)
}

// Collector runs garbage collection passes.
type Collector struct {
	Store *meta.Store
	Blobs Deleter
	// Grace is how long a blob must have been unused. Zero: DefaultGrace.
	Grace time.Duration
	// DryRun reports what a pass would delete and changes nothing.
	DryRun bool
	// Limit bounds the candidates read per shard in one pass (a backlog
	// is worked off over several passes). Zero: 10000.
	Limit int
	// Orphans, when set, also runs the orphan pass (orphan.go) over at
	// most OrphanBudget stored objects (zero: DefaultOrphanBudget), with
	// OrphanGrace as the age an unrecorded object must have (zero: Grace
	// + 24 h, so that an edge upload, whose session lives 24 h, is not
	// taken before its manifest can claim it).
	Orphans      Lister
	OrphanBudget int
	OrphanGrace  time.Duration
	// OnDelete, when set, is told of each blob whose bytes a pass deleted
	// (size 0 when a pass finished another's deletion and the size is no
	// longer recorded), after the deletion is recorded: the registry's
	// event hook (docs/events.md). It cannot fail or slow the pass beyond
	// its own cost.
	OnDelete func(ctx context.Context, d oci.Digest, size int64)
	// Metrics, when set, receives each pass's figures (metrics.GCBlobsDeleted,
	// GCBytesFreed, GCFailures); a dry run records nothing.
	Metrics Counter
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
	// Log receives one line per pass, and one per deleted blob at debug
	// level. Nil: discard.
	Log *slog.Logger
}

// Stats are a pass's counts.
type Stats struct {
	// Candidates is the number of due candidate entries read.
	Candidates int `json:"candidates"`
	// Deleted blobs, and the bytes they held.
	Deleted int   `json:"deleted"`
	Bytes   int64 `json:"bytes"`
	// Referenced: candidates referenced by a manifest again (skipped).
	Referenced int `json:"referenced"`
	// Deferred: candidates used within the grace period (moved to later).
	Deferred int `json:"deferred"`
	// Raced: blobs that changed under the pass (linked or referenced again,
	// or taken by another pass): skipped, nothing lost.
	Raced int `json:"raced"`
	// Resumed: blobs an earlier pass condemned and did not finish.
	Resumed int `json:"resumed"`
	// Stale: entries whose blob was already gone.
	Stale int `json:"stale"`
	// Orphans: objects no metadata pointed at, deleted by the orphan pass,
	// and the number of objects it looked at.
	Orphans        int   `json:"orphans"`
	OrphanBytes    int64 `json:"orphan_bytes"`
	OrphansScanned int   `json:"orphans_scanned"`
	// Would lists what a dry run would delete.
	Would []oci.Digest `json:"would,omitempty"`
}

func (c Collector) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

func (c Collector) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

func (c Collector) grace() time.Duration {
	if c.Grace <= 0 {
		return DefaultGrace
	}
	return c.Grace
}

// Pass runs one pass and returns its counts. It is idempotent, and passes
// may run at once: each blob is condemned by one transaction that only one
// of them can win. An error ends the pass early; what it did stays done
// and the next pass carries on.
func (c Collector) Pass(ctx context.Context) (Stats, error) {
	ctx, cancel := context.WithTimeout(ctx, MaxPass)
	defer cancel()
	start := c.now()
	cutoff := start.Add(-c.grace()).Unix()
	limit := c.Limit
	if limit <= 0 {
		limit = 10000
	}
	var st Stats
	// A blob may have several due entries (a link and a decrement in
	// different seconds): a pass decides each blob once.
	done := map[oci.Digest]bool{}
	err := c.Store.GCCandidates(ctx, cutoff, limit, func(cand meta.Candidate) error {
		st.Candidates++
		if done[cand.Digest] {
			st.Stale++
			return c.drop(ctx, cand)
		}
		done[cand.Digest] = true
		return c.collect(ctx, cand, cutoff, &st)
	})
	if err == nil && c.Orphans != nil {
		og := c.OrphanGrace
		if og <= 0 {
			og = c.grace() + 24*time.Hour
		}
		err = c.orphans(ctx, start.Add(-og).Unix(), &st)
	}
	c.log().InfoContext(ctx, "gc pass",
		slog.Bool("dry_run", c.DryRun), slog.Int("candidates", st.Candidates), slog.Int("deleted", st.Deleted),
		slog.Int64("bytes", st.Bytes), slog.Int("referenced", st.Referenced), slog.Int("deferred", st.Deferred),
		slog.Int("raced", st.Raced), slog.Int("resumed", st.Resumed), slog.Int("stale", st.Stale),
		slog.Int("orphans", st.Orphans), slog.Int64("orphan_bytes", st.OrphanBytes), slog.Int("orphans_scanned", st.OrphansScanned),
		slog.Float64("took_s", c.now().Sub(start).Seconds()), slog.Any("error", err))
	if c.Metrics != nil && !c.DryRun {
		c.Metrics.Add(metrics.GCBlobsDeleted, float64(st.Deleted+st.Orphans))
		c.Metrics.Add(metrics.GCBytesFreed, float64(st.Bytes+st.OrphanBytes))
		// A pass cut short by its caller (shutdown) did not fail.
		if err != nil && context.Cause(ctx) != context.Canceled {
			c.Metrics.Add(metrics.GCFailures, 1)
		}
	}
	return st, err
}

// collect decides one candidate.
func (c Collector) collect(ctx context.Context, cand meta.Candidate, cutoff int64, st *Stats) error {
	b, err := c.Store.BlobState(ctx, cand.Digest)
	if err != nil {
		return err
	}
	switch {
	case !b.Exists && b.Gone && !b.Deleted:
		// Condemned by a pass that did not finish (or is finishing now).
		if b.GoneAt > c.now().Add(-TakeOverAfter).Unix() {
			return nil // its own pass is still within its deadline
		}
		if c.DryRun {
			st.Would = append(st.Would, cand.Digest)
			return nil
		}
		ok, err := c.reclaim(ctx, cand.Digest, b.Size, &cand, st, func() (int64, error) {
			return c.Store.GCTakeOver(ctx, cand.Digest, b.GoneVersion)
		})
		if ok {
			st.Resumed++
			st.Deleted++
		}
		return err
	case !b.Exists:
		st.Stale++
		return c.drop(ctx, cand)
	case b.Count > 0:
		st.Referenced++
		return c.drop(ctx, cand)
	case b.Touched > cutoff:
		st.Deferred++
		if c.DryRun {
			return nil
		}
		return c.Store.GCDefer(ctx, cand, b.Touched)
	}
	if c.DryRun {
		st.Would = append(st.Would, cand.Digest)
		st.Bytes += b.Size
		return nil
	}
	ok, err := c.reclaim(ctx, cand.Digest, b.Size, &cand, st, func() (int64, error) { return c.Store.GCCondemn(ctx, b) })
	if ok {
		st.Deleted++
		st.Bytes += b.Size
		c.log().DebugContext(ctx, "gc: deleted blob", slog.String("digest", string(cand.Digest)), slog.Int64("size", b.Size))
	}
	return err
}

// reclaim condemns blob d of size bytes (condemn returns the GONE mark's version), then
// deletes its bytes and records that. A blob that changed under the pass
// counts as raced and is left alone. It reports whether bytes went.
func (c Collector) reclaim(ctx context.Context, d oci.Digest, size int64, cand *meta.Candidate, st *Stats, condemn func() (int64, error)) (bool, error) {
	v, err := condemn()
	if errors.Is(err, meta.ErrGCRaced) {
		st.Raced++
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := c.delete(ctx, d, v, cand, size); err != nil {
		return false, err
	}
	return true, nil
}

// delete removes the bytes of a condemned blob, then records it.
func (c Collector) delete(ctx context.Context, d oci.Digest, goneVersion int64, cand *meta.Candidate, size int64) error {
	if err := c.Blobs.BlobDelete(ctx, d); err != nil {
		return fmt.Errorf("gc: delete %s: %w", d, err)
	}
	if err := c.Store.GCDeleted(ctx, d, goneVersion, cand); err != nil {
		return fmt.Errorf("gc: record deletion of %s: %w", d, err)
	}
	if c.OnDelete != nil {
		c.OnDelete(ctx, d, size)
	}
	return nil
}

func (c Collector) drop(ctx context.Context, cand meta.Candidate) error {
	if c.DryRun {
		return nil
	}
	return c.Store.GCDrop(ctx, cand)
}

// Every runs a pass each interval until ctx ends (the first after one
// interval). Failures are logged; the next pass retries.
func (c Collector) Every(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := c.Pass(ctx); err != nil && ctx.Err() == nil {
			c.log().WarnContext(ctx, "gc pass failed", slog.Any("error", err))
		}
	}
}
