package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

// A claim links a blob that reached storage without passing through the
// registry: a PUT through the edge path (CloudFront → S3) or a direct
// single PUT of berth push. The registry never saw those bytes, so it
// trusts the object only when storage proves two things:
//
//   - storage verified the content against the digest when it was written
//     (S3 keeps the x-amz-checksum-sha256 it checked, so an object written
//     without it, or with a multipart composite checksum, never qualifies;
//     neither does any sha512 blob, for which S3 has no checksum);
//   - the writer held an upload session of this repository: the object's
//     berth-upload metadata names a live session whose repository is the
//     one asking. Only a pusher of that repository got a token or a
//     presigned URL for that session.
//
// Knowing a digest therefore grants nothing: the object of someone else's
// push names their session (docs/architecture.md, "Mount without from
// starts an upload"). The link and the removal of the session are one
// transaction conditioned on the session's version, so a session is
// claimed at most once.
//
// Cost: one HeadObject, one GetItem (the session; none when the caller
// already holds it), one transaction.

// claimAttempts bounds how often a claim reads a session that changed
// under it again (see claim).
const claimAttempts = 3

// claim links blob d into repo if storage holds a claimable object for it.
// want, when set, is the session the object must name (a closing PUT);
// otherwise the object's own session is read. It returns the linked size
// and whether the blob is now linked; refusals are not errors.
func (g *Registry) claim(ctx context.Context, repo string, d oci.Digest, want *meta.Upload) (int64, bool, error) {
	bi, ok := g.blobs.(storage.BlobInspector)
	if !ok || d.Algorithm() != oci.SHA256 {
		return 0, false, nil
	}
	info, err := bi.BlobInspect(ctx, d)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("claim %s: %w", d, err)
	}
	refuse := func(why string) (int64, bool, error) {
		g.log.DebugContext(ctx, "claim refused", slog.String("repo", repo), slog.String("digest", string(d)),
			slog.String("upload", info.Upload), slog.String("reason", why))
		return 0, false, nil
	}
	if !info.ChecksumMatches {
		return refuse("storage holds no verified sha256 checksum equal to the digest")
	}
	if !validUploadID(info.Upload) {
		return refuse("the object names no upload session")
	}
	if want != nil && want.ID != info.Upload {
		return refuse("the object names another upload session")
	}
	var u meta.Upload
	for attempt := 1; ; attempt++ {
		if want != nil {
			u = *want
		} else {
			u, err = g.meta.UploadGet(ctx, info.Upload)
			if errors.Is(err, meta.ErrUploadUnknown) {
				// A concurrent claim may have consumed the session since the
				// caller found the blob unlinked.
				if link, lerr := g.meta.BlobLink(ctx, repo, d); lerr == nil {
					return link.Size, true, nil
				}
				return refuse("the object's upload session is gone or expired")
			}
			if err != nil {
				return 0, false, fmt.Errorf("claim %s: %w", d, err)
			}
		}
		switch {
		case u.Repo != repo:
			return refuse("the object's upload session belongs to another repository")
		case u.Direct != nil && (u.Direct.Multipart || u.Direct.Digest != d):
			return refuse("the direct upload session promised another blob")
		}
		err = g.meta.UploadClaim(ctx, u, d, info.Size)
		if !errors.Is(err, meta.ErrUploadUnknown) {
			break
		}
		// Lost a race with another claim of the same session (a HEAD and
		// a manifest PUT at once): the winner linked it, or nobody did.
		if link, lerr := g.meta.BlobLink(ctx, repo, d); lerr == nil {
			return link.Size, true, nil
		}
		// Or the session changed without being claimed: a closing PUT
		// took its lease (a new version) and has not linked yet. The
		// session is still there to claim; read it again rather than
		// answer "unknown" for a blob that is a moment from being linked
		// (a HEAD answered 404 in TestAWSEdge/ClaimRace). A closing PUT
		// claims the version it leased and is not retried: a change
		// under its lease means another request claimed or ended it.
		if want != nil || attempt == claimAttempts {
			return refuse("the upload session was claimed or changed concurrently")
		}
	}
	if err != nil {
		return 0, false, fmt.Errorf("claim %s: %w", d, err)
	}
	if u.Offset > 0 {
		// The session also took bytes through the API; they are not needed.
		if err := g.blobs.UploadAbort(ctx, u.ID, u.DriverState); err != nil {
			g.log.WarnContext(ctx, "claim: abort staged upload", slog.String("upload", u.ID), slog.Any("error", err))
		}
	}
	g.log.InfoContext(ctx, "blob claimed", slog.String("repo", repo), slog.String("digest", string(d)),
		slog.String("upload", u.ID), slog.Int64("size", info.Size))
	return info.Size, true, nil
}

// claimReferenced claims every blob the manifest references that is not
// linked into repo yet. It reports whether retrying the manifest may now
// succeed: it linked a blob, or missing (what the manifest put lacked)
// has been linked meanwhile by a concurrent request.
func (g *Registry) claimReferenced(ctx context.Context, repo string, parsed *oci.Manifest, missing oci.Digest) (bool, error) {
	if _, ok := g.blobs.(storage.BlobInspector); !ok {
		return false, nil
	}
	any := false
	seen := map[oci.Digest]bool{}
	for _, desc := range parsed.Blobs() {
		if seen[desc.Digest] || desc.Digest.Algorithm() != oci.SHA256 {
			continue
		}
		seen[desc.Digest] = true
		_, err := g.meta.BlobLink(ctx, repo, desc.Digest)
		if err == nil {
			any = any || desc.Digest == missing
			continue
		}
		if !errors.Is(err, meta.ErrBlobNotLinked) {
			return any, err
		}
		_, ok, err := g.claim(ctx, repo, desc.Digest, nil)
		if err != nil {
			return any, err
		}
		any = any || ok
	}
	return any, nil
}
