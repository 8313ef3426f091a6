package token_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/golang-jwt/jwt/v5"

	"github.com/berth-registry/berth/pkg/auth/token"
)

func newSigner(t testing.TB) *token.LocalSigner {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := token.NewLocalSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newVerifier(t testing.TB, s token.Signer, now func() time.Time) *token.Verifier {
	t.Helper()
	v, err := token.NewVerifier(token.VerifierConfig{Issuer: "berth", Audience: "reg", Keys: []*ecdsa.PublicKey{s.PublicKey()}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var pullPush = []token.Access{{Type: "repository", Name: "team/app", Actions: []string{"pull", "push"}}}

func TestIssueVerify(t *testing.T) {
	s := newSigner(t)
	raw, issued, err := token.NewIssuer(s, "berth", 5*time.Minute, nil).Issue(context.Background(), "arn:aws:iam::1:role/ci", "reg", pullPush, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := newVerifier(t, s, nil).Verify(raw)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "arn:aws:iam::1:role/ci" || c.ID == "" || c.ID != issued.ID {
		t.Fatalf("claims %+v", c)
	}
	for _, tc := range []struct {
		name, action string
		want         bool
	}{{"team/app", "pull", true}, {"team/app", "push", true}, {"team/app", "delete", false}, {"team/other", "pull", false}, {"team", "pull", false}} {
		if got := c.Allows("repository", tc.name, tc.action); got != tc.want {
			t.Errorf("Allows(%s,%s) = %v", tc.name, tc.action, got)
		}
	}
	if c.Allows("registry", "catalog", "*") {
		t.Error("catalog allowed")
	}
}

// sign builds a token with arbitrary header and claims, signed by fn.
func forge(t *testing.T, header map[string]any, claims jwt.MapClaims, method jwt.SigningMethod, key any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyRejects(t *testing.T) {
	s := newSigner(t)
	v := newVerifier(t, s, nil)
	now := time.Now()
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": "berth", "sub": "x", "aud": "reg", "exp": now.Add(time.Minute).Unix(), "nbf": now.Unix(), "iat": now.Unix(), "jti": "j",
			"access": []any{map[string]any{"type": "repository", "name": "a", "actions": []string{"pull"}}}}
		if mod != nil {
			mod(c)
		}
		return c
	}
	kid := map[string]any{"kid": s.KeyID()}
	issue := func(mod func(jwt.MapClaims)) string {
		// Sign with the real key through the Signer, with chosen claims.
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims(mod))
		tok.Header["kid"] = s.KeyID()
		ss, _ := tok.SigningString()
		d := sha256.Sum256([]byte(ss))
		sig, err := s.Sign(context.Background(), d[:])
		if err != nil {
			t.Fatal(err)
		}
		return ss + "." + base64.RawURLEncoding.EncodeToString(sig)
	}
	other := newSigner(t)
	pubDER, _ := x509.MarshalPKIXPublicKey(s.PublicKey())
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	good := issue(nil)
	if _, err := v.Verify(good); err != nil {
		t.Fatalf("control token rejected: %v", err)
	}
	parts := strings.Split(good, ".")
	noneHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"` + s.KeyID() + `"}`))
	cases := map[string]string{
		"expired":              issue(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() }),
		"no exp":               issue(func(c jwt.MapClaims) { delete(c, "exp") }),
		"not yet valid":        issue(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() }),
		"issued in future":     issue(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Minute).Unix() }),
		"wrong audience":       issue(func(c jwt.MapClaims) { c["aud"] = "other" }),
		"wrong issuer":         issue(func(c jwt.MapClaims) { c["iss"] = "evil" }),
		"no sub":               issue(func(c jwt.MapClaims) { delete(c, "sub") }),
		"bad signature":        parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 64)),
		"other key same kid":   forge(t, kid, claims(nil), jwt.SigningMethodES256, mustPriv(t)),
		"unknown kid":          forge(t, map[string]any{"kid": other.KeyID()}, claims(nil), jwt.SigningMethodES256, mustPriv(t)),
		"alg none":             noneHeader + "." + parts[1] + ".",
		"HS256 key confusion":  forge(t, kid, claims(nil), jwt.SigningMethodHS256, pubDER),
		"RS256":                forge(t, kid, claims(nil), jwt.SigningMethodRS256, rsaKey),
		"ES384":                forge(t, kid, claims(nil), jwt.SigningMethodES384, mustP384(t)),
		"two segments":         parts[0] + "." + parts[1],
		"garbage":              "a.b.c",
		"tampered claims":      parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"berth","sub":"x","aud":"reg","access":[{"type":"repository","name":"a","actions":["*"]}]}`)) + "." + parts[2],
		"expired beyond skew":  issue(func(c jwt.MapClaims) { c["exp"] = now.Add(-31 * time.Second).Unix() }),
		"nbf beyond skew":      issue(func(c jwt.MapClaims) { c["nbf"] = now.Add(45 * time.Second).Unix() }),
		"aud list without reg": issue(func(c jwt.MapClaims) { c["aud"] = []string{"a", "b"} }),
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := v.Verify(raw); !errors.Is(err, token.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
	// Within the skew the token is accepted.
	if _, err := v.Verify(issue(func(c jwt.MapClaims) { c["nbf"] = now.Add(10 * time.Second).Unix() })); err != nil {
		t.Fatalf("nbf within skew: %v", err)
	}
}

func mustPriv(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustP384(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "token.pem")
	a, err := token.LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
	b, err := token.LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if a.KeyID() != b.KeyID() {
		t.Fatal("reloaded key differs")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := token.LoadOrCreateKeyFile(path); err == nil {
		t.Fatal("world-readable key accepted")
	}
}

// kmsFake signs like KMS (DER output) with a local key; it stands in for
// KMS, which no emulator here provides, and injects faults.
type kmsFake struct {
	key  *ecdsa.PrivateKey
	spec kmstypes.KeySpec
	err  error
	gets int
}

func (f *kmsFake) Sign(_ context.Context, in *kms.SignInput, _ ...func(*kms.Options)) (*kms.SignOutput, error) {
	if f.err != nil {
		return nil, f.err
	}
	if in.MessageType != kmstypes.MessageTypeDigest || in.SigningAlgorithm != kmstypes.SigningAlgorithmSpecEcdsaSha256 || len(in.Message) != 32 {
		return nil, errors.New("ValidationException")
	}
	der, err := ecdsa.SignASN1(rand.Reader, f.key, in.Message)
	return &kms.SignOutput{Signature: der}, err
}

func (f *kmsFake) GetPublicKey(context.Context, *kms.GetPublicKeyInput, ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error) {
	f.gets++
	der, err := x509.MarshalPKIXPublicKey(&f.key.PublicKey)
	return &kms.GetPublicKeyOutput{PublicKey: der, KeySpec: f.spec}, err
}

func TestKMSSigner(t *testing.T) {
	f := &kmsFake{key: mustPriv(t), spec: kmstypes.KeySpecEccNistP256}
	s, err := token.NewKMSSigner(context.Background(), f, "alias/berth")
	if err != nil {
		t.Fatal(err)
	}
	iss := token.NewIssuer(s, "berth", time.Minute, nil)
	v := newVerifier(t, s, nil)
	for range 20 { // DER lengths vary with leading zeros; exercise several
		raw, _, err := iss.Issue(context.Background(), "sub", "reg", pullPush, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(raw); err != nil {
			t.Fatal(err)
		}
	}
	if f.gets != 1 {
		t.Fatalf("GetPublicKey called %d times, want 1", f.gets)
	}
	f.err = errors.New("throttled")
	if _, _, err := iss.Issue(context.Background(), "sub", "reg", nil, nil); err == nil {
		t.Fatal("KMS failure not reported")
	}
	if _, err := token.NewKMSSigner(context.Background(), &kmsFake{key: mustPriv(t), spec: kmstypes.KeySpecRsa2048}, "k"); err == nil {
		t.Fatal("RSA key spec accepted")
	}
}

func FuzzVerify(f *testing.F) {
	s := newSigner(f)
	v := newVerifier(f, s, nil)
	good, _, err := token.NewIssuer(s, "berth", time.Minute, nil).Issue(context.Background(), "sub", "reg", pullPush, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Add("..")
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := v.Verify(raw)
		if err != nil {
			if !errors.Is(err, token.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if raw != good || c.Subject != "sub" {
			t.Fatalf("accepted a token the issuer did not sign: %q", raw)
		}
	})
}

func TestCachedTokenExpires(t *testing.T) {
	s := newSigner(t)
	now := time.Now()
	v := newVerifier(t, s, func() time.Time { return now })
	raw, _, err := token.NewIssuer(s, "berth", time.Minute, func() time.Time { return now }).Issue(context.Background(), "sub", "reg", pullPush, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // verified, then served from the cache
		if _, err := v.Verify(raw); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(time.Minute + token.DefaultLeeway + time.Second)
	if _, err := v.Verify(raw); !errors.Is(err, token.ErrInvalid) {
		t.Fatalf("expired cached token: %v", err)
	}
}

// BenchmarkVerify: "first" is a token's first verification (ECDSA P-256),
// "cached" every later request carrying the same token.
func BenchmarkVerify(b *testing.B) {
	s := newSigner(b)
	raw, _, err := token.NewIssuer(s, "berth", time.Hour, nil).Issue(context.Background(), "sub", "reg", pullPush, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("first", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := newVerifier(b, s, nil).Verify(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		v := newVerifier(b, s, nil)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}
