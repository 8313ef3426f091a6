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
func (s *Store) BlobLinkPut(ctx context.Context, repo string, d oci.Digest, size int64) error {
	now := s.unix()
	return s.items.Transact(ctx, []storage.Op{
		{Kind: storage.OpAdd, Item: storage.Item{PK: blobPK(d), SK: skMeta, Data: encode(blobRec{Size: size}), Touched: now}},
		{Kind: storage.OpPut, Item: storage.Item{PK: repoPK(repo), SK: blobLinkSK(d), Data: encode(Link{Size: size, Created: now})}},
	})
}

// BlobUnlink removes the blob from repo, or fails with ErrBlobNotLinked.
// The bytes stay until garbage collection finds no references.
func (s *Store) BlobUnlink(ctx context.Context, repo string, d oci.Digest) error {
	err := s.items.ItemDelete(ctx, repoPK(repo), blobLinkSK(d), storage.IfExists)
	if errors.Is(err, storage.ErrConditionFailed) {
		return fmt.Errorf("%w: %s in %s", ErrBlobNotLinked, d, repo)
	}
	return err
}
