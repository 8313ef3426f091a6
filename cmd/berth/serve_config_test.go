package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// --cdn-private-key names a Secrets Manager secret by ARN, anything else is
// a PEM file; both reach awsbackend as the key source it reads.
func TestCDNPrivateKeyFlag(t *testing.T) {
	base := []string{"--backend", "aws", "--bucket", "b", "--table", "t", "--cdn-url", "https://cdn.example.com", "--cdn-key-pair-id", "K2JCJMDEHXQW5F"}
	arn := "arn:aws:secretsmanager:eu-west-1:123456789012:secret:berth-cdn-key"
	c, err := parseServeFlags(append(base, "--cdn-private-key", arn), io.Discard)
	if err != nil || c.AWS.CloudFront.KeySecret != arn || c.AWS.CloudFront.KeyFile != "" || c.AWS.CloudFront.URL != "https://cdn.example.com" {
		t.Errorf("ARN: %+v, %v", c.AWS.CloudFront, err)
	}
	c, err = parseServeFlags(append(base, "--cdn-private-key", "cdn-key.pem"), io.Discard)
	if err != nil || c.AWS.CloudFront.KeyFile != "cdn-key.pem" || c.AWS.CloudFront.KeySecret != "" || c.AWS.CloudFront.KeyPairID != "K2JCJMDEHXQW5F" {
		t.Errorf("file: %+v, %v", c.AWS.CloudFront, err)
	}
	var stderr bytes.Buffer
	if _, err := parseServeFlags(base, &stderr); err != errUsage || !bytes.Contains(stderr.Bytes(), []byte("go together")) {
		t.Errorf("no key: %v %q", err, stderr.String())
	}
}

// berth serve sweeps expired upload sessions in the background: the staged
// bytes of an abandoned upload disappear without any request.
func TestServeSweepsExpiredUploads(t *testing.T) {
	dir := t.TempDir()
	base, stop := serveEmbedded(t, dir, "--upload-ttl", "2s")
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	resp, err := http.Post(base+"/v2/sweep/app/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	req, _ := http.NewRequest("PATCH", base+resp.Header.Get("Location"), bytes.NewReader(bytes.Repeat([]byte{'x'}, 4096)))
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH: %d", resp.StatusCode)
	}
	staged := func() int {
		entries, err := os.ReadDir(filepath.Join(dir, "uploads"))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		return len(entries)
	}
	if staged() != 1 {
		t.Fatalf("%d staged uploads after the PATCH, want 1", staged())
	}
	// The session expires 2 s after the PATCH (one-second resolution); the
	// sweep runs every 50 ms.
	for deadline := time.Now().Add(10 * time.Second); staged() != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the expired upload's staged bytes are still there after 10 s")
		}
	}
}
