// Package oidc verifies OIDC ID tokens from configured issuers, such as
// GitHub Actions (https://token.actions.githubusercontent.com), so that
// workloads log in with the identity their platform already gives them.
//
// Only configured issuers are ever contacted: a token naming any other
// issuer is rejected before any network call. Each issuer's discovery
// document and JWKS are fetched on first use and cached; a token signed
// with a key ID the cache does not know triggers one refresh, at most once
// per refresh interval (key rotation without letting garbage tokens make
// the verifier hammer the issuer). Accepted algorithms: RS256 and ES256.
package oidc

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// GitHubActions is GitHub Actions' issuer.
const GitHubActions = "https://token.actions.githubusercontent.com"

// IssuerConfig is one trusted issuer and the audience its tokens must name.
type IssuerConfig struct {
	Issuer   string `json:"issuer"`
	Audience string `json:"audience"`
}

// Identity is a verified token's issuer and string claims (sub,
// repository, ref, environment, … for GitHub Actions).
type Identity struct {
	Issuer string
	Claims map[string]string
}

// Errors.
var (
	ErrUnknownIssuer = errors.New("oidc: issuer not trusted")
	ErrInvalid       = errors.New("oidc: invalid token")
	ErrUnavailable   = errors.New("oidc: issuer unavailable")
)

// Option configures a Verifier.
type Option func(*Verifier)

// WithHTTPClient sets the client used for discovery and JWKS (tests use an
// httptest TLS server's client).
func WithHTTPClient(c *http.Client) Option { return func(v *Verifier) { v.client = c } }

// WithClock sets the clock.
func WithClock(now func() time.Time) Option { return func(v *Verifier) { v.now = now } }

// WithRefreshInterval sets the minimum time between JWKS refreshes caused
// by unknown key IDs (default 5m).
func WithRefreshInterval(d time.Duration) Option { return func(v *Verifier) { v.minRefresh = d } }

// WithFetchTimeout bounds one discovery + JWKS fetch (default 5s), whatever
// the HTTP client's own timeout.
func WithFetchTimeout(d time.Duration) Option { return func(v *Verifier) { v.fetchTimeout = d } }

// Backoff after a failed fetch: no new fetch for InitialBackoff, doubling
// with each further failure up to MaxBackoff. Tokens that need the issuer
// meanwhile are answered ErrUnavailable at once, so a failing issuer costs
// one request per backoff instead of one per token.
const (
	InitialBackoff = 2 * time.Second
	MaxBackoff     = time.Minute
)

// Verifier verifies ID tokens. It is safe for concurrent use.
type Verifier struct {
	issuers      map[string]*issuer
	client       *http.Client
	now          func() time.Time
	minRefresh   time.Duration
	fetchTimeout time.Duration
}

// issuer is one trusted issuer and its key cache. mu guards the fields
// below it and is never held across a network call: a fetch runs in its
// own goroutine (one per issuer at a time, shared by every token that
// needs it), so tokens signed with cached keys never wait for it.
type issuer struct {
	cfg      IssuerConfig
	parser   *jwt.Parser
	mu       sync.Mutex
	keys     map[string]crypto.PublicKey
	fetched  time.Time  // last fetch attempt that ended
	failures int        // consecutive failed fetches
	retryAt  time.Time  // no fetch before this after a failure
	lastErr  error      // the last failure, answered until retryAt
	inflight *fetchCall // the running fetch, if any
}

// fetchCall is one fetch; err is set before done is closed.
type fetchCall struct {
	done chan struct{}
	err  error
}

// Leeway is the clock skew allowed on exp, nbf and iat.
const Leeway = 30 * time.Second

// NewVerifier trusts the given issuers.
func NewVerifier(issuers []IssuerConfig, opts ...Option) (*Verifier, error) {
	v := &Verifier{
		issuers:      map[string]*issuer{},
		client:       &http.Client{Timeout: 10 * time.Second},
		now:          time.Now,
		minRefresh:   5 * time.Minute,
		fetchTimeout: 5 * time.Second,
	}
	for _, o := range opts {
		o(v)
	}
	for _, ic := range issuers {
		if !strings.HasPrefix(ic.Issuer, "https://") || ic.Audience == "" {
			return nil, fmt.Errorf("oidc: issuer %q needs an https URL and an audience", ic.Issuer)
		}
		v.issuers[ic.Issuer] = &issuer{
			cfg: ic,
			parser: jwt.NewParser(
				jwt.WithValidMethods([]string{"RS256", "ES256"}),
				jwt.WithIssuer(ic.Issuer),
				jwt.WithAudience(ic.Audience),
				jwt.WithLeeway(Leeway),
				jwt.WithIssuedAt(),
				jwt.WithExpirationRequired(),
				jwt.WithTimeFunc(func() time.Time { return v.now() }),
			),
		}
	}
	return v, nil
}

