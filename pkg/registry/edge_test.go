package registry_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/driver/dynamo"
	"github.com/berth-registry/berth/pkg/driver/s3blob"
	"github.com/berth-registry/berth/pkg/edge"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/registry/registrytest"
	"github.com/berth-registry/berth/pkg/storage"
)

// TestAWSEdge runs the edge-path and direct-upload cases on DynamoDB Local
// and versitygw. StoreObject does with the S3 client what the CloudFront
// Function makes S3 do for a client's PUT.
func TestAWSEdge(t *testing.T) {
	registrytest.RunEdge(t, func(t *testing.T, cfg registry.Config) registrytest.EdgeEnv {
		ddb := testenv.DynamoDB(t)
		s3c, presign := testenv.S3(t)
		table := testenv.FreshTable(t, ddb)
		bucket := testenv.FreshBucket(t, s3c)
		h := registry.New(cfg, dynamo.New(ddb, table), s3blob.New(s3c, presign, bucket))
		return registrytest.EdgeEnv{
			Env: registrytest.Env{
				Handler:   h,
				Leftovers: func(t *testing.T) []string { return testenv.Staged(t, s3c, bucket) },
			},
			StoreObject: func(t *testing.T, d oci.Digest, body []byte, metadata map[string]string, checksum bool) {
				t.Helper()
				in := &s3.PutObjectInput{
					Bucket: aws.String(bucket), Key: aws.String(s3blob.BlobKey(d)),
					Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))), Metadata: metadata,
				}
				if checksum {
					raw, _ := hex.DecodeString(d.Encoded())
					in.ChecksumSHA256 = aws.String(base64.StdEncoding.EncodeToString(raw))
				}
				if _, err := s3c.PutObject(t.Context(), in); err != nil {
					t.Fatalf("store object: %v", err)
				}
			},
		}
	})
}

// Without a signing key yet, POST hands out the registry's own upload URL.
func TestEdgeNoKey(t *testing.T) {
	g, _ := newEmbedded(t, registry.Config{EdgeTokens: edge.NewKeyring(edge.NewMemoryStore(), 0)})
	for i := 0; i < 2; i++ {
		rec := call(t, g, "POST", "/v2/r/blobs/uploads/", nil)
		if rec.Code != 202 || !strings.HasPrefix(rec.Header().Get("Location"), "/v2/r/blobs/uploads/") {
			t.Fatalf("POST without key: %d %v", rec.Code, rec.Header())
		}
	}
}

type failingTokens struct{}

func (failingTokens) Token(context.Context, string, string, time.Time) (string, error) {
	return "", errors.New("key store unreachable")
}

// A failing key store does not fail uploads either.
func TestEdgeTokenError(t *testing.T) {
	g, _ := newEmbedded(t, registry.Config{EdgeTokens: failingTokens{}})
	rec := call(t, g, "POST", "/v2/r/blobs/uploads/", nil)
	if rec.Code != 202 || !strings.HasPrefix(rec.Header().Get("Location"), "/v2/r/blobs/uploads/") {
		t.Fatalf("POST with failing key store: %d %v", rec.Code, rec.Header())
	}
}

// The embedded store cannot presign: a direct request gets the ordinary
// 202 without a body, and the ordinary API takes the blob.
func TestEmbeddedDirectFallback(t *testing.T) {
	g, _ := newEmbedded(t, registry.Config{})
	b := []byte("direct fallback")
	d := oci.FromBytes(oci.SHA256, b)
	rec := call(t, g, "POST", "/v2/r/blobs/uploads/?berth.direct="+string(d)+"&berth.size=15", nil)
	loc := rec.Header().Get("Location")
	if rec.Code != 202 || rec.Body.Len() != 0 || strings.Contains(rec.Header().Get("Content-Type"), "berth") ||
		!strings.HasPrefix(loc, "/v2/r/blobs/uploads/") || rec.Header().Get("Docker-Upload-UUID") == "" {
		t.Fatalf("direct on embedded: %d %v %q", rec.Code, rec.Header(), rec.Body)
	}
	if rec := call(t, g, "PUT", loc+"?digest="+string(d), b); rec.Code != 201 {
		t.Fatalf("ordinary PUT after fallback: %d %s", rec.Code, rec.Body)
	}
	// Invalid parameters are refused even there.
	if rec := call(t, g, "POST", "/v2/r/blobs/uploads/?berth.direct="+string(d)+"&berth.size=-5", nil); rec.Code != 400 {
		t.Fatalf("negative size: %d", rec.Code)
	}
}

// The 413 for an over-limit body points at berth push and at chunks.
func TestTooLargeNamesBerthPush(t *testing.T) {
	g, _ := newEmbedded(t, registry.Config{MaxBodyBytes: 10})
	rec := call(t, g, "POST", "/v2/r/blobs/uploads/?digest="+string(oci.FromBytes(oci.SHA256, []byte("0123456789abc"))), []byte("0123456789abc"))
	if rec.Code != 413 || !strings.Contains(rec.Body.String(), "berth push") || !strings.Contains(rec.Body.String(), "PATCH with Content-Range") {
		t.Fatalf("413: %d %s", rec.Code, rec.Body)
	}
}

