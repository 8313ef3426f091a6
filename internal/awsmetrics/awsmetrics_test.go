package awsmetrics_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	"github.com/rclone/gofakes3"
	"github.com/rclone/gofakes3/s3mem"

	"github.com/berth-registry/berth/internal/awsmetrics"
	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/metrics"
)

func TestCounter(t *testing.T) {
	srv := httptest.NewServer(gofakes3.New(s3mem.New(), gofakes3.WithV4Auth(map[string]string{"fakeaccess": "fakesecret"})).Server())
	defer srv.Close()
	c := awsmetrics.New()
	client, _ := testenv.S3Client(testenv.S3Endpoint{URL: srv.URL, AccessKey: "fakeaccess", SecretKey: "fakesecret"},
		func(o *s3.Options) { o.APIOptions = append(o.APIOptions, c.AddTo) })
	ctx := t.Context()
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("bkt")}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bkt"), Key: aws.String("k"), Body: strings.NewReader("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.Get("S3.PutObject"); got != 2 {
		t.Fatalf("PutObject count %d, want 2 (%s)", got, c)
	}
	if got := c.Total("S3"); got != 3 {
		t.Fatalf("S3 total %d, want 3 (%s)", got, c)
	}
	if got := c.String(); got != "S3.CreateBucket=1 S3.PutObject=2" {
		t.Fatalf("String() = %q", got)
	}
	c.Reset()
	if c.Total("") != 0 {
		t.Fatalf("after Reset: %s", c)
	}
}

type adds map[string]float64

func (a adds) Add(name string, v float64) { a[name] += v }

// TestRetries answers a DynamoDB call twice with a throttling error, then
// once with a 500, then with success: three retries, two of them throttles.
func TestRetries(t *testing.T) {
	var calls int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		switch calls {
		case 1, 2:
			w.WriteHeader(400)
			_, _ = w.Write([]byte(`{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"slow down"}`))
		case 3:
			w.WriteHeader(500)
			_, _ = w.Write([]byte(`{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"oops"}`))
		default:
			_, _ = w.Write([]byte(`{"TableNames":[]}`))
		}
	}))
	defer srv.Close()
	rec := adds{}
	client := dynamodb.New(dynamodb.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider("a", "b", ""),
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = 5
			o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
		}),
		APIOptions: []func(*middleware.Stack) error{awsmetrics.Retries(rec)},
	})
	if _, err := client.ListTables(t.Context(), &dynamodb.ListTablesInput{}); err != nil {
		t.Fatal(err)
	}
	if rec[metrics.DynamoDBRetries] != 3 || rec[metrics.DynamoDBThrottles] != 2 || len(rec) != 2 {
		t.Fatalf("recorded %v, want 3 retries and 2 throttles", rec)
	}
}
