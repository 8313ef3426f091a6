package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-registry/berth/pkg/auth"
	"github.com/berth-registry/berth/pkg/auth/policy"
	"github.com/berth-registry/berth/pkg/auth/token"
	"github.com/berth-registry/berth/pkg/errcode"
)

// countingSigner counts signatures (each one a KMS Sign in AWS).
type countingSigner struct {
	*token.LocalSigner
	n atomic.Int64
}

func (c *countingSigner) Sign(ctx context.Context, digest []byte) ([]byte, error) {
	c.n.Add(1)
	return c.LocalSigner.Sign(ctx, digest)
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type limitsEnv struct {
	t      *testing.T
	setup  *auth.Setup
	signer *countingSigner
	clock  *fakeClock
}

func newLimitsEnv(t *testing.T, limits auth.Limits) *limitsEnv {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := token.NewLocalSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse([]byte(`rules: [{repositories: ["public/**"], principals: [anonymous], actions: [pull]}]`))
	if err != nil {
		t.Fatal(err)
	}
	e := &limitsEnv{t: t, signer: &countingSigner{LocalSigner: ls}, clock: &fakeClock{now: time.Now()}}
	e.setup, err = auth.New(auth.Config{Service: service, Signer: e.signer, Policy: staticPolicy{pol}, Now: e.clock.Now, Limits: limits})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

type staticPolicy struct{ p *policy.Policy }

func (s staticPolicy) Current(context.Context) (*policy.Policy, error) { return s.p, nil }

// anon asks the token endpoint for scopes without credentials, from ip.
func (e *limitsEnv) anon(ip string, scopes ...string) (*httptest.ResponseRecorder, string) {
	e.t.Helper()
	q := url.Values{"service": {service}, "scope": scopes}
	req := httptest.NewRequest(http.MethodGet, "/token?"+q.Encode(), nil)
	req.RemoteAddr = ip
	rec := httptest.NewRecorder()
	e.setup.TokenHandler.ServeHTTP(rec, req)
	var body struct {
		Token string `json:"token"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	return rec, body.Token
}

// TestAnonymousNothingGrantedIsNotSigned: anonymous requests the policy
// grants nothing to share one token (signed once per instance and half
// lifetime) instead of costing one signature (a KMS Sign) each (issue 11,
// point 7).
func TestAnonymousNothingGrantedIsNotSigned(t *testing.T) {
	e := newLimitsEnv(t, auth.Limits{})
	var first string
	for i := range 50 {
		scopes := []string{"repository:private/app:pull,push"}
		if i%2 == 1 {
			scopes = nil // docker login's and a /v2/ ping's empty scope
		}
		rec, tok := e.anon("198.51.100."+strconv.Itoa(i)+":1234", scopes...)
		if rec.Code != http.StatusOK || tok == "" {
			t.Fatalf("request %d: %d %s", i, rec.Code, rec.Body)
		}
		if first == "" {
			first = tok
		}
		claims, err := e.setup.Verifier.Verify(tok)
		if err != nil {
			t.Fatalf("shared token does not verify: %v", err)
		}
		if len(claims.Access) != 0 || claims.Subject != "anonymous" {
			t.Fatalf("anonymous token grants %+v to %q", claims.Access, claims.Subject)
		}
	}
	if n := e.signer.n.Load(); n != 1 {
		t.Fatalf("%d signatures for 50 anonymous requests granted nothing, want 1", n)
	}
	// Re-signed once half its lifetime has passed, so clients never get a
	// token about to expire.
	e.clock.Add(8 * time.Minute)
	rec, tok := e.anon("198.51.100.1:1")
	if rec.Code != http.StatusOK || tok == first || e.signer.n.Load() != 2 {
		t.Fatalf("after half the lifetime: %d, same token %v, %d signatures", rec.Code, tok == first, e.signer.n.Load())
	}
	var body struct {
		ExpiresIn int `json:"expires_in"`
	}
	e.clock.Add(time.Minute)
	rec, _ = e.anon("198.51.100.1:1")
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.ExpiresIn != 840 {
		t.Fatalf("expires_in %d (%v), want the shared token's remaining 840 s", body.ExpiresIn, err)
	}
	// A grant is signed for the caller.
	if rec, tok := e.anon("198.51.100.1:1", "repository:public/app:pull"); rec.Code != http.StatusOK || tok == "" || e.signer.n.Load() != 3 {
		t.Fatalf("public pull: %d, %d signatures", rec.Code, e.signer.n.Load())
	}
}

// TestTokenRateLimits: what must be signed is limited per source IP and
// per instance, with 429 TOOMANYREQUESTS and Retry-After (issue 11,
// point 7).
func TestTokenRateLimits(t *testing.T) {
	e := newLimitsEnv(t, auth.Limits{PerIP: auth.RateLimit{Rate: 1, Burst: 3}, Global: auth.RateLimit{Rate: 2, Burst: 5}})
	pull := "repository:public/app:pull"
	for i := range 3 {
		if rec, _ := e.anon("203.0.113.1:5000", pull); rec.Code != http.StatusOK {
			t.Fatalf("request %d within the burst: %d %s", i, rec.Code, rec.Body)
		}
	}
	rec, _ := e.anon("203.0.113.1:5001", pull)
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("over the per-IP burst: %d %s", rec.Code, rec.Body)
	}
	var body errcode.Body
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body.Errors) != 1 || body.Errors[0].Code != errcode.TooManyRequests {
		t.Fatalf("429 body %s (%v)", rec.Body, err)
	}
	if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || ra < 1 || ra > 2 {
		t.Fatalf("Retry-After %q", rec.Header().Get("Retry-After"))
	}
	// Requests that need no signature are not limited.
	if rec, _ := e.anon("203.0.113.1:5001", "repository:private/app:pull"); rec.Code != http.StatusOK {
		t.Fatalf("nothing granted, over the limit: %d", rec.Code)
	}
	// Another address has its own bucket, until the global one is empty
	// (5 - 3 = 2 left).
	for i := range 2 {
		if rec, _ := e.anon("203.0.113.2", pull); rec.Code != http.StatusOK {
			t.Fatalf("second address, request %d: %d", i, rec.Code)
		}
	}
	if rec, _ := e.anon("203.0.113.3", pull); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("over the global burst: %d", rec.Code)
	}
	// Buckets refill with time.
	e.clock.Add(time.Second)
	if rec, _ := e.anon("203.0.113.1:5000", pull); rec.Code != http.StatusOK {
		t.Fatalf("after a second: %d %s", rec.Code, rec.Body)
	}
	// IPv6 addresses in one /64 share a bucket (a host has a whole /64).
	e.clock.Add(10 * time.Second)
	for i := range 3 {
		if rec, _ := e.anon("[2001:db8:1:2::"+strconv.Itoa(i+1)+"]:443", pull); rec.Code != http.StatusOK {
			t.Fatalf("ipv6 %d: %d", i, rec.Code)
		}
	}
	if rec, _ := e.anon("[2001:db8:1:2:ffff::9]:443", pull); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("same /64 over the burst: %d", rec.Code)
	}
}

// TestRetryableUpstreamErrors: STS throttling and an issuer that cannot be
// reached are 503 UNAVAILABLE with Retry-After, not a failed login (issue
// 11, point 9).
func TestRetryableUpstreamErrors(t *testing.T) {
	e := newEnv(t)
	e.sts.Fail(http.StatusBadRequest, "Throttling")
	r, tok := e.fetch(e.proof(ciKey, service), "repository:team/app:pull")
	if r.status != http.StatusServiceUnavailable || r.code != errcode.Unavailable || tok != "" {
		t.Fatalf("STS throttling: %d %s %s", r.status, r.code, r.body)
	}
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("STS throttling: Retry-After %q", r.header.Get("Retry-After"))
	}
	e.oidc.SetFailure(http.StatusBadGateway)
	r, _ = e.fetch(e.oidc.Sign(e.oidc.GitHubClaims(service, "org/team-svc", "refs/heads/main"), false), "repository:team/svc:pull")
	if r.status != http.StatusServiceUnavailable || r.code != errcode.Unavailable {
		t.Fatalf("issuer failing: %d %s %s", r.status, r.code, r.body)
	}
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("issuer failing: Retry-After %q", r.header.Get("Retry-After"))
	}
}

func TestParseRateLimit(t *testing.T) {
	for in, want := range map[string]auth.RateLimit{
		"":        {},
		"off":     auth.Off,
		"5":       {Rate: 5, Burst: 5},
		"5/s:20":  {Rate: 5, Burst: 20},
		"120/m":   {Rate: 2, Burst: 2},
		"30/m:1":  {Rate: 0.5, Burst: 1},
		"0.5/s":   {Rate: 0.5, Burst: 1},
		" 10:10 ": {Rate: 10, Burst: 10},
	} {
		got, err := auth.ParseRateLimit(in)
		if err != nil || got != want {
			t.Errorf("ParseRateLimit(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"fast", "0", "-1/s", "5/h", "5/s:0", "5/s:x", "NaN", "Inf"} {
		if _, err := auth.ParseRateLimit(bad); err == nil {
			t.Errorf("ParseRateLimit(%q) accepted", bad)
		}
	}
}

// TestRateLimitOff: "off" never refuses.
func TestRateLimitOff(t *testing.T) {
	e := newLimitsEnv(t, auth.Limits{PerIP: auth.Off, Global: auth.Off})
	for i := range 100 {
		if rec, _ := e.anon("203.0.113.9", "repository:public/app:pull"); rec.Code != http.StatusOK {
			t.Fatalf("request %d: %d", i, rec.Code)
		}
	}
}
