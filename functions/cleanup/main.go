// Command cleanup is the cleanup function, run hourly by an EventBridge
// schedule. For now it does what the core already has: it removes expired
// upload sessions and the data they staged in S3 (DynamoDB's TTL deletes
// lazily and would leave the staged objects behind). Garbage collection and
// retention rules arrive with their own issue.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berth-registry/berth/functions/internal/lambdaenv"
	"github.com/berth-registry/berth/pkg/driver/dynamo"
	"github.com/berth-registry/berth/pkg/driver/s3blob"
	"github.com/berth-registry/berth/pkg/registry"
)

type settings struct {
	table, bucket string
	level         slog.Level
}

func loadSettings(getenv func(string) string) (settings, error) {
	env := lambdaenv.New(getenv)
	s := settings{table: env.Required(lambdaenv.Table), bucket: env.Required(lambdaenv.Bucket), level: env.Level(lambdaenv.LogLevel)}
	return s, env.Err()
}

func main() {
	s, err := loadSettings(os.Getenv)
	log := lambdaenv.Logger(os.Stderr, s.level)
	if err != nil {
		log.Error("configuration", slog.Any("error", err))
		os.Exit(1)
	}
	awsCfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		log.Error("aws configuration", slog.Any("error", err))
		os.Exit(1)
	}
	items := dynamo.New(dynamodb.NewFromConfig(awsCfg), s.table)
	blobs := s3blob.New(s3.NewFromConfig(awsCfg), nil, s.bucket)
	reg := registry.New(registry.Config{Logger: log}, items, blobs)
	lambda.Start(newHandler(reg, log))
}

// sweeper is what the handler needs of *registry.Registry.
type sweeper interface {
	SweepUploads(ctx context.Context) (int, error)
}

// newHandler returns the scheduled-event handler. A failed sweep fails the
// invocation (visible in the function's error metric); the next hour's run
// picks up where it stopped.
func newHandler(reg sweeper, log *slog.Logger) func(ctx context.Context, ev events.EventBridgeEvent) error {
	return func(ctx context.Context, ev events.EventBridgeEvent) error {
		removed, err := reg.SweepUploads(ctx)
		attrs := []slog.Attr{slog.String("event", ev.ID), slog.Time("scheduled", ev.Time), slog.Int("removed", removed)}
		if err != nil {
			log.LogAttrs(ctx, slog.LevelError, "cleanup: sweep uploads", append(attrs, slog.Any("error", err))...)
			return err
		}
		log.LogAttrs(ctx, slog.LevelInfo, "cleanup: sweep uploads", attrs...)
		return nil
	}
}
