package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-registry/berth/pkg/auth"
	"github.com/berth-registry/berth/pkg/auth/credential"
	"github.com/berth-registry/berth/pkg/auth/stsproof"
	"github.com/berth-registry/berth/pkg/auth/stsproof/ststest"
)

var loginKey = ststest.Key{AccessKeyID: "ASIALOGINTEST", SecretAccessKey: "login-secret", SessionToken: "login-session",
	ARN: "arn:aws:sts::111122223333:assumed-role/dev/alice", Account: "111122223333", UserID: "AROALOGIN:alice"}

// loginEnv isolates runLogin: docker's config and podman's auth file in a
// temp dir, AWS credentials key (none when key is zero) from the
// environment only, STS at sts. It returns the two config paths.
func loginEnv(t *testing.T, sts *ststest.Server, key ststest.Key) (docker, podman string) {
	t.Helper()
	dir := t.TempDir()
	none := filepath.Join(dir, "none")
	for k, v := range map[string]string{
		"HOME": dir, "XDG_CACHE_HOME": filepath.Join(dir, "cache"), "XDG_RUNTIME_DIR": "", "XDG_CONFIG_HOME": "",
		"DOCKER_CONFIG": filepath.Join(dir, "docker"), "REGISTRY_AUTH_FILE": filepath.Join(dir, "containers", "auth.json"),
		"AWS_ACCESS_KEY_ID": key.AccessKeyID, "AWS_SECRET_ACCESS_KEY": key.SecretAccessKey, "AWS_SESSION_TOKEN": key.SessionToken,
		"AWS_REGION": "us-east-1", "AWS_PROFILE": "", "AWS_CONFIG_FILE": none, "AWS_SHARED_CREDENTIALS_FILE": none,
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
		"AWS_WEB_IDENTITY_TOKEN_FILE": "", "AWS_ENDPOINT_URL_STS": sts.URL,
		// A directory holding docker-credential-berth, so login does not warn.
		"PATH": helperDir(t),
	} {
		t.Setenv(k, v)
	}
	return filepath.Join(dir, "docker", "config.json"), filepath.Join(dir, "containers", "auth.json")
}

