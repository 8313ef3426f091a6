// Package edgewire connects the Lambda functions to the edge upload path
// (docs/clients.md "Upload paths", docs/deploy.md "Edge uploads"): the api function's upload
// token keyring over the CloudFront KeyValueStore and its asynchronous
// "verify this upload" call to the cleanup function, and the cleanup
// function's side of both (key rotation on the schedule, verification on
// demand). It lives here, not in the mains, so each main stays a page of
// configuration and start-up.
package edgewire

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/berth-registry/berth/pkg/edge"
	"github.com/berth-registry/berth/pkg/edge/kvs"
	"github.com/berth-registry/berth/pkg/registry"
)

// Tokens returns the api function's upload token minter over the store
// arn, or nil (edge path off) when arn is empty. The keyring caches the
// current key for its default 5 minutes, so a warm function reads the
// store about once per 5 minutes, not per upload.
func Tokens(cfg aws.Config, arn string) registry.EdgeTokens {
	if arn == "" {
		return nil
	}
	return edge.NewKeyring(kvs.NewFromConfig(cfg, arn), 0)
}

// KindVerify is the "berth" field of a verify-upload event.
const KindVerify = "verify-upload"

// VerifyEvent is the payload the api function sends the cleanup function:
// {"berth":"verify-upload","repo":…,"upload":…}.
type VerifyEvent struct {
	Berth  string `json:"berth"`
	Repo   string `json:"repo"`
	Upload string `json:"upload"`
}

// Invoker is the part of the Lambda client StartVerify uses.
type Invoker interface {
	Invoke(ctx context.Context, in *lambda.InvokeInput, opts ...func(*lambda.Options)) (*lambda.InvokeOutput, error)
}

// StartVerify returns the registry's StartVerify hook: an asynchronous
// invocation (InvocationType Event) of function with a VerifyEvent, so
// reading a multi-gigabyte object back happens in the cleanup function's
// 5 minutes, not in the API request's 30 seconds. Lambda queues the event
// and retries a failed run twice on its own; the hook only reports whether
// the event was queued (202).
func StartVerify(inv Invoker, function string) func(ctx context.Context, repo, upload string) error {
	return func(ctx context.Context, repo, upload string) error {
		payload, err := json.Marshal(VerifyEvent{Berth: KindVerify, Repo: repo, Upload: upload})
		if err != nil {
			return err
		}
		out, err := inv.Invoke(ctx, &lambda.InvokeInput{
			FunctionName:   aws.String(function),
			InvocationType: types.InvocationTypeEvent,
			Payload:        payload,
		})
		if err != nil {
			return fmt.Errorf("queue verification of %s upload %s: %w", repo, upload, err)
		}
		if out.StatusCode != 202 {
			return fmt.Errorf("queue verification of %s upload %s: status %d", repo, upload, out.StatusCode)
		}
		return nil
	}
}

// Handler is the cleanup function's entry point for both of its events: a
// VerifyEvent runs verify; anything else is the hourly EventBridge
// Scheduler event and runs scheduled.
// A failed verification fails the invocation, so Lambda's asynchronous
// retries run it again.
func Handler(log *slog.Logger, scheduled func(context.Context, events.EventBridgeEvent) error, verify func(ctx context.Context, repo, upload string) error) func(context.Context, json.RawMessage) error {
	return func(ctx context.Context, raw json.RawMessage) error {
		var probe VerifyEvent
		if err := json.Unmarshal(raw, &probe); err == nil && probe.Berth == KindVerify {
			attrs := []slog.Attr{slog.String("repo", probe.Repo), slog.String("upload", probe.Upload)}
			if probe.Repo == "" || probe.Upload == "" {
				// A retry cannot fix a malformed event: log it and drop it.
				log.LogAttrs(ctx, slog.LevelError, "cleanup: verify upload: malformed event", attrs...)
				return nil
			}
			if err := verify(ctx, probe.Repo, probe.Upload); err != nil {
				log.LogAttrs(ctx, slog.LevelError, "cleanup: verify upload", append(attrs, slog.Any("error", err))...)
				return err
			}
			log.LogAttrs(ctx, slog.LevelInfo, "cleanup: verify upload", attrs...)
			return nil
		}
		var ev events.EventBridgeEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return fmt.Errorf("cleanup event: %w", err)
		}
		return scheduled(ctx, ev)
	}
}

// Rotate runs one key rotation step on the store and logs what it did. A
// failure is logged and returned for the caller to join with its other
// results; it never stops the rest of the run (the next hour retries, and
// until a key exists the API simply hands out its own upload URLs).
func Rotate(ctx context.Context, store edge.KeyAdmin, now time.Time, log *slog.Logger) error {
	rep, err := edge.Rotate(ctx, store, edge.Rotation{}, now)
	attrs := []slog.Attr{slog.String("current", rep.Current), slog.String("added", rep.Added), slog.Any("removed", rep.Removed)}
	if err != nil {
		log.LogAttrs(ctx, slog.LevelError, "cleanup: rotate upload token keys", append(attrs, slog.Any("error", err))...)
		return fmt.Errorf("rotate upload token keys: %w", err)
	}
	log.LogAttrs(ctx, slog.LevelInfo, "cleanup: rotate upload token keys", attrs...)
	return nil
}
