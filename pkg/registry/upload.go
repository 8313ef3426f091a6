package registry

import (
	"context"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"time"

	"github.com/berth-registry/berth/pkg/edge"
	"github.com/berth-registry/berth/pkg/errcode"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/route"
	"github.com/berth-registry/berth/pkg/storage"
)

func validUploadID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

func uploadLocation(repo, id string) string { return "/v2/" + repo + "/blobs/uploads/" + id }

func (g *Registry) uploadHeaders(w http.ResponseWriter, rt route.Route, u meta.Upload) {
	h := w.Header()
	h.Set("Location", uploadLocation(rt.Name, u.ID))
	h.Set("Range", rangeHeader(u.Offset))
	h.Set("Docker-Upload-UUID", u.ID)
	h.Set("Content-Length", "0")
}

func blobCreated(w http.ResponseWriter, repo string, d oci.Digest) {
	h := w.Header()
	h.Set("Location", "/v2/"+repo+"/blobs/"+string(d))
	h.Set("Docker-Content-Digest", string(d))
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// bodyLimit enforces MaxBodyBytes on an upload request.
func (g *Registry) bodyLimit(w http.ResponseWriter, r *http.Request) (io.Reader, error) {
	max := g.cfg.MaxBodyBytes
	if max <= 0 {
		return r.Body, nil
	}
	if r.ContentLength > max {
		return nil, tooLarge(max)
	}
	return http.MaxBytesReader(w, r.Body, max), nil
}

func tooLarge(max int64) error {
	return errcode.New(errcode.SizeInvalid, map[string]any{
		"limit": max,
		"hint": "send the blob in chunks: PATCH with Content-Range, at most this many bytes each; " +
			"or push with `berth push`, which uploads layers straight to storage",
	}).WithStatus(http.StatusRequestEntityTooLarge).
		WithMessage(fmt.Sprintf("request body exceeds %d bytes; use a chunked upload or berth push", max))
}

func (g *Registry) uploadStart(w http.ResponseWriter, r *http.Request, rt route.Route) error {
	ctx := r.Context()
	q := r.URL.Query()
	if mount := q.Get("mount"); mount != "" {
		d, err := parseDigest(mount)
		if err != nil {
			return err
		}
		if from := q.Get("from"); oci.ValidName(from) {
			link, err := g.meta.BlobLink(ctx, from, d)
			switch {
			case err == nil:
				err = g.meta.BlobMount(ctx, rt.Name, d, link.Size)
				if err == nil {
					blobCreated(w, rt.Name, d)
					return nil
				}
				if !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, meta.ErrBlobCollecting) {
					return err
				}
				// Garbage collection took the blob meanwhile: upload it.
			case !errors.Is(err, storage.ErrNotFound):
				return err
			}
		}
		// Not mountable: fall back to a new session, as the spec requires.
	}
	if ds := q.Get("digest"); ds != "" {
		d, err := parseDigest(ds)
		if err != nil {
			return err
		}
		return g.monolithic(w, r, rt, d)
	}
	if q.Has(directParam) {
		return g.directStart(w, r, rt)
	}
	return g.startSession(w, r, rt)
}

