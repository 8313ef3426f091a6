package meta

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

// Garbage collection's metadata (docs/gc.md). The protocol, in the order a
// pass runs it for one blob d:
//
//  1. Candidates. Every link of d and every decrement of its reference
//     count writes a candidate entry GC#nn/<time>#<d> (in the same
//     transaction, or before it). A pass reads only due entries, so its
//     cost follows what changed, never what is stored.
//  2. Condemn (one transaction): delete BLOB#d/META conditioned on the
//     version the pass read (count 0, untouched for the grace period),
//     put BLOB#d/GONE {deleting}, and delete every repository link of d
//     with its reverse entry. From here no manifest can count d (its
//     increment requires META) and no repository can read it.
//  3. Delete the bytes.
//  4. Mark BLOB#d/GONE {deleted} and drop the candidate entry.
//
// Links write META and so race the condemn on it (one of the two
// transactions fails). A link also checks that GONE is absent: while a
// pass is between 2 and 4 it is refused with ErrBlobCollecting (retryable).
// After 4, a linker whose bytes might have been written before 3 must show
// they are there now: WithStoredCheck is asked, and only if the object
// exists is GONE removed (conditioned on its version) and the link retried.
// An object present after "deleted" was read was written after the delete,
// so no link ever points at bytes a pass removed. A crash anywhere leaves
// the candidate entry, and the next pass finishes steps 2 to 4.

// ErrBlobCollecting: garbage collection is deleting the blob, or deleted
// it and its bytes are not there again; the client may retry (upload
// again). Mapped to 503 with Retry-After.
var ErrBlobCollecting = errors.New("blob is being garbage-collected")

// goneRec is BLOB#d/GONE.
type goneRec struct {
	Deleted bool  `json:"deleted"`
	At      int64 `json:"at"`
}

// goneDeletedTTL is how long a "deleted" mark stays. It only has to
// outlive any request that wrote bytes before a pass deleted them and
// links after (seconds; minutes at worst behind a stuck network). A day
// is far beyond that and costs one small item per collected blob.
const goneDeletedTTL = 24 * time.Hour

// WithStoredCheck tells the store how to ask whether blob d's bytes are in
// blob storage now. Links of a blob that garbage collection deleted use it
// (see above); without it such links are refused with ErrBlobCollecting
// until the "deleted" mark expires.
func WithStoredCheck(stored func(ctx context.Context, d oci.Digest) (bool, error)) Option {
	return func(s *Store) { s.stored = stored }
}

// candidateOp is the candidate entry of blob d at unix time at.
func candidateOp(d oci.Digest, at int64) storage.Op {
	k := gcCandidateKey(d, at)
	return storage.Op{Kind: storage.OpPut, Item: storage.Item{PK: k.PK, SK: k.SK}}
}

// linkOps are the writes that make blob d (size bytes, already stored)
// readable through repo: the check that garbage collection is not
// deleting it (always op 0; linkTx relies on it), its global record,
// created with refcount 0 if absent and marked recently used for GC's
// grace period, the link, its reverse entry and a GC candidate (a blob
// nobody references is collected after the grace period).
func (s *Store) linkOps(repo string, d oci.Digest, size int64) []storage.Op {
	now := s.unix()
	return []storage.Op{
		{Kind: storage.OpCheck, Item: storage.Item{PK: blobPK(d), SK: skGone}, Cond: storage.IfNotExists},
		{Kind: storage.OpAdd, Item: storage.Item{PK: blobPK(d), SK: skMeta, Data: encode(blobRec{Size: size}), Touched: now}},
		{Kind: storage.OpPut, Item: storage.Item{PK: repoPK(repo), SK: blobLinkSK(d), Data: encode(Link{Size: size, Created: now})}},
		{Kind: storage.OpPut, Item: storage.Item{PK: blobPK(d), SK: linkRevSK(repo)}},
		candidateOp(d, now),
	}
}

