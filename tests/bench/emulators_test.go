package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berth-registry/berth/pkg/driver/dynamo"
)

// The emulators' environment, as tests/emulators.sh exports it (and
// pkg/internal/testenv reads it; that package is internal to pkg/ and
// cannot be imported from tests/).
const (
	envDynamoDB    = "BERTH_TEST_DYNAMODB_ENDPOINT"
	envS3          = "BERTH_TEST_S3_ENDPOINT"
	envS3AccessKey = "BERTH_TEST_S3_ACCESS_KEY"
	envS3SecretKey = "BERTH_TEST_S3_SECRET_KEY"
)

const region = "us-east-1"

// emulators are the endpoints of DynamoDB Local and versitygw.
type emulators struct {
	dynamoDB                     string
	s3, s3AccessKey, s3SecretKey string
}

// startEmulators returns the running emulators named by the environment, or
// starts both (tests/emulators.sh start) in a private state directory and
// stops them when the test ends.
func startEmulators(t *testing.T) emulators {
	if e := (emulators{os.Getenv(envDynamoDB), os.Getenv(envS3), os.Getenv(envS3AccessKey), os.Getenv(envS3SecretKey)}); e.dynamoDB != "" && e.s3 != "" {
		if e.s3AccessKey == "" || e.s3SecretKey == "" {
			t.Fatalf("%s is set but %s / %s are not", envS3, envS3AccessKey, envS3SecretKey)
		}
		return e
	}
	state := t.TempDir()
	script := filepath.Join("..", "emulators.sh")
	sh := func(arg string) (string, error) {
		cmd := exec.Command("bash", script, arg)
		cmd.Env = append(os.Environ(), "BERTH_EMULATORS_DIR="+state)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("tests/emulators.sh %s: %w: %s", arg, err, stderr.String())
		}
		return string(out), nil
	}
	t.Cleanup(func() {
		if _, err := sh("stop"); err != nil {
			t.Error(err)
		}
	})
	if _, err := sh("start"); err != nil {
		t.Fatal(err)
	}
	out, err := sh("env")
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for line := range strings.Lines(out) {
		k, v, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(line, "export ")), "=")
		if ok {
			vars[k] = v
		}
	}
	e := emulators{vars[envDynamoDB], vars[envS3], vars[envS3AccessKey], vars[envS3SecretKey]}
	if e.dynamoDB == "" || e.s3 == "" || e.s3AccessKey == "" || e.s3SecretKey == "" {
		t.Fatalf("tests/emulators.sh env printed %q", out)
	}
	return e
}

// s3Client returns a path-style client and presign client for the S3
// emulator at endpoint (the emulator itself, or a proxy in front of it).
func (e emulators) s3Client(endpoint string, opts ...func(*s3.Options)) (*s3.Client, *s3.PresignClient) {
	c := s3.New(s3.Options{
		Region:                     region,
		Credentials:                credentials.NewStaticCredentialsProvider(e.s3AccessKey, e.s3SecretKey, ""),
		BaseEndpoint:               aws.String(endpoint),
		UsePathStyle:               true,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}, opts...)
	return c, s3.NewPresignClient(c)
}

// dynamoClient returns a DynamoDB Local client.
func (e emulators) dynamoClient(opts ...func(*dynamodb.Options)) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider("berthtest", "berthtest", ""),
		BaseEndpoint: aws.String(e.dynamoDB),
		// DynamoDB Local's CRC32 header does not match some 4xx bodies.
		DisableValidateResponseChecksum: true,
	}, opts...)
}

func randomName(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// freshTable creates a table with the production schema, deleted when the
// test ends.
func (e emulators) freshTable(t *testing.T) string {
	name := randomName("berth-bench-")
	st := dynamo.New(e.dynamoClient(), name)
	if err := st.CreateTable(t.Context()); err != nil {
		t.Fatalf("create table: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := st.DeleteTable(ctx); err != nil {
			t.Errorf("delete table %s: %v", name, err)
		}
	})
	return name
}

// freshBucket creates a bucket, emptied and deleted when the test ends.
func (e emulators) freshBucket(t *testing.T) string {
	name := randomName("berth-bench-")
	client, _ := e.s3Client(e.s3)
	if _, err := client.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := emptyBucket(ctx, client, name); err != nil {
			t.Errorf("empty bucket %s: %v", name, err)
			return
		}
		if _, err := client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(name)}); err != nil {
			t.Errorf("delete bucket %s: %v", name, err)
		}
	})
	return name
}

func emptyBucket(ctx context.Context, client *s3.Client, bucket string) error {
	ups, err := client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		return fmt.Errorf("list uploads: %w", err)
	}
	var errs []error
	for _, u := range ups.Uploads {
		_, err := client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(bucket), Key: u.Key, UploadId: u.UploadId})
		errs = append(errs, err)
	}
	p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("list objects: %w", err))...)
		}
		for _, o := range page.Contents {
			_, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: o.Key})
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
