// Package authe2e drives real registry clients (crane, oras, regctl,
// skopeo, podman, cosign) through Berth's token flow: the /v2/ challenge,
// docker-credential-berth minting IAM proofs from the AWS default
// credential chain, the token endpoint, scoped tokens, and the policy.
//
// The registry runs in process (the handler `berth serve` and the api and
// token functions mount, on the embedded drivers and on the AWS drivers
// over DynamoDB Local and versitygw, each directly and behind the emulated
// API Gateway + Lambda) because its STS verifier must trust the in-process
// STS that checks the proofs' SigV4 signatures, which only a test-only
// option allows. The clients, the credential helper and `berth login` are
// the real binaries.
package authe2e

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/berth-registry/berth/internal/apigwemu"
	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/apigw"
	"github.com/berth-registry/berth/pkg/auth"
	"github.com/berth-registry/berth/pkg/auth/credential"
	"github.com/berth-registry/berth/pkg/auth/oidc"
	"github.com/berth-registry/berth/pkg/auth/oidc/oidctest"
	"github.com/berth-registry/berth/pkg/auth/stsproof"
	"github.com/berth-registry/berth/pkg/auth/stsproof/ststest"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/storage"
	"github.com/berth-registry/berth/tests/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

var (
	ciKey = ststest.Key{AccessKeyID: "ASIAE2ECI", SecretAccessKey: "e2e-ci-secret", SessionToken: "e2e-ci-session",
		ARN: "arn:aws:sts::111122223333:assumed-role/ci-push/e2e", Account: "111122223333", UserID: "AROAE2E:e2e"}
	strangerKey = ststest.Key{AccessKeyID: "AKIAE2ESTRANGER", SecretAccessKey: "e2e-stranger",
		ARN: "arn:aws:iam::999999999999:user/mallory", Account: "999999999999", UserID: "AIDAM"}
)

const policyYAML = `
version: "1"
rules:
  - repositories: ["public/**"]
    principals: [anonymous]
    actions: [pull]
  - repositories: ["team/**", "public/**"]
    principals:
      - iam: "arn:aws:iam::111122223333:role/ci-*"
      - oidc:
          issuer: ISSUER
          claims: {repository: "org/team-*", ref: "refs/heads/main"}
    actions: [pull, push, delete]
`

// world is one registry with auth, its STS and OIDC issuer, and the
// environment a client needs to log in through the credential helper.
type world struct {
	addr   string
	sts    *ststest.Server
	oidc   *oidctest.Issuer
	logs   *logBuffer
	binDir string // holds docker-credential-berth
}

// backend is where the registry stores and how clients reach it.
type backend struct {
	name string
	// aws selects the DynamoDB + S3 drivers (on the emulators, blob GETs
	// redirected to presigned S3 URLs) instead of bbolt + files.
	aws bool
	// lambda puts the registry and the token endpoint behind the emulated
	// API Gateway + Lambda, with the api function's request limits.
	lambda bool
}

// backends is the matrix every client runs on.
func backends() []backend {
	return []backend{
		{name: "embedded"},
		{name: "embedded-lambda", lambda: true},
		{name: "aws", aws: true},
		{name: "aws-lambda", aws: true, lambda: true},
	}
}

var embedded = backend{name: "embedded"}

// needsAWS returns the emulators when one of bs uses the AWS drivers.
func needsAWS(t *testing.T, bs []backend) emulators {
	t.Helper()
	for _, b := range bs {
		if b.aws {
			return startEmulators(t)
		}
	}
	return emulators{}
}

