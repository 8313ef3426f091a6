// Package eventbridge emits registry events (pkg/events) to an Amazon
// EventBridge bus with PutEvents.
package eventbridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/berth-registry/berth/pkg/events"
)

// API is the part of the EventBridge client the emitter uses.
type API interface {
	PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

// DefaultTimeout bounds one PutEvents call.
const DefaultTimeout = 2 * time.Second

// Emitter puts each event on a bus, synchronously and once. Synchronously,
// because behind Lambda nothing runs after the response is returned (the
// execution environment is frozen), so a background queue would lose
// events; the call comes after the registry's write committed and is
// bounded by Timeout, and its failure is only logged and counted. Once,
// because PutEvents is not idempotent: a retry after an answer that was
// lost would deliver the event twice (consumers may still dedupe on the
// detail's event-id).
type Emitter struct {
	api API
	// bus is the name or ARN; empty: the account's default bus.
	bus     string
	timeout time.Duration
	log     *slog.Logger
	events.Counter
}

// New returns an emitter to bus (a name or ARN; "" or "default": the
// default bus). A nil log discards.
func New(api API, bus string, log *slog.Logger) *Emitter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if bus == "default" {
		bus = ""
	}
	return &Emitter{api: api, bus: bus, timeout: DefaultTimeout, log: log}
}

// NewFromConfig is New with a client built from cfg.
func NewFromConfig(cfg aws.Config, bus string, log *slog.Logger) *Emitter {
	return New(eventbridge.NewFromConfig(cfg), bus, log)
}

// Emit implements events.Emitter.
func (e *Emitter) Emit(ctx context.Context, ev events.Event) {
	if err := e.put(ctx, ev); err != nil {
		e.AddFailed()
		e.log.LogAttrs(ctx, slog.LevelError, "events: eventbridge put failed",
			slog.String("event_id", ev.ID), slog.String("detail_type", ev.DetailType),
			slog.String("repository", ev.Detail.RepositoryName), slog.Any("error", err))
		return
	}
	e.AddSent()
}

func (e *Emitter) put(ctx context.Context, ev events.Event) error {
	detail, err := json.Marshal(ev.Detail)
	if err != nil {
		return err
	}
	entry := types.PutEventsRequestEntry{
		Source:     aws.String(events.Source),
		DetailType: aws.String(ev.DetailType),
		Detail:     aws.String(string(detail)),
		Time:       aws.Time(ev.Time),
		Resources:  []string{},
	}
	if e.bus != "" {
		entry.EventBusName = aws.String(e.bus)
	}
	// Not the request's context: a client that hung up after the commit
	// must not cancel the event of what it did.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.timeout)
	defer cancel()
	out, err := e.api.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []types.PutEventsRequestEntry{entry}},
		func(o *eventbridge.Options) { o.RetryMaxAttempts = 1 })
	if err != nil {
		return err
	}
	if out.FailedEntryCount > 0 {
		for _, r := range out.Entries {
			if r.ErrorCode != nil {
				return fmt.Errorf("entry rejected: %s: %s", aws.ToString(r.ErrorCode), aws.ToString(r.ErrorMessage))
			}
		}
		return errors.New("entry rejected")
	}
	return nil
}
