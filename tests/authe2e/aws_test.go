package authe2e

import (
	"testing"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/driver/dynamo"
	"github.com/berth-registry/berth/pkg/driver/s3blob"
	"github.com/berth-registry/berth/pkg/storage"
)

// The AWS backend is built the way pkg/registry's AWS tests build it, on a
// fresh table of DynamoDB Local and a fresh bucket of versitygw (from
// internal/testenv), with blob GETs redirected to presigned S3 URLs.

// emulators names a running DynamoDB Local and versitygw.
type emulators struct {
	dynamoDB string
	s3       testenv.S3Endpoint
}

// startEmulators returns the emulators named by the BERTH_TEST_* variables
// (make test starts them once for every suite), else the pair testenv starts
// for this test binary.
func startEmulators(t *testing.T) emulators {
	t.Helper()
	return emulators{dynamoDB: testenv.DynamoDBEndpoint(t), s3: testenv.S3Emulator(t)}
}

// awsStores returns the DynamoDB and S3 drivers over a fresh table and
// bucket, both deleted when t ends. Blob GETs answer 307 to a presigned
// versitygw URL, which every client must follow.
func awsStores(t *testing.T, e emulators) (storage.Items, storage.Blobs) {
	t.Helper()
	ddb := testenv.DynamoDBClient(e.dynamoDB)
	s3c, presign := testenv.S3Client(e.s3)
	items := dynamo.New(ddb, testenv.FreshTable(t, ddb))
	return items, s3blob.New(s3c, presign, testenv.FreshBucket(t, s3c))
}
