package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/apigw"
	"github.com/berth-registry/berth/pkg/registry/registrytest"
)

func TestParseServeFlags(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, c serveConfig)
		err   error
	}{
		{name: "defaults", check: func(t *testing.T, c serveConfig) {
			if c.Addr != "127.0.0.1:5000" || c.Data != "./.berth" || c.Backend != "embedded" || c.UploadTTL != time.Hour ||
				c.MaxBodyBytes != 0 || c.ChunkMinLength != 1<<20 || c.LogLevel != "info" {
				t.Fatalf("defaults: %+v", c)
			}
		}},
		{name: "via lambda caps bodies", args: []string{"--via-lambda"}, check: func(t *testing.T, c serveConfig) {
			if c.MaxBodyBytes != apigw.MaxBodyBytes || c.ChunkMinLength != 4<<20 || c.ChunkMinLength > c.MaxBodyBytes {
				t.Fatalf("via lambda: max body %d, chunk min %d", c.MaxBodyBytes, c.ChunkMinLength)
			}
		}},
		{name: "explicit cap wins", args: []string{"--via-lambda", "--max-body-bytes", "0", "--chunk-min-length", "0"}, check: func(t *testing.T, c serveConfig) {
			if c.MaxBodyBytes != 0 || c.ChunkMinLength != 0 {
				t.Fatalf("explicit zero overridden: %+v", c)
			}
		}},
		{name: "aws", args: []string{"--backend", "aws", "--bucket", "b", "--table", "t"}, check: func(t *testing.T, c serveConfig) {
			if c.AWS.Bucket != "b" || c.AWS.Table != "t" || c.AWS.PresignExpiry != 20*time.Minute || c.ChunkMinLength != 5<<20 {
				t.Fatalf("aws: %+v", c)
			}
		}},
		{name: "aws needs bucket and table", args: []string{"--backend", "aws"}, err: errUsage},
		{name: "cdn flags together", args: []string{"--backend", "aws", "--bucket", "b", "--table", "t", "--cdn-url", "https://cdn.example.com"}, err: errUsage},
		{name: "unknown backend", args: []string{"--backend", "gcs"}, err: errUsage},
		{name: "bad log level", args: []string{"--log-level", "loud"}, err: errUsage},
		{name: "bad flag", args: []string{"--nope"}, err: errUsage},
		{name: "stray argument", args: []string{"extra"}, err: errUsage},
		{name: "help", args: []string{"-h"}, err: flag.ErrHelp},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			c, err := parseServeFlags(tc.args, &stderr)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v (stderr %q)", err, tc.err, stderr.String())
			}
			if tc.err != nil && stderr.Len() == 0 {
				t.Fatal("error without a message on stderr")
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

func TestRunExitCodes(t *testing.T) {
	ctx := context.Background()
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"version"}, &out, &errOut); code != 0 || out.String() != "berth dev\n" {
		t.Fatalf("version: %d %q", code, out.String())
	}
	if code := run(ctx, nil, &out, &errOut); code != 2 {
		t.Fatalf("no command: %d", code)
	}
	if code := run(ctx, []string{"frobnicate"}, &out, &errOut); code != 2 {
		t.Fatalf("unknown command: %d", code)
	}
	if code := run(ctx, []string{"serve", "--backend", "nope"}, &out, &errOut); code != 2 {
		t.Fatalf("serve usage error: %d", code)
	}
}

// serveEmbedded runs `berth serve` in process on a free port over dir and
// returns its base URL and a stop function that cancels it (as SIGTERM
// does) and returns runServe's error.
func serveEmbedded(t *testing.T, dir string, extra ...string) (string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		args := append([]string{"--addr", "127.0.0.1:0", "--data", dir, "--sweep-interval", "50ms"}, extra...)
		done <- runServe(ctx, args, io.Discard, pw)
		pw.Close()
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "listening" {
				addr <- rec.Addr
			}
		}
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("serve exited: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not start")
	}
	stop := func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			return errors.New("serve did not shut down")
		}
	}
	return base, stop
}

// TestServeEmbeddedRestart pushes a blob, shuts the server down gracefully,
// starts it again on the same data directory and reads the blob back.
func TestServeEmbeddedRestart(t *testing.T) {
	dir := t.TempDir()
	base, stop := serveEmbedded(t, dir)
	blob := []byte(strings.Repeat("berth ", 1000))
	digest := registrytest.PushBlob(t, registrytest.Remote(base), "local/test", blob)
	if err := stop(); err != nil {
		t.Fatalf("graceful shutdown: %v", err)
	}

	base, stop = serveEmbedded(t, dir)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	resp, err := http.Get(fmt.Sprintf("%s/v2/local/test/blobs/%s", base, digest))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, blob) {
		t.Fatalf("blob after restart: %d, %d bytes", resp.StatusCode, len(got))
	}
}

// TestServeAuth turns on token auth with a policy file: /v2/ challenges,
// /token grants anonymous pull where the policy allows it, and the token
// opens /v2/.
func TestServeAuth(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	doc := "version: \"1\"\nrules:\n  - repositories: [\"public/**\"]\n    principals: [anonymous]\n    actions: [pull]\n"
	if err := os.WriteFile(policy, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	base, stop := serveEmbedded(t, filepath.Join(dir, "data"), "--auth-policy", policy, "--auth-service", "berth-test")
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	resp, err := http.Get(base + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	challenge := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(challenge, "Bearer ") ||
		!strings.Contains(challenge, `realm="`+base+`/token"`) || !strings.Contains(challenge, `service="berth-test"`) {
		t.Fatalf("GET /v2/ without a token: %d %q", resp.StatusCode, challenge)
	}
	resp, err = http.Get(base + "/token?service=berth-test&scope=repository:public/app:pull")
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		Token string `json:"token"`
	}
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != 200 || err != nil || tok.Token == "" {
		t.Fatalf("anonymous token: %d %v", resp.StatusCode, err)
	}
	req, _ := http.NewRequest("GET", base+"/v2/public/app/tags/list", nil)
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound { // authorized; the repository does not exist
		t.Fatalf("tag list with a pull token: %d", resp.StatusCode)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "token-key.pem")); err != nil {
		t.Fatalf("token key not created in the data directory: %v", err)
	}
}

