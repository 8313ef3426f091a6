// Command api is the API function: the OCI Distribution /v2/ API behind
// API Gateway (HTTP API, payload format 2.0), over DynamoDB and S3.
// Configuration comes from environment variables only (docs/lambda.md);
// clients are built once per cold start.
package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"

	lambdart "github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/berth-registry/berth/functions/internal/edgewire"
	"github.com/berth-registry/berth/functions/internal/lambdaenv"
	"github.com/berth-registry/berth/pkg/apigw"
	"github.com/berth-registry/berth/pkg/auth"
	"github.com/berth-registry/berth/pkg/driver/dynamo"
	"github.com/berth-registry/berth/pkg/driver/s3blob"
	"github.com/berth-registry/berth/pkg/registry"
)

func main() {
	s, err := loadSettings(os.Getenv)
	log := lambdaenv.Logger(os.Stderr, s.level)
	if err != nil {
		log.Error("configuration", slog.Any("error", err))
		os.Exit(1)
	}
	h, err := build(context.Background(), s, log)
	if err != nil {
		log.Error("init", slog.Any("error", err))
		os.Exit(1)
	}
	lambdart.Start(apigw.Handler(h))
}

// build creates the AWS clients and the handler (once per cold start).
func build(ctx context.Context, s settings, log *slog.Logger) (http.Handler, error) {
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, err
	}
	s3c := s3.NewFromConfig(awsCfg)
	opts := []s3blob.Option{s3blob.WithPresignExpiry(s.presignExpiry)}
	if s.cdnURL != "" {
		key, err := edgewire.CDNKey(ctx, secretsmanager.NewFromConfig(awsCfg), s.cdnKeySecret)
		if err != nil {
			return nil, err
		}
		opts = append(opts, s3blob.WithCloudFront(s.cdnURL, s.cdnKeyPairID, key))
	}
	blobs := s3blob.New(s3c, s3.NewPresignClient(s3c), s.bucket, opts...)
	items := dynamo.New(dynamodb.NewFromConfig(awsCfg), s.table)
	var guard func(http.Handler) http.Handler
	if s.authOn {
		s.auth.Logger = log
		setup, err := auth.NewAWS(ctx, awsCfg, s.auth)
		if err != nil {
			return nil, err
		}
		guard = setup.Middleware
	}
	cfg := registry.Config{EdgeTokens: edgewire.Tokens(awsCfg, s.edgeKVSARN)}
	if s.cleanupFunction != "" {
		cfg.StartVerify = edgewire.StartVerify(lambda.NewFromConfig(awsCfg), s.cleanupFunction)
	}
	return newHandler(s, log, items, blobs, guard, cfg), nil
}
