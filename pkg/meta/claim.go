package meta

import (
	"context"
	"fmt"

	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

// UploadClaim links blob d (size bytes, already stored and checked by the
// caller) into u.Repo and ends session u, in one transaction conditioned
// on u's version: its record becomes a tombstone (so that its id cannot
// start a session again) and its index entry goes. Of several claims of
// one session exactly one can win. A lost race, or a session changed or removed since
// u was read, fails with an error wrapping ErrUploadUnknown and writes
// nothing.
//
// It is also how an ordinary upload completes: the closing PUT holds the
// session's lease, commits the bytes, then links the blob and ends the
// session in this one transaction instead of two.
func (s *Store) UploadClaim(ctx context.Context, u Upload, d oci.Digest, size int64) error {
	ops := append(s.linkOps(u.Repo, d, size),
		storage.Op{Kind: storage.OpPut, Item: s.tombstone(u), Cond: storage.IfVersion(u.Version)},
		storage.Op{Kind: storage.OpDelete, Item: storage.Item{PK: uploadIndexPK(u.ID), SK: u.ID}},
	)
	err := s.linkTx(ctx, d, ops)
	if ok, _ := isCond(err); ok {
		return fmt.Errorf("%w: %s (claimed or changed concurrently)", ErrUploadUnknown, u.ID)
	}
	return err
}

// UploadLinked links blob d into u.Repo and saves u (a direct upload whose
// verification just succeeded, now in state DirectVerified so that the
// client's next poll sees the result), in one transaction conditioned on
// u's version. It returns u at its new version; a session changed since it
// was read fails with an error wrapping ErrUploadBusy and writes nothing.
func (s *Store) UploadLinked(ctx context.Context, u Upload, d oci.Digest, size int64) (Upload, error) {
	ops := append(s.linkOps(u.Repo, d, size),
		storage.Op{Kind: storage.OpPut, Item: s.uploadItem(u), Cond: storage.IfVersion(u.Version)})
	err := s.linkTx(ctx, d, ops)
	if ok, _ := isCond(err); ok {
		return Upload{}, fmt.Errorf("%w: %s", ErrUploadBusy, u.ID)
	}
	if err != nil {
		return Upload{}, err
	}
	u.Version++
	return u, nil
}
