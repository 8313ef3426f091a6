package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/berth-registry/berth/pkg/awsbackend"
)

// openAWS opens the S3 blob and DynamoDB metadata drivers through
// awsbackend, the builder the functions use too. Credentials, region and
// endpoints come from the standard AWS configuration chain.
func openAWS(ctx context.Context, c awsFlags, log *slog.Logger) (backend, error) {
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return backend{}, fmt.Errorf("aws config: %w", err)
	}
	be, err := awsbackend.Open(ctx, awsCfg, c.Settings, log)
	if err != nil {
		return backend{}, err
	}
	// The AWS drivers hold no resources of their own to release.
	return backend{items: be.Items, blobs: be.Blobs, aws: awsCfg, close: func() error { return nil }}, nil
}
