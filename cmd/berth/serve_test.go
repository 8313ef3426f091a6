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
	"strings"
	"testing"
	"time"
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
				c.MaxBodyBytes != 0 || c.ChunkMinLength != 0 || c.LogLevel != "info" {
				t.Fatalf("defaults: %+v", c)
			}
		}},
		{name: "via lambda caps bodies", args: []string{"--via-lambda"}, check: func(t *testing.T, c serveConfig) {
			if c.MaxBodyBytes != lambdaMaxBodyBytes || c.ChunkMinLength != 4<<20 || c.ChunkMinLength > c.MaxBodyBytes {
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
func serveEmbedded(t *testing.T, dir string) (string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- runServe(ctx, []string{"--addr", "127.0.0.1:0", "--data", dir, "--sweep-interval", "50ms"}, io.Discard, pw)
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
	sum := sha256.Sum256(blob)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	resp, err := http.Post(base+"/v2/local/test/blobs/uploads/?digest="+digest, "application/octet-stream", bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("monolithic push: %d", resp.StatusCode)
	}
	if err := stop(); err != nil {
		t.Fatalf("graceful shutdown: %v", err)
	}

	base, stop = serveEmbedded(t, dir)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	resp, err = http.Get(fmt.Sprintf("%s/v2/local/test/blobs/%s", base, digest))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, blob) {
		t.Fatalf("blob after restart: %d, %d bytes", resp.StatusCode, len(got))
	}
}