// linkTx runs a transaction whose first ops are linkOps(…, d, …). When it
// fails on the GONE check it resolves the mark as the protocol above says
// and retries once; the error is ErrBlobCollecting when it cannot.
func (s *Store) linkTx(ctx context.Context, d oci.Digest, ops []storage.Op) error {
	err := s.items.Transact(ctx, ops)
	if ok, idx := isCond(err); !ok || idx != 0 {
		return err
	}
	it, gerr := s.items.ItemGet(ctx, blobPK(d), skGone)
	switch {
	case errors.Is(gerr, storage.ErrNotFound):
		return s.items.Transact(ctx, ops) // the mark just expired or was removed
	case gerr != nil:
		return gerr
	}
	g, derr := decode[goneRec](it)
	if derr != nil {
		return derr
	}
	if !g.Deleted || s.stored == nil {
		return fmt.Errorf("%w: %s", ErrBlobCollecting, d)
	}
	there, serr := s.stored(ctx, d)
	if serr != nil {
		return serr
	}
	if !there {
		return fmt.Errorf("%w: %s (its bytes were deleted; upload it again)", ErrBlobCollecting, d)
	}
	// Bytes present after the delete was recorded were written after it.
	if err := s.items.ItemDelete(ctx, blobPK(d), skGone, storage.IfVersion(it.Version)); err != nil && !errors.Is(err, storage.ErrConditionFailed) {
		return err
	}
	err = s.items.Transact(ctx, ops)
	if ok, idx := isCond(err); ok && idx == 0 {
		return fmt.Errorf("%w: %s", ErrBlobCollecting, d)
	}
	return err
}

// Candidate is a GC candidate entry: blob Digest may have become garbage
// at unix time At.
type Candidate struct {
	Digest oci.Digest
	At     int64
	key    storage.Key
}

// GCCandidates calls fn with every candidate entry due at or before
// cutoff (unix seconds), shard by shard in due order, at most limit per
// shard (limit <= 0: no limit). Entries fn does not drop stay for the next
// pass.
func (s *Store) GCCandidates(ctx context.Context, cutoff int64, limit int, fn func(Candidate) error) error {
	for shard := 0; shard < gcShards; shard++ {
		pk := gcShardPK(shard)
		after, seen := "", 0
	page:
		for {
			items, more, err := s.items.ItemQuery(ctx, pk, "", after, 100)
			if err != nil {
				return err
			}
			for _, it := range items {
				c, ok := parseCandidate(it)
				if !ok {
					continue
				}
				if c.At > cutoff || (limit > 0 && seen >= limit) {
					break page
				}
				seen++
				if err := fn(c); err != nil {
					return err
				}
			}
			if !more || len(items) == 0 {
				break
			}
			after = items[len(items)-1].SK
		}
	}
	return nil
}

func parseCandidate(it storage.Item) (Candidate, bool) {
	at, d, ok := strings.Cut(it.SK, keySep)
	if !ok {
		return Candidate{}, false
	}
	t, err := strconv.ParseInt(at, 10, 64)
	if err != nil {
		return Candidate{}, false
	}
	return Candidate{Digest: oci.Digest(d), At: t, key: storage.Key{PK: it.PK, SK: it.SK}}, true
}

// BlobState is what garbage collection reads of one blob: its global
// record, the GONE mark and the repositories that link it, from one query
// of the blob's partition.
type BlobState struct {
	Digest oci.Digest
	// Exists: BLOB#d/META is present; Count, Size, Touched and Version
	// are its fields.
	Exists  bool
	Count   int64
	Size    int64
	Touched int64
	Version int64
	// Gone: the GONE mark is present; Deleted and GoneVersion are its state.
	Gone        bool
	Deleted     bool
	GoneAt      int64
	GoneVersion int64
	// Repos link the blob (from the reverse entries).
	Repos []string
}

// BlobState reads blob d's partition.
func (s *Store) BlobState(ctx context.Context, d oci.Digest) (BlobState, error) {
	st := BlobState{Digest: d}
	items, _, err := s.queryN(ctx, blobPK(d), "", "", 0)
	if err != nil {
		return st, err
	}
	for _, it := range items {
		switch {
		case it.SK == skMeta:
			rec, err := decode[blobRec](it)
			if err != nil {
				return st, err
			}
			st.Exists, st.Count, st.Size, st.Touched, st.Version = true, it.Count, rec.Size, it.Touched, it.Version
		case it.SK == skGone:
			g, err := decode[goneRec](it)
			if err != nil {
				return st, err
			}
			st.Gone, st.Deleted, st.GoneAt, st.GoneVersion = true, g.Deleted, g.At, it.Version
		case strings.HasPrefix(it.SK, pfxLinkRev):
			st.Repos = append(st.Repos, strings.TrimPrefix(it.SK, pfxLinkRev))
		}
	}
	return st, nil
}

