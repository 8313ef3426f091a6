package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/berth-registry/berth/pkg/events"
)

// openEvents builds the emitters the --events-* flags ask for: nil when
// none. closeEvents delivers what the webhook still holds (until ctx ends)
// and closes the log file.
func openEvents(c eventsConfig, log *slog.Logger) (em events.Emitter, closeEvents func(context.Context) error, err error) {
	var (
		multi   events.Multi
		closers []func(context.Context) error
	)
	closeAll := func(ctx context.Context) error {
		var errs []error
		for _, f := range closers {
			errs = append(errs, f(ctx))
		}
		return errors.Join(errs...)
	}
	if c.LogFile != "" {
		lf, err := events.OpenLogFile(c.LogFile, log)
		if err != nil {
			return nil, nil, fmt.Errorf("--events-log: %w", err)
		}
		multi = append(multi, lf)
		closers = append(closers, func(context.Context) error { return lf.Close() })
	}
	if c.Webhook != "" {
		var secret []byte
		if c.SecretFile != "" {
			raw, err := os.ReadFile(c.SecretFile)
			if err != nil {
				_ = closeAll(context.Background())
				return nil, nil, fmt.Errorf("--events-secret-file: %w", err)
			}
			// A trailing newline from an editor or `echo` is not part of the key.
			if secret = []byte(strings.TrimSpace(string(raw))); len(secret) == 0 {
				_ = closeAll(context.Background())
				return nil, nil, fmt.Errorf("--events-secret-file %s is empty", c.SecretFile)
			}
		}
		wh := events.NewWebhook(events.WebhookConfig{URL: c.Webhook, Secret: secret, Log: log})
		multi = append(multi, wh)
		// The webhook first: it may still be delivering when asked to stop.
		closers = append([]func(context.Context) error{wh.Close}, closers...)
	}
	switch len(multi) {
	case 0:
		return nil, func(context.Context) error { return nil }, nil
	case 1:
		return multi[0], closeAll, nil
	}
	return multi, closeAll, nil
}
