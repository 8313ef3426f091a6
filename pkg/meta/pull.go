package meta

import (
	"context"
	"fmt"

	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

// Pull is what a manifest GET or HEAD read, as PullRecord needs it: the
// manifest, the tag it came through, and when the item read was last
// marked pulled. ManifestPull returns it; the zero Pull records nothing.
type Pull struct {
	repo    string
	digest  oci.Digest
	tag     string // "" when pulled by digest
	touched int64  // Touched of the item read: the tag's by tag, the manifest's by digest
	version int64  // Version of the tag item read (by tag)
}

// day is the length of the period in which a pull is recorded once.
const day = 24 * 60 * 60

// dayStart is the unix time of the UTC midnight that begins t's day.
func dayStart(t int64) int64 { return t - ((t%day)+day)%day }

// PullRecord records the pull p describes: the manifest item's Touched,
// its last recorded pull (retention's sinceImagePulled), becomes now, and
// so does the tag item's when the pull went through a tag. It writes at
// most once per manifest and per tag a UTC day, and never reads:
//
//   - nothing when the item the pull read was marked today already (a
//     manifest counts as pulled on the day it was pushed, and so does the
//     tag pushed with it);
//   - by digest, one add of zero on the manifest item that sets Touched,
//     conditioned on Touched being before today, so of two concurrent
//     first pulls one writes;
//   - by tag, one transaction: the same add on the tag item, conditioned
//     on the version the pull read (a tag moved, deleted or recorded
//     meanwhile is left alone), and on the manifest item, conditioned on
//     its existing. The manifest carries the record, so the pull still
//     counts after the tag moves to another image.
//
// A failed condition is not an error (someone else recorded the pull, or
// the manifest went away). Every write raises the item's version, as every
// write does; a manifest delete that read the old version reads again
// (docs/architecture.md, invariant 6), as a concurrent re-tag makes it.
func (s *Store) PullRecord(ctx context.Context, p Pull) error {
	if p.repo == "" {
		return nil
	}
	now := s.unix()
	today := dayStart(now)
	if p.touched >= today {
		return nil
	}
	man := storage.Item{PK: repoPK(p.repo), SK: manifestSK(p.digest), Touched: now}
	var err error
	if p.tag == "" {
		_, err = s.items.ItemAdd(ctx, man, 0, storage.IfTouchedBy(today-1))
	} else {
		err = s.items.Transact(ctx, []storage.Op{
			{Kind: storage.OpAdd, Item: storage.Item{PK: repoPK(p.repo), SK: tagSK(p.tag), Touched: now}, Cond: storage.IfVersion(p.version)},
			{Kind: storage.OpAdd, Item: man, Cond: storage.IfExists},
		})
	}
	if ok, _ := isCond(err); ok {
		return nil
	}
	if err != nil {
		return fmt.Errorf("record pull of %s in %s: %w", p.digest, p.repo, err)
	}
	return nil
}