// GCDrop removes a candidate entry (its blob is referenced, or was
// collected).
func (s *Store) GCDrop(ctx context.Context, c Candidate) error {
	return s.items.ItemDelete(ctx, c.key.PK, c.key.SK, storage.IfNone)
}

// GCDefer moves a candidate to unix time at (its blob was used since the
// entry was written), in one transaction.
func (s *Store) GCDefer(ctx context.Context, c Candidate, at int64) error {
	next := candidateOp(c.Digest, at)
	if next.Item.PK == c.key.PK && next.Item.SK == c.key.SK {
		return nil
	}
	return s.items.Transact(ctx, []storage.Op{
		next,
		{Kind: storage.OpDelete, Item: storage.Item{PK: c.key.PK, SK: c.key.SK}},
	})
}

// ErrGCRaced: the blob changed since the pass read it (it was linked or
// referenced again, or another pass is at it); the pass skips it.
var ErrGCRaced = errors.New("blob changed during garbage collection")

// GCCondemn is step 2 for a blob st shows unreferenced: it removes the
// blob's record and every link in one transaction conditioned on the
// record's version, leaving the GONE mark {deleting}. Links that do not
// fit one transaction are removed first (a repository losing the link of
// a blob no manifest references loses nothing: a client uploads it again).
// ErrGCRaced when the blob changed since st was read. It returns the
// mark's version, which GCDeleted is conditioned on.
func (s *Store) GCCondemn(ctx context.Context, st BlobState) (int64, error) {
	if !st.Exists || st.Count != 0 {
		return 0, fmt.Errorf("%w: %s is referenced", ErrGCRaced, st.Digest)
	}
	links := make([]storage.Op, 0, 2*len(st.Repos))
	for _, repo := range st.Repos {
		links = append(links,
			storage.Op{Kind: storage.OpDelete, Item: storage.Item{PK: repoPK(repo), SK: blobLinkSK(st.Digest)}},
			storage.Op{Kind: storage.OpDelete, Item: storage.Item{PK: blobPK(st.Digest), SK: linkRevSK(repo)}})
	}
	core := []storage.Op{
		{Kind: storage.OpDelete, Item: storage.Item{PK: blobPK(st.Digest), SK: skMeta}, Cond: storage.IfVersion(st.Version)},
		{Kind: storage.OpPut, Item: storage.Item{PK: blobPK(st.Digest), SK: skGone, Data: encode(goneRec{At: s.unix()})}},
	}
	check := storage.Op{Kind: storage.OpCheck, Item: storage.Item{PK: blobPK(st.Digest), SK: skMeta}, Cond: storage.IfVersion(st.Version)}
	for len(core)+len(links) > storage.MaxTransactOps {
		k := (storage.MaxTransactOps - 1) &^ 1 // whole pairs after the check
		if err := s.items.Transact(ctx, append([]storage.Op{check}, links[:k]...)); err != nil {
			if ok, _ := isCond(err); ok {
				return 0, fmt.Errorf("%w: %s", ErrGCRaced, st.Digest)
			}
			return 0, err
		}
		links = links[k:]
	}
	err := s.items.Transact(ctx, append(core, links...))
	if ok, _ := isCond(err); ok {
		return 0, fmt.Errorf("%w: %s", ErrGCRaced, st.Digest)
	}
	if err != nil {
		return 0, err
	}
	return s.goneVersion(ctx, st.Digest)
}

// goneVersion reads the version of d's GONE mark, just written.
func (s *Store) goneVersion(ctx context.Context, d oci.Digest) (int64, error) {
	it, err := s.items.ItemGet(ctx, blobPK(d), skGone)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, fmt.Errorf("%w: %s (mark gone)", ErrGCRaced, d)
	}
	return it.Version, err
}

// GCTakeOver lets a pass finish a blob another pass condemned but did not
// finish (it crashed, or is still at it): it bumps the {deleting} mark
// from version goneVersion, so the other pass can no longer mark it
// deleted, and returns the new version. The caller only takes over marks
// older than any pass may run (collector.MaxPass), so the other pass's
// byte deletion is over by then.
func (s *Store) GCTakeOver(ctx context.Context, d oci.Digest, goneVersion int64) (int64, error) {
	it, err := s.items.ItemAdd(ctx, storage.Item{PK: blobPK(d), SK: skGone}, 0, storage.IfVersion(goneVersion))
	if ok, _ := isCond(err); ok {
		return 0, fmt.Errorf("%w: %s", ErrGCRaced, d)
	}
	return it.Version, err
}

