package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/berth-registry/berth/pkg/errcode"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/route"
	"github.com/berth-registry/berth/pkg/storage"
)

// Direct uploads (docs/push.md, docs/architecture.md "Blobs that arrive outside the API") are a Berth extension on
// the upload-start route: `POST /v2/<name>/blobs/uploads/?berth.direct=
// <digest>&berth.size=<bytes>` answers with presigned storage URLs, so
// berth push sends layer bytes straight to S3:
//
//   - sha256 up to DirectMultipartThreshold: one presigned PutObject to the
//     blob's final key with x-amz-checksum-sha256 and the upload id signed
//     in. S3 rejects other bytes; the client's closing PUT (empty body)
//     claims the object like an edge upload.
//   - larger, and every sha512: a multipart upload on a staging key. The
//     client completes it with a JSON list of its parts; the registry then
//     reads the object back through the digest (in the background when it
//     is large, while the client polls the upload URL) and copies it to
//     the blob's key only if it matches.
//
// A driver that cannot presign (the embedded store) answers the ordinary
// 202 without a body; the client then uses the plain OCI upload API.

const (
	directParam        = "berth.direct"
	directSizeParam    = "berth.size"
	directType         = "application/vnd.berth.direct-upload.v1+json"
	directCompleteType = "application/vnd.berth.direct-complete.v1+json"
	// stateHeader says where an upload is (GET on its URL).
	stateHeader     = "Berth-Upload-State"
	stateUploading  = "uploading"
	maxSinglePut    = 5 << 30         // S3's largest PutObject
	maxDirectSize   = 5 << 40         // S3's largest object
	maxCompleteBody = 2 << 20         // 10,000 parts of about 60 bytes of JSON
	directStaleness = 2 * time.Minute // a verification not started by then is started again
)

// directResponse is the body of a direct upload start.
type directResponse struct {
	Upload    string               `json:"upload"`
	Expires   string               `json:"expires"`
	Parts     []storage.DirectPart `json:"parts"`
	Multipart bool                 `json:"multipart"`
}

// directComplete is the body that completes a multipart direct upload.
type directCompleteDoc struct {
	Parts []storage.CompletedPart `json:"parts"`
}

func (g *Registry) directStart(w http.ResponseWriter, r *http.Request, rt route.Route) error {
	ctx := r.Context()
	q := r.URL.Query()
	d, err := parseDigest(q.Get(directParam))
	if err != nil {
		return err
	}
	size, err := strconv.ParseInt(q.Get(directSizeParam), 10, 64)
	if err != nil || size < 0 || size > maxDirectSize {
		return errcode.New(errcode.SizeInvalid, map[string]any{
			"size": q.Get(directSizeParam), "max": int64(maxDirectSize),
		}).WithMessage("berth.size must be a byte count between 0 and 5 TiB")
	}
	du, ok := g.blobs.(storage.DirectUploader)
	if !ok {
		return g.startSession(w, r, rt)
	}
	now := g.now()
	expires := now.Add(g.cfg.DirectURLTTL)
	multipart := d.Algorithm() != oci.SHA256 || size > g.cfg.DirectMultipartThreshold
	u := meta.Upload{ID: newUploadID(rt.Name, now, true), Repo: rt.Name, Direct: &meta.Direct{Digest: d, Size: size, Multipart: multipart, Since: now.Unix()}}
	// A big upload takes hours; its session must outlive it.
	ttl := max(g.cfg.UploadTTL, edgeSessionTTL)
	var parts []storage.DirectPart
	if multipart {
		state, ps, err := du.DirectMultipart(ctx, u.ID, size, expires)
		if err != nil {
			return fmt.Errorf("direct upload: %w", err)
		}
		u.DriverState, parts = state, ps
		if u, err = g.createSession(ctx, u, ttl); err != nil {
			g.abort(ctx, u.ID, state)
			return err
		}
	} else {
		if u, err = g.createSession(ctx, u, ttl); err != nil {
			return err
		}
		p, err := du.DirectPut(ctx, u.ID, d, size, expires)
		if err != nil {
			return fmt.Errorf("direct upload: %w", err)
		}
		parts = []storage.DirectPart{p}
	}
	body, err := json.Marshal(directResponse{Upload: u.ID, Expires: expires.UTC().Format(time.RFC3339), Parts: parts, Multipart: multipart})
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Location", uploadLocation(rt.Name, u.ID))
	h.Set("Docker-Upload-UUID", u.ID)
	h.Set("Range", rangeHeader(0))
	h.Set("Content-Type", directType)
	setInt(h, "Content-Length", int64(len(body)))
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(body)
	return nil
}

// abort releases what a direct upload staged (best effort: the bucket's
// lifecycle rule and the sweep are the backstop).
func (g *Registry) abort(ctx context.Context, id string, state []byte) {
	if err := g.blobs.UploadAbort(context.WithoutCancel(ctx), id, state); err != nil {
		g.log.WarnContext(ctx, "abort upload", slog.String("upload", id), slog.Any("error", err))
	}
}

