package auth_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/golang-jwt/jwt/v5"

	"github.com/berth-registry/berth/pkg/access"
	"github.com/berth-registry/berth/pkg/auth"
	"github.com/berth-registry/berth/pkg/auth/oidc"
	"github.com/berth-registry/berth/pkg/auth/oidc/oidctest"
	"github.com/berth-registry/berth/pkg/auth/stsproof"
	"github.com/berth-registry/berth/pkg/auth/stsproof/ststest"
	"github.com/berth-registry/berth/pkg/auth/token"
	"github.com/berth-registry/berth/pkg/errcode"
)

const service = "registry.test"

var (
	ciKey = ststest.Key{AccessKeyID: "ASIACI", SecretAccessKey: "ci-secret", SessionToken: "ci-tok",
		ARN: "arn:aws:sts::111122223333:assumed-role/ci-push/job-7", Account: "111122223333", UserID: "AROACI:job-7"}
	readerKey = ststest.Key{AccessKeyID: "AKIAREADER", SecretAccessKey: "reader-secret",
		ARN: "arn:aws:iam::111122223333:user/reader", Account: "111122223333", UserID: "AIDAREADER"}
	strangerKey = ststest.Key{AccessKeyID: "AKIASTRANGER", SecretAccessKey: "s-secret",
		ARN: "arn:aws:iam::999999999999:user/mallory", Account: "999999999999", UserID: "AIDAM"}
)

const policyYAML = `
version: "1"
rules:
  - repositories: ["public/**"]
    principals: [anonymous]
    actions: [pull]
  - repositories: ["team/**"]
    principals:
      - iam: "arn:aws:iam::111122223333:role/ci-*"
      - oidc:
          issuer: ISSUER
          claims: {repository: "org/team-*", ref: "refs/heads/main"}
    actions: [pull, push]
  - repositories: ["team/**", "shared/**"]
    principals: [{iam: "arn:aws:iam::111122223333:user/reader"}]
    actions: [pull]
  - repositories: ["team/scratch"]
    principals: [{iam: "arn:aws:iam::111122223333:role/ci-*"}]
    actions: [delete]
  - repositories: ["**"]
    principals: [{iam: "arn:aws:iam::111122223333:role/ci-*"}]
    actions: [catalog]
  - effect: deny
    repositories: ["team/frozen"]
    principals: [{iam: "arn:aws:iam::111122223333:role/*"}]
    actions: [push]
`