// TestServeRetention: with --retention-policy keeping one untagged image,
// the older of two untagged images is expired; the newer and a tagged one
// stay.
func TestServeRetention(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"rules":[{"rulePriority":1,"description":"drop untagged","selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	// First without the policy: push a tagged and an untagged image.
	base, stop := serveEmbedded(t, dir)
	reg := registrytest.Remote(base)
	image := func(note string) registrytest.Image {
		return registrytest.NewImage([]byte(fmt.Sprintf(`{"note":%q}`, note)))
	}
	keptDigest := string(registrytest.PushImage(t, reg, "ret", "v1", image("kept")).Digest)
	goneDigest := string(registrytest.PushImage(t, reg, "ret", "", image("gone")).Digest)
	time.Sleep(1100 * time.Millisecond) // push times have second resolution
	newerDigest := string(registrytest.PushImage(t, reg, "ret", "", image("newer")).Digest)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Then with it: the first run happens at start.
	base, stop = serveEmbedded(t, dir, "--retention-policy", policy)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	status := func(d string) int {
		resp, err := http.Head(base + "/v2/ret/manifests/" + d)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(10 * time.Second)
	for status(goneDigest) != http.StatusNotFound {
		if time.Now().After(deadline) {
			t.Fatal("untagged manifest was not expired")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if status(keptDigest) != http.StatusOK || status(newerDigest) != http.StatusOK {
		t.Fatal("a manifest the policy keeps was expired")
	}
	// A policy Berth cannot honour is refused at start.
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":1},"action":{"type":"expire"}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := runServe(t.Context(), []string{"--addr", "127.0.0.1:0", "--data", t.TempDir(), "--retention-policy", bad}, io.Discard, io.Discard); err == nil {
		t.Fatal("unsupported policy accepted")
	}
}

func TestParseServeFlagsEdge(t *testing.T) {
	aws := []string{"--backend", "aws", "--bucket", "b", "--table", "t"}
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{append([]string{"--edge", "--via-lambda"}, aws...), true},
		{append([]string{"--edge"}, aws...), false},
		{[]string{"--edge", "--via-lambda"}, false},
	} {
		var stderr bytes.Buffer
		c, err := parseServeFlags(tc.args, &stderr)
		if (err == nil) != tc.ok || (tc.ok && !c.Edge) {
			t.Fatalf("%v: %v %q", tc.args, err, stderr.String())
		}
		if !tc.ok && !strings.Contains(stderr.String(), "--edge needs --via-lambda and --backend aws") {
			t.Fatalf("%v: message %q", tc.args, stderr.String())
		}
	}
}

// TestServeEdge runs `berth serve --via-lambda --edge --backend aws` on the
// emulators: an upload POST gets an edge Location, a blob over the Lambda
// limit goes through the CloudFront emulator straight into the bucket,
// the API claims it on HEAD and serves it back; a tampered body is refused
// by S3 and never becomes visible.
func TestServeEdge(t *testing.T) {
	testenv.UseEmulators(t)
	base, stop := serveEmbedded(t, t.TempDir(), "--backend", "aws", "--create", "--s3-path-style",
		"--bucket", testenv.Name("edge"), "--table", testenv.Name("edge"), "--via-lambda", "--edge")
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	do := func(method, url string, body []byte) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, url, bytes.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	startUpload := func() string {
		t.Helper()
		resp := do("POST", base+"/v2/edge/app/blobs/uploads/", nil)
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusAccepted || !strings.HasPrefix(loc, "/_upload/") {
			t.Fatalf("POST: %d Location %q", resp.StatusCode, loc)
		}
		return loc
	}
	blob := bytes.Repeat([]byte("edge-bytes "), 600_000) // 6.6 MB: more than one Lambda request carries
	sum := sha256.Sum256(blob)
	digest := "sha256:" + hex.EncodeToString(sum[:])

	// Tampered first: the same digest, other bytes.
	bad := append([]byte(nil), blob...)
	bad[len(bad)/2] ^= 1
	if resp := do("PUT", base+startUpload()+"?digest="+digest, bad); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("tampered PUT: %d", resp.StatusCode)
	}
	if resp := do("HEAD", base+"/v2/edge/app/blobs/"+digest, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("HEAD after a tampered PUT: %d", resp.StatusCode)
	}

	resp := do("PUT", base+startUpload()+"?digest="+digest, blob)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != digest ||
		resp.Header.Get("Location") != "/v2/edge/app/blobs/"+digest {
		t.Fatalf("edge PUT: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := do("HEAD", base+"/v2/edge/app/blobs/"+digest, nil); resp.StatusCode != http.StatusOK ||
		resp.ContentLength != int64(len(blob)) {
		t.Fatalf("HEAD after the edge PUT: %d, %d bytes", resp.StatusCode, resp.ContentLength)
	}
	resp = do("GET", base+"/v2/edge/app/blobs/"+digest, nil)
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, blob) {
		t.Fatalf("GET: %d, %d bytes", resp.StatusCode, len(got))
	}
	// A chunked upload through the same token goes to the API (Lambda).
	loc := startUpload()
	if resp := do("PATCH", base+loc, []byte("small chunk")); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH through the edge: %d", resp.StatusCode)
	}
}
