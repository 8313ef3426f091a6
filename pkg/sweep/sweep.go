// Package sweep is the registry's background housekeeping, run off the
// HTTP handler: it removes upload sessions past their expiry together with
// the bytes they staged, and expired items from a metadata driver that has
// no TTL of its own. `berth serve` runs it on a ticker; in AWS the cleanup
// function runs it on its hourly schedule. It works on the metadata store
// and the blob seam directly, so neither entry point builds a /v2/ handler
// to get at it.
package sweep

import (
	"context"
	"log/slog"
	"time"

	"github.com/berth-registry/berth/pkg/meta"
)

// Aborter is the part of the blob seam a sweep uses: dropping what an
// upload session staged (a multipart upload in S3, a file on disk).
type Aborter interface {
	UploadAbort(ctx context.Context, id string, state []byte) error
}

// Purger is a metadata driver without a TTL of its own (the embedded
// store): its expired items stay hidden from reads until it removes them.
type Purger interface {
	PurgeExpired(ctx context.Context) (int, error)
}

// Sweeper removes expired upload sessions from Store and their staged data
// from Blobs; with Purger set, Run also purges expired items.
type Sweeper struct {
	Store  *meta.Store
	Blobs  Aborter
	Purger Purger       // nil: the driver expires items itself (DynamoDB TTL)
	Log    *slog.Logger // nil: discard
}

func (s Sweeper) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// Uploads removes upload sessions past their expiry and the data they
// staged, and returns how many it removed. A session whose staged data
// cannot be dropped stays for the next sweep (and the bucket's lifecycle
// rules): removing its record first would orphan the data for good.
func (s Sweeper) Uploads(ctx context.Context) (int, error) {
	removed := 0
	err := s.Store.UploadsExpired(ctx, func(u meta.Upload) error {
		if err := s.Blobs.UploadAbort(ctx, u.ID, u.DriverState); err != nil {
			s.log().WarnContext(ctx, "sweep: abort upload", slog.String("upload", u.ID), slog.Any("error", err))
			return nil
		}
		if err := s.Store.UploadDelete(ctx, u); err != nil {
			return err
		}
		removed++
		return nil
	})
	return removed, err
}

// Once runs one sweep: expired uploads, then expired items when Purger is
// set. Failures are logged, not returned: the next run retries them.
func (s Sweeper) Once(ctx context.Context) {
	log := s.log()
	n, err := s.Uploads(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		log.WarnContext(ctx, "sweeping expired uploads", slog.Any("error", err))
	case n > 0:
		log.InfoContext(ctx, "removed expired uploads", slog.Int("count", n))
	}
	if s.Purger == nil {
		return
	}
	n, err = s.Purger.PurgeExpired(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		log.WarnContext(ctx, "purging expired metadata", slog.Any("error", err))
	case n > 0:
		log.InfoContext(ctx, "purged expired metadata", slog.Int("count", n))
	}
}

// Every runs Once each interval until ctx ends. The first sweep waits one
// interval: at start-up nothing has had time to expire since the last run.
func (s Sweeper) Every(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.Once(ctx)
	}
}
