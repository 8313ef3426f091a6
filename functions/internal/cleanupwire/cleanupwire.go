// Package cleanupwire is the cleanup function behind its main: the hourly
// scheduled job (upload token key rotation, upload sweep, retention,
// garbage collection) and
// the assembly of that job and the upload verifier from an aws.Config. The
// main only reads the environment and starts.
package cleanupwire

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/berth-registry/berth/functions/internal/edgewire"
	"github.com/berth-registry/berth/internal/awsmetrics"
	"github.com/berth-registry/berth/pkg/awsbackend"
	"github.com/berth-registry/berth/pkg/edge"
	"github.com/berth-registry/berth/pkg/edge/kvs"
	berthevents "github.com/berth-registry/berth/pkg/events"
	"github.com/berth-registry/berth/pkg/events/eventbridge"
	"github.com/berth-registry/berth/pkg/events/hooks"
	"github.com/berth-registry/berth/pkg/gc"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/retention"
	"github.com/berth-registry/berth/pkg/sweep"
)

// Settings is the cleanup function's configuration.
type Settings struct {
	Backend    awsbackend.Settings
	Level      slog.Level
	Retention  *retention.Policy // nil: no retention
	EdgeKVSARN string            // empty: no key rotation
	GCGrace    time.Duration     // 0: no garbage collection
	// EventBus receives the events of GC and retention deletions (a name
	// or ARN, "default"); empty: no events.
	EventBus string
	// Metrics receives the garbage collection figures and the SDK's
	// retries (metrics.EMF on stdout, built by the main); nil: none.
	Metrics gc.Counter
}

// Handler opens the drivers and returns the function's entry point for
// both of its events (edgewire.Handler): the schedule runs Job, a
// verify-upload event runs the verifier.
func Handler(ctx context.Context, cfg aws.Config, s Settings, log *slog.Logger) (func(context.Context, json.RawMessage) error, error) {
	if s.Metrics != nil {
		// A copy: the caller's config keeps its own options.
		cfg.APIOptions = append(slices.Clip(cfg.APIOptions), awsmetrics.Retries(s.Metrics))
	}
	be, err := awsbackend.Open(ctx, cfg, s.Backend, log)
	if err != nil {
		return nil, err
	}
	store := meta.New(be.Items)
	job := Job{
		Sweep:     sweep.Sweeper{Store: store, Blobs: be.Blobs, Log: log},
		Retention: s.Retention,
		Now:       time.Now,
		Log:       log,
	}
	if s.EventBus != "" {
		job.Events = eventbridge.NewFromConfig(cfg, s.EventBus, log)
	}
	if s.GCGrace > 0 {
		job.GC = &gc.Collector{Store: store, Blobs: be.Blobs, Orphans: be.Lister, Grace: s.GCGrace, Log: log, Metrics: s.Metrics}
	}
	if s.EdgeKVSARN != "" {
		job.Keys = kvs.NewFromConfig(cfg, s.EdgeKVSARN)
	}
	return edgewire.Handler(log, job.Run, registry.NewVerifier(be.Items, be.Blobs, log).Verify), nil
}

// Job is the scheduled run. Retention works on the sweeper's store: one
// configured metadata store per function instance.
type Job struct {
	Sweep     sweep.Sweeper
	Retention *retention.Policy // nil: no retention
	Keys      edge.KeyAdmin     // nil: no key rotation
	GC        *gc.Collector     // nil: no garbage collection
	// Events receives an event per GC blob deletion and retention expiry;
	// nil: none.
	Events berthevents.Emitter
	Now    func() time.Time
	Log    *slog.Logger
}

// Run rotates the upload token keys when Keys is set (first: it is quick,
// and the edge path waits for the first key), sweeps expired uploads, then
// applies retention when a policy is set. A failed step fails the
// invocation (visible in the function's error metric) after the other
// steps ran; the next hour's run picks up where it stopped. Retention stops
// starting work retention.Reserve before the invocation's deadline and says
// how many repositories it did not reach; the next run covers them.
func (j Job) Run(ctx context.Context, ev events.EventBridgeEvent) error {
	log := j.Log
	var rotateErr error
	if j.Keys != nil {
		rotateErr = edgewire.Rotate(ctx, j.Keys, j.Now(), log)
	}
	removed, sweepErr := j.Sweep.Uploads(ctx)
	attrs := []slog.Attr{slog.String("event", ev.ID), slog.Time("scheduled", ev.Time), slog.Int("removed", removed)}
	if sweepErr != nil {
		log.LogAttrs(ctx, slog.LevelError, "cleanup: sweep uploads", append(attrs, slog.Any("error", sweepErr))...)
	} else {
		log.LogAttrs(ctx, slog.LevelInfo, "cleanup: sweep uploads", attrs...)
	}
	retainErr := j.retain(ctx, ev)
	// Garbage collection last: what retention expired becomes a candidate
	// now and is collected after the grace period, by a later run. A pass
	// logs its own counts.
	var gcErr error
	if j.GC != nil {
		c := *j.GC
		if j.Events != nil {
			c.OnDelete = hooks.GC(j.Events, j.Now)
		}
		_, gcErr = c.Pass(ctx)
	}
	return errors.Join(rotateErr, sweepErr, retainErr, gcErr)
}

// retain applies the retention policy, if any.
func (j Job) retain(ctx context.Context, ev events.EventBridgeEvent) error {
	log := j.Log
	if j.Retention == nil {
		return nil
	}
	var opts []retention.Option
	if j.Events != nil {
		opts = append(opts, hooks.Retention(j.Events, j.Now))
	}
	rep, err := retention.Apply(ctx, j.Sweep.Store, j.Retention, j.Now(), log, opts...)
	attrs := []slog.Attr{
		slog.String("event", ev.ID), slog.Int("repositories", rep.Repositories), slog.Int("expired", rep.Expired),
		slog.Int("failed", rep.Failed), slog.Int("remaining", rep.Remaining), slog.Bool("stopped", rep.Stopped),
	}
	if err != nil {
		log.LogAttrs(ctx, slog.LevelError, "cleanup: retention", append(attrs, slog.Any("error", err))...)
	} else {
		log.LogAttrs(ctx, slog.LevelInfo, "cleanup: retention", attrs...)
	}
	return err
}
