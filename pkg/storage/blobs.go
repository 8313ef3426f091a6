package storage

import (
	"context"
	"errors"
	"io"
	"time"

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
	// ErrDigestMismatch or ErrSizeMismatch.
	BlobPut(ctx context.Context, dgst oci.Digest, size int64, r io.Reader) error
	// BlobOpen opens the blob for reading (Range and HEAD are served from it
	// with http.ServeContent), or fails with ErrNotFound. Seeking to the end
	// gives the stored size without reading the content; opening costs no
	// more than a size query would (a stat, an S3 HEAD).
	BlobOpen(ctx context.Context, dgst oci.Digest) (io.ReadSeekCloser, error)
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

// BlobObject is one stored blob as a listing sees it.
type BlobObject struct {
	Digest   oci.Digest
	Size     int64
	Modified time.Time
}

// BlobLister is an optional capability of a Blobs driver: listing the
// stored blobs in digest order, a page at a time, so that garbage
// collection can find bytes no metadata points at (a crash between
// storing and linking, an edge upload whose manifest never came).
type BlobLister interface {
	// BlobList returns up to limit blobs whose digests sort after after
	// (empty: from the start), and whether more follow. Objects under the
	// blob prefix that are not named by a valid digest are skipped.
	BlobList(ctx context.Context, after oci.Digest, limit int) ([]BlobObject, bool, error)
}

// BlobInfo is what a driver's storage says about a blob's object, for a
// claim (an object that arrived without passing through the registry).
type BlobInfo struct {
	// Size is the object's length.
	Size int64
	// ChecksumMatches: the storage itself verified the content against the
	// digest when it was written (S3 keeps the x-amz-checksum-sha256 it
	// checked; HeadObject with checksum mode returns it).
	ChecksumMatches bool
	// Upload is the upload session the object was written for (the
	// berth-upload metadata the edge function or the presigned URL set).
	Upload string
}

// BlobInspector is an optional capability of a Blobs driver whose storage
// can be written without the registry (the edge path, direct uploads):
// it reports what was written so the registry can decide whether to link
// it. Without it, nothing is ever claimed.
type BlobInspector interface {
	// BlobInspect describes the object stored for dgst, or fails with
	// ErrNotFound.
	BlobInspect(ctx context.Context, dgst oci.Digest) (BlobInfo, error)
}

// DirectPart is one presigned request of a direct upload: the client
// sends bytes [Offset, Offset+Size) of the blob with Method to URL, with
// exactly Headers (they are signed).
type DirectPart struct {
	Number  int32             `json:"number"`
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
	Offset  int64             `json:"offset"`
	Size    int64             `json:"size"`
}

// CompletedPart is a part the client sent, as it reports it.
type CompletedPart struct {
	Number int32  `json:"number"`
	ETag   string `json:"etag"`
}

// ErrPartsInvalid: the parts a client reported do not complete its
// multipart upload (unknown part, wrong ETag, a non-final part too small).
var ErrPartsInvalid = errors.New("multipart parts invalid")

// DirectUploader is an optional capability of a Blobs driver: clients
// (berth push) upload straight to storage with presigned URLs. Without it
// a direct request falls back to the ordinary OCI upload API.
type DirectUploader interface {
	// DirectPut presigns one request that stores the sha256 blob dgst of
	// size bytes at its final location, with its checksum and the upload
	// id signed in, so storage rejects other bytes and a claim can tie
	// the object to the session.
	DirectPut(ctx context.Context, upload string, dgst oci.Digest, size int64, expires time.Time) (DirectPart, error)
	// DirectMultipart starts a multipart upload of size bytes on staging
	// storage and presigns one request per part. It returns the driver
	// state to keep in the session (UploadAbort accepts it).
	DirectMultipart(ctx context.Context, upload string, size int64, expires time.Time) (state []byte, parts []DirectPart, err error)
	// DirectComplete assembles the parts into the staged object. Parts
	// that do not fit fail with ErrPartsInvalid. Completing an already
	// completed upload of the right size succeeds.
	DirectComplete(ctx context.Context, upload string, state []byte, size int64, parts []CompletedPart) error
	// DirectVerify streams the staged object through verify and, only if
	// it passes, copies it to the blob's location. The staging data is
	// removed either way (on a verify failure the error is verify's).
	DirectVerify(ctx context.Context, upload string, state []byte, dgst oci.Digest, size int64, verify func(io.Reader) error) error
}
