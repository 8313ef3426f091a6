package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/berth-registry/berth/pkg/awsbackend"
)

// openCheckedAWS opens the AWS drivers as openAWS does and proves they
// can be used (credentials, bucket, table) before the server says it is
// listening: without the check a server with no credentials looked healthy
// and answered 500 to everything but /v2/. The Lambda cold-start emulation
// calls openAWS alone, as the deployed function does not check.
func openCheckedAWS(ctx context.Context, c awsFlags, log *slog.Logger) (backend, error) {
	return openAWSChecked(ctx, c, log, true)
}

// openAWS opens the S3 blob and DynamoDB metadata drivers through
// awsbackend, the builder the functions use too. Credentials, region and
// endpoints come from the standard AWS configuration chain.
func openAWS(ctx context.Context, c awsFlags, log *slog.Logger) (backend, error) {
	return openAWSChecked(ctx, c, log, false)
}

func openAWSChecked(ctx context.Context, c awsFlags, log *slog.Logger, check bool) (backend, error) {
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return backend{}, fmt.Errorf("aws config: %w", err)
	}
	be, err := awsbackend.Open(ctx, awsCfg, c.Settings, log)
	if err != nil {
		return backend{}, err
	}
	if check {
		// A start-up check must not hang on an unreachable endpoint.
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := be.Check(cctx); err != nil {
			return backend{}, err
		}
	}
	// The AWS drivers hold no resources of their own to release.
	return backend{items: be.Items, blobs: be.Blobs, lister: be.Lister, objects: be.Objects, aws: awsCfg, close: func() error { return nil }}, nil
}
