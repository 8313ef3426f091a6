package meta

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

// ErrBlobNotLinked: the blob is not readable through the repository
// (never linked, unlinked, or its bytes are gone). It wraps
// storage.ErrNotFound, so code that only asks "absent?" needs no second
// sentinel.
var ErrBlobNotLinked = fmt.Errorf("blob unknown to repository: %w", storage.ErrNotFound)

type blobRec struct {
	Size int64 `json:"size"`
}

// Link is a repository's link to a blob.
type Link struct {
	Size    int64 `json:"size"`
	Created int64 `json:"at"`
	// Deleted marks a link the client deleted (DELETE of the blob): the
	// blob is unknown to the repository, and a HEAD does not mount it
	// there again (BlobLinkOrMount); an upload or an explicit mount
	// replaces the mark. Garbage collection removes marks with the blob.
	Deleted bool `json:"del,omitempty"`
}

// revRec is a reverse entry (BLOB#d/LINK#repo); Deleted mirrors the link's.
type revRec struct {
	Deleted bool `json:"del,omitempty"`
}

// BlobLink returns the repository's link to d, or ErrBlobNotLinked.
func (s *Store) BlobLink(ctx context.Context, repo string, d oci.Digest) (Link, error) {
	it, err := s.items.ItemGet(ctx, repoPK(repo), blobLinkSK(d))
	if errors.Is(err, storage.ErrNotFound) {
		return Link{}, fmt.Errorf("%w: %s in %s", ErrBlobNotLinked, d, repo)
	}
	if err != nil {
		return Link{}, err
	}
	return liveLink(it, repo, d)
}

// liveLink decodes a link item; a deleted link is ErrBlobNotLinked.
func liveLink(it storage.Item, repo string, d oci.Digest) (Link, error) {
	l, err := decode[Link](it)
	if err == nil && l.Deleted {
		return Link{}, fmt.Errorf("%w: %s in %s (deleted)", ErrBlobNotLinked, d, repo)
	}
	return l, err
}

// BlobLinkPut records that blob d (of size bytes, already stored) is in
// repo, creating its global record (refcount 0) if needed and marking it
// recently used so garbage collection leaves it alone for the grace period.
// ErrBlobCollecting when garbage collection is deleting it.
func (s *Store) BlobLinkPut(ctx context.Context, repo string, d oci.Digest, size int64) error {
	return s.linkTx(ctx, d, s.linkOps(repo, d, size))
}

// BlobMount links blob d, which another repository links, into repo. The
// blob's global record must exist: one garbage collection removed (or is
// removing) cannot be mounted, and the caller falls back to an upload
// (ErrBlobNotLinked).
func (s *Store) BlobMount(ctx context.Context, repo string, d oci.Digest, size int64) error {
	ops := s.linkOps(repo, d, size)
	ops[1].Cond = storage.IfExists
	err := s.linkTx(ctx, d, ops)
	if ok, idx := isCond(err); ok && idx == 1 {
		return fmt.Errorf("%w: %s (being collected)", ErrBlobNotLinked, d)
	}
	return err
}

// BlobUnlink removes the blob from repo, or fails with ErrBlobNotLinked.
// The link becomes a deletion mark (see Link.Deleted) rather than going
// away, so that a later HEAD does not mount the blob back from another
// repository; the bytes stay until garbage collection finds no references.
func (s *Store) BlobUnlink(ctx context.Context, repo string, d oci.Digest) error {
	it, err := s.items.ItemGet(ctx, repoPK(repo), blobLinkSK(d))
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("%w: %s in %s", ErrBlobNotLinked, d, repo)
	}
	if err != nil {
		return err
	}
	l, err := liveLink(it, repo, d)
	if err != nil {
		return err
	}
	l.Deleted = true
	err = s.items.Transact(ctx, []storage.Op{
		{Kind: storage.OpPut, Item: storage.Item{PK: repoPK(repo), SK: blobLinkSK(d), Data: encode(l)}, Cond: storage.IfVersion(it.Version)},
		{Kind: storage.OpPut, Item: storage.Item{PK: blobPK(d), SK: linkRevSK(repo), Data: encode(revRec{Deleted: true})}},
	})
	if ok, _ := isCond(err); ok {
		return fmt.Errorf("%w: %s in %s (changed concurrently)", ErrConflict, d, repo)
	}
	return err
}

// mountScanLimit bounds how many repositories linking a blob a mount
// lookup reads before it gives up and lets the client upload.
const mountScanLimit = 1000

// BlobLinkOrMount returns repo's link to d like BlobLink; when repo does
// not link d but another repository does that readable allows, it mounts
// d into repo first (BlobMount), so that a client pushing bytes the
// registry already holds skips the upload. One batched read answers the
// common cases (linked here; stored nowhere); a blob stored elsewhere
// costs a query of the repositories that link it and the mount's
// transaction. ErrBlobNotLinked otherwise.
func (s *Store) BlobLinkOrMount(ctx context.Context, repo string, d oci.Digest, readable func(repo string) bool) (Link, error) {
	here := storage.Key{PK: repoPK(repo), SK: blobLinkSK(d)}
	rec := storage.Key{PK: blobPK(d), SK: skMeta}
	gone := storage.Key{PK: blobPK(d), SK: skGone}
	found, err := s.getMany(ctx, []storage.Key{here, rec, gone})
	if err != nil {
		return Link{}, err
	}
	if it, ok := found[here]; ok {
		// Linked, or deleted here by a client: either way no mount.
		return liveLink(it, repo, d)
	}
	notLinked := fmt.Errorf("%w: %s in %s", ErrBlobNotLinked, d, repo)
	it, ok := found[rec]
	if _, dying := found[gone]; !ok || dying {
		return Link{}, notLinked
	}
	b, err := decode[blobRec](it)
	if err != nil {
		return Link{}, err
	}
	from, err := s.readableLink(ctx, repo, d, readable)
	if err != nil || from == "" {
		return Link{}, errors.Join(notLinked, err)
	}
	if err := s.BlobMount(ctx, repo, d, b.Size); err != nil {
		if errors.Is(err, ErrBlobNotLinked) || errors.Is(err, ErrBlobCollecting) {
			return Link{}, notLinked // garbage collection took it meanwhile: upload it
		}
		return Link{}, err
	}
	return Link{Size: b.Size, Created: s.unix()}, nil
}

// readableLink returns a repository other than repo that links d and that
// readable allows, or "".
func (s *Store) readableLink(ctx context.Context, repo string, d oci.Digest, readable func(string) bool) (string, error) {
	after := ""
	for seen := 0; seen < mountScanLimit; {
		items, more, err := s.items.ItemQuery(ctx, blobPK(d), pfxLinkRev, after, 100)
		if err != nil {
			return "", err
		}
		for _, it := range items {
			var rev revRec // entries written by links carry no data
			if len(it.Data) > 0 {
				if rev, err = decode[revRec](it); err != nil {
					return "", err
				}
			}
			if from := strings.TrimPrefix(it.SK, pfxLinkRev); !rev.Deleted && from != repo && readable(from) {
				return from, nil
			}
		}
		seen += len(items)
		if !more || len(items) == 0 {
			return "", nil
		}
		after = items[len(items)-1].SK
	}
	return "", nil
}
