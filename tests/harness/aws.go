package harness

import (
	"os"
	"testing"
)

// awsEmulators returns the environment that points the AWS SDK at the
// emulators tests/emulators.sh started.
func awsEmulators(tb testing.TB) []string {
	tb.Helper()
	s3, ddb := os.Getenv("AWS_ENDPOINT_URL_S3"), os.Getenv("AWS_ENDPOINT_URL_DYNAMODB")
	if s3 == "" || ddb == "" {
		tb.Fatal("AWS backend: AWS_ENDPOINT_URL_S3 and AWS_ENDPOINT_URL_DYNAMODB must point at the emulators (tests/emulators.sh start)")
	}
	return nil
}
