package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/berth-registry/berth/pkg/access"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/metrics"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/route"
	"github.com/berth-registry/berth/pkg/storage"
)

func (g *Registry) blobGet(w http.ResponseWriter, r *http.Request, rt route.Route) error {
	d, err := parseDigest(rt.Arg)
	if err != nil {
		return err
	}
	var link meta.Link
	if readable := g.mountable(r.Context(), rt.Name); readable != nil && r.Method == http.MethodHead {
		// A pusher checks each blob with HEAD before uploading it: when the
		// registry holds it in a repository the pusher may read, mount it
		// here and answer 200, so the client skips the upload. (A GET is a
		// pull: it never writes.)
		link, err = g.meta.BlobLinkOrMount(r.Context(), rt.Name, d, readable)
	} else {
		link, err = g.meta.BlobLink(r.Context(), rt.Name, d)
	}
	if errors.Is(err, meta.ErrBlobNotLinked) && g.cfg.EdgeTokens != nil {
		// A client that pushed through the edge path checks its blob
		// with HEAD before the manifest: claim it now.
		size, ok, cerr := g.claim(r.Context(), rt.Name, d, nil)
		if cerr != nil {
			return cerr
		}
		if ok {
			link, err = meta.Link{Size: size}, nil
		}
	}
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Docker-Content-Digest", string(d))
	h.Set("ETag", `"`+string(d)+`"`)
	if r.Method == http.MethodHead {
		// Answered from metadata alone.
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Accept-Ranges", "bytes")
		setInt(h, "Content-Length", link.Size)
		w.WriteHeader(http.StatusOK)
		return nil
	}
	if rd, ok := g.blobs.(storage.BlobRedirector); ok {
		u, err := rd.BlobURL(r.Context(), d)
		if err != nil {
			return err
		}
		h.Set("Location", u)
		h.Set("Content-Length", "0")
		if g.cfg.Metrics != nil {
			g.cfg.Metrics.Add(metrics.BytesRedirected, float64(link.Size))
		}
		w.WriteHeader(http.StatusTemporaryRedirect)
		return nil
	}
	rc, err := g.blobs.BlobOpen(r.Context(), d)
	if errors.Is(err, storage.ErrNotFound) {
		// Linked but its bytes are gone: to the client the blob is unknown.
		return fmt.Errorf("%w: bytes missing: %w", meta.ErrBlobNotLinked, err)
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "max-age=31536000, immutable")
	// ServeContent handles Range, If-None-Match and 416.
	http.ServeContent(w, r, "", time.Time{}, rc)
	return nil
}

// mountable returns, when the caller may push to repo, which other
// repositories it may read blobs from (access.Checker from the auth
// layer; every repository when Config.Open says there is no auth);
// nil when a blob request may not mount.
func (g *Registry) mountable(ctx context.Context, repo string) func(string) bool {
	c, ok := access.FromContext(ctx)
	if !ok {
		if !g.cfg.Open {
			return nil
		}
		c = access.Open{}
	}
	if !c.MayPush(repo) {
		return nil
	}
	return c.MayPull
}

// storedSize is the size of the bytes stored for d, or storage.ErrNotFound.
// Opening costs what a size query would (a stat, an S3 HEAD) and the seek
// reads nothing, so the seam needs no separate size method.
func (g *Registry) storedSize(ctx context.Context, d oci.Digest) (int64, error) {
	rs, err := g.blobs.BlobOpen(ctx, d)
	if err != nil {
		return 0, err
	}
	defer rs.Close()
	return rs.Seek(0, io.SeekEnd)
}

func (g *Registry) blobDelete(w http.ResponseWriter, r *http.Request, rt route.Route) error {
	d, err := parseDigest(rt.Arg)
	if err != nil {
		return err
	}
	if err := g.meta.BlobUnlink(r.Context(), rt.Name, d); err != nil {
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}
