// Package scanwire is the scan function behind its main: the handler that
// turns the function's events into pkg/scan calls, the assembly of the
// scanner from an aws.Config, and the OSV data the matcher reads from the
// bucket (OSVData).
//
// The function's events (docs/deploy.md, "Deploying scanning"):
//   - S3 ObjectCreated under blobs/ (the bucket notification): index the
//     layer (scan.Scanner.IndexLayer; blobs that are no layer are recorded
//     as such after a few bytes).
//   - EventBridge registry events (the push rule): scan.JobOf says what
//     each asks, a "Berth Image Action" PUSH of an image or index being a
//     scan of it (ScanManifest: merge, match, attach SBOM and report).
//   - {"berth":"rematch"} from the osvsync function after it stored new
//     data: re-match every scanned image (Rematch).
package scanwire

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berth-registry/berth/functions/internal/apiwire"
	"github.com/berth-registry/berth/pkg/awsbackend"
	berthevents "github.com/berth-registry/berth/pkg/events"
	"github.com/berth-registry/berth/pkg/events/eventbridge"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/osvsync"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/scan"
)

// DefaultDataDir is where the OSV exports are cached: Lambda's /tmp (the
// function's EphemeralStorage sizes it).
const DefaultDataDir = "/tmp/osv"

// Settings is the scan function's configuration.
type Settings struct {
	Backend awsbackend.Settings
	// Metrics counts the scanner's figures (metrics.EMF on stdout); nil:
	// none.
	Metrics scan.Counter
	Level   slog.Level
	// EventBus receives the "Berth Image Scan" events and the push events
	// of the artifacts the scanner attaches (a name or ARN); "": none.
	EventBus string
	// DataDir caches the OSV exports; "": DefaultDataDir.
	DataDir string
}

// New builds the scanner (once per cold start): the AWS drivers, the
// registry handler it pushes its artifacts through (built as the api
// function's, without auth: the scanner is trusted and its requests never
// leave the process), the OSV data under osv/ in the bucket, and ix, the
// layer indexer.
func New(ctx context.Context, cfg aws.Config, s Settings, ix scan.Indexer, log *slog.Logger) (*scan.Scanner, error) {
	// Blob GETs through the handler serve bytes: a redirect to a presigned
	// URL is for clients, not for a request that never leaves the process.
	s.Backend.NoRedirect = true
	be, err := awsbackend.Open(ctx, cfg, s.Backend, log)
	if err != nil {
		return nil, err
	}
	var regCfg registry.Config
	var emitter berthevents.Emitter
	if s.EventBus != "" {
		eb := eventbridge.NewFromConfig(cfg, s.EventBus, log)
		regCfg.Events, emitter = eb, eb
	}
	handler := apiwire.New(apiwire.Settings{}, log, be.Items, be.Blobs, nil, regCfg)
	dir := s.DataDir
	if dir == "" {
		dir = DefaultDataDir
	}
	data := NewOSVData(s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = s.Backend.S3PathStyle }),
		s.Backend.Bucket, osvsync.DefaultPrefix, dir, log)
	return scan.New(scan.Config{
		Blobs:    be.Blobs,
		Items:    be.Items,
		Indexes:  scan.NewIndexStore(be.Objects),
		Indexer:  ix,
		Data:     func(ctx context.Context) (scan.Matcher, error) { return data.DB(ctx) },
		Registry: handler,
		Events:   emitter,
		Metrics:  s.Metrics,
		Logger:   log,
	}), nil
}

// Scanner is what the handler asks of a scan.Scanner.
type Scanner interface {
	Do(ctx context.Context, j scan.Job) error
	RematchStats(ctx context.Context) (scan.RematchStats, error)
}

// probe tells the three event shapes apart.
type probe struct {
	Berth      string            `json:"berth"`
	Records    []json.RawMessage `json:"Records"`
	DetailType string            `json:"detail-type"`
}

// Handler returns the function's entry point. A record or event it cannot
// use (another bucket, a key that is no blob, an event of another source)
// is logged and dropped: it would fail the same way on every retry. A
// failed index, scan or re-match fails the invocation, so Lambda's
// asynchronous retries (two) run it again; each step is idempotent (an
// index already stored is not redone, a scan replaces its artifacts).
func Handler(sc Scanner, bucket string, log *slog.Logger) func(context.Context, json.RawMessage) error {
	return func(ctx context.Context, raw json.RawMessage) error {
		var p probe
		if err := json.Unmarshal(raw, &p); err != nil {
			log.LogAttrs(ctx, slog.LevelWarn, "scan: event is not JSON", slog.Any("error", err))
			return nil
		}
		switch {
		case p.Berth == osvsync.KindRematch:
			return rematch(ctx, sc, raw, log)
		case len(p.Records) > 0:
			var ev events.S3Event
			if err := json.Unmarshal(raw, &ev); err != nil {
				log.LogAttrs(ctx, slog.LevelWarn, "scan: malformed S3 event", slog.Any("error", err))
				return nil
			}
			return indexLayers(ctx, sc, bucket, ev, log)
		case p.DetailType != "":
			var ev events.EventBridgeEvent
			if err := json.Unmarshal(raw, &ev); err != nil {
				log.LogAttrs(ctx, slog.LevelWarn, "scan: malformed EventBridge event", slog.Any("error", err))
				return nil
			}
			return registryEvent(ctx, sc, ev, log)
		}
		log.LogAttrs(ctx, slog.LevelWarn, "scan: unknown event", slog.String("event", truncate(string(raw), 256)))
		return nil
	}
}

