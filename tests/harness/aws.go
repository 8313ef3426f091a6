package harness

import (
	"os"
	"testing"
)

// Environment variables naming the running emulators; tests/emulators.sh
// sets them and tests/run.sh exports them (internal/testenv reads the
// same names).
const (
	EnvDynamoDB    = "BERTH_TEST_DYNAMODB_ENDPOINT"
	EnvS3          = "BERTH_TEST_S3_ENDPOINT"
	EnvS3AccessKey = "BERTH_TEST_S3_ACCESS_KEY"
	EnvS3SecretKey = "BERTH_TEST_S3_SECRET_KEY"
)

// EmulatorsRunning reports whether the emulators' endpoints are set.
func EmulatorsRunning() bool {
	return os.Getenv(EnvDynamoDB) != "" && os.Getenv(EnvS3) != ""
}

// awsEmulators returns the environment that points the AWS SDK in
// `berth serve` at the emulators: endpoints, the S3 emulator's
// credentials (DynamoDB Local accepts any), a region, and nothing from the
// caller's own AWS configuration.
func awsEmulators(tb testing.TB) []string {
	tb.Helper()
	if !EmulatorsRunning() {
		tb.Fatalf("the AWS backends need the emulators: run tests/emulators.sh start and export %s, %s, %s and %s (tests/run.sh does)",
			EnvDynamoDB, EnvS3, EnvS3AccessKey, EnvS3SecretKey)
	}
	return []string{
		"AWS_ENDPOINT_URL_S3=" + os.Getenv(EnvS3),
		"AWS_ENDPOINT_URL_DYNAMODB=" + os.Getenv(EnvDynamoDB),
		"AWS_ACCESS_KEY_ID=" + os.Getenv(EnvS3AccessKey),
		"AWS_SECRET_ACCESS_KEY=" + os.Getenv(EnvS3SecretKey),
		"AWS_SESSION_TOKEN=",
		"AWS_REGION=us-east-1",
		"AWS_PROFILE=",
		"AWS_CONFIG_FILE=" + os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE=" + os.DevNull,
		"AWS_EC2_METADATA_DISABLED=true",
	}
}