// start runs the registry on backend b (emu names the emulators for the
// AWS drivers).
func start(t *testing.T, b backend, emu emulators) *world {
	t.Helper()
	w := &world{sts: ststest.New(ciKey, strangerKey), oidc: oidctest.New(), logs: &logBuffer{}}
	t.Cleanup(w.sts.Close)
	t.Cleanup(w.oidc.Close)
	dir := t.TempDir()
	var (
		items storage.Items
		blobs storage.Blobs
	)
	if b.aws {
		items, blobs = awsStores(t, emu)
	} else {
		e := testenv.OpenEmbedded(t, dir)
		items, blobs = e.Items, e.Blobs
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.addr = ln.Addr().String()
	pol := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(strings.ReplaceAll(policyYAML, "ISSUER", w.oidc.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(w.logs, nil))
	setup, err := auth.NewLocal(context.Background(), auth.LocalConfig{
		PolicyFile: pol, KeyFile: filepath.Join(dir, "token.pem"), Service: w.addr, Realm: "http://" + w.addr + "/token",
		OIDCIssuers: []oidc.IssuerConfig{{Issuer: w.oidc.URL, Audience: w.addr}},
		Logger:      log,
		STSOptions:  []stsproof.Option{stsproof.WithTestEndpoint(w.sts.Host(), w.sts.Roots())},
		OIDCOptions: []oidc.Option{oidc.WithHTTPClient(w.oidc.Client())},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := registry.Config{Logger: log}
	if b.lambda {
		// functions/api's defaults: what fits one invocation.
		cfg.MaxBodyBytes, cfg.ChunkMinLength = apigw.MaxBodyBytes, 4<<20
	}
	var v2, tok http.Handler = setup.Middleware(registry.New(cfg, items, blobs)), setup.TokenHandler
	if b.lambda {
		v2, tok = apigwemu.Emulate(v2), apigwemu.Emulate(tok)
	}
	mux := http.NewServeMux()
	mux.Handle("/v2/", v2)
	mux.Handle("/token", tok)
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	w.binDir = buildHelper(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("registry log:\n%s", w.logs.String())
		}
	})
	return w
}

// redirects counts the blob GETs the registry answered with a redirect.
func redirects(logs string) int {
	n := 0
	for _, line := range strings.Split(logs, "\n") {
		var rec struct {
			Msg, Method, Route string
			Status             int
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "request" && rec.Method == http.MethodGet &&
			rec.Route == "blob" && rec.Status == http.StatusTemporaryRedirect {
			n++
		}
	}
	return n
}

// logBuffer collects the registry's log lines (written concurrently).
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// buildHelper builds docker-credential-berth into a temp dir (the Go build
// cache makes repeat builds a link step).
func buildHelper(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "docker-credential-berth"), "./cmd/docker-credential-berth")
	cmd.Dir = harness.Root(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build docker-credential-berth: %v\n%s", err, out)
	}
	return dir
}

// awsEnv is a shell whose default AWS credential chain yields key and
// whose STS endpoint is the in-process STS.
func (w *world) awsEnv(t *testing.T, key ststest.Key) []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + key.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + key.SecretAccessKey, "AWS_SESSION_TOKEN=" + key.SessionToken,
		"AWS_REGION=us-east-1", "AWS_CONFIG_FILE=" + filepath.Join(t.TempDir(), "none"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(t.TempDir(), "none"),
		"AWS_PROFILE=", "AWS_ENDPOINT_URL_STS=" + w.sts.URL,
		"XDG_CACHE_HOME=" + t.TempDir(),
		"PATH=" + w.binDir + string(os.PathListSeparator) + os.Getenv("PATH"),
	}
}

// loginStatic writes a static credential (what `berth login --static`
// writes for a proof, and what `docker login -p $ID_TOKEN` writes for an
// OIDC token).
func (w *world) loginStatic(t *testing.T, secret string, extra ...string) []string {
	t.Helper()
	dockerDir := t.TempDir()
	env := append([]string{"DOCKER_CONFIG=" + dockerDir}, extra...)
	for _, p := range []string{filepath.Join(dockerDir, "config.json"), authFile(env)} {
		if p == "" {
			continue
		}
		if err := credential.SetStaticAuth(p, w.addr, credential.Username, secret); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

func authFile(env []string) string {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "REGISTRY_AUTH_FILE="); ok {
			return v
		}
	}
	return ""
}

func (w *world) ref(repo, tag string) string {
	if strings.HasPrefix(tag, "sha256:") {
		return w.addr + "/" + repo + "@" + tag
	}
	return w.addr + "/" + repo + ":" + tag
}

// TestClients: every client pushes and pulls on every backend, logged in
// by the real `berth login`. "helper": login pointed the client's config at
// docker-credential-berth, and the client has nothing but AWS credentials
// in its environment. "static": `berth login --static` stored a proof, and
// the client has nothing but the files login wrote (no AWS credentials, no
// helper).
func TestClients(t *testing.T) {
	bs := backends()
	emu := needsAWS(t, bs)
	for _, b := range bs {
		t.Run(b.name, func(t *testing.T) {
			w := start(t, b, emu)
			t.Run("helper", func(t *testing.T) {
				w.clients(t, func(t *testing.T, extra ...string) []string { return w.login(t, ciKey, extra...) })
			})
			t.Run("static", func(t *testing.T) { w.clients(t, w.loginStaticProof) })
			logs := w.logs.String()
			// On S3 every blob GET is a redirect to a presigned URL, which
			// each client followed (their pulls checked the bytes).
			if n := redirects(logs); b.aws && n < 10 || !b.aws && n != 0 {
				t.Fatalf("%d blob GETs answered 307 on the %s backend", n, b.name)
			}
			if !strings.Contains(logs, `"msg":"audit: push","principal":"`+ciKey.ARN+`"`) {
				t.Fatal("no push audit line for the CI role")
			}
			// Every client went through the token endpoint with a proof.
			if n := strings.Count(logs, `"msg":"audit: token issued","principal":"`+ciKey.ARN+`"`); n < 12 {
				t.Fatalf("%d tokens issued to the CI role, want at least one per client and login", n)
			}
		})
	}
}

