// Command scan is the scan function (docs/deploy.md, "Deploying
// scanning"): S3 ObjectCreated events for blobs/ index layers, registry
// push and delete events scan images and forget them, and the osvsync
// function's re-match request re-matches every scanned image. The handler
// and the scanner's assembly live in functions/internal/scanwire; the
// layer indexer is pkg/layerindex, spooling to /tmp beside the OSV cache.
package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/berth-registry/berth/functions/internal/lambdaenv"
	"github.com/berth-registry/berth/functions/internal/scanwire"
	"github.com/berth-registry/berth/pkg/awsbackend"
	"github.com/berth-registry/berth/pkg/layerindex"
	"github.com/berth-registry/berth/pkg/metrics"
)

func loadSettings(getenv func(string) string) (scanwire.Settings, error) {
	env := lambdaenv.New(getenv)
	s := scanwire.Settings{
		Backend:  awsbackend.Settings{Table: env.Required(lambdaenv.Table), Bucket: env.Required(lambdaenv.Bucket)},
		Level:    env.Level(lambdaenv.LogLevel),
		EventBus: lambdaenv.BusName(env.String(lambdaenv.EventBus, "")),
	}
	return s, env.Err()
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
	spool := filepath.Join(os.TempDir(), "spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		log.Error("init", slog.Any("error", err))
		os.Exit(1)
	}
	// EMF lines go to stdout, the function's log group (docs/audit.md).
	emf := metrics.NewEMF(os.Stdout, os.Getenv("AWS_LAMBDA_FUNCTION_NAME"))
	s.Metrics = emf
	sc, err := scanwire.New(ctx, awsCfg, s, layerindex.New(layerindex.Limits{TempDir: spool}), log)
	if err != nil {
		log.Error("init", slog.Any("error", err))
		os.Exit(1)
	}
	lambda.Start(metrics.InvocationErr(emf, scanwire.Handler(sc, s.Backend.Bucket, log)))
}
