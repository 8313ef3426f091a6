// Command cleanup is the cleanup function, run hourly by an EventBridge
// schedule. It removes expired upload sessions and the data they staged in
// S3 (DynamoDB's TTL deletes lazily and would leave the staged objects
// behind), then, when BERTH_RETENTION_POLICY holds an Amazon ECR lifecycle
// policy, applies it to every repository (docs/retention.md). With the
// edge upload path deployed (BERTH_EDGE_KVS_ARN) each run first rotates the
// upload token keys; and the api function invokes it with
// {"berth":"verify-upload",...} to verify a completed multipart direct
// upload (functions/internal/edgewire). Blob garbage collection arrives
// with its own issue.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berth-registry/berth/functions/internal/edgewire"
	"github.com/berth-registry/berth/functions/internal/lambdaenv"
	"github.com/berth-registry/berth/pkg/driver/dynamo"
	"github.com/berth-registry/berth/pkg/driver/s3blob"
	"github.com/berth-registry/berth/pkg/edge"
	"github.com/berth-registry/berth/pkg/edge/kvs"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/retention"
)

type settings struct {
	table, bucket string
	level         slog.Level
	retention     *retention.Policy // nil: no retention
	edgeKVSARN    string            // empty: no key rotation
}

func loadSettings(getenv func(string) string) (settings, error) {
	env := lambdaenv.New(getenv)
	s := settings{table: env.Required(lambdaenv.Table), bucket: env.Required(lambdaenv.Bucket), level: env.Level(lambdaenv.LogLevel),
		edgeKVSARN: env.String(lambdaenv.EdgeKVSARN, "")}
	var errs []error
	if raw := env.String(lambdaenv.RetentionPolicy, ""); raw != "" {
		p, err := retention.Parse([]byte(raw))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", lambdaenv.RetentionPolicy, err))
		}
		s.retention = p
	}
	return s, errors.Join(append([]error{env.Err()}, errs...)...)
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
	var keys edge.KeyAdmin // a nil interface turns rotation off
	if s.edgeKVSARN != "" {
		keys = kvs.NewFromConfig(awsCfg, s.edgeKVSARN)
	}
	scheduled := newHandler(reg, meta.New(items), s.retention, keys, time.Now, log)
	lambda.Start(edgewire.Handler(log, scheduled, registry.NewVerifier(items, blobs, log).Verify))
}

// sweeper is what the handler needs of *registry.Registry.
type sweeper interface {
	SweepUploads(ctx context.Context) (int, error)
}

// newHandler returns the scheduled-event handler: the upload token key
// rotation when keys is set (first: it is quick, and the edge path waits
// for the first key), the upload sweep, then retention when policy is
// set. A failed step fails the invocation
// (visible in the function's error metric) after the other step ran; the
// next hour's run picks up where it stopped. Retention stops starting work
// retention.Reserve before the invocation's deadline and says how many
// repositories it did not reach; the next run covers them.
func newHandler(reg sweeper, store *meta.Store, policy *retention.Policy, keys edge.KeyAdmin, now func() time.Time, log *slog.Logger) func(ctx context.Context, ev events.EventBridgeEvent) error {
	return func(ctx context.Context, ev events.EventBridgeEvent) error {
		var rotateErr error
		if keys != nil {
			rotateErr = edgewire.Rotate(ctx, keys, now(), log)
		}
		removed, sweepErr := reg.SweepUploads(ctx)
		attrs := []slog.Attr{slog.String("event", ev.ID), slog.Time("scheduled", ev.Time), slog.Int("removed", removed)}
		if sweepErr != nil {
			log.LogAttrs(ctx, slog.LevelError, "cleanup: sweep uploads", append(attrs, slog.Any("error", sweepErr))...)
		} else {
			log.LogAttrs(ctx, slog.LevelInfo, "cleanup: sweep uploads", attrs...)
		}
		if policy == nil {
			return errors.Join(rotateErr, sweepErr)
		}
		rep, err := retention.Apply(ctx, store, policy, now(), log)
		attrs = []slog.Attr{
			slog.String("event", ev.ID), slog.Int("repositories", rep.Repositories), slog.Int("expired", rep.Expired),
			slog.Int("failed", rep.Failed), slog.Int("remaining", rep.Remaining), slog.Bool("stopped", rep.Stopped),
		}
		if err != nil {
			log.LogAttrs(ctx, slog.LevelError, "cleanup: retention", append(attrs, slog.Any("error", err))...)
		} else {
			log.LogAttrs(ctx, slog.LevelInfo, "cleanup: retention", attrs...)
		}
		return errors.Join(rotateErr, sweepErr, err)
	}
}
