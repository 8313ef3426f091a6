package audit

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/respstatus"
	"github.com/berth-registry/berth/pkg/route"
)

// RequestIDHeader is the response header that carries a request's id, so
// a user reporting a failure can quote the line that records it.
const RequestIDHeader = "X-Request-Id"

// TokenPath is where the token endpoint is served (pkg/auth).
const TokenPath = "/token"

// Config configures Middleware.
type Config struct {
	// Log is the sink (NewLogger); nil: records are discarded.
	Log *slog.Logger
	// RequestID returns the platform's id of the request (API Gateway's
	// requestContext.requestId: apigw.RequestID); nil, or "" for a
	// request: a random one is generated.
	RequestID func(*http.Request) string
	// ClientIP returns the caller's address; nil: RemoteAddr without the
	// port (API Gateway's sourceIp in the Lambda path). TrustedHeader
	// reads it from a trusted reverse proxy's header instead.
	ClientIP func(*http.Request) string
}

type middleware struct {
	next http.Handler
	cfg  Config
}

// Middleware writes one record per request that next serves: the
// registry's /v2/ API and /token (others are recorded as action "other").
// Place it outside the auth middleware, so denied requests are recorded,
// and inside anything that answers for the platform (the Lambda adapter).
func Middleware(cfg Config, next http.Handler) http.Handler {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &middleware{next: next, cfg: cfg}
}

// TrustedHeader returns a ClientIP that reads header (X-Forwarded-For,
// X-Real-IP) as set by a reverse proxy in front of berth serve: the last
// of its comma-separated addresses, the one the proxy itself appended.
// Without the header it falls back to RemoteAddr. Only for a server that
// nothing but the proxy can reach: a client can send any header.
func TrustedHeader(header string) func(*http.Request) string {
	return func(r *http.Request) string {
		v := r.Header.Get(header)
		if v == "" {
			return remoteIP(r)
		}
		if i := strings.LastIndexByte(v, ','); i >= 0 {
			v = v[i+1:]
		}
		return strings.TrimSpace(v)
	}
}

func remoteIP(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var id string
	if m.cfg.RequestID != nil {
		id = m.cfg.RequestID(r)
	}
	if id == "" {
		id = rand.Text()
	}
	if w.Header().Get(RequestIDHeader) == "" {
		w.Header().Set(RequestIDHeader, id)
	}
	n := &note{}
	rec := &respstatus.Writer{ResponseWriter: w}
	m.next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), ctxKey{}, n)))
	status := rec.Status
	if status == 0 {
		status = http.StatusOK
	}
	m.write(r, w.Header(), id, n, status, time.Since(start))
}

// maxField bounds the unvalidated path parts a record repeats.
const maxField = 256

func clip(s string) string {
	if len(s) > maxField {
		return s[:maxField]
	}
	return s
}

func (m *middleware) write(r *http.Request, respHeader http.Header, id string, n *note, status int, took time.Duration) {
	var action, resource, repo, ref, digest string
	rt, err := route.Parse(r.URL.Path)
	switch {
	case errors.Is(err, route.ErrNotV2) && r.URL.Path == TokenPath:
		action, resource = ActionTokenGrant, "token"
	case errors.Is(err, route.ErrNotV2):
		action, resource = ActionOther, "other"
	default:
		resource = rt.Kind.String()
		action = actionOf(rt, r.Method)
		if err == nil {
			repo = rt.Name
		}
		switch rt.Kind {
		case route.Manifest:
			ref = clip(rt.Arg)
			if d := respHeader.Get("Docker-Content-Digest"); d != "" {
				digest = d
			} else if strings.Contains(rt.Arg, ":") {
				digest = ref
			}
		case route.Blob, route.Referrers:
			digest = clip(rt.Arg)
		case route.Upload:
			// The session id is left out (see the package comment); the
			// digest a finishing PUT names is kept when it is one.
			if d, err := oci.ParseDigest(r.URL.Query().Get("digest")); err == nil {
				digest = string(d)
			}
		}
	}
	result := Success
	switch {
	case n.denied || status == http.StatusUnauthorized || status == http.StatusForbidden:
		result = Denied
	case status >= 400:
		result = Failure
	}
	principal := n.principal
	if principal == "" {
		principal = "anonymous"
	}
	var ip string
	if m.cfg.ClientIP != nil {
		ip = m.cfg.ClientIP(r)
	} else {
		ip = remoteIP(r)
	}
	attrs := [16]slog.Attr{
		slog.String("requestId", id),
		slog.String("principal", principal),
		slog.String("sourceIp", ip),
		slog.String("userAgent", clip(r.UserAgent())),
		slog.String("action", action),
		slog.String("resource", resource),
		slog.String("repository", repo),
		slog.String("reference", ref),
		slog.String("digest", digest),
		slog.String("method", r.Method),
		slog.Int("status", status),
		slog.String("result", result),
		slog.Int64("durationMs", took.Milliseconds()),
	}
	k := 13
	if n.reason != "" {
		attrs[k] = slog.String("reason", n.reason)
		k++
	}
	if n.granted != nil {
		attrs[k] = slog.Any("scopes", n.granted)
		k++
	}
	m.cfg.Log.LogAttrs(r.Context(), slog.LevelInfo, "audit", attrs[:k]...)
}

// actionOf names what a registry request does.
func actionOf(rt route.Route, method string) string {
	switch rt.Kind {
	case route.Base:
		return ActionPing
	case route.Catalog, route.Tags:
		return ActionList
	}
	acts := rt.Actions(method)
	switch {
	case len(acts) == 0:
		return ActionOther
	case acts[len(acts)-1] == route.Delete:
		return ActionDelete
	case acts[len(acts)-1] == route.Push:
		return ActionPush
	}
	return ActionPull
}