// env is a registry guarded by auth, an STS and an OIDC issuer, all in
// process.
type env struct {
	t        *testing.T
	sts      *ststest.Server
	oidc     *oidctest.Issuer
	setup    *auth.Setup
	signer   *token.LocalSigner // the same key the setup signs with
	registry *httptest.Server   // middleware → recording backend
	tokens   *httptest.Server   // token endpoint
	logs     *syncBuffer
	reached  []string // requests that got past the middleware
	mu       sync.Mutex
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newEnv(t *testing.T, stsOpts ...stsproof.Option) *env {
	t.Helper()
	e := &env{t: t, sts: ststest.New(ciKey, readerKey, strangerKey), oidc: oidctest.New(), logs: &syncBuffer{}}
	t.Cleanup(e.sts.Close)
	t.Cleanup(e.oidc.Close)
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(strings.ReplaceAll(policyYAML, "ISSUER", e.oidc.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "keys", "token.pem")
	var err error
	e.setup, err = auth.NewLocal(context.Background(), auth.LocalConfig{
		PolicyFile: policyFile, KeyFile: keyFile, Service: service, Realm: "https://auth.test/token",
		OIDCIssuers: []oidc.IssuerConfig{{Issuer: e.oidc.URL, Audience: service}},
		Logger:      slog.New(slog.NewJSONHandler(e.logs, nil)),
		STSOptions:  append([]stsproof.Option{stsproof.WithTestEndpoint(e.sts.Host(), e.sts.Roots())}, stsOpts...),
		OIDCOptions: []oidc.Option{oidc.WithHTTPClient(e.oidc.Client())},
	})
	if err != nil {
		t.Fatal(err)
	}
	if e.signer, err = token.LoadOrCreateKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.reached = append(e.reached, r.Method+" "+r.URL.Path)
		e.mu.Unlock()
		if r.Method == http.MethodPut {
			w.Header().Set("Docker-Content-Digest", "sha256:"+strings.Repeat("ab", 32))
			w.WriteHeader(http.StatusCreated)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	e.registry = httptest.NewServer(e.setup.Middleware(backend))
	e.tokens = httptest.NewServer(e.setup.TokenHandler)
	t.Cleanup(e.registry.Close)
	t.Cleanup(e.tokens.Close)
	return e
}

type result struct {
	status int
	code   errcode.Code
	header http.Header
	body   []byte
}

func decode(t *testing.T, resp *http.Response) result {
	t.Helper()
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := result{status: resp.StatusCode, header: resp.Header, body: b}
	var body errcode.Body
	if json.Unmarshal(b, &body) == nil && len(body.Errors) > 0 {
		r.code = body.Errors[0].Code
	}
	return r
}

// fetch asks the token endpoint for scopes with password as the Basic
// password ("" sends no credentials).
func (e *env) fetch(password string, scopes ...string) (result, string) {
	e.t.Helper()
	q := url.Values{"service": {service}, "scope": scopes}
	req, _ := http.NewRequest(http.MethodGet, e.tokens.URL+"/token?"+q.Encode(), nil)
	if password != "" {
		req.SetBasicAuth("berth", password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	r := decode(e.t, resp)
	var tr struct {
		Token string `json:"token"`
	}
	_ = json.Unmarshal(r.body, &tr)
	return r, tr.Token
}

func (e *env) do(method, path, bearer string) result {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.registry.URL+path, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return decode(e.t, resp)
}

func (e *env) proof(k ststest.Key, audience string) string {
	e.t.Helper()
	p, err := stsproof.Presign(context.Background(), e.sts.AWSConfig(k), audience)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// forge signs arbitrary claims with the registry's own key.
func (e *env) forge(issuer string, now time.Time, audience string, access []token.Access) string {
	e.t.Helper()
	raw, _, err := token.NewIssuer(e.signer, issuer, 5*time.Minute, func() time.Time { return now }).Issue(context.Background(), "forged", audience, access, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return raw
}

func repo(name string, actions ...string) []token.Access {
	return []token.Access{{Type: "repository", Name: name, Actions: actions}}
}

func rewriteProof(t *testing.T, proof string, fn func(u *url.URL, q url.Values)) string {
	raw, err := stsproof.Decode(proof)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(raw)
	q := u.Query()
	fn(u, q)
	if q != nil {
		u.RawQuery = q.Encode()
	}
	return stsproof.Encode(u.String())
}

// TestPositive is the control for the negative matrix: the same flows with
// the right credentials succeed.
func TestPositive(t *testing.T) {
	e := newEnv(t)
	r, tok := e.fetch(e.proof(ciKey, service), "repository:team/app:pull,push")
	if r.status != 200 || tok == "" {
		t.Fatalf("token: %d %s", r.status, r.body)
	}
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/v2/", 200},
		{"GET", "/v2/team/app/manifests/latest", 200},
		{"HEAD", "/v2/team/app/blobs/sha256:" + strings.Repeat("0", 64), 200},
		{"POST", "/v2/team/app/blobs/uploads/", 200},
		{"PATCH", "/v2/team/app/blobs/uploads/abc", 200},
		{"PUT", "/v2/team/app/manifests/v1", 201},
	} {
		if got := e.do(c.method, c.path, tok); got.status != c.status {
			t.Errorf("%s %s: %d %s", c.method, c.path, got.status, got.body)
		}
	}
	// OIDC (GitHub Actions shape), both algorithms.
	for _, ec := range []bool{false, true} {
		idt := e.oidc.Sign(e.oidc.GitHubClaims(service, "org/team-svc", "refs/heads/main"), ec)
		r, tok := e.fetch(idt, "repository:team/svc:push,pull")
		if r.status != 200 {
			t.Fatalf("oidc token: %d %s", r.status, r.body)
		}
		if got := e.do("PUT", "/v2/team/svc/manifests/v1", tok); got.status != 201 {
			t.Fatalf("oidc push: %d %s", got.status, got.body)
		}
	}
	// Anonymous pull of a public repository.
	_, anon := e.fetch("", "repository:public/base:pull")
	if got := e.do("GET", "/v2/public/base/manifests/latest", anon); got.status != 200 {
		t.Fatalf("anonymous pull: %d", got.status)
	}
	// Mount with pull on the source, delete where allowed, catalog.
	_, tok = e.fetch(e.proof(ciKey, service), "repository:team/app:pull,push", "repository:team/base:pull", "repository:team/scratch:delete", "registry:catalog:*")
	for _, c := range []struct{ method, path string }{
		{"POST", "/v2/team/app/blobs/uploads/?mount=sha256:" + strings.Repeat("1", 64) + "&from=team/base"},
		{"DELETE", "/v2/team/scratch/manifests/sha256:" + strings.Repeat("2", 64)},
		{"GET", "/v2/_catalog"},
	} {
		if got := e.do(c.method, c.path, tok); got.status != 200 {
			t.Errorf("%s %s: %d %s", c.method, c.path, got.status, got.body)
		}
	}
	// POST form (containerd's OAuth2 password grant).
	form := url.Values{"grant_type": {"password"}, "username": {"berth"}, "password": {e.proof(ciKey, service)},
		"service": {service}, "scope": {"repository:team/app:pull repository:team/base:pull"}, "client_id": {"containerd"}}
	resp, err := http.PostForm(e.tokens.URL+"/token", form)
	if err != nil {
		t.Fatal(err)
	}
	pr := decode(t, resp)
	var body struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
		IssuedAt    string `json:"issued_at"`
		Scope       string `json:"scope"`
	}
	if err := json.Unmarshal(pr.body, &body); err != nil || pr.status != 200 || body.AccessToken == "" || body.ExpiresIn != 900 || body.IssuedAt == "" {
		t.Fatalf("POST token: %d %s", pr.status, pr.body)
	}
	if body.Scope != "repository:team/app:pull repository:team/base:pull" {
		t.Fatalf("POST scope %q", body.Scope)
	}
}

// TestNegativeMatrix asserts the exact status and OCI error code of every
// refusal listed in issue 6, plus the neighbours they imply.
func TestNegativeMatrix(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	ciProof := e.proof(ciKey, service)
	_, pullOnly := e.fetch(e.proof(readerKey, service), "repository:team/app:pull,push,delete")
	_, pullPush := e.fetch(ciProof, "repository:team/app:pull,push")
	_, noFrom := e.fetch(ciProof, "repository:team/app:pull,push", "repository:shared/base:pull")
	_, anon := e.fetch("", "repository:public/base:pull,push")
	_, frozen := e.fetch(ciProof, "repository:team/frozen:pull,push")
	_, wrongClaims := e.fetch(e.oidc.Sign(e.oidc.GitHubClaims(service, "org/team-svc", "refs/heads/feature"), false), "repository:team/svc:pull,push")
	_, stranger := e.fetch(e.proof(strangerKey, service), "repository:team/app:pull")
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherSigner, _ := token.NewLocalSigner(other)
	otherKeyTok, _, _ := token.NewIssuer(otherSigner, "berth", time.Minute, nil).Issue(context.Background(), "x", service, repo("team/app", "pull"), nil)
	good := e.forge("berth", now, service, repo("team/app", "pull", "push"))
	parts := strings.Split(good, ".")
	noneTok := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"`+e.signer.KeyID()+`"}`)) + "." + parts[1] + "."
	pubDER, _ := x509.MarshalPKIXPublicKey(e.signer.PublicKey())
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "berth", "sub": "x", "aud": service, "exp": now.Add(time.Minute).Unix(), "nbf": now.Unix(), "iat": now.Unix(),
		"access": []any{map[string]any{"type": "repository", "name": "team/app", "actions": []string{"pull"}}}})
	hs.Header["kid"] = e.signer.KeyID()
	hsTok, _ := hs.SignedString(pubDER)
	manifest := "/v2/team/app/manifests/latest"
	digest := "sha256:" + strings.Repeat("3", 64)

	registryCases := []struct {
		name, method, path, bearer string
		status                     int
		code                       errcode.Code
		scope, bearerErr           string // expected challenge parts
	}{
		{"no token", "GET", manifest, "", 401, errcode.Unauthorized, "repository:team/app:pull", ""},
		{"no token on /v2/", "GET", "/v2/", "", 401, errcode.Unauthorized, "", ""},
		{"expired", "GET", manifest, e.forge("berth", now.Add(-time.Hour), service, repo("team/app", "pull")), 401, errcode.Unauthorized, "repository:team/app:pull", "invalid_token"},
		{"not yet valid", "GET", manifest, e.forge("berth", now.Add(5*time.Minute), service, repo("team/app", "pull")), 401, errcode.Unauthorized, "", "invalid_token"},
		{"wrong audience", "GET", manifest, e.forge("berth", now, "other.registry", repo("team/app", "pull")), 401, errcode.Unauthorized, "", "invalid_token"},
		{"wrong issuer", "GET", manifest, e.forge("evil", now, service, repo("team/app", "pull")), 401, errcode.Unauthorized, "", "invalid_token"},
		{"bad signature", "GET", manifest, parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 64)), 401, errcode.Unauthorized, "", "invalid_token"},
		{"unknown signing key", "GET", manifest, otherKeyTok, 401, errcode.Unauthorized, "", "invalid_token"},
		{"alg none", "GET", manifest, noneTok, 401, errcode.Unauthorized, "", "invalid_token"},
		{"key confusion HS256", "GET", manifest, hsTok, 401, errcode.Unauthorized, "", "invalid_token"},
		{"basic instead of bearer", "GET", manifest, "", 401, errcode.Unauthorized, "", ""},
		{"scope for another repository", "GET", "/v2/team/other/manifests/latest", pullPush, 401, errcode.Unauthorized, "repository:team/other:pull", "insufficient_scope"},
		{"repository prefix is not a scope", "GET", "/v2/team/app/sub/manifests/latest", pullPush, 401, errcode.Unauthorized, "repository:team/app/sub:pull", "insufficient_scope"},
		{"push manifest with pull-only scope", "PUT", manifest, pullOnly, 401, errcode.Unauthorized, "repository:team/app:pull,push", "insufficient_scope"},
		{"start upload with pull-only scope", "POST", "/v2/team/app/blobs/uploads/", pullOnly, 401, errcode.Unauthorized, "repository:team/app:pull,push", "insufficient_scope"},
		{"patch upload with pull-only scope", "PATCH", "/v2/team/app/blobs/uploads/u1", pullOnly, 401, errcode.Unauthorized, "", "insufficient_scope"},
		{"cancel upload with pull-only scope", "DELETE", "/v2/team/app/blobs/uploads/u1", pullOnly, 401, errcode.Unauthorized, "repository:team/app:push", "insufficient_scope"},
		{"delete manifest without delete", "DELETE", "/v2/team/app/manifests/" + digest, pullPush, 401, errcode.Unauthorized, "repository:team/app:delete", "insufficient_scope"},
		{"delete blob without delete", "DELETE", "/v2/team/app/blobs/" + digest, pullPush, 401, errcode.Unauthorized, "repository:team/app:delete", "insufficient_scope"},
		{"cross-repo mount without pull on source", "POST", "/v2/team/app/blobs/uploads/?mount=" + digest + "&from=shared/base", pullPush, 401, errcode.Unauthorized, "repository:team/app:pull,push repository:shared/base:pull", "insufficient_scope"},
		{"cross-repo mount source not granted by policy", "POST", "/v2/team/app/blobs/uploads/?mount=" + digest + "&from=shared/base", noFrom, 401, errcode.Unauthorized, "repository:team/app:pull,push repository:shared/base:pull", "insufficient_scope"},
		{"catalog without registry scope", "GET", "/v2/_catalog", pullPush, 401, errcode.Unauthorized, "registry:catalog:*", "insufficient_scope"},
		{"anonymous push to public repository", "PUT", "/v2/public/base/manifests/v1", anon, 401, errcode.Unauthorized, "repository:public/base:pull,push", "insufficient_scope"},
		{"anonymous pull of private repository", "GET", manifest, anon, 401, errcode.Unauthorized, "", "insufficient_scope"},
		{"explicit deny wins", "PUT", "/v2/team/frozen/manifests/v1", frozen, 401, errcode.Unauthorized, "", "insufficient_scope"},
		{"OIDC token with wrong claims", "PUT", "/v2/team/svc/manifests/v1", wrongClaims, 401, errcode.Unauthorized, "", "insufficient_scope"},
		{"IAM identity outside the policy", "GET", manifest, stranger, 401, errcode.Unauthorized, "", "insufficient_scope"},
	}
	for _, c := range registryCases {
		t.Run("registry/"+c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, e.registry.URL+c.path, nil)
			if c.bearer != "" {
				req.Header.Set("Authorization", "Bearer "+c.bearer)
			} else if strings.HasPrefix(c.name, "basic") {
				req.SetBasicAuth("berth", ciProof)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got := decode(t, resp)
			if got.status != c.status || (c.method != "HEAD" && got.code != c.code) {
				t.Fatalf("got %d %s, want %d %s (%s)", got.status, got.code, c.status, c.code, got.body)
			}
			ch := got.header.Get("WWW-Authenticate")
			if !strings.HasPrefix(ch, `Bearer realm="https://auth.test/token",service="registry.test"`) {
				t.Fatalf("challenge %q", ch)
			}
			if c.scope != "" && !strings.Contains(ch, `scope="`+c.scope+`"`) {
				t.Fatalf("challenge %q lacks scope %q", ch, c.scope)
			}
			if c.bearerErr != "" && !strings.Contains(ch, `error="`+c.bearerErr+`"`) {
				t.Fatalf("challenge %q lacks error %q", ch, c.bearerErr)
			}
		})
	}

	// Token endpoint refusals.
	unsigned := func() string {
		c := sts.NewPresignClient(sts.NewFromConfig(e.sts.AWSConfig(ciKey)))
		r, err := c.PresignGetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
		if err != nil {
			t.Fatal(err)
		}
		return stsproof.Encode(r.URL + "&X-Amz-Expires=900")
	}()
	oidcClaims := func(mod func(jwt.MapClaims)) string {
		c := e.oidc.GitHubClaims(service, "org/team-svc", "refs/heads/main")
		mod(c)
		return e.oidc.Sign(c, false)
	}
	stranger2 := oidctest.New()
	defer stranger2.Close()
	late := newEnv(t, stsproof.WithClock(func() time.Time { return time.Now().Add(16 * time.Minute) }))
	deadSTS := newEnv(t)
	deadProof := deadSTS.proof(ciKey, service)
	deadSTS.sts.Close()
	tokenCases := []struct {
		name     string
		env      *env
		password string
		status   int
		code     errcode.Code
	}{
		{"STS proof with a non-allow-listed host", e, rewriteProof(t, ciProof, func(u *url.URL, _ url.Values) { u.Host = "sts.evil.example" }), 401, errcode.Unauthorized},
		{"STS proof over http", e, rewriteProof(t, ciProof, func(u *url.URL, _ url.Values) { u.Scheme = "http" }), 401, errcode.Unauthorized},
		{"STS proof with a duplicated parameter", e, rewriteProof(t, ciProof, func(_ *url.URL, q url.Values) { q.Add("Action", "GetCallerIdentity") }), 401, errcode.Unauthorized},
		{"STS proof with a different action", e, rewriteProof(t, ciProof, func(_ *url.URL, q url.Values) { q.Set("Action", "GetSessionToken") }), 401, errcode.Unauthorized},
		{"STS proof with an extra parameter", e, rewriteProof(t, ciProof, func(_ *url.URL, q url.Values) { q.Set("RoleArn", "arn:aws:iam::1:role/x") }), 401, errcode.Unauthorized},
		{"STS proof with a missing audience header", e, unsigned, 401, errcode.Unauthorized},
		{"STS proof with a wrong audience header", e, e.proof(ciKey, "other.registry"), 401, errcode.Unauthorized},
		{"STS proof with an unsigned audience (query parameter)", e, rewriteProof(t, unsigned, func(_ *url.URL, q url.Values) { q.Set("x-berth-audience", service) }), 401, errcode.Unauthorized},
		{"STS proof claiming a signed audience it was not signed with", e, rewriteProof(t, unsigned, func(_ *url.URL, q url.Values) { q.Set("X-Amz-SignedHeaders", "host;x-berth-audience") }), 401, errcode.Unauthorized},
		{"STS proof too old", late, late.proof(ciKey, service), 401, errcode.Unauthorized},
		{"STS proof with a forged signature", e, rewriteProof(t, ciProof, func(_ *url.URL, q url.Values) { q.Set("X-Amz-Signature", strings.Repeat("f", 64)) }), 401, errcode.Unauthorized},
		{"STS unreachable", deadSTS, deadProof, 503, errcode.Unavailable},
		{"OIDC token from an unknown issuer", e, stranger2.Sign(stranger2.GitHubClaims(service, "org/team-svc", "refs/heads/main"), false), 401, errcode.Unauthorized},
		{"OIDC token with a wrong audience", e, oidcClaims(func(c jwt.MapClaims) { c["aud"] = "sts.amazonaws.com" }), 401, errcode.Unauthorized},
		{"OIDC token expired", e, oidcClaims(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-2 * time.Minute).Unix() }), 401, errcode.Unauthorized},
		{"OIDC token not yet valid", e, oidcClaims(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(2 * time.Minute).Unix() }), 401, errcode.Unauthorized},
		{"static password", e, "hunter2", 401, errcode.Unauthorized},
		{"registry token as password", e, pullPush, 401, errcode.Unauthorized},
	}
	for _, c := range tokenCases {
		t.Run("token/"+c.name, func(t *testing.T) {
			got, tok := c.env.fetch(c.password, "repository:team/app:pull,push")
			if got.status != c.status || got.code != c.code || tok != "" {
				t.Fatalf("got %d %s, want %d %s (%s)", got.status, got.code, c.status, c.code, got.body)
			}
			if c.status == 401 && got.header.Get("WWW-Authenticate") != `Basic realm="berth"` {
				t.Fatalf("WWW-Authenticate %q", got.header.Get("WWW-Authenticate"))
			}
		})
	}
	t.Run("token/unknown service", func(t *testing.T) {
		resp, err := http.Get(e.tokens.URL + "/token?service=other&scope=repository:team/app:pull")
		if err != nil {
			t.Fatal(err)
		}
		if got := decode(t, resp); got.status != 400 || got.code != errcode.Unsupported {
			t.Fatalf("got %d %s", got.status, got.code)
		}
	})
	t.Logf("negative matrix: %d registry cases + %d token cases + 1", len(registryCases), len(tokenCases))

	// No refused request reached the backend.
	for _, r := range e.reached {
		t.Errorf("refused request reached the registry: %s", r)
	}
	// Secrets never reach the logs.
	logs := e.logs.String()
	for _, secret := range []string{ciProof[len(stsproof.Prefix):][:40], pullPush, "ci-secret", "ci-tok"} {
		if strings.Contains(logs, secret) {
			t.Fatalf("logs contain a secret: %q", secret[:10])
		}
	}
	if !strings.Contains(logs, `"msg":"audit: token issued"`) || !strings.Contains(logs, `"principal":"arn:aws:sts::111122223333:assumed-role/ci-push/job-7"`) {
		t.Fatalf("no audit line for token issuance:\n%s", logs)
	}
	if !strings.Contains(logs, `"msg":"audit: push","principal":"arn:aws:iam::111122223333:user/reader"`) || !strings.Contains(logs, `"outcome":"denied"`) {
		t.Fatalf("no audit line for the denied push:\n%s", logs)
	}
}

func TestAuditPush(t *testing.T) {
	e := newEnv(t)
	_, tok := e.fetch(e.proof(ciKey, service), "repository:team/app:pull,push", "repository:team/scratch:delete")
	if got := e.do("PUT", "/v2/team/app/manifests/v1", tok); got.status != 201 {
		t.Fatal(got.status)
	}
	if got := e.do("DELETE", "/v2/team/scratch/manifests/sha256:"+strings.Repeat("4", 64), tok); got.status != 200 {
		t.Fatal(got.status)
	}
	var lines []map[string]any
	for l := range strings.SplitSeq(strings.TrimSpace(e.logs.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && (m["msg"] == "audit: push" || m["msg"] == "audit: delete") {
			lines = append(lines, m)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("audit lines: %v", lines)
	}
	push, del := lines[0], lines[1]
	if push["principal"] != ciKey.ARN || push["repository"] != "team/app" || push["digest"] != "sha256:"+strings.Repeat("ab", 32) || push["outcome"] != "ok" || push["status"] != float64(201) {
		t.Fatalf("push audit %v", push)
	}
	if del["action"] != "delete" || del["digest"] != "sha256:"+strings.Repeat("4", 64) || del["repository"] != "team/scratch" {
		t.Fatalf("delete audit %v", del)
	}
}

func TestParseScope(t *testing.T) {
	for in, want := range map[string]string{
		"repository:a/b:pull,push":     "repository:a/b:pull,push",
		"repository(plugin):a:pull":    "repository:a:pull",
		"registry:catalog:*":           "registry:catalog:*",
		"repository:host:5000/a:pull":  "repository:host:5000/a:pull",
		"repository:a:pull,pull,,push": "repository:a:pull,push",
		"repository:a:":                "",
		"nonsense":                     "",
		"repository::pull":             "",
	} {
		s, ok := auth.ParseScope(in)
		if got := s.String(); (want == "" && ok) || (want != "" && got != want) {
			t.Errorf("%q: got %q %v, want %q", in, got, ok, want)
		}
	}
}

func BenchmarkAuthOverhead(b *testing.B) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, _ := token.NewLocalSigner(k)
	v, err := token.NewVerifier(token.VerifierConfig{Issuer: "berth", Audience: service, Keys: []*ecdsa.PublicKey{&k.PublicKey}})
	if err != nil {
		b.Fatal(err)
	}
	tok, _, _ := token.NewIssuer(signer, "berth", time.Hour, nil).Issue(context.Background(), "arn:aws:iam::1:role/ci", service,
		[]token.Access{{Type: "repository", Name: "team/app", Actions: []string{"pull", "push"}}}, nil)
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	run := func(b *testing.B, h http.Handler, method string) {
		req := httptest.NewRequest(method, "/v2/team/app/manifests/latest", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		b.ReportAllocs()
		for b.Loop() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code >= 300 {
				b.Fatal(w.Code)
			}
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, bare, "GET") })
	b.Run("auth-pull", func(b *testing.B) { run(b, auth.Middleware(bare, v, "https://r/token", service), "GET") })
	b.Run("auth-push-audited", func(b *testing.B) {
		run(b, auth.Middleware(bare, v, "https://r/token", service, auth.WithLogger(slog.New(slog.NewJSONHandler(io.Discard, nil)))), "PUT")
	})
}

func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"repository:a/b:pull,push", "registry:catalog:*", "repository(plugin):x:pull", "a:b", ":::", "repository:host:5000/a:pull"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, ok := auth.ParseScope(in)
		if !ok {
			return
		}
		if s.Type == "" || s.Name == "" || len(s.Actions) == 0 {
			t.Fatalf("accepted %q as %+v", in, s)
		}
		// Formatting and parsing again is stable.
		again, ok := auth.ParseScope(s.String())
		if !ok || again.String() != s.String() {
			t.Fatalf("%q → %q → %q", in, s.String(), again.String())
		}
	})
}

// TestMountAccess: a token that grants push carries where its holder may
// pull (the policy's patterns, deny rules included), and the middleware
// hands the registry a checker that answers from it; a pull-only token
// carries nothing beyond its scopes.
func TestMountAccess(t *testing.T) {
	e := newEnv(t)
	var (
		got     access.Checker
		subject string
	)
	guarded := httptest.NewServer(e.setup.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = access.FromContext(r.Context())
		subject = access.SubjectOf(r.Context())
		w.WriteHeader(http.StatusOK)
	})))
	t.Cleanup(guarded.Close)
	head := func(tok string) {
		t.Helper()
		got = nil
		req, _ := http.NewRequest(http.MethodHead, guarded.URL+"/v2/team/app/blobs/sha256:"+strings.Repeat("0", 64), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || got == nil {
			t.Fatalf("HEAD: %d, checker %v", resp.StatusCode, got)
		}
	}
	_, pusher := e.fetch(e.proof(ciKey, service), "repository:team/app:pull,push")
	head(pusher)
	// The principal, for the actor of registry events; never the token.
	if !strings.Contains(subject, "ci-push") || strings.Contains(subject, pusher) {
		t.Errorf("subject %q: want the pusher's principal", subject)
	}
	for repo, want := range map[string]bool{"team/app": true, "team/other/lib": true, "public/base": true, "shared/x": false, "elsewhere": false} {
		if got.MayPull(repo) != want {
			t.Errorf("pusher MayPull(%s) = %v, want %v", repo, !want, want)
		}
	}
	if !got.MayPush("team/app") || got.MayPush("team/other") {
		t.Error("MayPush must follow the token's scopes only")
	}
	_, reader := e.fetch(e.proof(readerKey, service), "repository:team/app:pull")
	head(reader)
	if got.MayPush("team/app") || got.MayPull("shared/x") || !got.MayPull("team/app") {
		t.Error("a pull-only token must carry nothing beyond its scopes")
	}
}
