// Package token issues and verifies Berth's registry access tokens: JWTs in
// the Docker distribution token format (claims iss, sub, aud, exp, nbf, iat,
// jti and access), signed with ES256 only. Signing goes through a Signer (a
// local key file for `berth serve`, an AWS KMS key in AWS); verification is
// always local, with the public key.
package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Access is one entry of the access claim: actions granted on a resource.
type Access struct {
	Type    string   `json:"type"`    // "repository" or "registry"
	Name    string   `json:"name"`    // repository name, or "catalog"
	Actions []string `json:"actions"` // "pull", "push", "delete", "*"
}

// Claims are the token's claims.
type Claims struct {
	jwt.RegisteredClaims
	Access []Access `json:"access"`
	// Readable, in tokens that grant push, lists where the holder may
	// pull (the policy's repository patterns, policy.Readable), so that a
	// push can mount a blob the holder may read from another repository
	// instead of uploading it again. Absent: nowhere beyond Access.
	Readable *Readable `json:"rd,omitempty"`
}

// Readable is where a token's holder may pull: repository patterns (the
// policy's syntax) allowed and denied.
type Readable struct {
	Allow []string `json:"allow,omitempty"`
	Deny  []string `json:"deny,omitempty"`
}

// Allows reports whether the token grants action on the resource typ:name.
// "*" in a granted action list grants every action.
func (c *Claims) Allows(typ, name, action string) bool {
	for _, a := range c.Access {
		if a.Type == typ && a.Name == name && (slices.Contains(a.Actions, action) || slices.Contains(a.Actions, "*")) {
			return true
		}
	}
	return false
}

// Signer signs token digests with an ECDSA P-256 key.
type Signer interface {
	// KeyID names the key in the JWT header (kid).
	KeyID() string
	// PublicKey is the verification key.
	PublicKey() *ecdsa.PublicKey
	// Sign signs a SHA-256 digest and returns the JOSE form of the
	// signature: r and s, 32 bytes each, big-endian.
	Sign(ctx context.Context, digest []byte) ([]byte, error)
}

// KeyID derives a stable key ID from a public key: the first 16 bytes of
// the SHA-256 of its DER SubjectPublicKeyInfo, in hex.
func KeyID(pub *ecdsa.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("token: marshal public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:16]), nil
}

// Issuer mints tokens.
type Issuer struct {
	signer Signer
	issuer string
	ttl    time.Duration
	now    func() time.Time
}

// NewIssuer returns an issuer that signs with s, names itself issuer and
// issues tokens valid for ttl (default 15m). now defaults to time.Now.
func NewIssuer(s Signer, issuer string, ttl time.Duration, now func() time.Time) *Issuer {
	if ttl <= 0 {
		ttl = 15 * time.Minute
	}
	if now == nil {
		now = time.Now
	}
	return &Issuer{signer: s, issuer: issuer, ttl: ttl, now: now}
}

// TTL is the lifetime of issued tokens.
func (i *Issuer) TTL() time.Duration { return i.ttl }

// Issue signs a token for subject, valid for audience (the registry's
// service name), granting access; readable (may be nil) says where else
// its holder may pull.
func (i *Issuer) Issue(ctx context.Context, subject, audience string, access []Access, readable *Readable) (string, *Claims, error) {
	now := i.now().Truncate(time.Second)
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", nil, fmt.Errorf("token: jti: %w", err)
	}
	if access == nil {
		access = []Access{}
	}
	claims := &Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    i.issuer,
			Subject:   subject,
			Audience:  jwt.ClaimStrings{audience},
			ExpiresAt: jwt.NewNumericDate(now.Add(i.ttl)),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        base64.RawURLEncoding.EncodeToString(jti[:]),
		},
		Access:   access,
		Readable: readable,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = i.signer.KeyID()
	signing, err := t.SigningString()
	if err != nil {
		return "", nil, fmt.Errorf("token: encode: %w", err)
	}
	digest := sha256.Sum256([]byte(signing))
	sig, err := i.signer.Sign(ctx, digest[:])
	if err != nil {
		return "", nil, fmt.Errorf("token: sign: %w", err)
	}
	if len(sig) != 64 {
		return "", nil, fmt.Errorf("token: signer returned %d-byte signature, want 64", len(sig))
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), claims, nil
}

// DefaultLeeway is the clock skew allowed on exp, nbf and iat.
const DefaultLeeway = 30 * time.Second

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	Issuer   string             // required iss
	Audience string             // required aud (the service name)
	Keys     []*ecdsa.PublicKey // accepted keys, selected by kid
	Leeway   time.Duration      // default DefaultLeeway
	Now      func() time.Time   // default time.Now
}

// Verifier checks tokens. It is safe for concurrent use.
//
// A client sends the same token with every request of an operation, so the
// verifier remembers tokens it has fully verified (keyed by their exact
// bytes, at most cacheSize of them) and, for those, only re-checks expiry.
type Verifier struct {
	keys   map[string]*ecdsa.PublicKey
	parser *jwt.Parser
	leeway time.Duration
	now    func() time.Time

	mu    sync.Mutex
	cache map[string]*Claims
}

// cacheSize bounds the verified-token cache; when full it is emptied.
const cacheSize = 4096

// ErrInvalid wraps every verification failure.
var ErrInvalid = errors.New("token: invalid")

// NewVerifier returns a verifier for cfg.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Issuer == "" || cfg.Audience == "" || len(cfg.Keys) == 0 {
		return nil, errors.New("token: verifier needs an issuer, an audience and a key")
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	keys := map[string]*ecdsa.PublicKey{}
	for _, k := range cfg.Keys {
		if k.Curve != elliptic.P256() {
			return nil, errors.New("token: verification keys must be P-256")
		}
		kid, err := KeyID(k)
		if err != nil {
			return nil, err
		}
		keys[kid] = k
	}
	return &Verifier{
		keys:   keys,
		leeway: cfg.Leeway,
		now:    cfg.Now,
		cache:  map[string]*Claims{},
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodES256.Alg()}),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.Audience),
			jwt.WithLeeway(cfg.Leeway),
			jwt.WithIssuedAt(),
			jwt.WithExpirationRequired(),
			jwt.WithTimeFunc(cfg.Now),
			jwt.WithStrictDecoding(),
		),
	}, nil
}

// Verify checks raw's signature (ES256 only, key chosen by kid), issuer,
// audience and time window, and returns its claims. The claims are shared:
// callers must not modify them.
func (v *Verifier) Verify(raw string) (*Claims, error) {
	if len(raw) > maxTokenBytes || strings.Count(raw, ".") != 2 {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrInvalid)
	}
	v.mu.Lock()
	c, ok := v.cache[raw]
	v.mu.Unlock()
	if ok {
		if v.now().After(c.ExpiresAt.Add(v.leeway)) {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, jwt.ErrTokenExpired)
		}
		return c, nil
	}
	c, err := v.verify(raw)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	if len(v.cache) >= cacheSize {
		clear(v.cache)
	}
	v.cache[raw] = c
	v.mu.Unlock()
	return c, nil
}

func (v *Verifier) verify(raw string) (*Claims, error) {
	var c Claims
	_, err := v.parser.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k, ok := v.keys[kid]
		if !ok {
			return nil, fmt.Errorf("unknown kid %q", kid)
		}
		return k, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if c.NotBefore == nil || c.IssuedAt == nil || c.Subject == "" {
		return nil, fmt.Errorf("%w: nbf, iat and sub are required", ErrInvalid)
	}
	return &c, nil
}

// maxTokenBytes bounds what the parser looks at (tokens are a few KB).
const maxTokenBytes = 64 << 10
