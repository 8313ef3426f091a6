package bench

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berth-registry/berth/internal/testenv"
)

// emulators are the endpoints of DynamoDB Local and versitygw: the ones
// tests/emulators.sh exported, or started by testenv for this test binary.
type emulators struct {
	dynamoDB                     string
	s3, s3AccessKey, s3SecretKey string
}

func startEmulators(t *testing.T) emulators {
	ep := testenv.S3Emulator(t)
	return emulators{dynamoDB: testenv.DynamoDBEndpoint(t), s3: ep.URL, s3AccessKey: ep.AccessKey, s3SecretKey: ep.SecretKey}
}

// s3Client returns a path-style client and presign client for the S3
// emulator at endpoint (the emulator itself, or a proxy in front of it).
func (e emulators) s3Client(endpoint string, opts ...func(*s3.Options)) (*s3.Client, *s3.PresignClient) {
	return testenv.S3Client(testenv.S3Endpoint{URL: endpoint, AccessKey: e.s3AccessKey, SecretKey: e.s3SecretKey}, opts...)
}

// dynamoClient returns a DynamoDB Local client.
func (e emulators) dynamoClient(opts ...func(*dynamodb.Options)) *dynamodb.Client {
	return testenv.DynamoDBClient(e.dynamoDB, opts...)
}

// freshTable creates a table with the production schema, deleted when the
// test ends.
func (e emulators) freshTable(t *testing.T) string { return testenv.FreshTable(t, e.dynamoClient()) }

// freshBucket creates a bucket, emptied and deleted when the test ends.
func (e emulators) freshBucket(t *testing.T) string {
	c, _ := e.s3Client(e.s3)
	return testenv.FreshBucket(t, c)
}
