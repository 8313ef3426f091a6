package events

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// SignatureHeader carries the HMAC-SHA256 of the request body, keyed with
// the shared secret, as "sha256=<hex>" (the form GitHub webhooks use, so
// existing verifiers apply).
const SignatureHeader = "X-Berth-Signature"

// Sign returns the SignatureHeader value for body.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature reports whether header is body's signature under
// secret, in constant time.
func VerifySignature(secret, body []byte, header string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(header))
}

// WebhookConfig configures a Webhook. Zero values take the defaults.
type WebhookConfig struct {
	URL string
	// Secret keys the signature header; empty: no header.
	Secret []byte
	// Client posts the events. Default: a client with a 10 s timeout.
	Client *http.Client
	// Queue bounds the events waiting for delivery; an event that finds it
	// full is dropped and counted. Default 1024.
	Queue int
	// Attempts per event, the first included. Default 5.
	Attempts int
	// Backoff is the wait before the first retry; it doubles after each,
	// up to 30 s. Default 500 ms.
	Backoff time.Duration
	// Log receives one line per event given up on. Default: discard.
	Log *slog.Logger
}

// Webhook posts each event as a CloudEvents structured JSON document to a
// URL, from a background goroutine, so the request that caused the event
// never waits for the receiver. Failed posts (network errors, 5xx, 408,
// 429) are retried with exponential backoff; other answers are final.
type Webhook struct {
	cfg  WebhookConfig
	q    chan Event
	done chan struct{}
	// stop cancels retries still waiting when Close runs out of time.
	stop   context.Context
	cancel context.CancelFunc
	mu     sync.RWMutex // guards closed against a send on a closed q
	closed bool
	Counter
}

// NewWebhook starts the delivery goroutine; Close stops it.
func NewWebhook(cfg WebhookConfig) *Webhook {
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 1024
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 5
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 500 * time.Millisecond
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	w := &Webhook{cfg: cfg, q: make(chan Event, cfg.Queue), done: make(chan struct{})}
	w.stop, w.cancel = context.WithCancel(context.Background())
	go w.run()
	return w
}

// Emit queues ev without waiting; a full queue drops it (logged, counted).
func (w *Webhook) Emit(ctx context.Context, ev Event) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.AddDropped()
		return
	}
	select {
	case w.q <- ev:
	default:
		w.AddDropped()
		w.cfg.Log.LogAttrs(ctx, slog.LevelWarn, "events: webhook queue full, event dropped",
			slog.String("event_id", ev.ID), slog.String("detail_type", ev.DetailType))
	}
}

// Close stops taking events and delivers those queued, until ctx ends;
// what is still undelivered then is counted as failed.
func (w *Webhook) Close(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.q)
	}
	w.mu.Unlock()
	select {
	case <-w.done:
		w.cancel()
		return nil
	case <-ctx.Done():
		w.cancel()
		<-w.done
		return fmt.Errorf("events: webhook close: %w", ctx.Err())
	}
}

func (w *Webhook) run() {
	defer close(w.done)
	for ev := range w.q {
		w.deliver(ev)
	}
}

// deliver posts one event with its retries.
func (w *Webhook) deliver(ev Event) {
	body, err := MarshalCloudEvent(ev)
	if err != nil {
		w.fail(ev, 0, err)
		return
	}
	wait := w.cfg.Backoff
	for attempt := 1; ; attempt++ {
		retry, err := w.post(body)
		if err == nil {
			w.AddSent()
			return
		}
		if !retry || attempt >= w.cfg.Attempts || w.stop.Err() != nil {
			w.fail(ev, attempt, err)
			return
		}
		w.AddRetry()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-w.stop.Done():
			t.Stop()
			w.fail(ev, attempt, err)
			return
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (w *Webhook) fail(ev Event, attempts int, err error) {
	w.AddFailed()
	w.cfg.Log.LogAttrs(w.stop, slog.LevelError, "events: webhook delivery failed",
		slog.String("event_id", ev.ID), slog.String("detail_type", ev.DetailType),
		slog.Int("attempts", attempts), slog.Any("error", err))
}

// post sends body once and says whether a failure is worth retrying.
func (w *Webhook) post(body []byte) (retry bool, err error) {
	req, err := http.NewRequestWithContext(w.stop, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", CloudEventsContentType)
	if len(w.cfg.Secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(w.cfg.Secret, body))
	}
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		return true, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch s := resp.StatusCode; {
	case s >= 200 && s < 300:
		return false, nil
	case s >= 500, s == http.StatusRequestTimeout, s == http.StatusTooManyRequests:
		return true, fmt.Errorf("webhook answered %s", resp.Status)
	default:
		return false, fmt.Errorf("webhook answered %s", resp.Status)
	}
}
