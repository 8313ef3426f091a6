// Command cleanup is the cleanup function, run hourly by an EventBridge
// schedule. It removes expired upload sessions and the data they staged in
// S3 (DynamoDB's TTL deletes lazily and would leave the staged objects
// behind), then, when BERTH_RETENTION_POLICY holds an Amazon ECR lifecycle
// policy, applies it to every repository (docs/retention.md). With the
// edge upload path deployed (BERTH_EDGE_KVS_ARN) each run first rotates the
// upload token keys; and the api function invokes it with
// {"berth":"verify-upload",...} to verify a completed multipart direct
// upload (functions/internal/edgewire). The job itself lives in
// functions/internal/cleanupwire. Every run ends with a garbage collection
// pass (docs/gc.md) unless BERTH_GC_GRACE is 0.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/berth-registry/berth/functions/internal/cleanupwire"
	"github.com/berth-registry/berth/functions/internal/lambdaenv"
	"github.com/berth-registry/berth/pkg/awsbackend"
	"github.com/berth-registry/berth/pkg/gc"
	"github.com/berth-registry/berth/pkg/metrics"
	"github.com/berth-registry/berth/pkg/retention"
)

func loadSettings(getenv func(string) string) (cleanupwire.Settings, error) {
	env := lambdaenv.New(getenv)
	s := cleanupwire.Settings{
		Backend: awsbackend.Settings{Table: env.Required(lambdaenv.Table), Bucket: env.Required(lambdaenv.Bucket)},
		Level:   env.Level(lambdaenv.LogLevel), EdgeKVSARN: env.String(lambdaenv.EdgeKVSARN, ""),
		GCGrace:  env.Duration(lambdaenv.GCGrace, gc.DefaultGrace),
		EventBus: lambdaenv.BusName(env.String(lambdaenv.EventBus, "")),
	}
	var policyErr error
	if raw := env.String(lambdaenv.RetentionPolicy, ""); raw != "" {
		if s.Retention, policyErr = retention.Parse([]byte(raw)); policyErr != nil {
			policyErr = fmt.Errorf("%s: %w", lambdaenv.RetentionPolicy, policyErr)
		}
	}
	return s, errors.Join(env.Err(), policyErr)
}

func main() {
	s, err := loadSettings(os.Getenv)
	log := lambdaenv.Logger(os.Stderr, s.Level)
	if err != nil {
		log.Error("configuration", slog.Any("error", err))
		os.Exit(1)
	}
	ctx := context.Background()
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		log.Error("aws configuration", slog.Any("error", err))
		os.Exit(1)
	}
	// EMF lines go to stdout, the function's log group (docs/audit.md).
	emf := metrics.NewEMF(os.Stdout, os.Getenv("AWS_LAMBDA_FUNCTION_NAME"))
	s.Metrics = emf
	h, err := cleanupwire.Handler(ctx, awsCfg, s, log)
	if err != nil {
		log.Error("init", slog.Any("error", err))
		os.Exit(1)
	}
	lambda.Start(metrics.InvocationErr(emf, h))
}
