// Package registry is the OCI Distribution v1.1 /v2/ API as one
// http.Handler. It is mounted unchanged by `berth serve`, by the Lambda
// adapter and by tests; it knows nothing of which one called it.
package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/berth-registry/berth/pkg/errcode"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/respstatus"
	"github.com/berth-registry/berth/pkg/route"
	"github.com/berth-registry/berth/pkg/storage"
)

// Config holds the handler's settings. Zero values take the defaults that
// SetDefaults documents.
type Config struct {
	// UploadTTL is how long an idle upload session lives. Default 1h.
	UploadTTL time.Duration
	// MaxManifestBytes bounds a manifest body. Default 4 MiB.
	MaxManifestBytes int64
	// MaxBodyBytes caps the body of one blob upload request (POST, PATCH,
	// PUT); 0 means no cap. Behind Lambda it is what fits the 6 MB payload.
	MaxBodyBytes int64
	// ChunkMinLength is advertised as OCI-Chunk-Min-Length; 0 omits it.
	ChunkMinLength int64
	// UploadLease bounds how long one request may hold an upload session.
	// Default 15m.
	UploadLease time.Duration
	// EdgeTokens, when set, turns on the edge upload path (docs/clients.md "Upload paths", path
	// 2): an upload POST answers with a Location under edge.PathPrefix that
	// carries a signed token, and the CloudFront Function in front of the
	// API sends the client's PUT straight to S3. A blob that arrives that
	// way is linked only after the registry checked S3's stored checksum.
	EdgeTokens EdgeTokens
	// EdgeTokenTTL is how long an edge upload token stays valid. Default 1h.
	EdgeTokenTTL time.Duration
	// DirectURLTTL is how long the presigned URLs of a direct upload
	// (berth push) stay valid. Default 1h. URLs signed with temporary
	// credentials (a Lambda role) stop working when those expire, sooner
	// if need be.
	DirectURLTTL time.Duration
	// DirectMultipartThreshold is the size above which a direct upload is
	// a multipart upload verified by the registry instead of one PUT whose
	// checksum storage verifies. Default and maximum 5 GiB (S3's largest
	// single PUT); tests lower it.
	DirectMultipartThreshold int64
	// DirectVerifyInline is the largest multipart direct upload whose
	// digest is verified inside the completing request; larger ones are
	// verified in the background (StartVerify) while the client polls.
	// Default 256 MiB: reading that back from S3 stays well inside API
	// Gateway's 29 s.
	DirectVerifyInline int64
	// StartVerify starts the verification of a completed multipart direct
	// upload somewhere that may run for minutes: it must eventually call
	// Verifier.Verify(ctx, repo, upload). Nil: a goroutine of this process
	// does (berth serve); behind Lambda it is an asynchronous invoke.
	StartVerify func(ctx context.Context, repo, upload string) error
	// Open says no authentication guards the handler: every caller may
	// pull and push everywhere, so a blob HEAD may mount a blob another
	// repository holds. With authentication, the auth layer puts an
	// access.Checker in each request's context instead; without either, a
	// HEAD never mounts.
	Open bool
	// ImmutableTags reports tags that may not move once pushed; nil: none.
	ImmutableTags func(repo, tag string) bool
	// Events receives an event after each committed push, tag delete and
	// manifest delete (docs/events.md); nil: none.
	Events Emitter
	// Metrics counts what only the registry knows (the size of each blob
	// whose GET it redirects: metrics.BytesRedirected); nil: nothing.
	// metrics.Middleware counts the rest from requests and responses.
	Metrics Counter
	// Logger receives request and error logs. Default: discard.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Counter adds to a named counter (metrics.EMF, prom.Recorder).
type Counter interface {
	Add(name string, v float64)
}

// EdgeTokens mints upload tokens for the edge path (edge.Keyring).
type EdgeTokens interface {
	// Token signs a token for repo's upload session, valid until expires.
	// It fails with edge.ErrNoKey while no key exists yet; the registry
	// then hands out its own upload URL.
	Token(ctx context.Context, repo, upload string, expires time.Time) (string, error)
}

// SetDefaults fills zero fields with their defaults.
func (c *Config) SetDefaults() {
	if c.UploadTTL <= 0 {
		c.UploadTTL = time.Hour
	}
	if c.MaxManifestBytes <= 0 {
		c.MaxManifestBytes = 4 << 20
	}
	if c.EdgeTokenTTL <= 0 {
		c.EdgeTokenTTL = time.Hour
	}
	if c.DirectURLTTL <= 0 {
		c.DirectURLTTL = time.Hour
	}
	if c.DirectMultipartThreshold <= 0 || c.DirectMultipartThreshold > maxSinglePut {
		c.DirectMultipartThreshold = maxSinglePut
	}
	if c.DirectVerifyInline <= 0 {
		c.DirectVerifyInline = 256 << 20
	}
	if c.UploadLease <= 0 {
		c.UploadLease = 15 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Registry is the /v2/ handler.
type Registry struct {
	cfg      Config
	meta     *meta.Store
	blobs    storage.Blobs
	log      *slog.Logger
	verifier *Verifier
	routes   map[route.Kind]map[string]handlerFunc
	// noEdgeKey makes "no edge key yet" a single warning per process, not
	// one per upload.
	noEdgeKey sync.Once
}

// handlerFunc serves one route × method. It returns an error instead of
// writing one; serveHTTP writes it.
type handlerFunc func(w http.ResponseWriter, r *http.Request, rt route.Route) error

// New returns the /v2/ handler over the given metadata and blob drivers.
func New(cfg Config, items storage.Items, blobs storage.Blobs) *Registry {
	cfg.SetDefaults()
	opts := []meta.Option{meta.WithClock(cfg.Now), meta.WithStoredCheck(storedCheck(blobs))}
	if cfg.ImmutableTags != nil {
		opts = append(opts, meta.WithImmutableTags(cfg.ImmutableTags))
	}
	g := &Registry{cfg: cfg, meta: meta.New(items, opts...), blobs: blobs, log: cfg.Logger}
	g.verifier = &Verifier{meta: g.meta, blobs: blobs, log: cfg.Logger, now: cfg.Now, lease: cfg.UploadLease}
	g.routes = map[route.Kind]map[string]handlerFunc{
		route.Base:        {"GET": g.base, "HEAD": g.base},
		route.Catalog:     {"GET": g.catalog},
		route.Tags:        {"GET": g.tagList},
		route.Manifest:    {"GET": g.manifestGet, "HEAD": g.manifestGet, "PUT": g.manifestPut, "DELETE": g.manifestDelete},
		route.Blob:        {"GET": g.blobGet, "HEAD": g.blobGet, "DELETE": g.blobDelete},
		route.UploadStart: {"POST": g.uploadStart},
		route.Upload:      {"GET": g.uploadStatus, "PATCH": g.uploadPatch, "PUT": g.uploadPut, "DELETE": g.uploadCancel},
		route.Referrers:   {"GET": g.referrers},
		route.Images:      {"GET": g.imageList},
	}
	return g
}

// ServeHTTP dispatches a request to its route × method handler.
func (g *Registry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := g.cfg.Now()
	sw := &respstatus.Writer{ResponseWriter: w}
	sw.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	rt, err := g.dispatch(sw, r)
	if err != nil {
		g.writeError(sw, r, rt, err)
	}
	level := slog.LevelInfo
	if sw.Status >= 500 {
		level = slog.LevelError
	}
	g.log.LogAttrs(r.Context(), level, "request",
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("route", rt.Kind.String()),
		slog.String("repo", rt.Name),
		slog.Int("status", sw.Status),
		slog.Int64("bytes_out", sw.Bytes),
		slog.Int64("bytes_in", r.ContentLength),
		// Milliseconds with a unit in the key: slog writes a Duration as
		// bare nanoseconds, which readers took for milliseconds.
		slog.Float64("took_ms", float64(g.cfg.Now().Sub(start).Microseconds())/1000),
	)
}

func (g *Registry) dispatch(w http.ResponseWriter, r *http.Request) (rt route.Route, err error) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			err = errcode.Wrap(errcode.Unknown, fmt.Errorf("panic: %v", p))
		}
	}()
	rt, err = route.Parse(r.URL.Path)
	switch {
	case errors.Is(err, route.ErrNameInvalid):
		return rt, errcode.New(errcode.NameInvalid, map[string]string{"name": rt.Name})
	case err != nil:
		return rt, errcode.New(errcode.Unsupported, map[string]string{"path": r.URL.Path}).WithStatus(http.StatusNotFound).WithMessage("no such endpoint")
	}
	methods := g.routes[rt.Kind]
	h, ok := methods[r.Method]
	if !ok {
		e := errcode.New(errcode.Unsupported, map[string]string{"method": r.Method})
		for m := range methods {
			e.WithHeader("Allow", m)
		}
		return rt, e
	}
	return rt, h(w, r, rt)
}

func (g *Registry) now() time.Time { return g.cfg.Now() }

func setInt(h http.Header, k string, v int64) { h.Set(k, strconv.FormatInt(v, 10)) }

func (g *Registry) base(w http.ResponseWriter, r *http.Request, _ route.Route) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", "2")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("{}"))
	return nil
}

// parseDigest validates a digest from a URL or query string.
func parseDigest(s string) (oci.Digest, error) {
	d, err := oci.ParseDigest(s)
	if err != nil {
		return "", errcode.Wrap(errcode.DigestInvalid, err).WithMessage("invalid digest").WithDetailField("digest", s)
	}
	return d, nil
}

// storedCheck asks blob storage whether a blob's bytes are there, at the
// cost of a stat (an S3 HEAD). The metadata store asks it only to link a
// blob garbage collection deleted earlier (meta.WithStoredCheck).
func storedCheck(blobs storage.Blobs) func(context.Context, oci.Digest) (bool, error) {
	return func(ctx context.Context, d oci.Digest) (bool, error) {
		rc, err := blobs.BlobOpen(ctx, d)
		if errors.Is(err, storage.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return true, rc.Close()
	}
}
