package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/berth-registry/berth/pkg/events"
	"github.com/berth-registry/berth/pkg/layerindex"
	"github.com/berth-registry/berth/pkg/scan"
	"github.com/berth-registry/berth/pkg/storage"
	"github.com/berth-registry/berth/pkg/vulndb"
)

// scanConfig is `berth serve --scan` (docs/scanning.md).
type scanConfig struct {
	Enabled bool
	// OSVData is a directory of OSV records: <Ecosystem>/all.zip or loose
	// <Ecosystem>/*.json, as OSV publishes them.
	OSVData string
	// Refresh is how often OSVData is checked for new data (a change
	// re-matches every scanned image).
	Refresh time.Duration
	// Workers is how many scan jobs run at once.
	Workers int
}

// osvData is the vulnerability data of OSVData, reloaded when it changes.
type osvData struct {
	dir string
	mu  sync.Mutex
	db  *vulndb.DB
}

// matcher implements scan.Config.Data.
func (d *osvData) matcher(context.Context) (scan.Matcher, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.db == nil {
		return nil, fmt.Errorf("no vulnerability data loaded from %s", d.dir)
	}
	return d.db, nil
}

// reload opens the directory again and reports whether the data version
// changed.
func (d *osvData) reload() (bool, error) {
	db, err := vulndb.Open(os.DirFS(d.dir))
	if err != nil {
		return false, fmt.Errorf("--osv-data %s: %w", d.dir, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.db != nil && d.db.Version() == db.Version() {
		return false, nil
	}
	d.db = db
	return true, nil
}

// scanService is the in-process scanner of `berth serve --scan`: a
// worker pool fed by the registry's events (it is one of the emitters)
// and by blobs stored through the registry, and a loop that re-matches
// every scanned image when the data changes.
type scanService struct {
	scanner *scan.Scanner
	pool    *scan.Pool
	data    *osvData
	refresh time.Duration
	log     *slog.Logger
}

// newScanService loads the data (a server told to scan with data it
// cannot read does not start) and builds the scanner. reg is called for
// the registry handler once it exists: the registry emits to the pool,
// and the scanner pushes through the registry.
func newScanService(c scanConfig, be backend, sinks events.Emitter, counter scan.Counter, reg func() http.Handler, log *slog.Logger) (*scanService, error) {
	if be.objects == nil {
		return nil, errors.New("--scan: this storage backend cannot keep layer indexes")
	}
	data := &osvData{dir: c.OSVData}
	if _, err := data.reload(); err != nil {
		return nil, err
	}
	log = log.With(slog.String("component", "scan"))
	sc := scan.New(scan.Config{
		Blobs:   be.blobs,
		Items:   be.items,
		Indexes: scan.NewIndexStore(be.objects),
		Indexer: layerindex.New(layerindex.Limits{}),
		Data:    data.matcher,
		Metrics: counter,
		// Requests go to the registry without the auth middleware: the
		// scanner is the registry itself.
		Registry: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reg().ServeHTTP(w, r) }),
		Events:   sinks,
		Logger:   log,
	})
	return &scanService{scanner: sc, pool: scan.NewPool(sc, c.Workers), data: data, refresh: c.Refresh, log: log}, nil
}

// sink returns em with the scanner's pool added.
func (s *scanService) sink(em events.Emitter) events.Emitter {
	if em == nil {
		return s.pool
	}
	return events.Multi{em, s.pool}
}

// observe returns blobs with stored blobs queued for indexing.
func (s *scanService) observe(blobs storage.Blobs) storage.Blobs {
	b, ok := scan.ObserveUploads(blobs, s.pool.IndexBlob)
	if !ok {
		s.log.Info("layers are indexed when their manifest is scanned (this blob driver is not observed)")
	}
	return b
}

// run works the pool and re-matches: once at start (images pushed while
// the server was down, failed scans) and whenever the data changes.
func (s *scanService) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.pool.Run(ctx)
	}()
	s.rematch(ctx)
	t := time.NewTicker(s.refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
		}
		changed, err := s.data.reload()
		switch {
		case err != nil:
			s.log.Warn("vulnerability data not reloaded; scanning with the data loaded before", slog.Any("error", err))
		case changed:
			s.rematch(ctx)
		}
	}
}

func (s *scanService) rematch(ctx context.Context) {
	if err := s.scanner.Rematch(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("rematch", slog.Any("error", err))
	}
}
