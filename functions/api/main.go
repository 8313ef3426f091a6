// Command api is the API function: the OCI Distribution /v2/ API behind
// API Gateway (HTTP API, payload format 2.0), over DynamoDB and S3.
// Configuration comes from environment variables only (docs/lambda.md);
// clients are built once per cold start (functions/internal/apiwire).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	lambdart "github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/berth-registry/berth/functions/internal/afterresponse"
	"github.com/berth-registry/berth/functions/internal/apiwire"
	"github.com/berth-registry/berth/functions/internal/lambdaenv"
	"github.com/berth-registry/berth/pkg/apigw"
	"github.com/berth-registry/berth/pkg/audit"
	"github.com/berth-registry/berth/pkg/awsbackend"
	"github.com/berth-registry/berth/pkg/immutability"
	"github.com/berth-registry/berth/pkg/metrics"
)

func main() {
	s, err := loadSettings(os.Getenv)
	log := lambdaenv.Logger(os.Stderr, s.Level)
	if err != nil {
		log.Error("configuration", slog.Any("error", err))
		os.Exit(1)
	}
	ctx := context.Background()
	// Events go out after the response (docs/events.md "Overhead"); if
	// the extension cannot register, before it, as without the extension.
	var ext *afterresponse.Extension
	if s.EventBus != "" {
		if ext, err = afterresponse.Register(ctx, os.Getenv("AWS_LAMBDA_RUNTIME_API"), log); err != nil {
			log.Warn("events are delivered before each response", slog.Any("error", err))
		} else {
			s.AfterResponse = ext
			go func() {
				if err := ext.Run(ctx); err != nil {
					log.Error("after-response extension stopped; events are delivered before each response from now on", slog.Any("error", err))
				}
			}()
		}
	}
	// Audit records and EMF lines go to stdout, the function's log group,
	// apart from the diagnostic log on stderr (docs/audit.md).
	emf := metrics.NewEMF(os.Stdout, os.Getenv("AWS_LAMBDA_FUNCTION_NAME"))
	s.Audit, s.Metrics = audit.NewLogger(os.Stdout), emf
	var h http.Handler
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err == nil {
		h, err = apiwire.Handler(ctx, awsCfg, s, log)
	}
	if err != nil {
		log.Error("init", slog.Any("error", err))
		os.Exit(1)
	}
	handler := metrics.Invocation(emf, apigw.Handler(h))
	if ext != nil {
		handler = afterresponse.Wrap(ext, handler)
	}
	lambdart.Start(handler)
}

func loadSettings(getenv func(string) string) (apiwire.Settings, error) {
	env := lambdaenv.New(getenv)
	s := apiwire.Settings{
		Backend: awsbackend.Settings{
			Table:         env.Required(lambdaenv.Table),
			Bucket:        env.Required(lambdaenv.Bucket),
			PresignExpiry: env.Duration(lambdaenv.PresignExpiry, awsbackend.DefaultPresignExpiry),
			CloudFront: awsbackend.CloudFront{URL: env.String(lambdaenv.CDNURL, ""),
				KeyPairID: env.String(lambdaenv.CDNKeyPairID, ""), KeySecret: env.String(lambdaenv.CDNPrivateKeySecret, "")},
		},
		Level:        env.Level(lambdaenv.LogLevel),
		UploadTTL:    env.Duration(lambdaenv.UploadTTL, lambdaenv.DefaultUploadTTL),
		MaxBodyBytes: env.Int64(lambdaenv.MaxBodyBytes, apigw.MaxBodyBytes),
		EdgeKVSARN:   env.String(lambdaenv.EdgeKVSARN, ""),
		// Read as written: a name, or an ARN for another account's function.
		CleanupFunction: env.String(lambdaenv.CleanupFunction, ""),
		EventBus:        lambdaenv.BusName(env.String(lambdaenv.EventBus, "")),
	}
	// Invalid rules stop the cold start (fail closed): a function that
	// would let immutable tags move must not serve.
	env.Parse(lambdaenv.TagImmutability, func(v string) (err error) {
		s.TagImmutability, err = immutability.Parse([]byte(v))
		return err
	})
	if env.Bool(lambdaenv.Auth, true) {
		s.Auth = apiwire.AuthConfig(env.Required(lambdaenv.Service), env.Required(lambdaenv.TokenKMSKeyID),
			env.Required(lambdaenv.AuthPolicyParam), env.String(lambdaenv.TokenIssuer, ""))
	}
	err := env.Err()
	if cfErr := s.Backend.CloudFront.Validate(); cfErr != nil {
		err = errors.Join(err, fmt.Errorf("%s, %s and %s: %w", lambdaenv.CDNURL, lambdaenv.CDNKeyPairID, lambdaenv.CDNPrivateKeySecret, cfErr))
	}
	return s, err
}