// startSession answers an upload POST with a new session: its Location is
// an edge upload URL when the edge path is on and has a key, the
// registry's own upload URL otherwise.
//
// Without the edge path it stores nothing: the id describes itself
// (lazyid.go) and the session is stored by its first write, already
// leased (acquire). Crane, docker and podman follow the POST with one
// PATCH, so storing it here was a write the PATCH could make itself. An
// edge session is stored here: its bytes go to S3 without the API, and
// the claim that links them needs the session (claim.go).
func (g *Registry) startSession(w http.ResponseWriter, r *http.Request, rt route.Route) error {
	ctx := r.Context()
	stored := g.cfg.EdgeTokens != nil
	u := meta.Upload{ID: newUploadID(rt.Name, g.now(), stored), Repo: rt.Name}
	if stored {
		// The blob PUT to the edge is linked only when it is claimed, which
		// may be at the manifest PUT, long after the layer went up (a big
		// image, a slow pipeline): the session must still be there then.
		var err error
		if u, err = g.createSession(ctx, u, max(g.cfg.UploadTTL, edgeSessionTTL)); err != nil {
			return err
		}
	}
	g.uploadHeaders(w, rt, u)
	if g.cfg.EdgeTokens != nil {
		if loc, ok := g.edgeLocation(ctx, rt.Name, u.ID); ok {
			w.Header().Set("Location", loc)
		}
	}
	if g.cfg.ChunkMinLength > 0 {
		setInt(w.Header(), "OCI-Chunk-Min-Length", g.cfg.ChunkMinLength)
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// edgeSessionTTL is the least lifetime of a session handed an edge
// Location (see startSession).
const edgeSessionTTL = 24 * time.Hour

// edgeLocation mints the edge upload URL of a session. Without a key (the
// first rotation has not run yet) or when the key store fails, the client
// gets the registry's own upload URL: slower for big layers, but the push
// works.
func (g *Registry) edgeLocation(ctx context.Context, repo, id string) (string, bool) {
	tok, err := g.cfg.EdgeTokens.Token(ctx, repo, id, g.now().Add(g.cfg.EdgeTokenTTL))
	switch {
	case errors.Is(err, edge.ErrNoKey):
		g.noEdgeKey.Do(func() {
			g.log.WarnContext(ctx, "edge upload path has no signing key yet; handing out API upload URLs", slog.Any("error", err))
		})
		return "", false
	case err != nil:
		g.log.ErrorContext(ctx, "edge upload token", slog.String("upload", id), slog.Any("error", err))
		return "", false
	}
	return edge.PathPrefix + tok, true
}

// createSession stores u as a new session living ttl, with fresh driver
// and hash state unless u carries driver state already.
func (g *Registry) createSession(ctx context.Context, u meta.Upload, ttl time.Duration) (meta.Upload, error) {
	if u.DriverState == nil {
		state, err := g.blobs.UploadInit(ctx, u.ID)
		if err != nil {
			return meta.Upload{}, err
		}
		u.DriverState = state
	}
	hs, err := marshalHash(sha256.New())
	if err != nil {
		return meta.Upload{}, err
	}
	now := g.now()
	u.HashState, u.Created, u.ExpiresAt = hs, now.Unix(), now.Add(ttl).Unix()
	return g.meta.UploadCreate(ctx, u)
}

// monolithic stores a blob sent whole with POST ?digest=.
func (g *Registry) monolithic(w http.ResponseWriter, r *http.Request, rt route.Route, d oci.Digest) error {
	ctx := r.Context()
	body, err := g.bodyLimit(w, r)
	if err != nil {
		return err
	}
	if r.ContentLength < 0 {
		// Unknown length (chunked transfer): go through a session, which
		// hashes while it stores. It is created already leased to this
		// request, as finish requires, at no extra write.
		u := meta.Upload{ID: newUploadID(rt.Name, g.now(), true), Repo: rt.Name, LeaseUntil: g.now().Add(g.leaseFor(ctx)).Unix()}
		u, err := g.createSession(ctx, u, g.cfg.UploadTTL)
		if err != nil {
			return err
		}
		return g.finish(w, r, rt, u, d, body, -1)
	}
	if err := g.blobs.BlobPut(ctx, d, r.ContentLength, body); err != nil {
		return fmt.Errorf("store blob %s: %w", d, err)
	}
	if err := g.meta.BlobLinkPut(ctx, rt.Name, d, r.ContentLength); err != nil {
		return err
	}
	blobCreated(w, rt.Name, d)
	return nil
}

// session loads the upload a request names and checks it belongs to the
// repository in the path. An id of this repository with nothing stored
// under it is the fresh session it stands for (unstored), at version 0.
func (g *Registry) session(ctx context.Context, rt route.Route) (meta.Upload, error) {
	if !validUploadID(rt.Arg) {
		return meta.Upload{}, errcode.New(errcode.BlobUploadUnknown, map[string]string{"upload": rt.Arg})
	}
	u, err := g.meta.UploadGet(ctx, rt.Arg)
	if errors.Is(err, meta.ErrUploadNotStored) {
		if v, ok := g.unstored(rt.Name, rt.Arg); ok {
			return v, nil
		}
	}
	if err == nil && u.Repo != rt.Name {
		return meta.Upload{}, fmt.Errorf("upload %s is another repository's: %w", rt.Arg, meta.ErrUploadUnknown)
	}
	return u, err
}

// unstored returns the session id stands for in repo while nothing has
// been stored for it: offset 0, living UploadTTL from when the id was
// minted. It is false for an id not minted for repo, minted for a session
// stored at once, dated more than lazyIDFutureSkew ahead, or past that
// lifetime; such an id names a session only if one is stored. The caller
// has found nothing stored (a stored session or tombstone always wins).
func (g *Registry) unstored(repo, id string) (meta.Upload, bool) {
	minted, stored, ok := parseUploadID(id, repo)
	if !ok || stored {
		return meta.Upload{}, false
	}
	now, expires := g.now(), minted.Add(g.cfg.UploadTTL)
	if minted.After(now.Add(lazyIDFutureSkew)) || !now.Before(expires) {
		return meta.Upload{}, false
	}
	return meta.Upload{ID: id, Repo: repo, Created: minted.Unix(), ExpiresAt: expires.Unix()}, true
}

func (g *Registry) uploadStatus(w http.ResponseWriter, r *http.Request, rt route.Route) error {
	u, err := g.session(r.Context(), rt)
	if err != nil {
		return err
	}
	if u.Direct != nil {
		return g.directStatus(w, r, rt, u)
	}
	g.uploadHeaders(w, rt, u)
	w.Header().Set(stateHeader, stateUploading)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// leaseSlack is added to a request's remaining lifetime when it bounds the
// lease: the lease is compared with the clocks of other instances, and the
// request still saves its state after its last read.
const leaseSlack = 5 * time.Second

// leaseFor is how long a request may hold a session: UploadLease, but no
// longer than the request itself can live. Behind Lambda the context
// carries the invocation's deadline (API Gateway gives up at 30 s); a
// request killed there never releases its lease, and without this bound
// the session stayed blocked for the whole UploadLease (issue 11, point 3).
// `berth serve` bounds a request by its http.Server ReadTimeout instead,
// and sets UploadLease above it.
func (g *Registry) leaseFor(ctx context.Context) time.Duration {
	d := g.cfg.UploadLease
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, max(time.Until(dl), 0)+leaseSlack)
	}
	return d
}

// createMode says whether a request that takes a session's lease may be
// the write that stores a session nothing was stored for yet (unstored).
type createMode int

const (
	// createNever: only a stored session will do (DELETE, which ends an
	// unstored one differently; a Content-Range past offset 0).
	createNever createMode = iota
	// createIfAbsent: take the lease; store the session if nothing is
	// stored (a closing PUT without a body, usually after PATCHes).
	createIfAbsent
	// createFirst: store the session leased first; take the lease of the
	// stored one if that fails (the first PATCH, a PUT with the whole blob).
	createFirst
)

// writeMode guesses, from the request alone, whether a PATCH or closing
// PUT is its session's first write. A wrong guess costs one request more
// (a create that finds the session stored, or a lease that finds nothing),
// never a wrong answer: both ways end with the lease on the one stored
// session.
func writeMode(r *http.Request) createMode {
	if cr := r.Header.Get("Content-Range"); cr != "" {
		if start, _, err := parseContentRange(cr); err != nil || start != 0 {
			return createNever
		}
		return createFirst
	}
	if r.Method == http.MethodPut && r.ContentLength == 0 {
		return createIfAbsent
	}
	return createFirst
}

// acquire takes the lease on the session a PATCH, closing PUT or DELETE
// names, reading it in the same write (meta.UploadAcquire), and checks it
// belongs to the repository in the path. A session nothing was stored for
// yet is stored already leased, in one write (createLeased), as mode
// allows; with createNever such a session fails with an error wrapping
// meta.ErrUploadNotStored.
//
// Invariant 4 of docs/architecture.md holds for a session stored here as
// for any other: exactly one request creates it, holding the lease, and a
// concurrent first write finds it stored and leased (503 + Retry-After),
// or stored and released (it continues at the saved offset).
func (g *Registry) acquire(ctx context.Context, rt route.Route, mode createMode) (meta.Upload, error) {
	if !validUploadID(rt.Arg) {
		return meta.Upload{}, errcode.New(errcode.BlobUploadUnknown, map[string]string{"upload": rt.Arg})
	}
	lease := g.leaseFor(ctx)
	v, lazy := g.unstored(rt.Name, rt.Arg)
	if lazy && mode == createFirst {
		u, err := g.createLeased(ctx, v, lease)
		if !errors.Is(err, meta.ErrUploadExists) {
			return u, err
		}
		// Stored already: by an earlier or a concurrent write, or ended.
	}
	u, err := g.meta.UploadAcquire(ctx, rt.Arg, lease)
	if lazy && mode == createIfAbsent && errors.Is(err, meta.ErrUploadNotStored) {
		u, err = g.createLeased(ctx, v, lease)
		if errors.Is(err, meta.ErrUploadExists) {
			// Stored since UploadAcquire looked.
			u, err = g.meta.UploadAcquire(ctx, rt.Arg, lease)
		}
	}
	switch {
	case err != nil:
		return meta.Upload{}, err
	case u.Repo != rt.Name:
		// Someone else's session: give the lease back untouched.
		g.release(u)
		return meta.Upload{}, fmt.Errorf("upload %s is another repository's: %w", rt.Arg, meta.ErrUploadUnknown)
	}
	return u, nil
}

// createLeased stores the unstored session v, leased for lease to this
// request, with a fresh hash state. It never ends before the id's own
// lifetime (v.ExpiresAt), so a tombstone it leaves outlives the window in
// which the id could stand for a fresh session (meta's tombstone). The
// blob driver's state is made by the first write or commit (staging),
// after the session is stored: a request that loses the race to store it
// must not touch the driver.
func (g *Registry) createLeased(ctx context.Context, v meta.Upload, lease time.Duration) (meta.Upload, error) {
	hs, err := marshalHash(sha256.New())
	if err != nil {
		return meta.Upload{}, err
	}
	now := g.now()
	v.HashState, v.Created = hs, now.Unix()
	v.ExpiresAt = max(v.ExpiresAt, now.Add(g.cfg.UploadTTL).Unix())
	return g.meta.UploadCreateLeased(ctx, v, lease)
}

// staging returns u with the blob driver's upload state, made now if the
// session has none yet (stored by createLeased, or its first write failed
// before it was saved). The caller holds the lease.
func (g *Registry) staging(ctx context.Context, u meta.Upload) (meta.Upload, error) {
	if u.DriverState != nil {
		return u, nil
	}
	state, err := g.blobs.UploadInit(ctx, u.ID)
	if err != nil {
		return u, fmt.Errorf("upload init: %w", err)
	}
	u.DriverState = state
	return u, nil
}

// checkRange validates an optional Content-Range against the session.
// It returns the chunk length it declares, or -1 when absent.
func checkRange(r *http.Request, u meta.Upload, rt route.Route) (int64, error) {
	cr := r.Header.Get("Content-Range")
	if cr == "" {
		return -1, nil
	}
	start, end, err := parseContentRange(cr)
	if err != nil || start != u.Offset {
		e := errcode.New(errcode.RangeInvalid, map[string]any{"offset": u.Offset, "content_range": cr})
		e.WithHeader("Location", uploadLocation(rt.Name, u.ID))
		e.WithHeader("Range", rangeHeader(u.Offset))
		e.WithHeader("Docker-Upload-UUID", u.ID)
		return 0, e
	}
	n := end - start + 1
	if r.ContentLength >= 0 && r.ContentLength != n {
		return 0, errcode.New(errcode.SizeInvalid, map[string]any{"content_length": r.ContentLength, "content_range": cr})
	}
	return n, nil
}

// chunkRequest leases the session a PATCH or closing PUT names and checks
// its Content-Range and body size. want is the declared chunk length, or -1.
// On success the caller holds the lease; on error it has been released.
func (g *Registry) chunkRequest(w http.ResponseWriter, r *http.Request, rt route.Route) (u meta.Upload, want int64, body io.Reader, err error) {
	if u, err = g.acquire(r.Context(), rt, writeMode(r)); err != nil {
		if v, ok := g.unstored(rt.Name, rt.Arg); ok && errors.Is(err, meta.ErrUploadNotStored) {
			// Nothing stored: the session is at offset 0, which the
			// request's Content-Range does not start at (createNever).
			if _, rerr := checkRange(r, v, rt); rerr != nil {
				return u, 0, nil, rerr
			}
		}
		return u, 0, nil, err
	}
	defer func() {
		if err != nil {
			g.release(u)
		}
	}()
	if u.Direct != nil && u.Direct.Multipart {
		// Its bytes go to presigned part URLs; only the completion
		// document may be sent here.
		return u, 0, nil, errcode.New(errcode.BlobUploadInvalid, map[string]string{
			"upload": u.ID, "reason": "a multipart direct upload is completed with " + directCompleteType,
		})
	}
	if want, err = checkRange(r, u, rt); err != nil {
		return u, 0, nil, err
	}
	body, err = g.bodyLimit(w, r)
	return u, want, body, err
}

func (g *Registry) uploadPatch(w http.ResponseWriter, r *http.Request, rt route.Route) error {
	ctx := r.Context()
	u, want, body, err := g.chunkRequest(w, r, rt)
	if err != nil {
		return err
	}
	u, err = g.appendChunk(ctx, u, body, want, false)
	if err != nil {
		g.release(u)
		return err
	}
	g.uploadHeaders(w, rt, u)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// appendChunk streams body into the upload through the running hash and
// saves the new state, releasing the lease unless keep (a closing PUT goes
// on to commit under it). Nothing is saved unless the whole body arrived,
// so a failed request can simply be retried.
func (g *Registry) appendChunk(ctx context.Context, u meta.Upload, body io.Reader, want int64, keep bool) (meta.Upload, error) {
	h, err := unmarshalHash(u.HashState)
	if err != nil {
		return u, err
	}
	if u, err = g.staging(ctx, u); err != nil {
		return u, err
	}
	cr := &countingReader{r: io.TeeReader(body, h)}
	state, n, err := g.blobs.UploadWrite(ctx, u.ID, u.DriverState, u.Offset, cr)
	if err != nil {
		return u, fmt.Errorf("upload write: %w", err)
	}
	if n != cr.n {
		return u, fmt.Errorf("upload write: driver stored %d of %d bytes", n, cr.n)
	}
	if want >= 0 && n != want {
		return u, errcode.New(errcode.SizeInvalid, map[string]any{"declared": want, "received": n})
	}
	hs, err := marshalHash(h)
	if err != nil {
		return u, err
	}
	u.HashState, u.DriverState, u.Offset = hs, state, u.Offset+n
	if !keep {
		u.LeaseUntil = 0
	}
	// Activity extends the session, and never shortens it: an edge
	// session's longer life, or the lifetime of its id, stays.
	u.ExpiresAt = max(u.ExpiresAt, g.now().Add(g.cfg.UploadTTL).Unix())
	return g.meta.UploadSave(ctx, u)
}

// release drops a lease after a failed write (best effort: it also
// expires on its own).
func (g *Registry) release(u meta.Upload) {
	if u.LeaseUntil == 0 {
		return
	}
	u.LeaseUntil = 0
	ctx, cancel := context.WithTimeout(context.Background(), 5e9)
	defer cancel()
	_, _ = g.meta.UploadSave(ctx, u)
}

func (g *Registry) uploadPut(w http.ResponseWriter, r *http.Request, rt route.Route) error {
	ds := r.URL.Query().Get("digest")
	if ds == "" {
		return errcode.New(errcode.DigestInvalid, "the digest query parameter is required")
	}
	d, err := parseDigest(ds)
	if err != nil {
		return err
	}
	if mediaType(r.Header.Get("Content-Type")) == directCompleteType {
		return g.directComplete(w, r, rt, d)
	}
	u, want, body, err := g.chunkRequest(w, r, rt)
	if errors.Is(err, meta.ErrUploadBusy) && r.ContentLength == 0 {
		return g.claimBusy(w, r, rt, d, err)
	}
	if err != nil {
		return err
	}
	if r.ContentLength == 0 && u.Offset == 0 {
		// A close without bytes: the blob may have gone straight to
		// storage (a direct single PUT of berth push, or the edge path).
		if _, ok, err := g.claim(r.Context(), rt.Name, d, &u); err != nil {
			g.release(u)
			return err
		} else if ok {
			blobCreated(w, rt.Name, d)
			return nil
		}
		// Not claimable: an ordinary close of an empty upload.
	}
	return g.finish(w, r, rt, u, d, body, want)
}

// claimBusy answers a close without bytes of a session another request
// holds. If the session took no bytes through the API the close is a
// claim (the blob went to storage directly), which writes no bytes and so
// needs no lease: the claim transaction, conditioned on the session's
// version, lets exactly one of racing claimers link it and the others find
// it linked. Otherwise the close must wait for the lease (busy).
func (g *Registry) claimBusy(w http.ResponseWriter, r *http.Request, rt route.Route, d oci.Digest, busy error) error {
	u, err := g.session(r.Context(), rt)
	if err != nil {
		return err
	}
	if u.Offset != 0 {
		return busy
	}
	_, ok, err := g.claim(r.Context(), rt.Name, d, &u)
	switch {
	case err != nil:
		return err
	case !ok:
		return busy
	}
	blobCreated(w, rt.Name, d)
	return nil
}

// finish takes the final (possibly empty) body of an upload whose lease
// the caller holds, verifies the digest and makes the blob visible in the
// repository.
//
// Its metadata cost for an empty body (crane's closing PUT) is the one
// transaction that links the blob and ends the session: the lease, taken
// by chunkRequest, was also the read.
func (g *Registry) finish(w http.ResponseWriter, r *http.Request, rt route.Route, u meta.Upload, d oci.Digest, body io.Reader, want int64) error {
	ctx := r.Context()
	var err error
	if r.ContentLength != 0 {
		if u, err = g.appendChunk(ctx, u, body, want, true); err != nil {
			g.release(u)
			return err
		}
	}
	if u, err = g.staging(ctx, u); err != nil {
		g.release(u)
		return err
	}
	var verify func(io.Reader) error
	if d.Algorithm() == oci.SHA256 {
		h, err := unmarshalHash(u.HashState)
		if err != nil {
			g.release(u)
			return err
		}
		if got := oci.DigestOf(oci.SHA256, h); got != d {
			g.discard(ctx, u)
			return errcode.New(errcode.DigestInvalid, map[string]string{"expected": string(d), "actual": string(got)})
		}
	} else {
		verify = func(rd io.Reader) error {
			got, n, err := oci.Compute(d.Algorithm(), rd)
			if err != nil {
				return err
			}
			if got != d || n != u.Offset {
				return fmt.Errorf("%w: computed %s over %d bytes", storage.ErrDigestMismatch, got, n)
			}
			return nil
		}
	}
	err = g.blobs.UploadCommit(ctx, u.ID, u.DriverState, d, u.Offset, verify)
	switch {
	case errors.Is(err, storage.ErrDigestMismatch):
		g.discard(ctx, u)
		return fmt.Errorf("commit upload: %w", err)
	case errors.Is(err, storage.ErrNotFound):
		// The staged bytes are gone: an earlier close committed them and
		// then failed, or they were removed (a cancel, the sweep). Only
		// the first may link the blob, and only when this session's own
		// bytes were verified to be it: for sha256 the running hash
		// checked above, otherwise the Committed digest the earlier close
		// saved after the driver verified them. Linking whatever blob of
		// the digest exists would hand a pusher who knows only another
		// repository's digest and size its content (issue 11, point 2).
		if verify != nil && u.Committed != d {
			g.release(u)
			return fmt.Errorf("commit upload %s: staged data gone and this session never verified %s: %w", u.ID, d, meta.ErrUploadUnknown)
		}
		if size, serr := g.storedSize(ctx, d); serr != nil || size != u.Offset {
			g.release(u)
			return fmt.Errorf("commit upload: %w", err)
		}
	case err != nil:
		g.release(u)
		return fmt.Errorf("commit upload: %w", err)
	case verify != nil:
		// Record that these bytes were verified and committed, so that a
		// retry after a lost link can prove it (see the ErrNotFound case).
		// Only sha512 pays this write; sha256 has its hash state.
		u.Committed = d
		if u, err = g.meta.UploadSave(ctx, u); err != nil {
			return fmt.Errorf("close upload %s: %w", u.ID, err)
		}
	}
	// Link and end the session in one transaction, conditioned on the
	// version our lease wrote. If it fails the blob is stored but not
	// linked; a retried close finds it committed (the ErrNotFound case
	// above) or the client starts over, and the sweep removes what is left.
	if err := g.meta.UploadClaim(ctx, u, d, u.Offset); err != nil {
		if errors.Is(err, meta.ErrUploadUnknown) {
			// Our lease ran out and another request changed the session.
			return fmt.Errorf("close upload %s: %w", u.ID, meta.ErrUploadBusy)
		}
		g.release(u)
		return err
	}
	blobCreated(w, rt.Name, d)
	return nil
}

// discard removes a failed upload entirely.
func (g *Registry) discard(ctx context.Context, u meta.Upload) {
	if err := g.blobs.UploadAbort(ctx, u.ID, u.DriverState); err != nil {
		g.log.WarnContext(ctx, "abort upload", slog.String("upload", u.ID), slog.Any("error", err))
	}
	if err := g.meta.UploadDelete(ctx, u); err != nil {
		g.log.WarnContext(ctx, "delete upload", slog.String("upload", u.ID), slog.Any("error", err))
	}
}

// uploadCancel ends a session and removes its staged bytes. It takes the
// lease first, like every request that changes a session: a cancel that
// removed the staged bytes under a closing PUT made the close take "staged
// data gone" for "committed" (issue 11, point 2). A session another request
// holds answers 503 with Retry-After; the client retries the DELETE. A
// session never written has nothing staged and nothing to lease: it ends
// with its tombstone alone, unless a write stores it meanwhile.
func (g *Registry) uploadCancel(w http.ResponseWriter, r *http.Request, rt route.Route) error {
	ctx := r.Context()
	u, err := g.acquire(ctx, rt, createNever)
	if v, ok := g.unstored(rt.Name, rt.Arg); ok && errors.Is(err, meta.ErrUploadNotStored) {
		err = g.meta.UploadEndUnwritten(ctx, v)
		if err == nil {
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
		if errors.Is(err, meta.ErrUploadExists) {
			// Written (or ended) since acquire looked: cancel what is stored.
			u, err = g.acquire(ctx, rt, createNever)
		}
	}
	if err != nil {
		return err
	}
	if err := g.blobs.UploadAbort(ctx, u.ID, u.DriverState); err != nil {
		g.release(u)
		return err
	}
	// Should this fail, the session is left without staged bytes: a PATCH
	// or close of it fails, a retried close links nothing it did not
	// verify (finish), and the sweep removes it when it expires.
	if err := g.meta.UploadDelete(ctx, u); err != nil {
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func marshalHash(h hash.Hash) ([]byte, error) {
	m, ok := h.(encoding.BinaryMarshaler)
	if !ok {
		return nil, errors.New("hash state is not serializable")
	}
	return m.MarshalBinary()
}

func unmarshalHash(state []byte) (hash.Hash, error) {
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		return nil, fmt.Errorf("restore hash state: %w", err)
	}
	return h, nil
}

// mediaType returns the media type of a Content-Type value, without
// parameters ("" when it does not parse).
func mediaType(ct string) string {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ""
	}
	return mt
}
