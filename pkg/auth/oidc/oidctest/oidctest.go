// Package oidctest is an in-process OIDC issuer (discovery document and
// JWKS over TLS) that signs ID tokens with generated keys, shaped like
// GitHub Actions' issuer.
package oidctest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issuer is the fake issuer. Its URL is the issuer identifier.
type Issuer struct {
	*httptest.Server
	mu        sync.Mutex
	rsaKey    *rsa.PrivateKey
	ecKey     *ecdsa.PrivateKey
	gen       int
	jwksCalls int
	discCalls int
	// failStatus, when set, answers discovery and JWKS with that status;
	// delay holds each answer back (a slow or hanging issuer).
	failStatus int
	delay      time.Duration
}

// SetFailure makes discovery and JWKS answer status (0: answer normally).
func (i *Issuer) SetFailure(status int) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.failStatus = status
}

// SetDelay holds every discovery and JWKS answer back by d, or until the
// client gives up.
func (i *Issuer) SetDelay(d time.Duration) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.delay = d
}

// DiscoveryCalls is how many times the discovery document was requested.
func (i *Issuer) DiscoveryCalls() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.discCalls
}

// hold applies the configured delay and failure; false means the answer
// has been written (or the client left).
func (i *Issuer) hold(w http.ResponseWriter, r *http.Request) bool {
	i.mu.Lock()
	d, status := i.delay, i.failStatus
	i.mu.Unlock()
	if d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return false
		}
	}
	if status != 0 {
		http.Error(w, "issuer failing", status)
		return false
	}
	return true
}

// New starts an issuer with one RSA and one P-256 key.
func New() *Issuer {
	i := &Issuer{}
	i.Rotate()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		i.mu.Lock()
		i.discCalls++
		i.mu.Unlock()
		if !i.hold(w, r) {
			return
		}
		writeJSON(w, map[string]any{"issuer": i.URL, "jwks_uri": i.URL + "/jwks", "id_token_signing_alg_values_supported": []string{"RS256", "ES256"}})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		if !i.hold(w, r) {
			return
		}
		i.mu.Lock()
		defer i.mu.Unlock()
		i.jwksCalls++
		writeJSON(w, map[string]any{"keys": []map[string]string{
			{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": i.kid("rsa"), "n": b64(i.rsaKey.N), "e": b64(big.NewInt(int64(i.rsaKey.E)))},
			{"kty": "EC", "use": "sig", "alg": "ES256", "crv": "P-256", "kid": i.kid("ec"), "x": ecCoord(i.ecKey, 0), "y": ecCoord(i.ecKey, 1)},
		}})
	})
	i.Server = httptest.NewTLSServer(mux)
	return i
}

// Rotate replaces both keys (new key IDs).
func (i *Issuer) Rotate() {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.rsaKey, i.ecKey = rk, ek
	i.gen++
}

// JWKSCalls is how many times the JWKS was served.
func (i *Issuer) JWKSCalls() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.jwksCalls
}

func (i *Issuer) kid(kind string) string { return fmt.Sprintf("%s-%d", kind, i.gen) }

// GitHubClaims returns claims like a GitHub Actions ID token's for the
// given repository and ref, valid for five minutes from now.
func (i *Issuer) GitHubClaims(audience, repository, ref string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss": i.URL, "aud": audience, "sub": "repo:" + repository + ":ref:" + ref,
		"repository": repository, "repository_owner": "org", "ref": ref, "environment": "",
		"workflow": "ci", "event_name": "push", "jti": fmt.Sprint(now.UnixNano()),
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	}
}

// Sign signs claims with the issuer's RS256 key, or its ES256 key when ec.
func (i *Issuer) Sign(claims jwt.MapClaims, ec bool) string {
	i.mu.Lock()
	defer i.mu.Unlock()
	var t *jwt.Token
	var key any
	if ec {
		t, key = jwt.NewWithClaims(jwt.SigningMethodES256, claims), i.ecKey
		t.Header["kid"] = i.kid("ec")
	} else {
		t, key = jwt.NewWithClaims(jwt.SigningMethodRS256, claims), i.rsaKey
		t.Header["kid"] = i.kid("rsa")
	}
	s, err := t.SignedString(key)
	if err != nil {
		panic(err)
	}
	return s
}

// ecCoord returns the x (0) or y (1) coordinate of a P-256 key, base64url.
func ecCoord(k *ecdsa.PrivateKey, i int) string {
	b, err := k.PublicKey.Bytes() // 0x04 || x || y
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b[1+32*i : 33+32*i])
}

func b64(n *big.Int) string { return base64.RawURLEncoding.EncodeToString(n.Bytes()) }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
