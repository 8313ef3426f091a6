package scanwire

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/inventory"
	"github.com/berth-registry/berth/pkg/oci"
)

// osvZip is an export with one record per (id, package, fixed) triple.
func osvZip(t *testing.T, eco string, recs ...[3]string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, r := range recs {
		w, err := zw.Create(r[0] + ".json")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write([]byte(`{"schema_version":"1.6.0","id":"` + r[0] + `","modified":"2026-12-01T00:00:00Z","summary":"test record",` +
			`"affected":[{"package":{"ecosystem":"` + eco + `","name":"` + r[1] + `"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"` + r[2] + `"}]}]}]}`))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// countingS3 counts GetObject calls (downloads).
type countingS3 struct {
	*s3.Client
	mu   sync.Mutex
	gets []string
}

func (c *countingS3) GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	c.mu.Lock()
	c.gets = append(c.gets, aws.ToString(in.Key))
	c.mu.Unlock()
	return c.Client.GetObject(ctx, in, opts...)
}

func put(t *testing.T, c *s3.Client, bucket, key string, body []byte) {
	t.Helper()
	if _, err := c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
}

var goImage = inventory.Image{Packages: []inventory.Package{{Name: "golang.org/x/text", Version: "0.3.7", Ecosystem: "Go", Path: "usr/local/bin/app", Layer: oci.Digest("sha256:" + strings.Repeat("a", 64))}}}

// The exports are listed from the bucket (versitygw), downloaded only
// when a match needs their ecosystem, kept while unchanged, and replaced
// (one local copy per export) when the sync stores a new one.
func TestOSVDataLazyAndCached(t *testing.T) {
	client, _ := testenv.S3(t)
	bucket := testenv.FreshBucket(t, client)
	c := &countingS3{Client: client}
	dir := t.TempDir()
	data := NewOSVData(c, bucket, "osv/", dir, nil)

	if _, err := data.DB(t.Context()); !errors.Is(err, ErrNoOSVData) {
		t.Fatalf("empty bucket: %v", err)
	}
	put(t, client, bucket, "osv/Go/all.zip", osvZip(t, "Go", [3]string{"GO-2022-1059", "golang.org/x/text", "0.3.8"}))
	put(t, client, bucket, "osv/Red Hat/all.zip", osvZip(t, "Red Hat", [3]string{"RHSA-1", "openssl", "3.0.0"}))
	put(t, client, bucket, "osv/README.txt", []byte("not data"))

	db, err := data.DB(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(db.Ecosystems(), ","); got != "Go,Red Hat" {
		t.Errorf("ecosystems %q", got)
	}
	if len(c.gets) != 0 {
		t.Errorf("opening downloaded %v", c.gets)
	}
	findings, err := db.Match(t.Context(), goImage)
	if err != nil {
		t.Fatal(err)
	}
	if len(findings) != 1 || findings[0].ID != "GO-2022-1059" || findings[0].Fixed != "0.3.8" {
		t.Errorf("findings %+v", findings)
	}
	if strings.Join(c.gets, ",") != "osv/Go/all.zip" {
		t.Errorf("downloads %v, want Go's export only", c.gets)
	}

	// Unchanged: the same database, nothing downloaded again.
	db2, err := data.DB(t.Context())
	if err != nil || db2 != db {
		t.Fatalf("unchanged listing gave a new database (%v)", err)
	}
	if _, err := db2.Match(t.Context(), goImage); err != nil || len(c.gets) != 1 {
		t.Errorf("second match downloaded again: %v %v", c.gets, err)
	}

	// The sync replaces Go's export: a new version, one download, the
	// old copy gone from the cache directory.
	put(t, client, bucket, "osv/Go/all.zip", osvZip(t, "Go", [3]string{"GO-2022-1059", "golang.org/x/text", "0.3.8"}, [3]string{"GO-2099-1", "golang.org/x/text", "0.4.0"}))
	db3, err := data.DB(t.Context())
	if err != nil || db3 == db || db3.Version() == db.Version() {
		t.Fatalf("replaced export: same database or version (%v)", err)
	}
	findings, err = db3.Match(t.Context(), goImage)
	if err != nil || len(findings) != 2 {
		t.Errorf("findings after the update %+v %v", findings, err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 1 || len(c.gets) != 2 {
		t.Errorf("cache holds %v after %d downloads, want one file", files, len(c.gets))
	}

	// A new function instance (empty memory) over the same /tmp reuses
	// the downloaded copy.
	again := NewOSVData(c, bucket, "osv/", dir, nil)
	db4, err := again.DB(t.Context())
	if err != nil || db4.Version() != db3.Version() {
		t.Fatalf("same data, other version: %v", err)
	}
	if _, err := db4.Match(t.Context(), goImage); err != nil || len(c.gets) != 2 {
		t.Errorf("cached copy not reused: %v %v", c.gets, err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
}
