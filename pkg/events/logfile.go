package events

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
)

// LogFile appends each event to a file as one CloudEvents JSON document
// per line. Writes are synchronous: a local append costs microseconds.
type LogFile struct {
	mu  sync.Mutex
	f   *os.File
	log *slog.Logger
	Counter
}

// OpenLogFile opens (creating, appending to) path.
func OpenLogFile(path string, log *slog.Logger) (*LogFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("events: log file: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &LogFile{f: f, log: log}, nil
}

// Emit implements Emitter.
func (l *LogFile) Emit(ctx context.Context, ev Event) {
	b, err := MarshalCloudEvent(ev)
	if err == nil {
		l.mu.Lock()
		_, err = l.f.Write(append(b, '\n'))
		l.mu.Unlock()
	}
	if err != nil {
		l.AddFailed()
		l.log.LogAttrs(ctx, slog.LevelError, "events: log file write failed", slog.String("event_id", ev.ID), slog.Any("error", err))
		return
	}
	l.AddSent()
}

// Close closes the file.
func (l *LogFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}
