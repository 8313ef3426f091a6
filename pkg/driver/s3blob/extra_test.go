package s3blob_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/berth-registry/berth/internal/awsmetrics"
	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/driver/s3blob"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
	"github.com/berth-registry/berth/pkg/storage/storagetest"
)

const mib = 1 << 20

func TestPresignedURL(t *testing.T) {
	client, presign := testenv.S3(t)
	bucket := testenv.FreshBucket(t, client)
	b, d := storagetest.RandomBlob(t, 3000)
	st := s3blob.New(client, presign, bucket)
	if err := st.BlobPut(t.Context(), d, int64(len(b)), bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	u, err := st.BlobURL(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	status, body := get(t, u)
	if status != http.StatusOK || !bytes.Equal(body, b) {
		t.Fatalf("GET presigned: %d, %d bytes (want 200 and the blob)", status, len(body))
	}

	short := s3blob.New(client, presign, bucket, s3blob.WithPresignExpiry(time.Second))
	u, err = short.BlobURL(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2100 * time.Millisecond)
	if status, _ := get(t, u); status != http.StatusForbidden {
		t.Fatalf("GET expired presigned URL: %d, want 403", status)
	}

	// Without redirects the store no longer offers BlobURL.
	if _, ok := s3blob.WithoutRedirect(st).(storage.BlobRedirector); ok {
		t.Fatal("WithoutRedirect still implements BlobRedirector")
	}
	if _, ok := storage.Blobs(st).(storage.BlobRedirector); !ok {
		t.Fatal("Store does not implement BlobRedirector")
	}
}

func get(t *testing.T, u string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func TestCloudFrontURL(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	st := s3blob.New(nil, nil, "unused", s3blob.WithCloudFront("https://cdn.example.com/", "KTESTPAIR", key),
		s3blob.WithPresignExpiry(15*time.Minute), s3blob.WithClock(func() time.Time { return now }))
	_, d := storagetest.RandomBlob(t, 10)
	raw, err := st.BlobURL(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	resource := "https://cdn.example.com/blobs/sha256/" + d.Encoded()
	if got := u.Scheme + "://" + u.Host + u.Path; got != resource {
		t.Fatalf("URL %s, want resource %s", got, resource)
	}
	if q.Get("Key-Pair-Id") != "KTESTPAIR" {
		t.Fatalf("Key-Pair-Id %q", q.Get("Key-Pair-Id"))
	}
	exp, err := strconv.ParseInt(q.Get("Expires"), 10, 64)
	if err != nil || exp != now.Add(15*time.Minute).Unix() {
		t.Fatalf("Expires %q, want %d", q.Get("Expires"), now.Add(15*time.Minute).Unix())
	}
	// A canned policy is not sent; CloudFront rebuilds it from the URL and
	// Expires, and checks the signature over it.
	policy := cannedPolicy(resource, exp)
	sig, err := base64.StdEncoding.DecodeString(strings.NewReplacer("-", "+", "_", "=", "~", "/").Replace(q.Get("Signature")))
	if err != nil {
		t.Fatalf("signature encoding: %v", err)
	}
	sum := sha1.Sum(policy)
	if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA1, sum[:], sig); err != nil {
		t.Fatalf("signature does not verify over the canned policy %s: %v", policy, err)
	}
	// The same signature does not cover another resource or expiry.
	for _, other := range [][]byte{cannedPolicy(resource, exp+3600), cannedPolicy(resource+"x", exp)} {
		sum = sha1.Sum(other)
		if rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA1, sum[:], sig) == nil {
			t.Fatalf("signature also verifies %s", other)
		}
	}
}

// cannedPolicy is CloudFront's canned policy, byte for byte as documented
// (field order matters, which is why it is not built with encoding/json).
func cannedPolicy(resource string, expires int64) []byte {
	r, _ := json.Marshal(resource)
	return fmt.Appendf(nil, `{"Statement":[{"Resource":%s,"Condition":{"DateLessThan":{"AWS:EpochTime":%d}}}]}`, r, expires)
}

func TestParseRSAKeyRejectsGarbage(t *testing.T) {
	if _, err := s3blob.ParseRSAKey([]byte("not pem")); err == nil {
		t.Fatal("parsed garbage as a key")
	}
}

// injector fails chosen S3 operations with a server error, before the SDK's
// retry loop (so exactly one call fails per arming).
type injector struct {
	mu   sync.Mutex
	op   string
	skip int // calls of op to let through first
	hits int
}

func (in *injector) arm(op string, skip int) {
	in.mu.Lock()
	in.op, in.skip, in.hits = op, skip, 0
	in.mu.Unlock()
}

func (in *injector) fired() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.hits
}

func (in *injector) addTo(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("inject",
		func(ctx context.Context, i middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			in.mu.Lock()
			fire := false
			if op := middlewareOp(ctx); op == in.op {
				if in.skip > 0 {
					in.skip--
				} else {
					fire, in.op = true, ""
					in.hits++
				}
			}
			in.mu.Unlock()
			if fire {
				return middleware.InitializeOutput{}, middleware.Metadata{}, &smithy.GenericAPIError{Code: "InternalError", Message: "injected", Fault: smithy.FaultServer}
			}
			return next.HandleInitialize(ctx, i)
		}), middleware.Before)
}

