package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/berth-registry/berth/pkg/driver/dynamo"
	"github.com/berth-registry/berth/pkg/driver/s3blob"
	"github.com/berth-registry/berth/pkg/storage"
)

// openAWS opens the S3 blob and DynamoDB metadata drivers. Credentials,
// region and endpoints come from the standard AWS configuration chain.
func openAWS(ctx context.Context, c awsConfig, log *slog.Logger) (backend, error) {
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return backend{}, fmt.Errorf("aws config: %w", err)
	}
	if awsCfg.Region == "" {
		return backend{}, errors.New("aws config: no region (set AWS_REGION)")
	}
	s3c := s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.UsePathStyle = c.S3PathStyle })
	opts := []s3blob.Option{s3blob.WithPresignExpiry(c.PresignExpiry)}
	if c.CDNURL != "" {
		key, err := s3blob.LoadCloudFrontKey(ctx, c.CDNPrivateKey, secretsmanager.NewFromConfig(awsCfg))
		if err != nil {
			return backend{}, err
		}
		opts = append(opts, s3blob.WithCloudFront(c.CDNURL, c.CDNKeyPairID, key))
	}
	blobStore := s3blob.New(s3c, s3.NewPresignClient(s3c), c.Bucket, opts...)
	items := dynamo.New(dynamodb.NewFromConfig(awsCfg), c.Table)
	if c.Create {
		if err := blobStore.CreateBucket(ctx); err != nil {
			return backend{}, err
		}
		if err := items.CreateTable(ctx); err != nil {
			return backend{}, err
		}
		log.Info("storage ready", slog.String("bucket", c.Bucket), slog.String("table", c.Table))
	}
	var blobs storage.Blobs = blobStore
	if c.NoRedirect {
		blobs = s3blob.WithoutRedirect(blobStore)
	}
	return backend{items: items, blobs: blobs, close: func() error { return nil }}, nil
}
