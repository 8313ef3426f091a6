package meta

import (
	"context"
	"errors"
	"fmt"

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
	return decode[Link](it)
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
// The bytes stay until garbage collection finds no references.
func (s *Store) BlobUnlink(ctx context.Context, repo string, d oci.Digest) error {
	err := s.items.Transact(ctx, []storage.Op{
		{Kind: storage.OpDelete, Item: storage.Item{PK: repoPK(repo), SK: blobLinkSK(d)}, Cond: storage.IfExists},
		{Kind: storage.OpDelete, Item: storage.Item{PK: blobPK(d), SK: linkRevSK(repo)}},
	})
	if ok, _ := isCond(err); ok {
		return fmt.Errorf("%w: %s in %s", ErrBlobNotLinked, d, repo)
	}
	return err
}