// directComplete takes the part list of a multipart direct upload,
// assembles the object and verifies it, inline when small, otherwise in
// the background while the client polls.
func (g *Registry) directComplete(w http.ResponseWriter, r *http.Request, rt route.Route, d oci.Digest) error {
	ctx := r.Context()
	u, err := g.session(ctx, rt)
	if err != nil {
		return err
	}
	du, ok := g.blobs.(storage.DirectUploader)
	if u.Direct == nil || !u.Direct.Multipart || !ok {
		return errcode.New(errcode.BlobUploadInvalid, map[string]string{"upload": u.ID, "reason": "not a multipart direct upload"})
	}
	if d != u.Direct.Digest {
		return errcode.New(errcode.DigestInvalid, map[string]string{"expected": string(u.Direct.Digest), "actual": string(d)}).
			WithMessage("the digest differs from the one the direct upload was started for")
	}
	if u.Direct.State != meta.DirectUploading {
		// A retried completion: report where it is.
		return g.directStatus(w, r, rt, u)
	}
	if r.ContentLength > maxCompleteBody {
		return errcode.New(errcode.BlobUploadInvalid, "the part list is too large")
	}
	var doc directCompleteDoc
	if err := json.NewDecoder(io.LimitReader(r.Body, maxCompleteBody)).Decode(&doc); err != nil || len(doc.Parts) == 0 {
		return errcode.New(errcode.BlobUploadInvalid, "the body must be {\"parts\":[{\"number\":1,\"etag\":\"...\"},...]}")
	}
	if u, err = g.meta.UploadLease(ctx, u, g.leaseFor(ctx)); err != nil {
		return err
	}
	if err := du.DirectComplete(ctx, u.ID, u.DriverState, u.Direct.Size, doc.Parts); err != nil {
		g.release(u)
		return fmt.Errorf("complete direct upload: %w", err)
	}
	u.Direct.State, u.Direct.Since, u.LeaseUntil = meta.DirectVerifying, g.now().Unix(), 0
	if u, err = g.meta.UploadSave(ctx, u); err != nil {
		return err
	}
	if u.Direct.Size <= g.cfg.DirectVerifyInline {
		if u, err = g.verifier.verify(ctx, u); err != nil {
			return err
		}
		return g.directStatus(w, r, rt, u)
	}
	if err := g.startVerify(ctx, rt.Name, u.ID); err != nil {
		// The client's polls start it again (directStatus).
		g.log.ErrorContext(ctx, "start verification", slog.String("upload", u.ID), slog.Any("error", err))
	}
	return g.directStatus(w, r, rt, u)
}

// startVerify hands a verification to StartVerify, or to a goroutine of
// this process when there is none.
func (g *Registry) startVerify(ctx context.Context, repo, id string) error {
	if g.cfg.StartVerify != nil {
		return g.cfg.StartVerify(ctx, repo, id)
	}
	ctx = context.WithoutCancel(ctx)
	go func() {
		if err := g.verifier.Verify(ctx, repo, id); err != nil {
			g.log.ErrorContext(ctx, "verify direct upload", slog.String("upload", id), slog.Any("error", err))
		}
	}()
	return nil
}

// directStatus answers a GET (or a repeated completion) on a direct
// upload: 204 while bytes arrive or the digest is being checked, 201 once
// the blob is linked, 400 DIGEST_INVALID when it was rejected.
func (g *Registry) directStatus(w http.ResponseWriter, r *http.Request, rt route.Route, u meta.Upload) error {
	h := w.Header()
	switch u.Direct.State {
	case meta.DirectVerified:
		h.Set(stateHeader, meta.DirectVerified)
		blobCreated(w, rt.Name, u.Direct.Digest)
		return nil
	case meta.DirectRejected:
		return errcode.New(errcode.DigestInvalid, map[string]string{"digest": string(u.Direct.Digest), "upload": u.ID}).
			WithMessage("the uploaded content does not match the digest; nothing was stored").
			WithHeader(stateHeader, meta.DirectRejected)
	case meta.DirectVerifying:
		g.restartStale(r.Context(), rt.Name, u)
		h.Set(stateHeader, meta.DirectVerifying)
		h.Set("Location", uploadLocation(rt.Name, u.ID))
		h.Set("Docker-Upload-UUID", u.ID)
		h.Set("Content-Length", "0")
		if r.Method == http.MethodPut {
			w.WriteHeader(http.StatusAccepted)
		} else {
			w.WriteHeader(http.StatusNoContent)
		}
		return nil
	}
	g.uploadHeaders(w, rt, u)
	h.Set(stateHeader, stateUploading)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// restartStale starts a verification again when none holds the session's
// lease a while after it was asked for (the process or invocation that ran
// it died). Saving the session first makes one poll of many do it.
func (g *Registry) restartStale(ctx context.Context, repo string, u meta.Upload) {
	now := g.now()
	if u.LeaseUntil > now.Unix() || now.Unix()-u.Direct.Since < int64(directStaleness/time.Second) {
		return
	}
	u.Direct.Since = now.Unix()
	if _, err := g.meta.UploadSave(ctx, u); err != nil {
		return // another poll got there first
	}
	g.log.WarnContext(ctx, "restarting a stalled verification", slog.String("upload", u.ID))
	if err := g.startVerify(ctx, repo, u.ID); err != nil {
		g.log.ErrorContext(ctx, "start verification", slog.String("upload", u.ID), slog.Any("error", err))
	}
}
