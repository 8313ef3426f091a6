package s3blob_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/driver/s3blob"
)

func TestCreateBucket(t *testing.T) {
	for name, ep := range map[string]testenv.S3Endpoint{"versitygw": testenv.S3Emulator(t), "gofakes3": gofakes3Endpoint(t)} {
		t.Run(name, func(t *testing.T) {
			client, presign := testenv.S3Client(ep)
			st := s3blob.New(client, presign, testenv.Name("berth-create-"))
			for range 2 { // creating an existing bucket is fine
				if err := st.CreateBucket(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := client.DeleteBucket(t.Context(), &s3.DeleteBucketInput{Bucket: aws.String(st.Bucket())}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