func middlewareOp(ctx context.Context) string { return middleware.GetOperationName(ctx) }

// TestUploadFaults fails one S3 call at each step of a chunked upload and
// checks that the failure leaves no blob, and that retrying the step from
// the last good state completes the upload.
func TestUploadFaults(t *testing.T) {
	inj := &injector{}
	client, presign := testenv.S3(t, func(o *s3.Options) { o.APIOptions = append(o.APIOptions, inj.addTo) })
	bucket := testenv.FreshBucket(t, client)
	st := s3blob.New(client, presign, bucket)
	steps := []struct {
		op   string
		skip int
	}{
		{"GetObject", 0},               // reading the carry-over
		{"CreateMultipartUpload", 0},   //
		{"UploadPart", 0},              // first part
		{"UploadPart", 1},              // a later part
		{"PutObject", 0},               // first carry write
		{"PutObject", 2},               // a later carry write
		{"UploadPartCopy", 0},          // the carry-over as the last part
		{"CompleteMultipartUpload", 0}, //
		{"CopyObject", 0},              // promotion to the final key
	}
	chunks := []int{3 * mib, 4 * mib, 4 * mib, 1 * mib}
	for _, step := range steps {
		t.Run(step.op+"#"+strconv.Itoa(step.skip), func(t *testing.T) {
			var all []byte
			var data [][]byte
			for _, n := range chunks {
				c := storagetest.RandomBytes(t, n)
				data = append(data, c)
				all = append(all, c...)
			}
			d := oci.FromBytes(oci.SHA256, all)
			id := storagetest.NewUploadID(t)
			state, err := st.UploadInit(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			inj.arm(step.op, step.skip)
			failures := 0
			var off int64
			for _, c := range data {
				for {
					ns, n, err := st.UploadWrite(t.Context(), id, state, off, bytes.NewReader(c))
					if err == nil {
						state, off = ns, off+n
						break
					}
					if !errors.Is(err, storage.ErrUnavailable) || failures > 0 {
						t.Fatalf("write at %d: %v", off, err)
					}
					failures++
					assertNoBlob(t, st, d)
				}
			}
			for {
				err := st.UploadCommit(t.Context(), id, state, d, off, nil)
				if err == nil {
					break
				}
				if !errors.Is(err, storage.ErrUnavailable) || failures > 0 {
					t.Fatalf("commit: %v", err)
				}
				failures++
				assertNoBlob(t, st, d)
			}
			if inj.fired() != 1 || failures != 1 {
				t.Fatalf("injected %d faults, saw %d failures; want 1 and 1", inj.fired(), failures)
			}
			rc, err := st.BlobOpen(t.Context(), d)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, all) {
				t.Fatalf("blob after retried upload: %d bytes, err %v", len(got), err)
			}
			left, err := testenv.Objects(t.Context(), client, bucket, "uploads/"+id)
			if err != nil {
				t.Fatal(err)
			}
			if len(left) != 0 {
				t.Errorf("staged objects left after commit: %v", left)
			}
		})
	}
}

func assertNoBlob(t *testing.T, st *s3blob.Store, d oci.Digest) {
	t.Helper()
	if _, err := st.BlobOpen(t.Context(), d); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("blob visible after a failed step: %v", err)
	}
}

// BenchmarkChunkedUpload64MiB uploads a 64 MiB blob in 4 MiB chunks (what
// a client pushing through Lambda sends) and reports the S3 requests.
func BenchmarkChunkedUpload64MiB(b *testing.B) {
	counter := awsmetrics.New()
	client, presign := testenv.S3(b, func(o *s3.Options) { o.APIOptions = append(o.APIOptions, counter.AddTo) })
	bucket := testenv.FreshBucket(b, client)
	st := s3blob.New(client, presign, bucket)
	chunks := make([][]byte, 16)
	var all []byte
	for i := range chunks {
		chunks[i] = storagetest.RandomBytes(b, 4*mib)
		all = append(all, chunks[i]...)
	}
	d := oci.FromBytes(oci.SHA256, all)
	b.SetBytes(int64(len(all)))
	counter.Reset()
	for b.Loop() {
		id := storagetest.NewUploadID(b)
		state, err := st.UploadInit(b.Context(), id)
		if err != nil {
			b.Fatal(err)
		}
		var off int64
		for _, c := range chunks {
			ns, n, err := st.UploadWrite(b.Context(), id, state, off, bytes.NewReader(c))
			if err != nil {
				b.Fatal(err)
			}
			state, off = ns, off+n
		}
		if err := st.UploadCommit(b.Context(), id, state, d, off, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(counter.Total("S3"))/float64(b.N), "s3-requests/op")
	b.Logf("totals over %d uploads: %s", b.N, counter)
}
