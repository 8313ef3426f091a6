package s3blob_test

import (
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/rclone/gofakes3"
	"github.com/rclone/gofakes3/s3mem"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/driver/s3blob"
	"github.com/berth-registry/berth/pkg/storage"
	"github.com/berth-registry/berth/pkg/storage/storagetest"
)

// TestBlobsVersity runs the conformance suite against versitygw, which
// enforces S3's 5 MiB minimum part size and checks checksums.
func TestBlobsVersity(t *testing.T) {
	client, presign := testenv.S3(t)
	storagetest.TestBlobs(t, func(t *testing.T) storage.Blobs {
		return s3blob.New(client, presign, testenv.FreshBucket(t, client))
	})
}

// gofakes3 is an in-process S3 (no part minimum, but quick).
func gofakes3Endpoint(t *testing.T) testenv.S3Endpoint {
	t.Helper()
	const ak, sk = "fakeaccess", "fakesecret"
	fake := gofakes3.New(s3mem.New(), gofakes3.WithV4Auth(map[string]string{ak: sk}))
	srv := httptest.NewServer(fake.Server())
	t.Cleanup(srv.Close)
	return testenv.S3Endpoint{URL: srv.URL, AccessKey: ak, SecretKey: sk}
}

func TestBlobsGofakes3(t *testing.T) {
	client, presign := testenv.S3Client(gofakes3Endpoint(t))
	storagetest.TestBlobs(t, func(t *testing.T) storage.Blobs {
		b := testenv.Name("b")
		if _, err := client.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
		return s3blob.New(client, presign, b)
	})
}

// TestDirectVersity runs the edge and direct-upload capabilities against
// versitygw, which checks presigned signatures, checksums and part sizes.
func TestDirectVersity(t *testing.T) {
	client, presign := testenv.S3(t)
	storagetest.TestDirect(t, func(t *testing.T) storagetest.Direct {
		return s3blob.New(client, presign, testenv.FreshBucket(t, client))
	})
}
