// Package osvsyncwire is the osvsync function behind its main: the
// scheduled copy of OSV's exports into the bucket (pkg/osvsync) and, when
// it stored new data, the asynchronous re-match request to the scan
// function.
package osvsyncwire

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berth-registry/berth/pkg/osvsync"
)

// Settings is the osvsync function's configuration.
type Settings struct {
	Bucket     string
	Level      slog.Level
	BaseURL    string   // "": osvsync.DefaultBaseURL
	Ecosystems []string // nil: osvsync.DefaultEcosystems
	// ScanFunction is invoked with an osvsync.RematchEvent after a run
	// that stored new data; "": none.
	ScanFunction string
}

// Handler builds the function's entry point (once per cold start).
func Handler(cfg aws.Config, s Settings, log *slog.Logger) func(context.Context, json.RawMessage) error {
	syncer := osvsync.New(s3.NewFromConfig(cfg), osvsync.Config{
		Bucket: s.Bucket, BaseURL: s.BaseURL, Ecosystems: s.Ecosystems, Log: log,
	})
	var rematch func(context.Context, []string) error
	if s.ScanFunction != "" {
		rematch = Rematch(lambda.NewFromConfig(cfg), s.ScanFunction)
	}
	return Job{Sync: syncer.Sync, Rematch: rematch, Log: log}.Run
}

// Job is one scheduled run.
type Job struct {
	Sync func(context.Context) osvsync.Report
	// Rematch asks for a re-match after new data was stored; nil: never.
	Rematch func(ctx context.Context, changed []string) error
	Log     *slog.Logger
}

// Run syncs, then requests a re-match when anything changed, even when
// other ecosystems failed: what was stored is good data (each export is
// checked before it replaces the old one). The run fails when an
// ecosystem or the request failed, so the function's error metric shows
// it; the scheduler's next run (or Lambda's retry) fetches again, which
// costs a conditional GET per unchanged export. The event is ignored: the
// schedule's payload carries nothing the run needs.
func (j Job) Run(ctx context.Context, _ json.RawMessage) error {
	rep := j.Sync(ctx)
	changed := rep.Changed()
	var rematchErr error
	if len(changed) > 0 && j.Rematch != nil {
		rematchErr = j.Rematch(ctx, changed)
	}
	attrs := []slog.Attr{slog.Any("changed", changed), slog.Int("ecosystems", len(rep.Results)), slog.Any("skipped", rep.Skipped),
		slog.Bool("rematch", len(changed) > 0 && j.Rematch != nil && rematchErr == nil)}
	err := errors.Join(rep.Err(), rematchErr)
	if err != nil {
		j.Log.LogAttrs(ctx, slog.LevelError, "osvsync: run", append(attrs, slog.Any("error", err))...)
		return err
	}
	j.Log.LogAttrs(ctx, slog.LevelInfo, "osvsync: run", attrs...)
	return nil
}

// Invoker is the part of the Lambda client Rematch uses.
type Invoker interface {
	Invoke(ctx context.Context, in *lambda.InvokeInput, opts ...func(*lambda.Options)) (*lambda.InvokeOutput, error)
}

// Rematch returns the re-match request: an asynchronous invocation
// (InvocationType Event) of function with an osvsync.RematchEvent.
// Re-matching every scanned image takes longer than this function should
// wait, and Lambda retries a failed asynchronous run on its own.
func Rematch(inv Invoker, function string) func(context.Context, []string) error {
	return func(ctx context.Context, changed []string) error {
		payload, err := json.Marshal(osvsync.RematchEvent{Berth: osvsync.KindRematch, Ecosystems: changed})
		if err != nil {
			return err
		}
		out, err := inv.Invoke(ctx, &lambda.InvokeInput{
			FunctionName:   aws.String(function),
			InvocationType: types.InvocationTypeEvent,
			Payload:        payload,
		})
		if err != nil {
			return fmt.Errorf("request re-match from %s: %w", function, err)
		}
		if out.StatusCode != 202 {
			return fmt.Errorf("request re-match from %s: status %d", function, out.StatusCode)
		}
		return nil
	}
}
