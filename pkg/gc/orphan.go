package gc

import (
	"context"
	"log/slog"

	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

// Lister lists stored blobs (storage.BlobLister: the filesystem, S3).
type Lister interface {
	BlobList(ctx context.Context, after oci.Digest, limit int) ([]storage.BlobObject, bool, error)
}

// DefaultOrphanBudget is how many stored objects one pass looks at. A pass
// continues where the previous one stopped and wraps around at the end,
// so a bucket of N objects is covered every N/budget passes.
const DefaultOrphanBudget = 10000

// orphans is the orphan pass: stored blobs that no metadata points at (no
// global record, no GONE mark) and that were written before the cutoff
// are condemned and deleted with the same marks the candidate pass uses,
// so a link racing the deletion either wins (the condemn's "no record"
// condition fails) or is refused until its bytes are back. Per object it
// costs a share of one LIST request (1000 keys) and of one batched read
// of the two metadata keys (50 objects per BatchGetItem).
func (c Collector) orphans(ctx context.Context, cutoff int64, st *Stats) error {
	budget := c.OrphanBudget
	if budget <= 0 {
		budget = DefaultOrphanBudget
	}
	after, err := c.Store.GCOrphanCursor(ctx)
	if err != nil {
		return err
	}
	for st.OrphansScanned < budget {
		objs, more, err := c.Orphans.BlobList(ctx, after, min(1000, budget-st.OrphansScanned))
		if err != nil {
			return err
		}
		st.OrphansScanned += len(objs)
		if err := c.orphanPage(ctx, objs, cutoff, st); err != nil {
			return err
		}
		if !more || len(objs) == 0 {
			after = "" // wrap around: the next pass starts over
			break
		}
		after = objs[len(objs)-1].Digest
	}
	if c.DryRun {
		return nil
	}
	return c.Store.GCSetOrphanCursor(ctx, after)
}

func (c Collector) orphanPage(ctx context.Context, objs []storage.BlobObject, cutoff int64, st *Stats) error {
	for start := 0; start < len(objs); start += 50 {
		page := objs[start:min(start+50, len(objs))]
		ds := make([]oci.Digest, len(page))
		for i, o := range page {
			ds[i] = o.Digest
		}
		known, err := c.Store.BlobCounted(ctx, ds)
		if err != nil {
			return err
		}
		for _, o := range page {
			if known[o.Digest] || o.Modified.Unix() > cutoff {
				continue
			}
			if c.DryRun {
				st.Would = append(st.Would, o.Digest)
				st.OrphanBytes += o.Size
				continue
			}
			ok, err := c.reclaim(ctx, o.Digest, o.Size, nil, st, func() (int64, error) { return c.Store.GCCondemnOrphan(ctx, o.Digest) })
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			st.Orphans++
			st.OrphanBytes += o.Size
			c.log().DebugContext(ctx, "gc: deleted orphan", slog.String("digest", string(o.Digest)), slog.Int64("size", o.Size))
		}
	}
	return nil
}
