package registry

import (
	"context"
	"io"

	"github.com/berth-registry/berth/pkg/oci"
)

// Blobs is the blob storage seam: content-addressed bytes, one copy per
// digest, shared by all repositories (which repository may read a blob is
// metadata, not storage). Drivers: the local filesystem and S3.
//
// Uploads are driven by the registry, which keeps every upload's state in
// the metadata store between requests: the driver returns an opaque state
// after each write and is handed it back on the next call, so consecutive
// requests of one upload may be served by different processes. No driver
// keeps upload state in memory.
type Blobs interface {
	// BlobPut stores the size bytes read from r as the blob dgst. The content
	// is verified against dgst and size before it becomes visible at its final
	// location; on mismatch nothing is stored and the error wraps
	// storage.ErrDigestMismatch or storage.ErrSizeMismatch.
	BlobPut(ctx context.Context, dgst oci.Digest, size int64, r io.Reader) error
	// BlobOpen opens the blob for reading (Range and HEAD are served from it
	// with http.ServeContent), or fails with storage.ErrNotFound.
	BlobOpen(ctx context.Context, dgst oci.Digest) (io.ReadSeekCloser, error)
	// BlobSize returns the stored size, or storage.ErrNotFound.
	BlobSize(ctx context.Context, dgst oci.Digest) (int64, error)
	// BlobDelete removes the blob's bytes. Deleting an absent blob succeeds.
	BlobDelete(ctx context.Context, dgst oci.Digest) error

	// UploadInit prepares storage for a new upload session and returns its
	// initial state.
	UploadInit(ctx context.Context, id string) (state []byte, err error)
	// UploadWrite appends r to the upload, which must hold exactly offset
	// bytes (state says so). It returns the new state and the bytes written.
	// A write that fails part way leaves the upload as it was at offset for
	// the next attempt: the caller only ever saves states of whole writes.
	UploadWrite(ctx context.Context, id string, state []byte, offset int64, r io.Reader) (newState []byte, n int64, err error)
	// UploadCommit makes the upload's size bytes the blob dgst. The registry
	// has already verified the digest from its running hash, unless verify is
	// non-nil: then the driver streams the assembled content through verify
	// and stores nothing if verify fails. The upload's staging data is removed
	// on success. Committing content that already exists as a blob succeeds.
	UploadCommit(ctx context.Context, id string, state []byte, dgst oci.Digest, size int64, verify func(io.Reader) error) error
	// UploadAbort removes everything the upload staged. Aborting an unknown
	// or already-finished upload succeeds.
	UploadAbort(ctx context.Context, id string, state []byte) error
}

// BlobRedirector is an optional capability of a Blobs driver: a URL the
// client may fetch the blob from directly (a presigned S3 URL or a signed
// CloudFront URL). When the driver offers it, blob GETs answer 307.
type BlobRedirector interface {
	BlobURL(ctx context.Context, dgst oci.Digest) (string, error)
}
