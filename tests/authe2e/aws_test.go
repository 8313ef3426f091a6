package authe2e

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/berth-registry/berth/pkg/driver/dynamo"
	"github.com/berth-registry/berth/pkg/driver/s3blob"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/tests/harness"
)

// The AWS backend is built the way pkg/registry's AWS tests build it, on a
// fresh table of DynamoDB Local and a fresh bucket of versitygw, with blob
// GETs redirected to presigned S3 URLs. pkg/internal/testenv cannot be
// imported from tests/, so the few lines it would give are here.

// emulators names a running DynamoDB Local and versitygw.
type emulators struct {
	dynamoDB, s3, accessKey, secretKey string
}

// startEmulators returns the emulators named by the BERTH_TEST_* variables
// (make test starts them once for every suite), else starts a private pair
// with tests/emulators.sh that is stopped when t ends. Call it from the
// top-level test so its subtests share the pair.
func startEmulators(t *testing.T) emulators {
	t.Helper()
	if harness.EmulatorsRunning() {
		return emulators{dynamoDB: os.Getenv(harness.EnvDynamoDB), s3: os.Getenv(harness.EnvS3),
			accessKey: os.Getenv(harness.EnvS3AccessKey), secretKey: os.Getenv(harness.EnvS3SecretKey)}
	}
	script := filepath.Join(harness.Root(t), "tests", "emulators.sh")
	env := append(os.Environ(), "BERTH_EMULATORS_DIR="+filepath.Join(t.TempDir(), "emulators"))
	sh := func(arg string) ([]byte, error) {
		cmd := exec.Command("bash", script, arg)
		cmd.Env = env
		return cmd.Output()
	}
	t.Cleanup(func() {
		if _, err := sh("stop"); err != nil {
			t.Errorf("tests/emulators.sh stop: %v", err)
		}
	})
	start := time.Now()
	if out, err := sh("start"); err != nil {
		t.Fatalf("tests/emulators.sh start: %v\n%s%s", err, out, stderrOf(err))
	}
	out, err := sh("env")
	if err != nil {
		t.Fatalf("tests/emulators.sh env: %v%s", err, stderrOf(err))
	}
	vars := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "="); ok {
			vars[k] = v
		}
	}
	e := emulators{dynamoDB: vars[harness.EnvDynamoDB], s3: vars[harness.EnvS3],
		accessKey: vars[harness.EnvS3AccessKey], secretKey: vars[harness.EnvS3SecretKey]}
	if e.dynamoDB == "" || e.s3 == "" || e.accessKey == "" {
		t.Fatalf("tests/emulators.sh env printed no endpoints:\n%s", out)
	}
	t.Logf("started DynamoDB Local at %s and versitygw at %s (%s)", e.dynamoDB, e.s3, time.Since(start).Round(time.Millisecond))
	return e
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(ee.Stderr)
	}
	return ""
}

// awsStores returns the DynamoDB and S3 drivers over a fresh table and
// bucket, both deleted when t ends. Blob GETs answer 307 to a presigned
// versitygw URL, which every client must follow.
func awsStores(t *testing.T, e emulators) (meta.Items, registry.Blobs) {
	t.Helper()
	ctx := context.Background()
	ddb := dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("berthtest", "berthtest", ""),
		BaseEndpoint: aws.String(e.dynamoDB),
		// DynamoDB Local's CRC32 header does not match some 4xx bodies.
		DisableValidateResponseChecksum: true,
	})
	s3c := s3.New(s3.Options{
		Region:                     "us-east-1",
		Credentials:                credentials.NewStaticCredentialsProvider(e.accessKey, e.secretKey, ""),
		BaseEndpoint:               aws.String(e.s3),
		UsePathStyle:               true,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
	name := "berth-authe2e-" + hex.EncodeToString(harness.Random(6))
	items := dynamo.New(ddb, name)
	if err := items.CreateTable(ctx); err != nil {
		t.Fatalf("create table: %v", err)
	}
	blobs := s3blob.New(s3c, s3.NewPresignClient(s3c), name)
	if err := blobs.CreateBucket(ctx); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := items.DeleteTable(ctx); err != nil {
			t.Errorf("delete table %s: %v", name, err)
		}
		if err := deleteBucket(ctx, s3c, name); err != nil {
			t.Errorf("delete bucket %s: %v", name, err)
		}
	})
	return items, blobs
}

// deleteBucket aborts the bucket's multipart uploads, deletes its objects
// and then the bucket.
func deleteBucket(ctx context.Context, c *s3.Client, bucket string) error {
	ups, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		return err
	}
	for _, u := range ups.Uploads {
		if _, err := c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(bucket), Key: u.Key, UploadId: u.UploadId}); err != nil {
			return err
		}
	}
	pages := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return err
		}
		if len(page.Contents) == 0 {
			continue
		}
		ids := make([]s3types.ObjectIdentifier, len(page.Contents))
		for i, o := range page.Contents {
			ids[i] = s3types.ObjectIdentifier{Key: o.Key}
		}
		if _, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(bucket), Delete: &s3types.Delete{Objects: ids, Quiet: aws.Bool(true)}}); err != nil {
			return err
		}
	}
	_, err = c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)})
	return err
}
