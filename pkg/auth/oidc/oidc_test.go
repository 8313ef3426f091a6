package oidc_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/berth-registry/berth/pkg/auth/oidc"
	"github.com/berth-registry/berth/pkg/auth/oidc/oidctest"
)

func setup(t *testing.T, opts ...oidc.Option) (*oidctest.Issuer, *oidc.Verifier) {
	t.Helper()
	iss := oidctest.New()
	t.Cleanup(iss.Close)
	v, err := oidc.NewVerifier([]oidc.IssuerConfig{{Issuer: iss.URL, Audience: "registry.example"}}, append([]oidc.Option{oidc.WithHTTPClient(iss.Client())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return iss, v
}

func TestVerify(t *testing.T) {
	iss, v := setup(t)
	for _, ec := range []bool{false, true} {
		raw := iss.Sign(iss.GitHubClaims("registry.example", "org/app", "refs/heads/main"), ec)
		if !oidc.LooksLikeJWT(raw) {
			t.Fatal("LooksLikeJWT false for a JWT")
		}
		id, err := v.Verify(context.Background(), raw)
		if err != nil {
			t.Fatalf("ec=%v: %v", ec, err)
		}
		if id.Issuer != iss.URL || id.Claims["repository"] != "org/app" || id.Claims["ref"] != "refs/heads/main" || id.Claims["sub"] != "repo:org/app:ref:refs/heads/main" {
			t.Fatalf("identity %+v", id)
		}
	}
	if iss.JWKSCalls() != 1 {
		t.Fatalf("JWKS fetched %d times, want 1 (cached)", iss.JWKSCalls())
	}
	if oidc.LooksLikeJWT("berth-sts-v1.aGVsbG8") || oidc.LooksLikeJWT("password") {
		t.Fatal("LooksLikeJWT true for a non-JWT")
	}
}

func TestRejects(t *testing.T) {
	iss, v := setup(t)
	good := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := iss.GitHubClaims("registry.example", "org/app", "refs/heads/main")
		if mod != nil {
			mod(c)
		}
		return c
	}
	other := oidctest.New()
	defer other.Close()
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged := jwt.NewWithClaims(jwt.SigningMethodES256, good(nil))
	forged.Header["kid"] = "ec-1"
	forgedRaw, _ := forged.SignedString(stranger)
	parts := strings.Split(iss.Sign(good(nil), true), ".")
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"ec-1"}`)) + "." + parts[1] + "."
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, good(nil))
	hs.Header["kid"] = "ec-1"
	hsRaw, _ := hs.SignedString([]byte("secret"))
	cases := []struct {
		name string
		raw  string
		want error
	}{
		{"unknown issuer", other.Sign(other.GitHubClaims("registry.example", "org/app", "refs/heads/main"), false), oidc.ErrUnknownIssuer},
		{"wrong audience", iss.Sign(good(func(c jwt.MapClaims) { c["aud"] = "sts.amazonaws.com" }), false), oidc.ErrInvalid},
		{"expired", iss.Sign(good(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() }), false), oidc.ErrInvalid},
		{"no exp", iss.Sign(good(func(c jwt.MapClaims) { delete(c, "exp") }), false), oidc.ErrInvalid},
		{"not yet valid", iss.Sign(good(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Minute).Unix() }), true), oidc.ErrInvalid},
		{"iat in future", iss.Sign(good(func(c jwt.MapClaims) { c["iat"] = time.Now().Add(time.Minute).Unix() }), true), oidc.ErrInvalid},
		{"no sub", iss.Sign(good(func(c jwt.MapClaims) { delete(c, "sub") }), true), oidc.ErrInvalid},
		{"bad signature", parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 64)), oidc.ErrInvalid},
		{"foreign key", forgedRaw, oidc.ErrInvalid},
		{"alg none", none, oidc.ErrInvalid},
		{"HS256", hsRaw, oidc.ErrInvalid},
		{"garbage", "a.b.c", oidc.ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := v.Verify(context.Background(), c.raw); !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
	if other.JWKSCalls() != 0 {
		t.Fatal("an untrusted issuer was contacted")
	}
}

func TestKeyRotation(t *testing.T) {
	now := time.Now()
	iss, v := setup(t, oidc.WithRefreshInterval(time.Minute), oidc.WithClock(func() time.Time { return now }))
	claims := iss.GitHubClaims("registry.example", "org/app", "refs/heads/main")
	if _, err := v.Verify(context.Background(), iss.Sign(claims, false)); err != nil {
		t.Fatal(err)
	}
	iss.Rotate()
	// A new kid right after a fetch: refresh is rate-limited, token refused.
	if _, err := v.Verify(context.Background(), iss.Sign(claims, false)); !errors.Is(err, oidc.ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	if _, err := v.Verify(context.Background(), iss.Sign(claims, true)); !errors.Is(err, oidc.ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	if iss.JWKSCalls() != 1 {
		t.Fatalf("JWKS fetched %d times within the refresh interval", iss.JWKSCalls())
	}
	now = now.Add(2 * time.Minute)
	if _, err := v.Verify(context.Background(), iss.Sign(claims, false)); err != nil {
		t.Fatalf("after the interval the rotated key should be fetched: %v", err)
	}
	if iss.JWKSCalls() != 2 {
		t.Fatalf("JWKS fetched %d times", iss.JWKSCalls())
	}
}

func TestIssuerUnavailable(t *testing.T) {
	iss, v := setup(t)
	raw := iss.Sign(iss.GitHubClaims("registry.example", "org/app", "refs/heads/main"), false)
	iss.Close()
	if _, err := v.Verify(context.Background(), raw); !errors.Is(err, oidc.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

func TestConfig(t *testing.T) {
	for _, ic := range []oidc.IssuerConfig{{Issuer: "http://x", Audience: "a"}, {Issuer: "https://x"}} {
		if _, err := oidc.NewVerifier([]oidc.IssuerConfig{ic}); err == nil {
			t.Errorf("%+v accepted", ic)
		}
	}
}
