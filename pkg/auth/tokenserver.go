package auth

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-registry/berth/pkg/audit"
	"github.com/berth-registry/berth/pkg/auth/oidc"
	"github.com/berth-registry/berth/pkg/auth/policy"
	"github.com/berth-registry/berth/pkg/auth/stsproof"
	"github.com/berth-registry/berth/pkg/auth/token"
	"github.com/berth-registry/berth/pkg/errcode"
	"github.com/berth-registry/berth/pkg/oci"
)

// PolicySource yields the current policy (a fixed *policy.Policy, or an
// SSM-backed cache).
type PolicySource interface {
	Current(ctx context.Context) (*policy.Policy, error)
}

// STSVerifier verifies IAM identity proofs.
type STSVerifier interface {
	Verify(ctx context.Context, proof string) (*stsproof.Identity, error)
}

// OIDCVerifier verifies OIDC ID tokens.
type OIDCVerifier interface {
	Verify(ctx context.Context, raw string) (*oidc.Identity, error)
}

// tokenServer is the token endpoint of the distribution token spec.
type tokenServer struct {
	issuer  *token.Issuer
	service string
	policy  PolicySource
	sts     STSVerifier  // nil: IAM proofs refused
	oidc    OIDCVerifier // nil: OIDC tokens refused
	log     *slog.Logger
	now     func() time.Time
	limiter *limiter
	anon    anonToken
}

// anonToken is the one token every anonymous caller the policy grants
// nothing gets: it names no access, so it can be shared, and sharing it
// makes an unauthenticated flood cost no signatures. It is re-signed once
// half its lifetime has passed, so no client receives one about to expire.
type anonToken struct {
	mu     sync.Mutex
	raw    string
	claims *token.Claims
}

// retryAfterUnavailable is the Retry-After of a 503: STS throttling, an
// OIDC issuer in its failure backoff, KMS or the policy store failing.
const retryAfterUnavailable = "5"

func unavailable(err error) *errcode.Error {
	return errcode.Wrap(errcode.Unavailable, err).WithHeader("Retry-After", retryAfterUnavailable)
}

// maxScopes bounds the scopes one token request may name.
const maxScopes = 32

type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
	Scope       string `json:"scope,omitempty"`
}

// errAuthFailed is the answer to any credential that does not verify; the
// reason is logged, not sent.
func errAuthFailed() *errcode.Error {
	return errcode.New(errcode.Unauthorized, nil).WithMessage("authentication failed").
		WithHeader("WWW-Authenticate", `Basic realm="berth"`)
}

func errBadRequest(msg string) *errcode.Error {
	return (&errcode.Error{Code: errcode.Unsupported, Message: msg}).WithStatus(http.StatusBadRequest)
}

