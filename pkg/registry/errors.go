package registry

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/berth-registry/berth/pkg/errcode"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/route"
	"github.com/berth-registry/berth/pkg/storage"
)

// The error rule of this package: a handler returns errcode errors only
// for what it validates itself (a malformed name, digest, reference, upload
// id, Content-Range, page size, manifest body or a declared length that
// does not match). Everything the layers below report travels as a plain
// wrapped error carrying a sentinel of pkg/meta or pkg/storage, and toOCI
// alone turns it into an OCI code, taking the detail from what the request
// was about (its route) rather than from the handler that happened to see
// the error. So a new handler cannot answer the same condition with a
// different code, and a new sentinel is mapped in exactly one place.

// writeError maps an error to its OCI code once, for every handler.
func (g *Registry) writeError(w http.ResponseWriter, r *http.Request, rt route.Route, err error) {
	e := toOCI(err, r, rt)
	if e.HTTPStatus() >= 500 {
		g.log.ErrorContext(r.Context(), "request failed", slog.String("path", r.URL.Path), slog.Any("error", err))
	} else {
		g.log.DebugContext(r.Context(), "request refused", slog.String("path", r.URL.Path), slog.Any("error", err))
	}
	errcode.Write(w, e)
}

// toOCI is the one mapping from errors to OCI codes. rt is the request's
// route: rt.Name is the repository, rt.Arg the reference, digest or upload
// id the request names, which is what the client needs in the detail.
func toOCI(err error, r *http.Request, rt route.Route) *errcode.Error {
	var (
		e        *errcode.Error
		missing  *meta.MissingError
		maxBytes *http.MaxBytesError
	)
	switch {
	case errors.As(err, &e):
		return e
	case errors.As(err, &missing):
		return errcode.Wrap(errcode.ManifestBlobUnknown, err).WithDetailDigest(missing.Digest)
	case errors.As(err, &maxBytes):
		// The same answer as a Content-Length over the cap, with its hint,
		// and the cause kept for the log.
		e = toOCI(tooLarge(maxBytes.Limit), r, rt)
		e.Err = err
		return e
	case errors.Is(err, meta.ErrNameUnknown):
		return errcode.Wrap(errcode.NameUnknown, err).WithDetail(map[string]string{"name": rt.Name})
	case errors.Is(err, meta.ErrManifestUnknown), errors.Is(err, meta.ErrTagUnknown):
		return errcode.Wrap(errcode.ManifestUnknown, err).WithDetailField("reference", rt.Arg)
	case errors.Is(err, meta.ErrTagImmutable):
		return errcode.Wrap(errcode.Denied, err).WithMessage("tag is immutable").WithDetailField("tag", rt.Arg)
	case errors.Is(err, meta.ErrBlobNotLinked):
		return errcode.Wrap(errcode.BlobUnknown, err).WithDetail(map[string]string{"digest": rt.Arg})
	case errors.Is(err, meta.ErrUploadUnknown), errors.Is(err, meta.ErrUploadNotStored):
		// Not stored: meta wraps it with ErrUploadUnknown anyway; an id
		// that stands for a session not written yet never reaches here
		// (the handler took it for that session).
		return errcode.Wrap(errcode.BlobUploadUnknown, err).WithDetail(map[string]string{"upload": rt.Arg})
	case errors.Is(err, storage.ErrPartsInvalid):
		return errcode.Wrap(errcode.BlobUploadInvalid, err).WithDetailField("reason", err.Error())
	case errors.Is(err, storage.ErrDigestMismatch):
		return errcode.Wrap(errcode.DigestInvalid, err).WithDetail(map[string]string{"digest": claimedDigest(r, rt)})
	case errors.Is(err, storage.ErrSizeMismatch):
		return errcode.Wrap(errcode.SizeInvalid, err)
	case errors.Is(err, storage.ErrTooLarge):
		return errcode.Wrap(errcode.SizeInvalid, err).WithStatus(http.StatusRequestEntityTooLarge).
			WithMessage("content exceeds a storage limit")
	case errors.Is(err, storage.ErrUnavailable):
		return errcode.Wrap(errcode.Unavailable, err).WithHeader("Retry-After", "1")
	case errors.Is(err, meta.ErrBlobCollecting):
		return errcode.Wrap(errcode.Unavailable, err).WithHeader("Retry-After", "1").
			WithMessage("blob is being garbage-collected, retry the upload").WithDetailField("digest", claimedDigest(r, rt))
	case errors.Is(err, meta.ErrConflict), errors.Is(err, meta.ErrUploadBusy), errors.Is(err, meta.ErrUploadExists):
		// Exists: a create raced another write of the same id (handlers
		// fall back to the stored session; only a fresh id's collision,
		// which a retry fixes, could get here).
		return errcode.Wrap(errcode.Unavailable, err).WithHeader("Retry-After", "1").
			WithMessage("concurrent modification, retry")
	case errors.Is(err, context.DeadlineExceeded):
		return errcode.Wrap(errcode.Unavailable, err).WithHeader("Retry-After", "1")
	}
	return errcode.Wrap(errcode.Unknown, err)
}

// claimedDigest is the digest a request says its content has: the digest
// query parameter of an upload, or the digest in the path.
func claimedDigest(r *http.Request, rt route.Route) string {
	if d := r.URL.Query().Get("digest"); d != "" {
		return d
	}
	return rt.Arg
}
