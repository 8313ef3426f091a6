// Package hooks connects the registry's background deleters, garbage
// collection (pkg/gc) and retention (pkg/retention), to an event emitter.
// It is apart from pkg/events so that the event vocabulary imports
// neither of them.
package hooks

import (
	"context"
	"time"

	"github.com/berth-registry/berth/pkg/events"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/retention"
)

// GC returns a gc.Collector OnDelete hook that emits a blob deletion
// event. A nil now is time.Now.
func GC(em events.Emitter, now func() time.Time) func(context.Context, oci.Digest, int64) {
	now = clock(now)
	return func(ctx context.Context, d oci.Digest, size int64) {
		em.Emit(ctx, events.BlobDeletion(now(), string(d), size))
	}
}

// Retention returns the retention option that emits an image deletion
// event per expired manifest. A nil now is time.Now.
func Retention(em events.Emitter, now func() time.Time) retention.Option {
	now = clock(now)
	return retention.OnExpire(func(ctx context.Context, x retention.Expired) {
		em.Emit(ctx, events.RetentionDeletion(now(), x.Repo, string(x.Digest), x.MediaType, x.Tags, x.Rule))
	})
}

func clock(now func() time.Time) func() time.Time {
	if now == nil {
		return time.Now
	}
	return now
}