// clients runs the client matrix against w. creds logs a client in and
// returns the environment it runs with; extra is environment the client
// needs anyway (the containers tools' configuration), which creds may
// override.
func (w *world) clients(t *testing.T, creds func(t *testing.T, extra ...string) []string) {
	t.Run("crane", func(t *testing.T) {
		c := harness.Client(t, "crane").With(creds(t)...)
		l := harness.WriteImage(t, "v1", 1<<20, 128<<10)
		c.Run("push", "--insecure", l.Dir, w.ref("team/crane", "v1"))
		if got := strings.TrimSpace(c.Run("digest", "--insecure", w.ref("team/crane", "v1"))); got != l.Digest() {
			t.Fatalf("digest %s, want %s", got, l.Digest())
		}
		// Cross-repository mount: needs pull on the source in the token.
		c.Run("copy", "--insecure", w.ref("team/crane", "v1"), w.ref("team/crane-copy", "v1"))
		if got := strings.TrimSpace(c.Run("digest", "--insecure", w.ref("team/crane-copy", "v1"))); got != l.Digest() {
			t.Fatalf("copied digest %s", got)
		}
		c.Run("pull", "--insecure", "--format", "oci", w.ref("team/crane-copy", "v1"), filepath.Join(t.TempDir(), "out"))
		c.Run("delete", "--insecure", w.ref("team/crane-copy", l.Digest()))
	})
	t.Run("oras", func(t *testing.T) {
		c := harness.Client(t, "oras").With(creds(t)...)
		payload := harness.Random(200 << 10)
		if err := os.WriteFile(filepath.Join(c.Dir, "payload.bin"), payload, 0o644); err != nil {
			t.Fatal(err)
		}
		c.Run("push", "--plain-http", "--artifact-type", "application/vnd.berth.e2e", w.ref("team/oras", "v1"), "payload.bin:application/octet-stream")
		out := t.TempDir()
		c.Run("pull", "--plain-http", "-o", out, w.ref("team/oras", "v1"))
		if got, err := os.ReadFile(filepath.Join(out, "payload.bin")); err != nil || string(got) != string(payload) {
			t.Fatalf("oras pull: %v", err)
		}
	})
	t.Run("regctl", func(t *testing.T) {
		c := harness.Client(t, "regctl").With(creds(t)...)
		c.Run("registry", "set", w.addr, "--tls", "disabled")
		l := harness.WriteImage(t, "v1", 256<<10)
		c.Run("image", "copy", l.Regctl(), w.ref("team/regctl", "v1"))
		if got := strings.TrimSpace(c.Run("image", "digest", w.ref("team/regctl", "v1"))); got != l.Digest() {
			t.Fatalf("digest %s", got)
		}
		back := harness.WriteImage(t, "unused", 0)
		c.Run("image", "copy", w.ref("team/regctl", "v1"), "ocidir://"+back.Dir+":back")
	})
	t.Run("skopeo", func(t *testing.T) {
		cenv := harness.ContainersEnv(t, w.addr)
		c := harness.Client(t, "skopeo").With(creds(t, cenv...)...)
		policy := harness.Policy(cenv)
		l := harness.WriteImage(t, "v1", 512<<10)
		c.Run("copy", "--policy", policy, "--preserve-digests", "--dest-tls-verify=false", l.Skopeo(), "docker://"+w.ref("team/skopeo", "v1"))
		back := harness.WriteImage(t, "unused", 0)
		c.Run("copy", "--policy", policy, "--src-tls-verify=false", "docker://"+w.ref("team/skopeo", "v1"), "oci:"+back.Dir+":back")
	})
	t.Run("podman", func(t *testing.T) {
		cenv := harness.ContainersEnv(t, w.addr)
		c := harness.Client(t, "podman").With(creds(t, cenv...)...)
		l := harness.WriteImage(t, "v1", 256<<10)
		harness.Client(t, "crane").With(creds(t)...).Run("push", "--insecure", l.Dir, w.ref("team/podman", "v1"))
		c.Run("pull", "--tls-verify=false", w.ref("team/podman", "v1"))
		c.Run("tag", w.ref("team/podman", "v1"), w.ref("team/podman", "pushed"))
		c.Run("push", "--tls-verify=false", w.ref("team/podman", "pushed"))
	})
	t.Run("cosign", func(t *testing.T) {
		c := harness.Client(t, "cosign").With(append(creds(t), "COSIGN_PASSWORD=", "COSIGN_YES=true", "SIGSTORE_NO_CACHE=true")...)
		c.Run("generate-key-pair")
		l := harness.WriteImage(t, "v1", 128<<10)
		harness.Client(t, "crane").With(creds(t)...).Run("push", "--insecure", l.Dir, w.ref("team/cosign", "v1"))
		image := w.ref("team/cosign", l.Digest())
		insecure := []string{"--allow-insecure-registry", "--allow-http-registry"}
		c.Run(append(append([]string{"sign", "--key", "cosign.key", "--tlog-upload=false"}, insecure...), image)...)
		c.Run(append(append([]string{"verify", "--key", "cosign.pub", "--insecure-ignore-tlog"}, insecure...), image)...)
	})
}