func (s *tokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	var (
		secret string
		query  = r.URL.Query()
		scopes []string
		post   = r.Method == http.MethodPost
	)
	switch r.Method {
	case http.MethodGet:
		if h := r.Header.Get("Authorization"); h != "" {
			_, pw, ok := r.BasicAuth()
			if !ok {
				s.refuse(w, r, "malformed Authorization header", errAuthFailed())
				return
			}
			secret = pw
		}
		scopes = query["scope"]
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			errcode.Write(w, errBadRequest("malformed form"))
			return
		}
		switch r.PostForm.Get("grant_type") {
		case "password":
			secret = r.PostForm.Get("password")
		case "refresh_token":
			// Berth issues no refresh tokens; a client holding a proof or an
			// OIDC token as its "identity token" sends it here.
			secret = r.PostForm.Get("refresh_token")
		default:
			errcode.Write(w, errBadRequest("unsupported grant_type"))
			return
		}
		if secret == "" {
			s.refuse(w, r, "empty credential", errAuthFailed())
			return
		}
		query = r.PostForm
		scopes = query["scope"]
	default:
		errcode.Write(w, errcode.New(errcode.Unsupported, nil).WithHeader("Allow", "GET, POST"))
		return
	}
	if svc := query.Get("service"); svc != "" && svc != s.service {
		errcode.Write(w, errBadRequest("unknown service"))
		return
	}
	requested := mergeScopes(parseScopes(scopes))
	if len(requested) > maxScopes {
		errcode.Write(w, errBadRequest("too many scopes"))
		return
	}
	// A credential costs an identity check (STS or the OIDC issuer) and,
	// once verified, a signature: limit it before either.
	if secret != "" && !s.allow(w, r) {
		return
	}
	id, subject, err := s.identify(r.Context(), secret)
	if err != nil {
		var e *errcode.Error
		if !errors.As(err, &e) {
			e = errAuthFailed()
		}
		// The error may quote what the caller sent: the audit record
		// gets a fixed phrase.
		s.refuseAs(w, r, err.Error(), "credential not verified", e)
		return
	}
	pol, err := s.policy.Current(r.Context())
	if err != nil {
		s.log.ErrorContext(r.Context(), "policy unavailable", "err", err)
		errcode.Write(w, unavailable(err))
		return
	}
	granted := grant(pol, id, requested)
	var (
		raw    string
		claims *token.Claims
	)
	if id.Anonymous && len(granted) == 0 {
		// Nothing to grant: the shared token, no signature per request.
		raw, claims, err = s.anonymousToken(r.Context(), subject)
	} else {
		if id.Anonymous && !s.allow(w, r) {
			return
		}
		raw, claims, err = s.issuer.Issue(r.Context(), subject, s.service, toAccess(granted), readableFor(pol, id, granted))
	}
	if err != nil {
		s.log.ErrorContext(r.Context(), "token signing failed", "err", err)
		errcode.Write(w, unavailable(err))
		return
	}
	audit.Grant(r.Context(), subject, scopeStrings(granted))
	s.log.InfoContext(r.Context(), "audit: token issued",
		"principal", subject, "policy_principal", id.Subject(), "service", s.service, "jti", claims.ID,
		"requested", scopeStrings(requested), "granted", scopeStrings(granted),
		"outcome", "issued", "remote", r.RemoteAddr)
	resp := tokenResponse{
		Token:       raw,
		AccessToken: raw,
		// The shared anonymous token may be part spent: report what is left
		// (in whole seconds, as the issuer counts them).
		ExpiresIn: int(min(claims.ExpiresAt.Sub(s.now().Truncate(time.Second)), claims.ExpiresAt.Sub(claims.IssuedAt.Time)) / time.Second),
		IssuedAt:  claims.IssuedAt.UTC().Format(time.RFC3339),
	}
	if post {
		resp.Scope = strings.Join(scopeStrings(granted), " ")
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// allow applies the rate limits; when they refuse it answers 429 with
// Retry-After and returns false.
func (s *tokenServer) allow(w http.ResponseWriter, r *http.Request) bool {
	ok, wait := s.limiter.allow(r.RemoteAddr)
	if ok {
		return true
	}
	secs := max(1, int((wait+time.Second-1)/time.Second))
	s.refuse(w, r, "rate limited", errcode.New(errcode.TooManyRequests, nil).
		WithMessage("too many token requests; retry after "+strconv.Itoa(secs)+"s").
		WithHeader("Retry-After", strconv.Itoa(secs)))
	return false
}

// anonymousToken returns the shared token granting nothing, signing a new
// one when there is none or half of its lifetime has passed. The lock is
// held while signing on purpose: every waiter wants that same token, and
// letting them through would sign once per waiter.
func (s *tokenServer) anonymousToken(ctx context.Context, subject string) (string, *token.Claims, error) {
	s.anon.mu.Lock()
	defer s.anon.mu.Unlock()
	now := s.now()
	if c := s.anon.claims; c != nil {
		half := c.ExpiresAt.Sub(c.IssuedAt.Time) / 2
		if now.Before(c.IssuedAt.Add(half)) {
			return s.anon.raw, c, nil
		}
	}
	raw, claims, err := s.issuer.Issue(ctx, subject, s.service, nil, nil)
	if err != nil {
		return "", nil, err
	}
	s.anon.raw, s.anon.claims = raw, claims
	return raw, claims, nil
}

func (s *tokenServer) refuse(w http.ResponseWriter, r *http.Request, reason string, e *errcode.Error) {
	s.refuseAs(w, r, reason, reason, e)
}

// refuseAs is refuse with a separate reason for the audit record
// (pkg/audit), which must be a fixed phrase.
func (s *tokenServer) refuseAs(w http.ResponseWriter, r *http.Request, reason, auditReason string, e *errcode.Error) {
	audit.Deny(r.Context(), auditReason)
	s.log.WarnContext(r.Context(), "audit: token refused", "outcome", "refused", "reason", reason, "remote", r.RemoteAddr)
	errcode.Write(w, e)
}

// identify maps a Basic password to an identity: an STS proof, an OIDC ID
// token, or nothing (anonymous). subject names the caller in the token and
// the audit log: the ARN STS returned (an assumed role's session name says
// which job or person it was), or issuer#sub.
func (s *tokenServer) identify(ctx context.Context, secret string) (id policy.Identity, subject string, err error) {
	id, subject, err = s.identifyOnly(ctx, secret)
	if err == nil && subject == "" {
		subject = id.Subject()
	}
	return id, subject, err
}

func (s *tokenServer) identifyOnly(ctx context.Context, secret string) (policy.Identity, string, error) {
	switch {
	case secret == "":
		return policy.Identity{Anonymous: true}, "", nil
	case stsproof.IsProof(secret):
		if s.sts == nil {
			return policy.Identity{}, "", errors.New("IAM proofs are not accepted here")
		}
		id, err := s.sts.Verify(ctx, secret)
		if err != nil {
			if errors.Is(err, stsproof.ErrUnavailable) {
				return policy.Identity{}, "", unavailable(err)
			}
			return policy.Identity{}, "", err
		}
		return policy.Identity{ARN: id.CanonicalARN}, id.ARN, nil
	case oidc.LooksLikeJWT(secret):
		if s.oidc == nil {
			return policy.Identity{}, "", errors.New("OIDC tokens are not accepted here")
		}
		id, err := s.oidc.Verify(ctx, secret)
		if err != nil {
			if errors.Is(err, oidc.ErrUnavailable) {
				return policy.Identity{}, "", unavailable(err)
			}
			return policy.Identity{}, "", err
		}
		return policy.Identity{Issuer: id.Issuer, Claims: id.Claims}, "", nil
	default:
		return policy.Identity{}, "", errors.New("password is neither an IAM proof nor an OIDC token")
	}
}

// readableFor is where id may pull, carried by tokens that grant push
// (a pusher's HEAD may then mount a blob it can read elsewhere); nil for
// other tokens, which never write.
func readableFor(pol *policy.Policy, id policy.Identity, granted []Scope) *token.Readable {
	if !slices.ContainsFunc(granted, func(sc Scope) bool {
		return sc.Type == "repository" && slices.Contains(sc.Actions, string(policy.Push))
	}) {
		return nil
	}
	r := pol.Readable(id)
	if len(r.Allow) == 0 {
		return nil
	}
	return &token.Readable{Allow: r.Allow, Deny: r.Deny}
}

// grant intersects the requested scopes with what the policy allows.
func grant(pol *policy.Policy, id policy.Identity, requested []Scope) []Scope {
	var out []Scope
	for _, sc := range requested {
		switch sc.Type {
		case "repository":
			if !oci.ValidName(sc.Name) {
				continue
			}
			allowed := pol.Evaluate(id, sc.Name)
			var acts []string
			for _, a := range allowed {
				if slices.Contains(sc.Actions, string(a)) || slices.Contains(sc.Actions, "*") {
					acts = append(acts, string(a))
				}
			}
			if len(acts) > 0 {
				out = append(out, Scope{Type: "repository", Name: sc.Name, Actions: acts})
			}
		case "registry":
			if sc.Name == "catalog" && slices.Contains(sc.Actions, "*") && pol.AllowsCatalog(id) {
				out = append(out, Scope{Type: "registry", Name: "catalog", Actions: []string{"*"}})
			}
		}
	}
	return out
}

func scopeStrings(ss []Scope) []string {
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		out = append(out, s.String())
	}
	return out
}
