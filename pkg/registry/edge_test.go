package registry_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
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
