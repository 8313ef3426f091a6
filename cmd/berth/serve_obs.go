package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"

	"github.com/berth-registry/berth/pkg/apigw"
	"github.com/berth-registry/berth/pkg/audit"
	"github.com/berth-registry/berth/pkg/metrics"
	"github.com/berth-registry/berth/pkg/metrics/prom"
)

// obsConfig turns on the audit trail and the Prometheus endpoint
// (docs/audit.md).
type obsConfig struct {
	AuditLog string // file, "-" for stderr; empty: no audit records
	// AuditIPHeader names the header a trusted reverse proxy sets to the
	// client's address (X-Forwarded-For); empty: the connection's address.
	AuditIPHeader string
	MetricsAddr   string // HOST:PORT of /metrics; empty: no metrics
}

// observability is what openObs built: audit sink, recorder, and how to
// stop them.
type observability struct {
	audit    *slog.Logger     // nil: no audit trail
	ipHeader string           // see obsConfig.AuditIPHeader
	prom     *prom.Recorder   // nil: no metrics
	metrics  metrics.Recorder // prom, or nil
	close    func(context.Context) error
}

// openObs opens the audit log and starts the metrics listener.
func openObs(c obsConfig, stderr io.Writer, log *slog.Logger) (*observability, error) {
	o := &observability{ipHeader: c.AuditIPHeader}
	var closers []func(context.Context) error
	o.close = func(ctx context.Context) error {
		var errs []error
		for _, f := range closers {
			errs = append(errs, f(ctx))
		}
		return errors.Join(errs...)
	}
	switch c.AuditLog {
	case "":
	case "-":
		o.audit = audit.NewLogger(stderr)
	default:
		// 0600: the records name principals and addresses.
		f, err := os.OpenFile(c.AuditLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("--audit-log: %w", err)
		}
		o.audit = audit.NewLogger(f)
		closers = append(closers, func(context.Context) error { return f.Close() })
	}
	if c.MetricsAddr != "" {
		ln, err := net.Listen("tcp", c.MetricsAddr)
		if err != nil {
			_ = o.close(context.Background())
			return nil, fmt.Errorf("--metrics-addr: %w", err)
		}
		o.prom = prom.New()
		o.metrics = o.prom
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", o.prom.Handler())
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: serveReadHeaderTimeout,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		go func() { _ = srv.Serve(ln) }()
		log.Info("metrics listening", slog.String("addr", ln.Addr().String()))
		// The metrics server stops first, the audit file closes after it.
		closers = append([]func(context.Context) error{srv.Shutdown}, closers...)
	}
	return o, nil
}

// wrap puts the audit trail and the request metrics around h (the
// registry with its token guard), the way the Lambda functions have them
// (functions/internal/obswire): inside the emulated API Gateway, whose
// request id they then record.
func (o *observability) wrap(h http.Handler) http.Handler {
	if o.audit != nil {
		cfg := audit.Config{Log: o.audit, RequestID: apigw.RequestID}
		if o.ipHeader != "" {
			cfg.ClientIP = audit.TrustedHeader(o.ipHeader)
		}
		h = audit.Middleware(cfg, h)
	}
	if o.metrics != nil {
		h = metrics.Middleware(o.metrics, h)
	}
	return h
}
