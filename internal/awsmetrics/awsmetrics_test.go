package awsmetrics_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/rclone/gofakes3"
	"github.com/rclone/gofakes3/s3mem"

	"github.com/berth-registry/berth/internal/awsmetrics"
	"github.com/berth-registry/berth/internal/testenv"
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
