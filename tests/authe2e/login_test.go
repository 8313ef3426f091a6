package authe2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-registry/berth/pkg/auth/credential"
	"github.com/berth-registry/berth/pkg/auth/stsproof"
	"github.com/berth-registry/berth/pkg/auth/stsproof/ststest"
	"github.com/berth-registry/berth/tests/harness"
)

// berthLogin runs the real `berth login` with env over this process's
// environment; it fails the test unless login succeeds, and checks what it
// reports.
func (w *world) berthLogin(t *testing.T, key ststest.Key, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command(harness.Binary(t), append(append([]string{"login"}, args...), w.addr)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("berth login %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	if strings.TrimSpace(stdout.String()) != "Login Succeeded" || !strings.Contains(stderr.String(), "authenticated as "+key.ARN+"\n") {
		t.Fatalf("berth login %s reported:\n%s%s", strings.Join(args, " "), stdout.String(), stderr.String())
	}
	if strings.Contains(stderr.String(), "warning: docker-credential-berth is not on PATH") {
		t.Fatalf("berth login did not find the helper:\n%s", stderr.String())
	}
}

// loginIsolation keeps `berth login` and the clients inside the test's
// temp dirs whatever this process's environment says; extra, appended
// after it, may set the podman paths.
func loginIsolation(home string) []string {
	return []string{"HOME=" + home, "DOCKER_CONFIG=", "REGISTRY_AUTH_FILE=", "XDG_RUNTIME_DIR=", "XDG_CONFIG_HOME="}
}

// login runs `berth login <registry>` with key's AWS credentials, docker's
// config in $DOCKER_CONFIG and podman's auth file at $REGISTRY_AUTH_FILE
// when extra sets it, checks that both point the registry at
// docker-credential-berth, and returns the client environment: the same
// AWS credentials (the helper signs a fresh proof with them) and config
// paths.
func (w *world) login(t *testing.T, key ststest.Key, extra ...string) []string {
	t.Helper()
	dockerDir := t.TempDir()
	env := append(w.awsEnv(t, key), loginIsolation(t.TempDir())...)
	env = append(append(env, "DOCKER_CONFIG="+dockerDir), extra...)
	w.berthLogin(t, key, env)
	files := []string{filepath.Join(dockerDir, "config.json")}
	if p := authFile(env); p != "" {
		files = append(files, p)
	}
	for _, p := range files {
		cfg := readConfig(t, p)
		if cfg.CredHelpers[w.addr] != credential.HelperName {
			t.Fatalf("%s: credHelpers[%s] = %q, want %q", p, w.addr, cfg.CredHelpers[w.addr], credential.HelperName)
		}
		if _, ok := cfg.Auths[w.addr]; ok {
			t.Fatalf("%s: a stored credential next to the helper: %+v", p, cfg.Auths)
		}
	}
	return env
}

// loginStaticProof runs `berth login --static <registry>` with the CI
// role's credentials and docker's and podman's default paths under a fresh
// HOME (podman's under $XDG_RUNTIME_DIR when extra sets it), checks that
// both hold the same proof for the registry's audience, and returns a
// client environment with that HOME and nothing else to authenticate
// with: no AWS credentials, and no helper on PATH.
func (w *world) loginStaticProof(t *testing.T, extra ...string) []string {
	t.Helper()
	home := t.TempDir()
	var kept []string // extra without the auth file: login must pick podman's default
	for _, e := range extra {
		if !strings.HasPrefix(e, "REGISTRY_AUTH_FILE=") {
			kept = append(kept, e)
		}
	}
	env := append(append(w.awsEnv(t, ciKey), loginIsolation(home)...), kept...)
	w.berthLogin(t, ciKey, env, "--static")
	files := []string{filepath.Join(home, ".docker", "config.json"), filepath.Join(home, ".config", "containers", "auth.json")}
	for _, e := range kept {
		if d, ok := strings.CutPrefix(e, "XDG_RUNTIME_DIR="); ok && d != "" {
			files[1] = filepath.Join(d, "containers", "auth.json")
		}
	}
	var proof string
	for _, p := range files {
		cfg := readConfig(t, p)
		if _, ok := cfg.CredHelpers[w.addr]; ok {
			t.Fatalf("%s: credHelpers entry after --static: %+v", p, cfg.CredHelpers)
		}
		raw, err := base64.StdEncoding.DecodeString(cfg.Auths[w.addr].Auth)
		user, secret, _ := strings.Cut(string(raw), ":")
		if err != nil || user != credential.Username || (proof != "" && secret != proof) {
			t.Fatalf("%s: auths[%s] = %q (%v)", p, w.addr, raw, err)
		}
		proof = secret
	}
	u, err := stsproof.Decode(proof)
	if err != nil || !strings.HasPrefix(u, w.sts.URL+"/?") || !strings.Contains(u, "Action=GetCallerIdentity") {
		t.Fatalf("stored proof is not a GetCallerIdentity request to the STS in use: %q %v", u, err)
	}
	none := filepath.Join(t.TempDir(), "none")
	client := append(loginIsolation(home),
		"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=", "AWS_PROFILE=",
		"AWS_CONFIG_FILE="+none, "AWS_SHARED_CREDENTIALS_FILE="+none, "AWS_EC2_METADATA_DISABLED=true",
		"AWS_ENDPOINT_URL_STS=", "PATH="+os.Getenv("PATH"))
	return append(client, kept...)
}

// dockerConfig is the part of docker's config.json and podman's auth.json
// that login writes.
type dockerConfig struct {
	Auths       map[string]struct{ Auth string } `json:"auths"`
	CredHelpers map[string]string                `json:"credHelpers"`
}

func readConfig(t *testing.T, path string) dockerConfig {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("berth login did not write %s: %v", path, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: mode %v, want 0600 (%v)", path, fi.Mode(), err)
	}
	var cfg dockerConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
	return cfg
}