func helperDir(t *testing.T) string {
	d := t.TempDir()
	if err := os.WriteFile(filepath.Join(d, "docker-credential-"+credential.HelperName), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// authRegistry serves the token flow of a registry whose STS audience is
// its address and whose IAM proofs are checked by sts. /v2/ answers 200
// to any valid token.
func authRegistry(t *testing.T, sts *ststest.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	doc := "version: \"1\"\nrules:\n  - repositories: [\"**\"]\n    principals: [{iam: \"arn:aws:iam::111122223333:role/dev\"}]\n    actions: [pull]\n"
	if err := os.WriteFile(pol, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	setup, err := auth.NewLocal(context.Background(), auth.LocalConfig{
		PolicyFile: pol, KeyFile: filepath.Join(dir, "token.pem"), Service: addr,
		STSOptions: []stsproof.Option{stsproof.WithTestEndpoint(sts.Host(), sts.Roots())},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v2/", setup.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })))
	mux.Handle("/token", setup.TokenHandler)
	serve(t, ln, mux)
	return addr
}

func serve(t *testing.T, ln net.Listener, h http.Handler) {
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
}

func newSTS(t *testing.T) *ststest.Server {
	sts := ststest.New(loginKey)
	t.Cleanup(sts.Close)
	return sts
}

func login(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	err = runLogin(context.Background(), args, &o, &e)
	return o.String(), e.String(), err
}

type dockerConfig struct {
	Auths       map[string]map[string]string `json:"auths"`
	CredHelpers map[string]string            `json:"credHelpers"`
	CredsStore  string                       `json:"credsStore"`
}

func readConfig(t *testing.T, path string) dockerConfig {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c dockerConfig
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
	return c
}

func notWritten(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s written (%v)", p, err)
		}
	}
}

func TestLoginUsage(t *testing.T) {
	docker, podman := loginEnv(t, newSTS(t), loginKey)
	for _, tc := range []struct {
		name string
		args []string
		err  error
		code int
	}{
		{"no registry", nil, errUsage, 2},
		{"two registries", []string{"a.example.com", "b.example.com"}, errUsage, 2},
		{"unknown flag", []string{"--password", "x", "a.example.com"}, errUsage, 2},
		{"flag after registry", []string{"a.example.com", "--static"}, errUsage, 2},
		{"help", []string{"-h"}, flag.ErrHelp, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := login(tc.args...)
			if !errors.Is(err, tc.err) || stdout != "" || !strings.Contains(stderr, "usage: berth login") {
				t.Fatalf("runLogin(%q) = %v\nstdout %q\nstderr %q", tc.args, err, stdout, stderr)
			}
			var o, e bytes.Buffer
			if code := run(context.Background(), append([]string{"login"}, tc.args...), &o, &e); code != tc.code {
				t.Fatalf("exit code %d, want %d", code, tc.code)
			}
		})
	}
	notWritten(t, docker, podman)
}

func TestLoginWritesHelperConfig(t *testing.T) {
	sts := newSTS(t)
	docker, podman := loginEnv(t, sts, loginKey)
	addr := authRegistry(t, sts)
	// Other registries' settings survive.
	if err := os.MkdirAll(filepath.Dir(docker), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(docker, []byte(`{"credsStore":"desktop","auths":{"other.example.com":{"auth":"eDp5"},"`+addr+`":{"auth":"b2xkOm9sZA=="}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := login(addr)
	if err != nil || stdout != "Login Succeeded\n" || !strings.Contains(stderr, "authenticated as "+loginKey.ARN+"\n") ||
		strings.Contains(stderr, "warning") {
		t.Fatalf("login: %v\nstdout %q\nstderr %q", err, stdout, stderr)
	}
	for _, p := range []string{docker, podman} {
		c := readConfig(t, p)
		if c.CredHelpers[addr] != credential.HelperName || c.Auths[addr] != nil {
			t.Errorf("%s: %+v", p, c)
		}
	}
	if c := readConfig(t, docker); c.CredsStore != "desktop" || c.Auths["other.example.com"]["auth"] != "eDp5" {
		t.Errorf("other settings lost: %+v", c)
	}
	// The proof login minted is cached for the helper's first `get`.
	if hosts, err := credential.List(filepath.Join(os.Getenv("XDG_CACHE_HOME"), "berth", "credentials")); err != nil || len(hosts) != 1 || hosts[0] != addr {
		t.Errorf("cache: %v %v", hosts, err)
	}
}

func TestLoginStatic(t *testing.T) {
	sts := newSTS(t)
	docker, podman := loginEnv(t, sts, loginKey)
	addr := authRegistry(t, sts)
	stdout, stderr, err := login("--static", "--no-podman", "http://"+addr+"/")
	if err != nil || stdout != "Login Succeeded\n" || !strings.Contains(stderr, "warning: the stored credential expires at") {
		t.Fatalf("login: %v\nstdout %q\nstderr %q", err, stdout, stderr)
	}
	notWritten(t, podman)
	c := readConfig(t, docker)
	raw, err := base64.StdEncoding.DecodeString(c.Auths[addr]["auth"])
	user, proof, _ := strings.Cut(string(raw), ":")
	if err != nil || user != credential.Username || c.CredHelpers[addr] != "" {
		t.Fatalf("config %+v (%v)", c, err)
	}
	// The stored proof is accepted by the registry as it stands.
	if sub, err := credential.Check(context.Background(), nil, addr, credential.Credential{Username: user, Secret: proof}); err != nil || sub != loginKey.ARN {
		t.Fatalf("stored proof: %q %v", sub, err)
	}
}

func TestLoginErrors(t *testing.T) {
	sts := newSTS(t)
	stranger := ststest.Key{AccessKeyID: "AKIAUNKNOWN", SecretAccessKey: "nope"}
	for _, tc := range []struct {
		name string
		key  ststest.Key
		// registry returns the registry argument.
		registry func(t *testing.T) string
		args     []string
		want     string
	}{
		{name: "no AWS credentials", registry: func(t *testing.T) string { return authRegistry(t, sts) },
			want: "are AWS credentials configured?"},
		{name: "credentials STS does not know", key: stranger, registry: func(t *testing.T) string { return authRegistry(t, sts) },
			want: "login refused: UNAUTHORIZED"},
		{name: "proof for another audience", key: loginKey, registry: func(t *testing.T) string { return authRegistry(t, sts) },
			args: []string{"--audience", "registry.example.com"}, want: "but proofs for it are signed for \"registry.example.com\""},
		{name: "unreachable", key: loginKey, registry: closedAddr, want: "unreachable"},
		{name: "no bearer challenge", key: loginKey, registry: func(t *testing.T) string {
			return listen(t, http.NotFoundHandler())
		}, want: "answered 404 without a Bearer challenge"},
		{name: "docker config not JSON", key: loginKey, registry: func(t *testing.T) string {
			docker, _ := credential.DockerConfigPath()
			if err := os.MkdirAll(filepath.Dir(docker), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(docker, []byte("not json"), 0o600); err != nil {
				t.Fatal(err)
			}
			return authRegistry(t, sts)
		}, want: "is not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docker, podman := loginEnv(t, sts, tc.key)
			registry := tc.registry(t)
			before, _ := os.ReadFile(docker)
			stdout, stderr, err := login(append(tc.args, registry)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) || stdout != "" {
				t.Fatalf("err %v, want %q\nstdout %q\nstderr %q", err, tc.want, stdout, stderr)
			}
			t.Log(err)
			after, _ := os.ReadFile(docker)
			if !bytes.Equal(before, after) {
				t.Errorf("docker config changed by a failed login: %q", after)
			}
			notWritten(t, podman)
		})
	}
}

// A registry without auth needs no configuration: login says so, exits 0
// and writes nothing, whether or not the helper is installed and whether
// or not AWS credentials are at hand.
func TestLoginOpenRegistry(t *testing.T) {
	sts := newSTS(t)
	for _, tc := range []struct {
		name string
		key  ststest.Key
		path bool // docker-credential-berth on PATH
		args []string
	}{
		{name: "helper installed", key: loginKey, path: true},
		{name: "helper missing", key: loginKey},
		{name: "no AWS credentials", path: true},
		{name: "static", key: loginKey, args: []string{"--static"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docker, podman := loginEnv(t, sts, tc.key)
			if !tc.path {
				t.Setenv("PATH", t.TempDir())
			}
			addr := listen(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
			stdout, stderr, err := login(append(tc.args, addr)...)
			if err != nil || stdout != addr+" does not require authentication: nothing to configure\n" || stderr != "" {
				t.Fatalf("login: %v\nstdout %q\nstderr %q", err, stdout, stderr)
			}
			notWritten(t, docker, podman, filepath.Join(os.Getenv("XDG_CACHE_HOME"), "berth"))
			var o, e bytes.Buffer
			if code := run(context.Background(), append([]string{"login"}, append(tc.args, addr)...), &o, &e); code != 0 {
				t.Fatalf("exit code %d\n%s", code, e.String())
			}
		})
	}
}

// A helper that is not installed is never configured: the entry would
// make every client fail with "executable file not found". --static does
// not need the helper.
func TestLoginHelperMissing(t *testing.T) {
	sts := newSTS(t)
	for _, tc := range []struct {
		name     string
		registry func(t *testing.T) string
		args     []string
	}{
		{name: "auth registry", registry: func(t *testing.T) string { return authRegistry(t, sts) }},
		{name: "no check", registry: closedAddr, args: []string{"--no-check", "--audience", "registry.example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docker, podman := loginEnv(t, sts, loginKey)
			registry := tc.registry(t)
			t.Setenv("PATH", t.TempDir())
			var o, e bytes.Buffer
			code := run(context.Background(), append([]string{"login"}, append(tc.args, registry)...), &o, &e)
			if code != 1 || o.String() != "" || !strings.Contains(e.String(), "docker-credential-berth is not on PATH") ||
				!strings.Contains(e.String(), "nothing was written") {
				t.Fatalf("exit code %d\nstdout %q\nstderr %q", code, o.String(), e.String())
			}
			notWritten(t, docker, podman, filepath.Join(os.Getenv("XDG_CACHE_HOME"), "berth"))
		})
	}
	t.Run("static", func(t *testing.T) {
		docker, podman := loginEnv(t, sts, loginKey)
		addr := authRegistry(t, sts)
		t.Setenv("PATH", t.TempDir())
		stdout, stderr, err := login("--static", addr)
		if err != nil || stdout != "Login Succeeded\n" {
			t.Fatalf("login: %v\nstdout %q\nstderr %q", err, stdout, stderr)
		}
		for _, p := range []string{docker, podman} {
			if c := readConfig(t, p); c.Auths[addr]["auth"] == "" || c.CredHelpers[addr] != "" {
				t.Errorf("%s: %+v", p, c)
			}
		}
	})
}

// --no-check writes the helper configuration without contacting the
// registry.
func TestLoginNoCheck(t *testing.T) {
	docker, podman := loginEnv(t, newSTS(t), loginKey)
	addr := closedAddr(t)
	stdout, stderr, err := login("--no-check", "--audience", "registry.example.com", addr)
	if err != nil || stdout != "Login Succeeded\n" || strings.Contains(stderr, "warning") {
		t.Fatalf("login: %v\nstdout %q\nstderr %q", err, stdout, stderr)
	}
	for _, p := range []string{docker, podman} {
		if c := readConfig(t, p); c.CredHelpers[addr] != credential.HelperName {
			t.Fatalf("%s: %+v", p, c)
		}
	}
}

func listen(t *testing.T, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, h)
	return ln.Addr().String()
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
