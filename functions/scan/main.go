// Command scan is the scan function: S3 ObjectCreated events for blobs/.
//
// Layer indexing and vulnerability matching (the scanning issue) arrive with their
// own issue. Until then this function does only what exists: it checks that
// each record is a blob of this registry's bucket under its content address
// and logs it, so the notification wiring is exercised end to end and a
// misrouted event is visible in the logs. It stores nothing.
package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/berth-registry/berth/functions/internal/lambdaenv"
	"github.com/berth-registry/berth/pkg/oci"
)

type config struct {
	bucket string
	level  slog.Level
}

func loadConfig(getenv func(string) string) (config, error) {
	env := lambdaenv.New(getenv)
	c := config{bucket: env.Required(lambdaenv.Bucket), level: env.Level(lambdaenv.LogLevel)}
	return c, env.Err()
}

func main() {
	cfg, err := loadConfig(os.Getenv)
	log := lambdaenv.Logger(os.Stderr, cfg.level)
	if err != nil {
		log.Error("configuration", slog.Any("error", err))
		os.Exit(1)
	}
	lambda.Start(newHandler(cfg, log))
}

// newHandler returns the S3 event handler. It never fails the invocation:
// a record it cannot use would fail the same way on every retry.
func newHandler(cfg config, log *slog.Logger) func(ctx context.Context, ev events.S3Event) error {
	return func(ctx context.Context, ev events.S3Event) error {
		for _, rec := range ev.Records {
			key := rec.S3.Object.URLDecodedKey
			attrs := []slog.Attr{slog.String("event", rec.EventName), slog.String("bucket", rec.S3.Bucket.Name), slog.String("key", key)}
			d, err := blobDigest(key)
			switch {
			case rec.EventSource != "aws:s3" || !strings.HasPrefix(rec.EventName, "ObjectCreated:"):
				log.LogAttrs(ctx, slog.LevelWarn, "scan: ignored event", attrs...)
			case rec.S3.Bucket.Name != cfg.bucket:
				log.LogAttrs(ctx, slog.LevelWarn, "scan: event for another bucket", attrs...)
			case err != nil:
				log.LogAttrs(ctx, slog.LevelWarn, "scan: not a blob key", append(attrs, slog.Any("error", err))...)
			default:
				log.LogAttrs(ctx, slog.LevelInfo, "scan: blob created", append(attrs, slog.String("digest", string(d)), slog.Int64("size", rec.S3.Object.Size))...)
			}
		}
		return nil
	}
}

// blobDigest parses a key of the form blobs/<algorithm>/<hex>.
func blobDigest(key string) (oci.Digest, error) {
	rest, ok := strings.CutPrefix(key, "blobs/")
	alg, hex, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 {
		return "", errNotBlob
	}
	return oci.ParseDigest(alg + ":" + hex)
}

var errNotBlob = errors.New("key is not blobs/<algorithm>/<hex>")
