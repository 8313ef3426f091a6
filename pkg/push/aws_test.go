package push_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/driver/dynamo"
	"github.com/berth-registry/berth/pkg/driver/s3blob"
	"github.com/berth-registry/berth/pkg/push"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/tests/harness"
)

// onAWS serves registry.New over the AWS drivers on the emulators
// (DynamoDB Local, versitygw): the direct upload API is on, presigned URLs
// point at the S3 server. It returns the host, the API request counter and
// a function listing staged leftovers.
func onAWS(t *testing.T, cfg registry.Config) (string, *countingHandler, func() []string) {
	t.Helper()
	ddb := testenv.DynamoDB(t)
	s3c, presign := testenv.S3(t)
	table := testenv.FreshTable(t, ddb)
	bucket := testenv.FreshBucket(t, s3c)
	ch := &countingHandler{h: registry.New(cfg, dynamo.New(ddb, table), s3blob.New(s3c, presign, bucket)), calls: map[string]int{}}
	srv := httptest.NewServer(ch)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), ch, func() []string { return testenv.Staged(t, s3c, bucket) }
}

// Layers go to S3 with one presigned PUT each (S3 checks the sha256), the
// API sees three requests per layer (HEAD, POST, closing PUT), and the
// image comes back byte-identical through the registry's S3 redirects.
func TestAWSDirectSingle(t *testing.T) {
	host, calls, staged := onAWS(t, registry.Config{})
	l := harness.WriteImage(t, "v1", 3<<20, 8<<20)
	ref := host + "/aws/app:v1"
	sum := doPush(t, open(t, l.Dir), ref, push.Options{})
	if sum.Paths[push.PathDirect] != 2 || sum.Paths[push.PathPost] != 1 || sum.Uploaded != 3 {
		t.Fatalf("push: %+v", sum)
	}
	// Per direct layer: HEAD, POST (direct start), closing PUT; the config
	// takes HEAD and one POST.
	if got := calls.count("HEAD blob") + calls.count("POST upload") + calls.count("PUT upload"); got != 2*3+2 {
		t.Fatalf("%d API requests for 3 blobs: %v", got, calls.calls)
	}
	if calls.count("PATCH upload") != 0 {
		t.Fatalf("bytes went through the API: %v", calls.calls)
	}
	checkLayout(t, ref, l)
	again := doPush(t, open(t, l.Dir), ref, push.Options{})
	if again.Uploaded != 0 || again.Skipped != 3 {
		t.Fatalf("second push: %+v", again)
	}
	if left := staged(); len(left) > 0 {
		t.Fatalf("staging left: %v", left)
	}
}

// flakyS3 fails the first attempt of every presigned request (503 for
// odd parts, a transport error for even ones), so each part is retried.
type flakyS3 struct {
	base http.RoundTripper
	mu   sync.Mutex
	seen map[string]bool
	hits int
}

func (f *flakyS3) RoundTrip(r *http.Request) (*http.Response, error) {
	if !r.URL.Query().Has("X-Amz-Signature") {
		return f.base.RoundTrip(r)
	}
	f.mu.Lock()
	first := !f.seen[r.URL.String()]
	f.seen[r.URL.String()] = true
	if first {
		f.hits++
	}
	n := f.hits
	f.mu.Unlock()
	if !first {
		return f.base.RoundTrip(r)
	}
	if r.Body != nil {
		_ = r.Body.Close()
	}
	if n%2 == 0 {
		return nil, errors.New("connection reset by peer (injected)")
	}
	return &http.Response{StatusCode: http.StatusServiceUnavailable, Status: "503 Slow Down", Header: http.Header{},
		Body: http.NoBody, Request: r}, nil
}