// LooksLikeJWT reports whether s has the shape of a compact JWS whose
// header names an algorithm. It does not verify anything.
func LooksLikeJWT(s string) bool {
	h, _, ok := strings.Cut(s, ".")
	if !ok || strings.Count(s, ".") != 2 || len(h) > 4096 {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return false
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	return json.Unmarshal(b, &hdr) == nil && hdr.Alg != ""
}

// Verify checks raw against its (configured) issuer and returns the
// identity.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Identity, error) {
	if len(raw) > 16<<10 {
		return nil, fmt.Errorf("%w: too long", ErrInvalid)
	}
	var unverified jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &unverified); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	iss, ok := v.issuers[unverified.Issuer]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownIssuer, unverified.Issuer)
	}
	claims := jwt.MapClaims{}
	var fetchErr error
	_, err := iss.parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k, err := v.key(ctx, iss, kid)
		if err != nil {
			fetchErr = err
		}
		return k, err
	})
	if err != nil {
		if fetchErr != nil && errors.Is(fetchErr, ErrUnavailable) {
			return nil, fetchErr
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	id := &Identity{Issuer: iss.cfg.Issuer, Claims: map[string]string{}}
	for k, val := range claims {
		if s, ok := val.(string); ok {
			id.Claims[k] = s
		}
	}
	if id.Claims["sub"] == "" {
		return nil, fmt.Errorf("%w: no sub", ErrInvalid)
	}
	return id, nil
}

// key returns the issuer's key kid, fetching the JWKS when it is not
// cached and the last fetch is older than the refresh interval. A fetch in
// progress is joined rather than repeated; a failed one is answered from
// the negative cache until its backoff ends.
func (v *Verifier) key(ctx context.Context, iss *issuer, kid string) (crypto.PublicKey, error) {
	iss.mu.Lock()
	if k, ok := iss.keys[kid]; ok {
		iss.mu.Unlock()
		return k, nil
	}
	now := v.now()
	if iss.keys != nil && now.Sub(iss.fetched) < v.minRefresh {
		iss.mu.Unlock()
		return nil, fmt.Errorf("unknown kid %q", kid)
	}
	if now.Before(iss.retryAt) {
		err := iss.lastErr
		iss.mu.Unlock()
		return nil, fmt.Errorf("%w (not asked again for %s)", err, iss.retryAt.Sub(now).Round(time.Second))
	}
	call := iss.inflight
	if call == nil {
		call = &fetchCall{done: make(chan struct{})}
		iss.inflight = call
		// The fetch outlives the request that started it: the others
		// waiting on it should not fail because that one client left.
		go v.refresh(context.WithoutCancel(ctx), iss, call)
	}
	iss.mu.Unlock()
	select {
	case <-call.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for %s: %v", ErrUnavailable, iss.cfg.Issuer, ctx.Err())
	}
	if call.err != nil {
		return nil, call.err
	}
	iss.mu.Lock()
	k, ok := iss.keys[kid]
	iss.mu.Unlock()
	if ok {
		return k, nil
	}
	return nil, fmt.Errorf("unknown kid %q", kid)
}

// refresh fetches iss's keys within the fetch timeout and records the
// outcome: new keys, or the failure and when to try again.
func (v *Verifier) refresh(ctx context.Context, iss *issuer, call *fetchCall) {
	ctx, cancel := context.WithTimeout(ctx, v.fetchTimeout)
	keys, err := v.fetchKeys(ctx, iss.cfg.Issuer)
	cancel()
	iss.mu.Lock()
	now := v.now()
	iss.fetched = now
	if err != nil {
		iss.failures++
		backoff := MaxBackoff
		if iss.failures <= 6 { // 2s << 5 = 64s: past the cap anyway
			backoff = min(InitialBackoff<<(iss.failures-1), MaxBackoff)
		}
		iss.retryAt, iss.lastErr = now.Add(backoff), err
	} else {
		iss.keys, iss.failures, iss.retryAt, iss.lastErr = keys, 0, time.Time{}, nil
	}
	iss.inflight = nil
	call.err = err
	iss.mu.Unlock()
	close(call.done)
}

func (v *Verifier) fetchKeys(ctx context.Context, issuerURL string) (map[string]crypto.PublicKey, error) {
	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := v.getJSON(ctx, strings.TrimSuffix(issuerURL, "/")+"/.well-known/openid-configuration", &disc); err != nil {
		return nil, err
	}
	if disc.Issuer != issuerURL {
		return nil, fmt.Errorf("%w: discovery names issuer %q", ErrUnavailable, disc.Issuer)
	}
	if !strings.HasPrefix(disc.JWKSURI, "https://") {
		return nil, fmt.Errorf("%w: jwks_uri %q is not https", ErrUnavailable, disc.JWKSURI)
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := v.getJSON(ctx, disc.JWKSURI, &set); err != nil {
		return nil, err
	}
	keys := map[string]crypto.PublicKey{}
	for _, k := range set.Keys {
		if pub, err := k.public(); err == nil && (k.Use == "" || k.Use == "sig") {
			keys[k.Kid] = pub
		}
	}
	return keys, nil
}

func (v *Verifier) getJSON(ctx context.Context, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: GET %s: status %d", ErrUnavailable, url, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
		return fmt.Errorf("%w: GET %s: %v", ErrUnavailable, url, err)
	}
	return nil
}

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

func (k jwk) public() (crypto.PublicKey, error) {
	b := func(s string) (*big.Int, error) {
		raw, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(raw) == 0 {
			return nil, errors.New("bad base64url integer")
		}
		return new(big.Int).SetBytes(raw), nil
	}
	switch k.Kty {
	case "RSA":
		n, err := b(k.N)
		if err != nil {
			return nil, err
		}
		e, err := b(k.E)
		if err != nil || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31 {
			return nil, errors.New("bad RSA exponent")
		}
		if n.BitLen() < 2048 {
			return nil, errors.New("RSA key shorter than 2048 bits")
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	case "EC":
		if k.Crv != "P-256" {
			return nil, errors.New("unsupported curve")
		}
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil || len(x) != 32 {
			return nil, errors.New("bad EC x coordinate")
		}
		y, err := base64.RawURLEncoding.DecodeString(k.Y)
		if err != nil || len(y) != 32 {
			return nil, errors.New("bad EC y coordinate")
		}
		// Rejects points off the curve.
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, fmt.Errorf("EC key: %w", err)
		}
		return pub, nil
	}
	return nil, fmt.Errorf("unsupported kty %q", k.Kty)
}