// indexLayers indexes every blob record; failures are joined.
func indexLayers(ctx context.Context, sc Scanner, bucket string, ev events.S3Event, log *slog.Logger) error {
	var errs []error
	for _, rec := range ev.Records {
		key := rec.S3.Object.URLDecodedKey
		attrs := []slog.Attr{slog.String("event", rec.EventName), slog.String("bucket", rec.S3.Bucket.Name), slog.String("key", key)}
		d, err := BlobDigest(key)
		switch {
		case rec.EventSource != "aws:s3" || !strings.HasPrefix(rec.EventName, "ObjectCreated:"):
			log.LogAttrs(ctx, slog.LevelWarn, "scan: ignored event", attrs...)
			continue
		case rec.S3.Bucket.Name != bucket:
			log.LogAttrs(ctx, slog.LevelWarn, "scan: event for another bucket", attrs...)
			continue
		case err != nil:
			log.LogAttrs(ctx, slog.LevelWarn, "scan: not a blob key", append(attrs, slog.Any("error", err))...)
			continue
		}
		attrs = append(attrs, slog.String("digest", string(d)), slog.Int64("size", rec.S3.Object.Size))
		if err := sc.Do(ctx, scan.Job{Kind: scan.JobIndex, Digest: d}); err != nil {
			log.LogAttrs(ctx, slog.LevelError, "scan: index layer", append(attrs, slog.Any("error", err))...)
			errs = append(errs, fmt.Errorf("index %s: %w", d, err))
			continue
		}
		log.LogAttrs(ctx, slog.LevelInfo, "scan: blob indexed", attrs...)
	}
	return errors.Join(errs...)
}

// registryEvent runs what a registry event asks of the scanner.
func registryEvent(ctx context.Context, sc Scanner, ev events.EventBridgeEvent, log *slog.Logger) error {
	attrs := []slog.Attr{slog.String("event", ev.ID), slog.String("source", ev.Source), slog.String("detail_type", ev.DetailType)}
	if ev.Source != berthevents.Source {
		log.LogAttrs(ctx, slog.LevelWarn, "scan: event of another source", attrs...)
		return nil
	}
	var d berthevents.Detail
	if err := json.Unmarshal(ev.Detail, &d); err != nil {
		log.LogAttrs(ctx, slog.LevelWarn, "scan: malformed event detail", append(attrs, slog.Any("error", err))...)
		return nil
	}
	attrs = append(attrs, slog.String("action", d.ActionType), slog.String("repo", d.RepositoryName), slog.String("digest", d.ImageDigest))
	job, ok := scan.JobOf(ev.DetailType, d)
	if !ok {
		// The scanner's own artifacts and other non-images: the push
		// rule leaves most out, this catches the rest before any read.
		log.LogAttrs(ctx, slog.LevelDebug, "scan: nothing to do", attrs...)
		return nil
	}
	if err := sc.Do(ctx, job); err != nil {
		log.LogAttrs(ctx, slog.LevelError, "scan: registry event", append(attrs, slog.Any("error", err))...)
		return err
	}
	log.LogAttrs(ctx, slog.LevelInfo, "scan: registry event", attrs...)
	return nil
}

// rematch brings every scan up to the current data.
func rematch(ctx context.Context, sc Scanner, raw json.RawMessage, log *slog.Logger) error {
	var ev osvsync.RematchEvent
	_ = json.Unmarshal(raw, &ev) // probe decoded it already
	st, err := sc.RematchStats(ctx)
	attrs := []slog.Attr{slog.Any("ecosystems", ev.Ecosystems), slog.Int("records", st.Records), slog.Int("current", st.Current),
		slog.Int("unchanged", st.Unchanged), slog.Int("replaced", st.Replaced), slog.Int("rescanned", st.Rescanned),
		slog.Int("gone", st.Gone), slog.Int("failed", st.Failed)}
	if err != nil {
		log.LogAttrs(ctx, slog.LevelError, "scan: rematch", append(attrs, slog.Any("error", err))...)
		return err
	}
	log.LogAttrs(ctx, slog.LevelInfo, "scan: rematch", attrs...)
	return nil
}

// BlobDigest parses a key of the form blobs/<algorithm>/<hex>.
func BlobDigest(key string) (oci.Digest, error) {
	rest, ok := strings.CutPrefix(key, "blobs/")
	alg, hex, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 {
		return "", errNotBlob
	}
	return oci.ParseDigest(alg + ":" + hex)
}

var errNotBlob = errors.New("key is not blobs/<algorithm>/<hex>")

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
