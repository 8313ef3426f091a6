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
	"path/filepath"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/berth-registry/berth/internal/apigwemu"
	"github.com/berth-registry/berth/pkg/apigw"
	"github.com/berth-registry/berth/pkg/auth"
	"github.com/berth-registry/berth/pkg/edge"
	"github.com/berth-registry/berth/pkg/events/hooks"
	"github.com/berth-registry/berth/pkg/immutability"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/retention"
	"github.com/berth-registry/berth/pkg/storage"
	"github.com/berth-registry/berth/pkg/sweep"
)

// backend is an opened pair of storage drivers.
type backend struct {
	items storage.Items
	blobs storage.Blobs
	// lister lists stored blobs for garbage collection's orphan pass
	// (nil: no orphan pass).
	lister storage.BlobLister
	// objects keeps the scanner's layer indexes beside the blobs.
	objects storage.Objects
	// aws is the configuration the AWS drivers were built from (zero for
	// the embedded store): the edge emulation signs its S3 origin with it.
	aws   aws.Config
	close func() error
}

func runServe(ctx context.Context, args []string, _, stderr io.Writer) error {
	cfg, err := parseServeFlags(args, stderr)
	if err != nil {
		return err
	}
	level, _ := parseLevel(cfg.LogLevel)
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))

	be, err := openBackend(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := be.close(); err != nil {
			log.Error("closing storage", slog.Any("error", err))
		}
	}()
	em, closeEvents, err := openEvents(cfg.Events, log)
	if err != nil {
		return err
	}
	// Deferred before the server and background work stop, so it runs
	// after them: their last events are delivered too.
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		if err := closeEvents(sctx); err != nil {
			log.Warn("events not delivered before shutdown", slog.Any("error", err))
		}
	}()

	obs, err := openObs(cfg.Obs, stderr, log)
	if err != nil {
		return err
	}
	// Deferred calls run after the server has shut down: its last
	// requests are recorded before the audit file closes.
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		if err := obs.close(sctx); err != nil {
			log.Warn("closing audit log or metrics server", slog.Any("error", err))
		}
	}()

	// The scanner (--scan) is one more event sink: pushes queue scans,
	// deletions and garbage collection drop what it keeps. Its own scan
	// events go to the configured sinks only.
	var (
		scanner *scanService
		reg     *registry.Registry
	)
	if cfg.Scan.Enabled {
		if scanner, err = newScanService(cfg.Scan, be, em, obs.metrics, func() http.Handler { return reg }, log); err != nil {
			return err
		}
		em = scanner.sink(em)
	}

	regCfg := registry.Config{
		UploadTTL:      cfg.UploadTTL,
		UploadLease:    serveUploadLease,
		MaxBodyBytes:   cfg.MaxBodyBytes,
		ChunkMinLength: cfg.ChunkMinLength,
		Logger:         log,
		// Without --auth-policy anyone may push and pull anywhere, so a
		// pusher's HEAD may mount a blob from any repository; with it, the
		// token says where (pkg/access).
		Open: cfg.Auth.PolicyFile == "",
	}
	if obs.metrics != nil {
		regCfg.Metrics = obs.metrics
	}
	if cfg.TagImmutability != "" {
		// Fail closed: a server that would let immutable tags move must
		// not start.
		raw, err := os.ReadFile(cfg.TagImmutability)
		if err != nil {
			return fmt.Errorf("--tag-immutability: %w", err)
		}
		rules, err := immutability.Parse(raw)
		if err != nil {
			return fmt.Errorf("--tag-immutability %s: %w", cfg.TagImmutability, err)
		}
		regCfg.ImmutableTags = rules.Immutable
	}
	var retainOpts []retention.Option
	if em != nil {
		regCfg.Events = em
		retainOpts = append(retainOpts, hooks.Retention(em, nil))
	}
	var edgeKeys *edge.MemoryStore
	if cfg.Edge {
		if edgeKeys, err = newEdgeKeys(ctx, log); err != nil {
			return err
		}
		regCfg.EdgeTokens = edge.NewKeyring(edgeKeys, 0)
	}
	regBlobs := be.blobs
	if scanner != nil {
		regBlobs = scanner.observe(regBlobs)
	}
	reg = registry.New(regCfg, be.items, regBlobs)
	var policy *retention.Policy
	if cfg.RetentionPolicy != "" {
		raw, err := os.ReadFile(cfg.RetentionPolicy)
		if err != nil {
			return fmt.Errorf("--retention-policy: %w", err)
		}
		if policy, err = retention.Parse(raw); err != nil {
			return fmt.Errorf("--retention-policy %s: %w", cfg.RetentionPolicy, err)
		}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	var h http.Handler = reg
	if cfg.Auth.PolicyFile != "" {
		if h, err = withAuth(ctx, cfg, reg, ln.Addr().String(), log); err != nil {
			ln.Close()
			return err
		}
	}
	h = obs.wrap(h)
	if cfg.ViaLambda {
		fn := apigwemu.Func(apigw.Handler(h))
		if cfg.LambdaColdStarts {
			fn = coldStarts(cfg.AWS, regCfg, log)
		}
		h = apigwemu.NewEmulator(fn, apigwemu.WithLogger(log))
	}
	if cfg.Edge {
		if h, err = withEdge(be.aws, cfg.AWS.Bucket, cfg.AWS.S3PathStyle, h, edgeKeys, log); err != nil {
			ln.Close()
			return err
		}
	}
	// Background work runs on the drivers directly, off the handler, on one
	// metadata store shared by the admin socket, the sweep, garbage
	// collection and retention.
	store := meta.New(be.items)
	gcc := collector(store, be, cfg.GCGrace, log)
	if obs.metrics != nil {
		gcc.Metrics = obs.metrics
	}
	if em != nil {
		gcc.OnDelete = hooks.GC(em, nil)
	}
	if cfg.Backend == backendEmbedded {
		// Before "listening": whoever sees the server up can reach it.
		// Without the socket (a path too long for one, a filesystem without
		// them) the registry still serves; `berth gc` then says the store
		// is locked.
		if stopAdmin, err := serveAdmin(cfg.Data, adminMux(gcc, store), log); err != nil {
			log.Warn("no admin socket: berth gc and berth retention preview cannot reach this server", slog.Any("error", err))
		} else {
			defer stopAdmin()
		}
	}
	srv := newHTTPServer(h, log)
	log.Info("listening",
		slog.String("addr", ln.Addr().String()),
		slog.String("version", version),
		slog.String("backend", cfg.Backend),
		slog.Bool("via_lambda", cfg.ViaLambda),
		slog.Bool("edge", cfg.Edge),
		slog.Int64("max_body_bytes", cfg.MaxBodyBytes),
		slog.Bool("auth", cfg.Auth.PolicyFile != ""),
		slog.Bool("scan", cfg.Scan.Enabled))

	sw := sweep.Sweeper{Store: store, Blobs: be.blobs, Log: log}
	if p, ok := be.items.(sweep.Purger); ok {
		sw.Purger = p
	}
	bgCtx, stopBackground := context.WithCancel(ctx)
	sweepDone := make(chan struct{})
	go func() {
		defer close(sweepDone)
		sw.Every(bgCtx, cfg.SweepInterval)
	}()
	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		if cfg.GCInterval > 0 {
			gcc.Every(bgCtx, cfg.GCInterval)
		}
	}()
	retainDone := make(chan struct{})
	go func() {
		defer close(retainDone)
		if policy != nil {
			retain(bgCtx, store, policy, cfg.RetentionInterval, log, retainOpts...)
		}
	}()
	scanDone := make(chan struct{})
	go func() {
		defer close(scanDone)
		if scanner != nil {
			scanner.run(bgCtx)
		}
	}()
	defer func() { stopBackground(); <-sweepDone; <-gcDone; <-retainDone; <-scanDone }()

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", slog.Duration("timeout", cfg.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("in-flight requests cut off", slog.Any("error", err))
		_ = srv.Close()
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Timeouts of `berth serve` (docs/architecture.md, "Upload sessions").
// ReadTimeout bounds a whole request, body included, so a client cannot
// hold a connection and its upload session by trickling a body for as long
// as it likes; a bigger layer goes up in several PATCHes. There is no
// WriteTimeout: a large blob GET to a slow client may take longer. The
// upload lease outlasts ReadTimeout, so a request that is still reading
// its body always still holds its session, and a server killed mid-request
// frees the session within serveUploadLease.
const (
	serveReadHeaderTimeout = 30 * time.Second
	serveReadTimeout       = 10 * time.Minute
	serveIdleTimeout       = 2 * time.Minute
	serveUploadLease       = serveReadTimeout + time.Minute
)

