package auth

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/berth-registry/berth/pkg/access"
	"github.com/berth-registry/berth/pkg/audit"
	"github.com/berth-registry/berth/pkg/auth/policy"
	"github.com/berth-registry/berth/pkg/auth/token"
	"github.com/berth-registry/berth/pkg/errcode"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/route"
)

// MiddlewareOption configures Middleware.
type MiddlewareOption func(*middleware)

// WithLogger sets the audit and error logger (default: discard).
func WithLogger(l *slog.Logger) MiddlewareOption {
	return func(m *middleware) { m.log = l }
}

type middleware struct {
	next    http.Handler
	v       *token.Verifier
	realm   string // "" → <scheme>://<host>/token of each request
	service string
	log     *slog.Logger
}

// Middleware guards the /v2/ API with bearer tokens. For each request it
// computes the scopes the route needs (route.Actions; a cross-repository
// mount also needs pull on the source; the catalog needs
// registry:catalog:*) and answers:
//
//   - 401 UNAUTHORIZED with a Bearer challenge naming those scopes when the
//     request has no token or an invalid one (error="invalid_token");
//   - 401 UNAUTHORIZED with error="insufficient_scope" when a valid token
//     lacks a needed scope.
//
// A valid token without the scope gets 401, not 403, on purpose: docker,
// containerd and go-containerregistry fetch a new token for the challenged
// scope only after a 401 (a 403 ends the operation), and distribution's own
// registry does the same. When the policy really forbids the action, the
// token service grants a token without it and the client stops after the
// second 401 with "insufficient_scope".
//
// Paths outside /v2/ pass through untouched; /v2/ itself needs any valid
// token (clients ping it to discover the realm). Push and delete decisions
// are logged as audit lines.
func Middleware(next http.Handler, v *token.Verifier, realm, service string, opts ...MiddlewareOption) http.Handler {
	m := &middleware{next: next, v: v, realm: realm, service: service, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(m)
	}
	return m
}

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, err := route.Parse(r.URL.Path)
	if errors.Is(err, route.ErrNotV2) {
		m.next.ServeHTTP(w, r)
		return
	}
	var need []Scope
	if err == nil {
		need = requiredScopes(rt, r)
	}
	raw, hasToken := bearer(r)
	if !hasToken {
		audit.Deny(r.Context(), "no token")
		m.challenge(w, r, need, "", "authentication required")
		return
	}
	claims, verr := m.v.Verify(raw)
	if verr != nil {
		m.log.InfoContext(r.Context(), "bearer token rejected", "err", verr, "path", r.URL.Path)
		audit.Deny(r.Context(), "invalid token")
		m.challenge(w, r, need, "invalid_token", "invalid or expired token")
		return
	}
	audit.SetPrincipal(r.Context(), claims.Subject)
	for _, s := range need {
		for _, a := range s.Actions {
			if !claims.Allows(s.Type, s.Name, a) {
				audit.Deny(r.Context(), "insufficient scope")
				if isWrite(r.Method) {
					m.audit(r, claims.Subject, rt, a, "", "denied", http.StatusUnauthorized)
				}
				m.challenge(w, r, need, "insufficient_scope", fmt.Sprintf("token lacks %s on %s:%s", a, s.Type, s.Name))
				return
			}
		}
	}
	r = r.WithContext(access.NewContext(r.Context(), tokenAccess{claims}))
	if !isWrite(r.Method) || err != nil || rt.Name == "" {
		m.next.ServeHTTP(w, r)
		return
	}
	rec := &statusRecorder{ResponseWriter: w}
	m.next.ServeHTTP(rec, r)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	outcome := "ok"
	if rec.status >= 400 {
		outcome = "failed"
	}
	digest := w.Header().Get("Docker-Content-Digest")
	if digest == "" {
		digest = r.URL.Query().Get("digest")
	}
	if digest == "" && strings.Contains(rt.Arg, ":") {
		digest = rt.Arg
	}
	m.audit(r, claims.Subject, rt, actionOf(r.Method, rt), digest, outcome, rec.status)
}

// tokenAccess is what a verified token lets its holder do, for decisions
// the route's own scopes do not cover (access.Checker).
type tokenAccess struct{ c *token.Claims }

// Subject is the token's subject, for the actor of registry events.
func (a tokenAccess) Subject() string { return a.c.Subject }

func (a tokenAccess) MayPush(repo string) bool { return a.c.Allows("repository", repo, "push") }

func (a tokenAccess) MayPull(repo string) bool {
	if a.c.Allows("repository", repo, "pull") {
		return true
	}
	return a.c.Readable != nil && policy.Readable{Allow: a.c.Readable.Allow, Deny: a.c.Readable.Deny}.Allows(repo)
}

// requiredScopes is what r needs on top of a valid token.
func requiredScopes(rt route.Route, r *http.Request) []Scope {
	switch rt.Kind {
	case route.Base:
		return nil
	case route.Catalog:
		return []Scope{{Type: "registry", Name: "catalog", Actions: []string{"*"}}}
	}
	var acts []string
	for _, a := range rt.Actions(r.Method) {
		acts = append(acts, string(a))
	}
	need := []Scope{{Type: "repository", Name: rt.Name, Actions: acts}}
	if rt.Kind == route.UploadStart && r.Method == http.MethodPost {
		q := r.URL.Query()
		if from := q.Get("from"); q.Get("mount") != "" && from != "" && oci.ValidName(from) && from != rt.Name {
			need = append(need, Scope{Type: "repository", Name: from, Actions: []string{"pull"}})
		}
	}
	return need
}

func isWrite(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// actionOf names the audited action of a write.
func actionOf(method string, rt route.Route) string {
	for _, a := range rt.Actions(method) {
		if a == route.Delete {
			return "delete"
		}
	}
	return "push"
}

func (m *middleware) audit(r *http.Request, principal string, rt route.Route, action, digest, outcome string, status int) {
	m.log.InfoContext(r.Context(), "audit: "+action,
		"principal", principal, "repository", rt.Name, "action", action,
		"resource", rt.Kind.String(), "reference", rt.Arg, "digest", digest,
		"method", r.Method, "status", status, "outcome", outcome, "remote", r.RemoteAddr)
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func (m *middleware) realmFor(r *http.Request) string {
	if m.realm != "" {
		return m.realm
	}
	scheme := "https"
	if r.TLS == nil && (strings.HasPrefix(r.Host, "localhost") || strings.HasPrefix(r.Host, "127.0.0.1") || strings.HasPrefix(r.Host, "[::1]")) {
		scheme = "http"
	}
	return scheme + "://" + r.Host + "/token"
}

// challenge answers 401 with a Bearer challenge and the OCI error body.
func (m *middleware) challenge(w http.ResponseWriter, r *http.Request, need []Scope, bearerErr, detail string) {
	c := fmt.Sprintf(`Bearer realm=%q,service=%q`, m.realmFor(r), m.service)
	if len(need) > 0 {
		c += fmt.Sprintf(`,scope=%q`, strings.Join(scopeStrings(need), " "))
	}
	if bearerErr != "" {
		c += fmt.Sprintf(`,error=%q`, bearerErr)
	}
	e := errcode.New(errcode.Unauthorized, nil).WithHeader("WWW-Authenticate", c)
	if bearerErr == "insufficient_scope" {
		e.Detail = toAccess(need)
		e.Message = detail
	}
	errcode.Write(w, e)
}

// statusRecorder captures the status of a write for the audit line.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
