package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/berth-registry/berth/pkg/access"
	"github.com/berth-registry/berth/pkg/errcode"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/route"
)

func parseRef(s string) (oci.Reference, error) {
	ref, err := oci.ParseReference(s)
	if err == nil {
		return ref, nil
	}
	if errors.Is(err, oci.ErrDigestUnsupported) || bytes.ContainsRune([]byte(s), ':') {
		return ref, errcode.Wrap(errcode.DigestInvalid, err).WithMessage("invalid digest in manifest reference").WithDetailField("digest", s)
	}
	return ref, errcode.Wrap(errcode.TagInvalid, err).WithMessage("invalid tag").WithDetailField("tag", s)
}

// parseReadRef is parseRef for reads (GET, HEAD). A reference that is not
// a valid tag names nothing that can exist, since no write accepts it, so a
// read answers 404 MANIFEST_UNKNOWN, as the OCI conformance suite expects
// (it reads ".INVALID_MANIFEST_NAME"); writes keep 400 TAG_INVALID. A
// reference with ':' is a digest, and a malformed one keeps 400
// DIGEST_INVALID: the spec allows it for a malformed digest, and it tells
// the client its input is wrong rather than merely absent.
func parseReadRef(s string) (oci.Reference, error) {
	ref, err := parseRef(s)
	var e *errcode.Error
	if errors.As(err, &e) && e.Code == errcode.TagInvalid {
		return ref, errcode.Wrap(errcode.ManifestUnknown, err).WithDetailField("reference", s)
	}
	return ref, err
}

func (g *Registry) manifestGet(w http.ResponseWriter, r *http.Request, rt route.Route) error {
	ref, err := parseReadRef(rt.Arg)
	if err != nil {
		return err
	}
	m, pull, err := g.meta.ManifestPull(r.Context(), rt.Name, ref)
	if err != nil {
		return err
	}
	g.recordPull(r.Context(), rt, pull)
	h := w.Header()
	h.Set("Content-Type", m.MediaType)
	h.Set("Docker-Content-Digest", string(m.Digest))
	h.Set("ETag", `"`+string(m.Digest)+`"`)
	setInt(h, "Content-Length", m.Size)
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return nil
	}
	body := m.Body
	if m.External {
		rc, err := g.blobs.BlobOpen(r.Context(), m.Digest)
		if err != nil {
			return fmt.Errorf("manifest body %s: %w", m.Digest, err)
		}
		defer rc.Close()
		if body, err = io.ReadAll(io.LimitReader(rc, m.Size+1)); err != nil {
			return fmt.Errorf("manifest body %s: %w", m.Digest, err)
		}
		if int64(len(body)) != m.Size {
			return fmt.Errorf("manifest body %s: stored size differs", m.Digest)
		}
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return nil
}

// pullRecordTimeout bounds the write that records a pull, so a slow or
// throttled table delays a pull by at most this much.
const pullRecordTimeout = time.Second

// recordPull records the pull of a manifest (meta.Store.PullRecord: at
// most one conditional write per manifest and per tag a day, no read).
// GET and HEAD both count: containerd resolves a tag with HEAD and fetches
// the manifest by digest, and a kubelet with imagePullPolicy Always only
// resolves when it has the image; not counting those would call a running
// image unused. It runs before the response is written, because a Lambda
// may be frozen as soon as the response is sent, and its failure never
// fails the pull: a missed record costs at most a day of the image's
// sinceImagePulled age, and the next pull records it.
func (g *Registry) recordPull(ctx context.Context, rt route.Route, pull meta.Pull) {
	ctx, cancel := context.WithTimeout(ctx, pullRecordTimeout)
	defer cancel()
	if err := g.meta.PullRecord(ctx, pull); err != nil {
		g.log.LogAttrs(ctx, slog.LevelWarn, "pull not recorded",
			slog.String("repo", rt.Name), slog.String("reference", rt.Arg), slog.Any("error", err))
	}
}

func (g *Registry) manifestPut(w http.ResponseWriter, r *http.Request, rt route.Route) error {
	ref, err := parseRef(rt.Arg)
	if err != nil {
		return err
	}
	limit := g.cfg.MaxManifestBytes
	if r.ContentLength > limit {
		return manifestTooBig(limit)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return errcode.Wrap(errcode.ManifestInvalid, err).WithMessage("reading manifest body")
	}
	if int64(len(body)) > limit {
		return manifestTooBig(limit)
	}
	parsed, err := oci.ParseManifest(r.Header.Get("Content-Type"), body)
	if err != nil {
		return errcode.Wrap(errcode.ManifestInvalid, err).WithDetailField("reason", err.Error())
	}
	alg := oci.SHA256
	if ref.IsDigest() {
		alg = ref.Digest.Algorithm()
	}
	dgst := oci.FromBytes(alg, body)
	if ref.IsDigest() && dgst != ref.Digest {
		return errcode.New(errcode.DigestInvalid, map[string]string{"expected": string(ref.Digest), "actual": string(dgst)})
	}
	external := len(body) > meta.InlineLimit
	if external {
		if err := g.blobs.BlobPut(r.Context(), dgst, int64(len(body)), bytes.NewReader(body)); err != nil {
			return fmt.Errorf("store manifest body: %w", err)
		}
	}
	put := meta.ManifestPut{Repo: rt.Name, Tag: ref.Tag, Digest: dgst, Body: body, External: external, Parsed: parsed, PushedBy: access.SubjectOf(r.Context())}
	err = g.meta.ManifestPut(r.Context(), put)
	var missing *meta.MissingError
	if errors.As(err, &missing) && missing.Kind == "blob" && errors.Is(err, meta.ErrBlobUnknown) {
		// Layers pushed through the edge path (or berth push) are linked
		// only now: claim every unlinked one at once, then try once more.
		claimed, cerr := g.claimReferenced(r.Context(), rt.Name, parsed, missing.Digest)
		if cerr != nil {
			return cerr
		}
		if claimed {
			err = g.meta.ManifestPut(r.Context(), put)
		}
	}
	if err != nil {
		return err
	}
	g.emitPush(r.Context(), rt.Name, ref.Tag, dgst, parsed)
	h := w.Header()
	h.Set("Location", "/v2/"+rt.Name+"/manifests/"+string(dgst))
	h.Set("Docker-Content-Digest", string(dgst))
	if parsed.Subject != nil {
		h.Set("OCI-Subject", string(parsed.Subject.Digest))
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

func manifestTooBig(limit int64) error {
	return errcode.New(errcode.ManifestInvalid, map[string]string{"limit": strconv.FormatInt(limit, 10)}).
		WithStatus(http.StatusRequestEntityTooLarge).
		WithMessage(fmt.Sprintf("manifest exceeds the %d byte limit", limit))
}

func (g *Registry) manifestDelete(w http.ResponseWriter, r *http.Request, rt route.Route) error {
	ref, err := parseRef(rt.Arg)
	if err != nil {
		return err
	}
	if ref.IsDigest() {
		rm, err := g.meta.ManifestRemove(r.Context(), rt.Name, ref.Digest)
		if err != nil {
			return err
		}
		g.emitManifestDelete(r.Context(), rt.Name, rm)
	} else {
		t, err := g.meta.TagRemove(r.Context(), rt.Name, ref.Tag)
		if err != nil {
			return err
		}
		g.emitTagDelete(r.Context(), rt.Name, ref.Tag, t)
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}
