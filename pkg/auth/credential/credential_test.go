package credential_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/pkg/auth"
	"github.com/berth-registry/berth/pkg/auth/credential"
	"github.com/berth-registry/berth/pkg/auth/stsproof"
	"github.com/berth-registry/berth/pkg/auth/stsproof/ststest"
)

var ci = ststest.Key{AccessKeyID: "AKIACI", SecretAccessKey: "s", ARN: "arn:aws:sts::1:assumed-role/ci/run", Account: "1", UserID: "AROA:run"}

// registry starts a Berth auth front (token endpoint + middleware) whose
// service is the test server's own host, like a default deployment.
func registry(t *testing.T, sts *ststest.Server) *httptest.Server {
	t.Helper()
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(`rules: [{repositories: ["**"], principals: [{iam: "arn:aws:iam::1:role/ci"}], actions: [pull, push]}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	setup, err := auth.NewLocal(context.Background(), auth.LocalConfig{
		PolicyFile: pol, KeyFile: filepath.Join(dir, "key.pem"), Service: strings.TrimPrefix(srv.URL, "http://"),
		STSOptions: []stsproof.Option{stsproof.WithTestEndpoint(sts.Host(), sts.Roots())},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/token", setup.TokenHandler)
	mux.Handle("/v2/", setup.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) })))
	return srv
}

func TestGetAndCheck(t *testing.T) {
	sts := ststest.New(ci)
	defer sts.Close()
	reg := registry(t, sts)
	awsCfg := sts.AWSConfig(ci)
	now := time.Now()
	cache := t.TempDir()
	opts := credential.Options{AWSConfig: &awsCfg, CacheDir: cache, Now: func() time.Time { return now }}
	host := strings.TrimPrefix(reg.URL, "http://")
	c, err := credential.Get(context.Background(), host, opts)
	if err != nil {
		t.Fatal(err)
	}
	if c.Username != "berth" || !strings.HasPrefix(c.Secret, stsproof.Prefix) || c.ServerURL != host {
		t.Fatalf("credential %+v", c)
	}
	// The discovered audience is the registry's service: the login works.
	sub, err := credential.Check(context.Background(), nil, host, c)
	if err != nil || sub != ci.ARN {
		t.Fatalf("Check: %q, %v", sub, err)
	}
	// Cached: the same proof within its use window, a new one after.
	again, err := credential.Get(context.Background(), "http://"+host+"/", opts)
	if err != nil || again.Secret != c.Secret {
		t.Fatalf("cache miss: %v", err)
	}
	st, err := os.Stat(filepath.Join(cache, mustOne(t, cache)))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("cache file mode %v %v", st.Mode(), err)
	}
	if hosts, _ := credential.List(cache); len(hosts) != 1 || hosts[0] != host {
		t.Fatalf("List = %v", hosts)
	}
	now = now.Add(11 * time.Minute)
	fresh, err := credential.Get(context.Background(), host, opts)
	// (SigV4 is deterministic within a second, so compare the expiry.)
	if err != nil || !fresh.Expires.After(c.Expires) {
		t.Fatalf("stale cache entry reused: %v", err)
	}
	if err := credential.Erase(cache, host); err != nil {
		t.Fatal(err)
	}
	if hosts, _ := credential.List(cache); len(hosts) != 0 {
		t.Fatalf("after erase: %v", hosts)
	}
	// A proof for another audience is refused by the registry.
	wrong, err := credential.Get(context.Background(), host, credential.Options{AWSConfig: &awsCfg, Audience: "elsewhere"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := credential.Check(context.Background(), nil, host, wrong); !errors.Is(err, credential.ErrForeignService) {
		t.Fatalf("wrong audience sent to the registry: %v", err)
	}
	wrong.Audience = ""
	if _, err := credential.Check(context.Background(), nil, host, wrong); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Fatalf("wrong audience: %v", err)
	}
	// An open registry is reported as such.
	open := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer open.Close()
	if _, err := credential.Check(context.Background(), nil, open.URL, c); !errors.Is(err, credential.ErrNoAuth) {
		t.Fatalf("open registry: %v", err)
	}
}

func mustOne(t *testing.T, dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 1 {
		t.Fatalf("cache dir: %v %v", ents, err)
	}
	return ents[0].Name()
}

func TestHostAndChallenge(t *testing.T) {
	for in, want := range map[string]string{
		"registry.example.com":             "registry.example.com",
		"https://Registry.Example.com/v1/": "registry.example.com",
		"localhost:5000":                   "localhost:5000",
		"http://127.0.0.1:5000":            "127.0.0.1:5000",
		"reg.example/path":                 "reg.example",
	} {
		if got := credential.Host(in); got != want {
			t.Errorf("Host(%q) = %q", in, got)
		}
	}
	ch := `Bearer realm="https://r.example/token",service="r.example",scope="repository:a:pull,push repository:b:pull",error="insufficient_scope"`
	for k, want := range map[string]string{"realm": "https://r.example/token", "service": "r.example", "scope": "repository:a:pull,push repository:b:pull", "error": "insufficient_scope", "missing": ""} {
		if got := credential.ChallengeParam(ch, k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if credential.ChallengeParam(`Basic realm="x"`, "realm") != "" {
		t.Error("Basic challenge parsed as Bearer")
	}
}

func TestConfigFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "docker", "config.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	orig := `{"auths":{"reg.example":{"auth":"eDp5"},"other":{"auth":"b3RoZXI6eA=="}},"credsStore":"desktop","psFormat":"table"}`
	if err := os.WriteFile(path, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := credential.SetCredHelper(path, "reg.example"); err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	read := func() {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cfg = nil
		if err := json.Unmarshal(b, &cfg); err != nil {
			t.Fatal(err)
		}
	}
	read()
	if cfg["credsStore"] != "desktop" || cfg["psFormat"] != "table" {
		t.Fatalf("other settings lost: %v", cfg)
	}
	if cfg["credHelpers"].(map[string]any)["reg.example"] != "berth" {
		t.Fatalf("credHelpers: %v", cfg["credHelpers"])
	}
	auths := cfg["auths"].(map[string]any)
	if _, ok := auths["reg.example"]; ok || auths["other"] == nil {
		t.Fatalf("auths: %v", auths)
	}
	if err := credential.SetStaticAuth(path, "reg.example", "berth", "berth-sts-v1.abc"); err != nil {
		t.Fatal(err)
	}
	read()
	entry := cfg["auths"].(map[string]any)["reg.example"].(map[string]any)["auth"].(string)
	if b, _ := base64.StdEncoding.DecodeString(entry); string(b) != "berth:berth-sts-v1.abc" {
		t.Fatalf("static auth %q", b)
	}
	if _, ok := cfg["credHelpers"]; ok {
		t.Fatalf("credHelpers kept: %v", cfg["credHelpers"])
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	// A new file in a new directory.
	fresh := filepath.Join(t.TempDir(), "containers", "auth.json")
	if err := credential.SetCredHelper(fresh, "reg.example"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(fresh); !strings.Contains(string(b), `"reg.example": "berth"`) {
		t.Fatalf("new file: %s", b)
	}
	// A broken file is left alone.
	if err := os.WriteFile(path, []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := credential.SetCredHelper(path, "x"); err == nil {
		t.Fatal("broken config overwritten")
	}
}

func TestPaths(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", "/d")
	t.Setenv("REGISTRY_AUTH_FILE", "")
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/7")
	if p, _ := credential.DockerConfigPath(); p != "/d/config.json" {
		t.Errorf("docker: %s", p)
	}
	if p, _ := credential.PodmanAuthPath(); p != "/run/user/7/containers/auth.json" {
		t.Errorf("podman: %s", p)
	}
	t.Setenv("REGISTRY_AUTH_FILE", "/a.json")
	if p, _ := credential.PodmanAuthPath(); p != "/a.json" {
		t.Errorf("podman: %s", p)
	}
}

// TestAudienceBoundToHost: a registry the user logs into must not obtain a
// proof for another registry by naming that registry's service in its
// challenge (issue 11, point 5). The proof is signed for the host the
// helper was asked about, and a challenge naming another service is
// refused.
func TestAudienceBoundToHost(t *testing.T) {
	sts := ststest.New(ci)
	defer sts.Close()
	awsCfg := sts.AWSConfig(ci)
	ctx := context.Background()
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://victim.example/token",service="victim.example"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer evil.Close()
	evilHost := strings.TrimPrefix(evil.URL, "http://")
	c, err := credential.Get(ctx, evilHost, credential.Options{AWSConfig: &awsCfg})
	if err == nil {
		victim, verr := stsproof.NewVerifier("victim.example", stsproof.WithTestEndpoint(sts.Host(), sts.Roots()))
		if verr != nil {
			t.Fatal(verr)
		}
		if _, verr := victim.Verify(ctx, c.Secret); verr == nil {
			t.Fatal("a registry obtained a proof the victim registry accepts")
		}
		t.Fatalf("challenge naming another service accepted: %+v", c)
	}
	if !strings.Contains(err.Error(), "victim.example") {
		t.Fatalf("error does not name the foreign service: %v", err)
	}

	// A registry that names no service, or cannot be reached, still gets a
	// proof, and that proof is for its own host only.
	quiet := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer quiet.Close()
	quietHost := strings.TrimPrefix(quiet.URL, "http://")
	c, err = credential.Get(ctx, quietHost, credential.Options{AWSConfig: &awsCfg})
	if err != nil {
		t.Fatal(err)
	}
	if c.Audience != quietHost {
		t.Fatalf("audience %q, want %q", c.Audience, quietHost)
	}
	for aud, want := range map[string]bool{quietHost: true, "victim.example": false} {
		v, err := stsproof.NewVerifier(aud, stsproof.WithTestEndpoint(sts.Host(), sts.Roots()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(ctx, c.Secret); (err == nil) != want {
			t.Errorf("proof for %s verified for audience %s: %v", quietHost, aud, err)
		}
	}

	// A cached proof is reused only for the audience it was signed for.
	cache := t.TempDir()
	first, err := credential.Get(ctx, quietHost, credential.Options{AWSConfig: &awsCfg, CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	other, err := credential.Get(ctx, quietHost, credential.Options{AWSConfig: &awsCfg, CacheDir: cache, Audience: "other.example"})
	if err != nil {
		t.Fatal(err)
	}
	if other.Secret == first.Secret || other.Audience != "other.example" {
		t.Fatalf("cached proof for %s served for audience other.example", first.Audience)
	}

	// Check refuses to send a credential to a registry whose challenge
	// names another service than the credential's audience.
	if _, err := credential.Check(ctx, nil, evilHost, credential.Credential{Username: "berth", Secret: first.Secret, Audience: evilHost}); err == nil ||
		!strings.Contains(err.Error(), "victim.example") {
		t.Fatalf("Check with a foreign service: %v", err)
	}
}

func TestAudienceOverrides(t *testing.T) {
	for _, tc := range []struct{ env, host, want string }{
		{"", "reg.example", ""},
		{"aud.example", "reg.example", "aud.example"},
		{"reg.example=aud.example", "reg.example", "aud.example"},
		{"reg.example=aud.example, other.example=x", "REG.example", "aud.example"},
		{"other.example=x", "reg.example", ""},
	} {
		if got := credential.AudienceFor(tc.env, tc.host); got != tc.want {
			t.Errorf("AudienceFor(%q, %q) = %q, want %q", tc.env, tc.host, got, tc.want)
		}
	}
}