// With StartVerify set (the Lambda wiring), a large multipart completion
// is handed to the hook, and a Verifier built from the drivers alone, as
// the cleanup function builds it, finishes it.
func TestAWSStartVerifyHook(t *testing.T) {
	ddb := testenv.DynamoDB(t)
	s3c, presign := testenv.S3(t)
	table := testenv.FreshTable(t, ddb)
	bucket := testenv.FreshBucket(t, s3c)
	type job struct{ repo, upload string }
	jobs := make(chan job, 4)
	cfg := registry.Config{
		DirectMultipartThreshold: 5 << 20,
		DirectVerifyInline:       1,
		StartVerify: func(_ context.Context, repo, upload string) error {
			jobs <- job{repo, upload}
			return nil
		},
	}
	g := registry.New(cfg, dynamo.New(ddb, table), s3blob.New(s3c, presign, bucket))
	b := bytes.Repeat([]byte("berth push "), 1<<20) // 11 MiB
	d := oci.FromBytes(oci.SHA256, b)
	rec := call(t, g, "POST", "/v2/hook/blobs/uploads/?berth.direct="+string(d)+"&berth.size="+strconv.Itoa(len(b)), nil)
	if rec.Code != 202 {
		t.Fatalf("direct start: %d %s", rec.Code, rec.Body)
	}
	var dr struct {
		Upload string               `json:"upload"`
		Parts  []storage.DirectPart `json:"parts"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &dr); err != nil {
		t.Fatal(err)
	}
	var done []storage.CompletedPart
	for _, p := range dr.Parts {
		req, _ := http.NewRequestWithContext(t.Context(), p.Method, p.URL, bytes.NewReader(b[p.Offset:p.Offset+p.Size]))
		res, err := http.DefaultClient.Do(req)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("part %d: %v %v", p.Number, err, res)
		}
		res.Body.Close()
		done = append(done, storage.CompletedPart{Number: p.Number, ETag: res.Header.Get("ETag")})
	}
	body, _ := json.Marshal(map[string]any{"parts": done})
	loc := rec.Header().Get("Location")
	rec = call(t, g, "PUT", loc+"?digest="+string(d), body, "Content-Type", "application/vnd.berth.direct-complete.v1+json")
	if rec.Code != 202 || rec.Header().Get("Berth-Upload-State") != "verifying" {
		t.Fatalf("complete: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	j := <-jobs
	if j.repo != "hook" || j.upload != dr.Upload {
		t.Fatalf("hook called with %+v", j)
	}
	if rec := call(t, g, "GET", loc, nil); rec.Code != 204 || rec.Header().Get("Berth-Upload-State") != "verifying" {
		t.Fatalf("poll before verification: %d %v", rec.Code, rec.Header())
	}
	v := registry.NewVerifier(dynamo.New(ddb, table), s3blob.New(s3c, presign, bucket), nil)
	if err := v.Verify(t.Context(), j.repo, j.upload); err != nil {
		t.Fatal(err)
	}
	// A second run (a retried invoke) has nothing to do.
	if err := v.Verify(t.Context(), j.repo, j.upload); err != nil {
		t.Fatalf("second verify: %v", err)
	}
	if rec := call(t, g, "GET", loc, nil); rec.Code != 201 || rec.Header().Get("Docker-Content-Digest") != string(d) {
		t.Fatalf("poll after verification: %d %v", rec.Code, rec.Header())
	}
	if rec := call(t, g, "HEAD", "/v2/hook/blobs/"+string(d), nil); rec.Code != 200 || rec.Header().Get("Content-Length") != strconv.Itoa(len(b)) {
		t.Fatalf("HEAD: %d %v", rec.Code, rec.Header())
	}
	if left := testenv.Staged(t, s3c, bucket); len(left) > 0 {
		t.Fatalf("staging left: %v", left)
	}
}

// A session handed an edge Location outlives UploadTTL: it is claimed at
// manifest time, which may come hours after the layer PUT.
func TestEdgeSessionLifetime(t *testing.T) {
	keys := edge.NewMemoryStore()
	if _, err := edge.Rotate(t.Context(), keys, edge.Rotation{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	c := &clock{}
	c.advance(time.Duration(time.Now().UnixNano()))
	g, _ := newEmbedded(t, registry.Config{EdgeTokens: edge.NewKeyring(keys, 0), UploadTTL: time.Hour, Now: c.now})
	rec := call(t, g, "POST", "/v2/r/blobs/uploads/", nil)
	id := rec.Header().Get("Docker-Upload-UUID")
	if rec.Code != 202 || !strings.HasPrefix(rec.Header().Get("Location"), edge.PathPrefix) {
		t.Fatalf("POST: %d %v", rec.Code, rec.Header())
	}
	c.advance(23 * time.Hour)
	if rec := call(t, g, "GET", "/v2/r/blobs/uploads/"+id, nil); rec.Code != 204 {
		t.Fatalf("session after 23 h: %d", rec.Code)
	}
	c.advance(2 * time.Hour)
	if rec := call(t, g, "GET", "/v2/r/blobs/uploads/"+id, nil); rec.Code != 404 {
		t.Fatalf("session after 25 h: %d", rec.Code)
	}
}
