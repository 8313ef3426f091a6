package scan

import (
	"context"
	"io"

	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

// ObserveUploads returns b with stored tells each blob the registry stores
// through it (a verified BlobPut, a committed upload): `berth serve
// --scan` indexes layers as they arrive, as the scan function does on S3
// events, so a manifest push finds its layers indexed already. The
// optional capabilities of the AWS driver (redirects, claims, direct
// uploads) are kept; blobs that arrive through them (the edge path,
// berth push) are indexed when their manifest is scanned. A driver with
// another mix of capabilities is returned unobserved (ok false), since
// hiding or inventing a capability would change what the registry does.
func ObserveUploads(b storage.Blobs, stored func(oci.Digest)) (_ storage.Blobs, ok bool) {
	o := observed{Blobs: b, stored: stored}
	rd, isR := b.(storage.BlobRedirector)
	in, isI := b.(storage.BlobInspector)
	du, isD := b.(storage.DirectUploader)
	switch {
	case !isR && !isI && !isD:
		return o, true
	case isR && isI && isD:
		return struct {
			observed
			storage.BlobRedirector
			storage.BlobInspector
			storage.DirectUploader
		}{o, rd, in, du}, true
	case !isR && isI && isD:
		return struct {
			observed
			storage.BlobInspector
			storage.DirectUploader
		}{o, in, du}, true
	}
	return b, false
}

// observed is storage.Blobs that reports stored blobs.
type observed struct {
	storage.Blobs
	stored func(oci.Digest)
}

func (o observed) BlobPut(ctx context.Context, d oci.Digest, size int64, r io.Reader) error {
	err := o.Blobs.BlobPut(ctx, d, size, r)
	if err == nil {
		o.stored(d)
	}
	return err
}

func (o observed) UploadCommit(ctx context.Context, id string, state []byte, d oci.Digest, size int64, verify func(io.Reader) error) error {
	err := o.Blobs.UploadCommit(ctx, id, state, d, size, verify)
	if err == nil {
		o.stored(d)
	}
	return err
}