// TestStaticAndOIDC: a static proof (berth login --static) and a GitHub
// Actions OIDC token as the password both work; a branch the policy does
// not name cannot push.
func TestStaticAndOIDC(t *testing.T) {
	w := start(t, embedded, emulators{})
	awsCfg := w.sts.AWSConfig(ciKey)
	cred, err := credential.Get(context.Background(), w.addr, credential.Options{AWSConfig: &awsCfg})
	if err != nil {
		t.Fatal(err)
	}
	if sub, err := credential.Check(context.Background(), nil, w.addr, cred); err != nil || sub != ciKey.ARN {
		t.Fatalf("login check: %q %v", sub, err)
	}
	l := harness.WriteImage(t, "v1", 128<<10)
	harness.Client(t, "crane").With(w.loginStatic(t, cred.Secret)...).Run("push", "--insecure", l.Dir, w.ref("team/static", "v1"))
	cenv := harness.ContainersEnv(t, w.addr)
	harness.Client(t, "skopeo").With(w.loginStatic(t, cred.Secret, cenv...)...).Run("inspect", "--tls-verify=false", "--raw", "docker://"+w.ref("team/static", "v1"))

	main := w.oidc.Sign(w.oidc.GitHubClaims(w.addr, "org/team-api", "refs/heads/main"), false)
	harness.Client(t, "crane").With(w.loginStatic(t, main)...).Run("push", "--insecure", l.Dir, w.ref("team/oidc", "v1"))
	feature := w.oidc.Sign(w.oidc.GitHubClaims(w.addr, "org/team-api", "refs/heads/feature"), true)
	res := harness.Client(t, "crane").With(w.loginStatic(t, feature)...).Exec("push", "--insecure", l.Dir, w.ref("team/oidc", "v2"))
	if res.Err == nil || !strings.Contains(strings.ToLower(res.Output()), "unauthorized") {
		t.Fatalf("push from an unlisted branch: %v\n%s", res.Err, res.Output())
	}
}

// TestRefusals: an identity outside the policy and an anonymous client
// cannot push; anonymous clients can pull what the policy makes public.
func TestRefusals(t *testing.T) {
	w := start(t, embedded, emulators{})
	l := harness.WriteImage(t, "v1", 64<<10)
	res := harness.Client(t, "crane").With(w.login(t, strangerKey)...).Exec("push", "--insecure", l.Dir, w.ref("team/denied", "v1"))
	if res.Err == nil || !strings.Contains(strings.ToLower(res.Output()), "unauthorized") {
		t.Fatalf("stranger push: %v\n%s", res.Err, res.Output())
	}
	anon := harness.Client(t, "crane").With("DOCKER_CONFIG=" + t.TempDir())
	if res := anon.Exec("push", "--insecure", l.Dir, w.ref("public/base", "v1")); res.Err == nil {
		t.Fatalf("anonymous push succeeded:\n%s", res.Output())
	}
	harness.Client(t, "crane").With(w.login(t, ciKey)...).Run("push", "--insecure", l.Dir, w.ref("public/base", "v1"))
	if got := strings.TrimSpace(anon.Run("digest", "--insecure", w.ref("public/base", "v1"))); got != l.Digest() {
		t.Fatalf("anonymous pull digest %s", got)
	}
	if res := anon.Exec("digest", "--insecure", w.ref("team/denied", "v1")); res.Err == nil {
		t.Fatal("anonymous pull of a private repository succeeded")
	}
	if !strings.Contains(w.logs.String(), `"outcome":"denied"`) {
		t.Fatal("no audit line for the refused push")
	}
}