// Above the multipart threshold the layer goes up as presigned parts
// (each retried once after an injected failure); the API verifies the
// digest in the background while the client polls, then links the blob.
func TestAWSDirectMultipart(t *testing.T) {
	host, _, staged := onAWS(t, registry.Config{DirectMultipartThreshold: 6 << 20, DirectVerifyInline: 1})
	l := harness.WriteImage(t, "big", 13<<20, 4<<20)
	ref := host + "/aws/big:big"
	flaky := &flakyS3{base: http.DefaultTransport, seen: map[string]bool{}}
	conn := anonymous
	conn.Transport = flaky
	dst, err := push.NewTarget(context.Background(), ref, conn, "", fastRetry)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := push.Push(context.Background(), open(t, l.Dir), dst, push.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Paths[push.PathMultipart] != 1 || sum.Paths[push.PathDirect] != 1 {
		t.Fatalf("paths %v", sum.Paths)
	}
	// 13 MiB in 5 MiB parts: 3 parts, plus the single PUT of the 4 MiB
	// layer, each failed once.
	if flaky.hits != 4 {
		t.Fatalf("%d presigned URLs used, want 4", flaky.hits)
	}
	if sum.UploadedBytes != l.Images[0].Layers[0].Size+l.Images[0].Layers[1].Size+l.Images[0].Config.Size {
		t.Fatalf("uploaded bytes %d (retries counted twice?)", sum.UploadedBytes)
	}
	checkLayout(t, ref, l)
	if left := staged(); len(left) > 0 {
		t.Fatalf("staging left: %v", left)
	}
}

// berth copy between two repositories of one AWS registry mounts; to
// another registry (the embedded one) it moves the bytes.
func TestAWSCopy(t *testing.T) {
	host, _, _ := onAWS(t, registry.Config{})
	other, _ := embedded(t, registry.Config{})
	l := harness.WriteIndex(t, "multi", 2<<20, "linux/amd64", "linux/arm64")
	src := host + "/aws/src:multi"
	doPush(t, open(t, l.Dir), src, push.Options{})
	for _, c := range []struct {
		dst     string
		mounted int
	}{{host + "/aws/dst:multi", blobCount(l)}, {other + "/mirror/app:multi", 0}} {
		s, err := push.NewRemoteSource(src, anonymous)
		if err != nil {
			t.Fatal(err)
		}
		from := ""
		if strings.HasPrefix(c.dst, host+"/") {
			from = "aws/src"
		}
		sum, err := pushTo(context.Background(), s, c.dst, from, push.Options{})
		if err != nil {
			t.Fatalf("copy to %s: %v", c.dst, err)
		}
		if sum.Mounted != c.mounted || sum.Uploaded+sum.Skipped != blobCount(l) {
			t.Fatalf("copy to %s: %+v", c.dst, sum)
		}
		checkLayout(t, c.dst, l)
	}
}

// A source whose bytes do not match their digest is refused: S3 rejects
// the single PUT (signed checksum), the API rejects the multipart upload
// after verifying it, and neither blob becomes visible.
func TestAWSDirectRefusesCorruptSource(t *testing.T) {
	host, _, _ := onAWS(t, registry.Config{DirectMultipartThreshold: 6 << 20})
	for _, size := range []int64{3 << 20, 11 << 20} {
		l := harness.WriteImage(t, "bad", size)
		layer := l.Images[0].Layers[0]
		p := filepath.Join(l.Dir, "blobs", "sha256", strings.TrimPrefix(layer.Digest, "sha256:"))
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0xff
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		ref := host + "/aws/bad:bad"
		_, err = pushTo(context.Background(), open(t, l.Dir), ref, "", push.Options{})
		var se *push.StatusError
		if !errors.As(err, &se) || se.Status != http.StatusBadRequest {
			t.Fatalf("%d-byte corrupt layer: %v, want a 400", size, err)
		}
		t.Logf("%d-byte corrupt layer refused: %v", size, err)
		dst, err := push.NewTarget(context.Background(), ref, anonymous, "", fastRetry)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := v1.NewHash(layer.Digest)
		if ok, err := dst.HeadBlob(context.Background(), d); err != nil || ok {
			t.Fatalf("corrupt blob visible: %v %v", ok, err)
		}
	}
}