func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: serveReadHeaderTimeout,
		ReadTimeout:       serveReadTimeout,
		IdleTimeout:       serveIdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// withAuth puts token auth in front of the registry: /token issues tokens,
// everything under /v2/ needs one.
func withAuth(ctx context.Context, cfg serveConfig, reg http.Handler, addr string, log *slog.Logger) (http.Handler, error) {
	service := cfg.Auth.Service
	if service == "" {
		service = addr
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Auth.KeyFile), 0o700); err != nil {
		return nil, fmt.Errorf("auth key directory: %w", err)
	}
	issuers, _ := cfg.Auth.issuers() // validated with the flags
	setup, err := auth.NewLocal(ctx, auth.LocalConfig{
		PolicyFile:  cfg.Auth.PolicyFile,
		KeyFile:     cfg.Auth.KeyFile,
		Service:     service,
		OIDCIssuers: issuers,
		Logger:      log,
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/token", setup.TokenHandler)
	mux.Handle("/", setup.Middleware(reg))
	return mux, nil
}

// retain applies the retention policy now and every interval until ctx ends.
func retain(ctx context.Context, store *meta.Store, policy *retention.Policy, every time.Duration, log *slog.Logger, opts ...retention.Option) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		rep, err := retention.Apply(ctx, store, policy, time.Now(), log, opts...)
		if err != nil && ctx.Err() == nil {
			log.Warn("retention", slog.Any("error", err))
		}
		log.Info("retention", slog.Int("repositories", rep.Repositories), slog.Int("expired", rep.Expired))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// coldStarts is a Lambda function that starts from nothing on every
// invocation: configuration, AWS clients, drivers and handler.
func coldStarts(c awsFlags, regCfg registry.Config, log *slog.Logger) apigwemu.Function {
	c.Create = false
	return apigwemu.Func(func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		be, err := openAWS(ctx, c, log)
		if err != nil {
			return events.APIGatewayV2HTTPResponse{}, err
		}
		return apigw.Handler(registry.New(regCfg, be.items, be.blobs))(ctx, ev)
	})
}

// openBackend opens the storage drivers cfg names.
func openBackend(ctx context.Context, cfg serveConfig, log *slog.Logger) (backend, error) {
	switch cfg.Backend {
	case backendAWS:
		return openCheckedAWS(ctx, cfg.AWS, log)
	default:
		return openEmbedded(cfg.Data)
	}
}
