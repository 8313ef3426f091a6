package registry_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/driver/dynamo"
	"github.com/berth-registry/berth/pkg/driver/s3blob"
	"github.com/berth-registry/berth/pkg/metrics"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/registry/registrytest"
	"github.com/berth-registry/berth/pkg/storage"
)

// awsDrivers returns the AWS drivers on a fresh table and bucket of the
// emulators (DynamoDB Local, versitygw).
func awsDrivers(t *testing.T, redirect bool) (open func() (*dynamo.Store, storage.Blobs), leftovers func(t *testing.T) []string) {
	ddb := testenv.DynamoDB(t)
	s3c, presign := testenv.S3(t)
	table := testenv.FreshTable(t, ddb)
	bucket := testenv.FreshBucket(t, s3c)
	open = func() (*dynamo.Store, storage.Blobs) {
		st := s3blob.New(s3c, presign, bucket)
		if !redirect {
			return dynamo.New(ddb, table), s3blob.WithoutRedirect(st)
		}
		return dynamo.New(ddb, table), st
	}
	leftovers = func(t *testing.T) []string { return testenv.Staged(t, s3c, bucket) }
	return open, leftovers
}

func awsEnv(cfg registry.Config, redirect bool) func(t *testing.T) registrytest.Env {
	return func(t *testing.T) registrytest.Env {
		open, leftovers := awsDrivers(t, redirect)
		items, blobs := open()
		return registrytest.Env{
			Handler:      registry.New(cfg, items, blobs),
			MaxBodyBytes: cfg.MaxBodyBytes,
			Restart: func(t *testing.T) http.Handler {
				// Nothing lives in the process: new clients over the same
				// table and bucket are a restart.
				items, blobs := open()
				return registry.New(cfg, items, blobs)
			},
			Leftovers: leftovers,
		}
	}
}

// TestAWS runs the conformance suite on S3 + DynamoDB with blob GETs
// redirected to presigned S3 URLs.
func TestAWS(t *testing.T) {
	registrytest.Run(t, awsEnv(registry.Config{}, true))
}

// TestAWSProxy serves blob bytes through the handler (redirects off) with
// the Lambda body cap.
func TestAWSProxy(t *testing.T) {
	registrytest.Run(t, awsEnv(registry.Config{MaxBodyBytes: 4_404_019, ChunkMinLength: 5 << 20}, false))
}

func TestAWSFaults(t *testing.T) {
	registrytest.RunFaults(t, func(t *testing.T) (storage.Items, storage.Blobs) {
		open, _ := awsDrivers(t, false)
		items, blobs := open()
		return items, blobs
	})
}

// The redirect for a blob GET is a presigned URL for the blob's key.
func TestAWSRedirectShape(t *testing.T) {
	open, _ := awsDrivers(t, true)
	items, blobs := open()
	g := registry.New(registry.Config{}, items, blobs)
	body := []byte("redirect me")
	d := "sha256:" + sha256hex(body)
	if rec := call(t, g, "POST", "/v2/r/blobs/uploads/?digest="+d, body); rec.Code != 201 {
		t.Fatalf("push %d %s", rec.Code, rec.Body)
	}
	rec := call(t, g, "GET", "/v2/r/blobs/"+d, nil)
	loc := rec.Header().Get("Location")
	if rec.Code != http.StatusTemporaryRedirect || !strings.Contains(loc, "/blobs/sha256/"+sha256hex(body)) ||
		!strings.Contains(loc, "X-Amz-Signature=") || rec.Header().Get("Docker-Content-Digest") != d {
		t.Fatalf("redirect %d %v", rec.Code, rec.Header())
	}
}

type counts map[string]float64

func (c counts) Add(name string, v float64) { c[name] += v }

// TestBytesRedirected: a blob GET answered with a redirect counts the
// blob's size; a HEAD counts nothing.
func TestBytesRedirected(t *testing.T) {
	open, _ := awsDrivers(t, true)
	items, blobs := open()
	rec := counts{}
	h := registry.New(registry.Config{Metrics: rec}, items, blobs)
	b := []byte("twenty-one bytes long")
	d := registrytest.PushBlob(t, h, "a", b)
	for _, m := range []string{"HEAD", "GET"} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(m, "/v2/a/blobs/"+string(d), nil))
		if want := map[string]int{"HEAD": 200, "GET": 307}[m]; w.Code != want {
			t.Fatalf("%s: %d", m, w.Code)
		}
	}
	if rec[metrics.BytesRedirected] != float64(len(b)) || len(rec) != 1 {
		t.Fatalf("recorded %v, want %s = %d", rec, metrics.BytesRedirected, len(b))
	}
}
