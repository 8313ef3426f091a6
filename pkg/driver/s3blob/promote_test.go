package s3blob_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/berth-registry/berth/internal/awsmetrics"
	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/driver/s3blob"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage/storagetest"
)

// upload sends b through one upload session in one write and commits it.
func upload(t *testing.T, st *s3blob.Store, b []byte) {
	t.Helper()
	ctx := t.Context()
	id := storagetest.NewUploadID(t)
	state, err := st.UploadInit(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	state, n, err := st.UploadWrite(ctx, id, state, 0, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.UploadCommit(ctx, id, state, oci.FromBytes(oci.SHA256, b), n, nil); err != nil {
		t.Fatal(err)
	}
}

// TestCommitStoredBlob: committing a blob the bucket already holds with a
// proven checksum copies nothing (the conditional copy is refused and the
// existing object's checksum is checked); an object at the blob's key that
// cannot prove its content is overwritten with the verified bytes.
func TestCommitStoredBlob(t *testing.T) {
	counter := awsmetrics.New()
	plain, _ := testenv.S3(t)
	client, presign := testenv.S3(t, func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, counter.AddTo, conditionalCopy(plain))
	})
	bucket := testenv.FreshBucket(t, client)
	st := s3blob.New(client, presign, bucket)
	for _, size := range []int{3000, 6 * mib} { // one carry-over object; a multipart upload
		b := storagetest.RandomBytes(t, size)
		d := oci.FromBytes(oci.SHA256, b)

		counter.Reset()
		upload(t, st, b)
		if got := counter.Get("S3.CopyObject"); got != 1 {
			t.Fatalf("%d bytes, first commit: %d CopyObject, want 1 (%s)", size, got, counter)
		}
		if got := counter.Get("S3.HeadObject"); got != 0 {
			t.Fatalf("%d bytes, first commit of a new blob: %d HeadObject, want 0 (%s)", size, got, counter)
		}
		info, err := st.BlobInspect(t.Context(), d)
		if err != nil || !info.ChecksumMatches {
			t.Fatalf("%d bytes: the promoted blob carries no matching sha256 checksum (%+v, %v)", size, info, err)
		}

		counter.Reset()
		upload(t, st, b)
		// The conditional copy is refused (before the counter, by
		// conditionalCopy) and one HeadObject proves the stored blob.
		if c, h := counter.Get("S3.CopyObject"), counter.Get("S3.HeadObject"); c != 0 || h != 1 {
			t.Fatalf("%d bytes, repeated commit: %d CopyObject, %d HeadObject; want no copy and one HeadObject (%s)", size, c, h, counter)
		}
		checkBlob(t, st, d, b)
	}

	// An object at the key that cannot prove its content (no checksum,
	// wrong bytes) is replaced by the verified upload.
	b := storagetest.RandomBytes(t, 5000)
	d := oci.FromBytes(oci.SHA256, b)
	if _, err := client.PutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(s3blob.BlobKey(d)), Body: bytes.NewReader([]byte("not the blob")),
	}); err != nil {
		t.Fatal(err)
	}
	upload(t, st, b)
	checkBlob(t, st, d, b)
}

// conditionalCopy gives CopyObject S3's documented If-None-Match
// behaviour (412 PreconditionFailed when the destination exists), which
// neither versitygw v1.8.0 nor gofakes3 v0.0.12 implements for copies
// (both honour it on PutObject only, and copy regardless).
func conditionalCopy(plain *s3.Client) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("test/conditional-copy",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if cp, ok := in.Parameters.(*s3.CopyObjectInput); ok && aws.ToString(cp.IfNoneMatch) == "*" {
					_, err := plain.HeadObject(ctx, &s3.HeadObjectInput{Bucket: cp.Bucket, Key: cp.Key})
					if err == nil {
						return middleware.InitializeOutput{}, middleware.Metadata{},
							&smithy.GenericAPIError{Code: "PreconditionFailed", Message: "At least one of the pre-conditions you specified did not hold"}
					}
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.Before)
	}
}

func checkBlob(t *testing.T, st *s3blob.Store, d oci.Digest, want []byte) {
	t.Helper()
	rc, err := st.BlobOpen(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("blob %s: %d bytes stored, not the %d uploaded", d, len(got), len(want))
	}
}
