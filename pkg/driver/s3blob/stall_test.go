package s3blob_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/driver/s3blob"
	"github.com/berth-registry/berth/pkg/oci"
)

// stallReader hands out first, blocks until release is closed, then
// hands out rest: a request body that stalls.
type stallReader struct {
	first, rest []byte
	blocked     chan struct{}
	release     chan struct{}
	waited      bool
}

func (b *stallReader) Read(p []byte) (int, error) {
	if len(b.first) > 0 {
		n := copy(p, b.first)
		b.first = b.first[n:]
		return n, nil
	}
	if !b.waited {
		b.waited = true
		close(b.blocked)
		<-b.release
	}
	if len(b.rest) == 0 {
		return 0, io.EOF
	}
	n := copy(p, b.rest)
	b.rest = b.rest[n:]
	return n, nil
}

// A write that stalled past its lease and finishes after another write of
// the same offset was saved must not replace that write's carry-over: the
// carry becomes the blob's last bytes, which the registry verified from its
// running hash, not from the object (issue 11, point 1, on S3). Carry keys
// were named by offset alone, so the late write overwrote the saved one.
func TestStalledWriteCannotReplaceCarry(t *testing.T) {
	ctx := t.Context()
	client, presign := testenv.S3Client(gofakes3Endpoint(t))
	bucket := testenv.Name("b")
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	s := s3blob.New(client, presign, bucket)
	st0, err := s.UploadInit(ctx, "u1")
	if err != nil {
		t.Fatal(err)
	}
	late := &stallReader{first: bytes.Repeat([]byte{'Z'}, 50), rest: bytes.Repeat([]byte{'Z'}, 50),
		blocked: make(chan struct{}), release: make(chan struct{})}
	stalled := make(chan error, 1)
	go func() {
		_, _, err := s.UploadWrite(ctx, "u1", st0, 0, late)
		stalled <- err
	}()
	<-late.blocked

	content := bytes.Repeat([]byte{'a'}, 100)
	st, n, err := s.UploadWrite(ctx, "u1", st0, 0, bytes.NewReader(content))
	if err != nil || n != int64(len(content)) {
		t.Fatalf("write: %d, %v", n, err)
	}
	close(late.release)
	if err := <-stalled; err != nil {
		t.Logf("stalled write: %v", err)
	}
	d := oci.FromBytes(oci.SHA256, content)
	if err := s.UploadCommit(ctx, "u1", st, d, n, nil); err != nil {
		t.Fatal(err)
	}
	rc, err := s.BlobOpen(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, content) {
		t.Fatalf("blob %s holds %q", d, got)
	}
}