// GCCondemnOrphan is step 2 for bytes no metadata points at (found by the
// orphan pass): it puts the GONE mark {deleting} only while the blob has
// no record and no mark, so a link that raced ahead wins, and returns the
// mark's version.
func (s *Store) GCCondemnOrphan(ctx context.Context, d oci.Digest) (int64, error) {
	err := s.items.Transact(ctx, []storage.Op{
		{Kind: storage.OpCheck, Item: storage.Item{PK: blobPK(d), SK: skMeta}, Cond: storage.IfNotExists},
		{Kind: storage.OpPut, Item: storage.Item{PK: blobPK(d), SK: skGone, Data: encode(goneRec{At: s.unix()})}, Cond: storage.IfNotExists},
		// A candidate entry due at once, so that a crash before the
		// deletion is finished by the next candidate pass (once the take-
		// over time has passed) like any other condemned blob.
		candidateOp(d, 0),
	})
	if ok, _ := isCond(err); ok {
		return 0, fmt.Errorf("%w: %s", ErrGCRaced, d)
	}
	if err != nil {
		return 0, err
	}
	return s.goneVersion(ctx, d)
}

// GCDeleted is step 4: the bytes of d are gone. The mark becomes
// {deleted} (conditioned on its version: a linker may have resolved it
// already) and the candidate entry, if any, is dropped.
func (s *Store) GCDeleted(ctx context.Context, d oci.Digest, goneVersion int64, c *Candidate) error {
	now := s.unix()
	ops := []storage.Op{{
		Kind: storage.OpPut,
		Item: storage.Item{PK: blobPK(d), SK: skGone, Data: encode(goneRec{Deleted: true, At: now}), Expires: now + int64(goneDeletedTTL/time.Second)},
		Cond: storage.IfVersion(goneVersion),
	}}
	if c != nil {
		ops = append(ops, storage.Op{Kind: storage.OpDelete, Item: storage.Item{PK: c.key.PK, SK: c.key.SK}})
	}
	err := s.items.Transact(ctx, ops)
	if ok, _ := isCond(err); ok {
		if c != nil {
			return s.GCDrop(ctx, *c)
		}
		return nil
	}
	return err
}

// BlobCounted reports whether blob d has a global record (it may be
// linked and referenced) or a GONE mark; the orphan pass leaves such
// objects alone.
func (s *Store) BlobCounted(ctx context.Context, ds []oci.Digest) (map[oci.Digest]bool, error) {
	keys := make([]storage.Key, 0, 2*len(ds))
	for _, d := range ds {
		keys = append(keys, storage.Key{PK: blobPK(d), SK: skMeta}, storage.Key{PK: blobPK(d), SK: skGone})
	}
	found, err := s.getMany(ctx, keys)
	if err != nil {
		return nil, err
	}
	out := make(map[oci.Digest]bool, len(ds))
	for k := range found {
		out[oci.Digest(strings.TrimPrefix(k.PK, pfxBlob))] = true
	}
	return out, nil
}

// The orphan pass keeps its place in the blob listing here, so a bounded
// pass continues where the last one stopped.
const (
	pkGCOrphans = pfxGC + "ORPHANS"
	skCursor    = "CURSOR"
)

type cursorRec struct {
	After oci.Digest `json:"after"`
}

// GCOrphanCursor returns where the orphan pass stopped ("" to start over).
func (s *Store) GCOrphanCursor(ctx context.Context) (oci.Digest, error) {
	it, err := s.items.ItemGet(ctx, pkGCOrphans, skCursor)
	if errors.Is(err, storage.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	c, err := decode[cursorRec](it)
	return c.After, err
}

// GCSetOrphanCursor records where the orphan pass stopped.
func (s *Store) GCSetOrphanCursor(ctx context.Context, after oci.Digest) error {
	return s.items.ItemPut(ctx, storage.Item{PK: pkGCOrphans, SK: skCursor, Data: encode(cursorRec{After: after})}, storage.IfNone)
}
