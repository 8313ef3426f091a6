package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/berth-registry/berth/internal/apigwemu"
	"github.com/berth-registry/berth/pkg/apigw"
	"github.com/berth-registry/berth/pkg/auth"
	"github.com/berth-registry/berth/pkg/auth/oidc"
	"github.com/berth-registry/berth/pkg/edge"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/retention"
	"github.com/berth-registry/berth/pkg/storage"
)

// Backends `berth serve` can run on.
const (
	backendEmbedded = "embedded"
	backendAWS      = "aws"
)

// lambdaMaxBodyBytes is the blob bytes one request carries through API
// Gateway and Lambda (6 MB event, base64): the deployment contract's
// BERTH_MAX_BODY_BYTES default.
const lambdaMaxBodyBytes = 4404019

// serveConfig is everything `berth serve` can be told. Flags fill it in
// parseServeFlags; setDefaults is the one place defaults live.
type serveConfig struct {
	Addr    string // listen address, HOST:PORT (port 0: any free port)
	Data    string // embedded backend: data directory
	Backend string // embedded | aws
	AWS     awsConfig
	// ViaLambda serves the handler through the in-process API Gateway and
	// Lambda emulation, with their request and response limits.
	ViaLambda bool
	// Edge, with ViaLambda and the aws backend, puts the emulated
	// CloudFront distribution with the edge upload function in front.
	Edge bool
	// RetentionPolicy is an Amazon ECR lifecycle policy file applied to
	// every repository each RetentionInterval (docs/retention.md).
	RetentionPolicy   string
	RetentionInterval time.Duration
	// LambdaColdStarts, with ViaLambda, builds new clients, drivers and
	// handler for every invocation: the worst case of Lambda scaling, which
	// proves no request depends on another's process memory.
	LambdaColdStarts bool

	UploadTTL time.Duration
	// MaxBodyBytes caps one upload request's body; 0: no cap; <0: the
	// default (no cap, or what fits Lambda with ViaLambda).
	MaxBodyBytes int64
	// ChunkMinLength is advertised as OCI-Chunk-Min-Length; 0: not sent;
	// <0: the backend's default.
	ChunkMinLength  int64
	SweepInterval   time.Duration // how often expired upload sessions are removed
	ShutdownTimeout time.Duration // how long in-flight requests get on SIGTERM
	LogLevel        string        // debug | info | warn | error
	Auth            authConfig
}

// authConfig turns on Docker token auth (docs/auth.md): a /token endpoint
// and token checks on /v2/, decided by a policy file.
type authConfig struct {
	PolicyFile string // enables auth when set
	Service    string // token audience and challenge service; default: the listen address
	KeyFile    string // token signing key (PEM, created 0600); default <data>/token-key.pem
	// OIDCIssuers is a JSON array of {"issuer","audience"} trusted for OIDC
	// identities (BERTH_OIDC_ISSUERS in AWS).
	OIDCIssuers string
}

// awsConfig configures the S3 + DynamoDB backend. Credentials, region and
// endpoints come from the standard AWS configuration chain
// (AWS_ENDPOINT_URL_S3 and AWS_ENDPOINT_URL_DYNAMODB included).
type awsConfig struct {
	Bucket        string
	Table         string
	Create        bool // create bucket and table when missing (local and emulator use)
	S3PathStyle   bool // path-style S3 URLs, for emulators
	PresignExpiry time.Duration
	NoRedirect    bool // serve blob bytes instead of redirecting to S3
	// CloudFront signed URLs for blob GETs instead of presigned S3 URLs,
	// when all three are set. CDNPrivateKey is a PEM file or a Secrets
	// Manager secret ARN.
	CDNURL        string
	CDNKeyPairID  string
	CDNPrivateKey string
}

func (c *serveConfig) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:5000"
	}
	if c.Data == "" {
		c.Data = "./.berth"
	}
	if c.Backend == "" {
		c.Backend = backendEmbedded
	}
	if c.UploadTTL <= 0 {
		c.UploadTTL = time.Hour
	}
	if c.MaxBodyBytes < 0 {
		c.MaxBodyBytes = 0
		if c.ViaLambda {
			c.MaxBodyBytes = lambdaMaxBodyBytes
		}
	}
	if c.ChunkMinLength < 0 {
		// Chunks land in S3 multipart parts (at least 5 MiB each), so larger
		// chunks mean fewer carry-over copies; through Lambda a chunk must
		// also fit one request. The embedded store has no preference of its
		// own: 1 MiB keeps per-request overhead small without raising the
		// chunk size of clients that already use 1 MiB (regctl).
		switch {
		case c.ViaLambda:
			c.ChunkMinLength = 4 << 20
		case c.Backend == backendAWS:
			c.ChunkMinLength = 5 << 20
		default:
			c.ChunkMinLength = 1 << 20
		}
	}
	if c.RetentionInterval <= 0 {
		c.RetentionInterval = time.Hour
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = 5 * time.Minute
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 15 * time.Second
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.Auth.KeyFile == "" {
		c.Auth.KeyFile = filepath.Join(c.Data, "token-key.pem")
	}
	if c.AWS.PresignExpiry <= 0 {
		c.AWS.PresignExpiry = 20 * time.Minute
	}
}

func (c *serveConfig) validate() error {
	var errs []error
	switch c.Backend {
	case backendEmbedded:
	case backendAWS:
		if c.AWS.Bucket == "" {
			errs = append(errs, errors.New("--backend aws needs --bucket"))
		}
		if c.AWS.Table == "" {
			errs = append(errs, errors.New("--backend aws needs --table"))
		}
		if n := countSet(c.AWS.CDNURL, c.AWS.CDNKeyPairID, c.AWS.CDNPrivateKey); n != 0 && n != 3 {
			errs = append(errs, errors.New("--cdn-url, --cdn-key-pair-id and --cdn-private-key go together"))
		}
	default:
		errs = append(errs, fmt.Errorf("unknown --backend %q (embedded or aws)", c.Backend))
	}
	if c.Edge && (!c.ViaLambda || c.Backend != backendAWS) {
		errs = append(errs, errors.New("--edge needs --via-lambda and --backend aws"))
	}
	if c.LambdaColdStarts && (!c.ViaLambda || c.Backend != backendAWS || c.Auth.PolicyFile != "") {
		errs = append(errs, errors.New("--lambda-cold-starts needs --via-lambda and --backend aws, without --auth-policy"))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.Auth.issuers(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func parseServeFlags(args []string, stderr io.Writer) (serveConfig, error) {
	var c serveConfig
	fs := flag.NewFlagSet("berth serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: berth serve [flags]\n\nRuns an OCI registry. Flags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:5000", "listen address `HOST:PORT` (port 0 picks a free port)")
	fs.StringVar(&c.Data, "data", "./.berth", "data `directory` of the embedded backend")
	fs.StringVar(&c.Backend, "backend", backendEmbedded, "storage backend: embedded or aws")
	fs.StringVar(&c.AWS.Bucket, "bucket", "", "aws: S3 bucket `name`")
	fs.StringVar(&c.AWS.Table, "table", "", "aws: DynamoDB table `name`")
	fs.BoolVar(&c.AWS.Create, "create", false, "aws: create the bucket and table when missing")
	fs.BoolVar(&c.AWS.S3PathStyle, "s3-path-style", false, "aws: path-style S3 addressing (emulators)")
	fs.DurationVar(&c.AWS.PresignExpiry, "presign-expiry", 20*time.Minute, "aws: lifetime of presigned blob URLs")
	fs.BoolVar(&c.AWS.NoRedirect, "no-redirect", false, "aws: serve blob bytes instead of redirecting to S3")
	fs.StringVar(&c.AWS.CDNURL, "cdn-url", "", "aws: CloudFront `URL` whose origin is the bucket; blob GETs redirect to signed URLs under it")
	fs.StringVar(&c.AWS.CDNKeyPairID, "cdn-key-pair-id", "", "aws: CloudFront public key `id`")
	fs.StringVar(&c.AWS.CDNPrivateKey, "cdn-private-key", "", "aws: CloudFront signing key: PEM `file` or Secrets Manager secret ARN")
	fs.BoolVar(&c.ViaLambda, "via-lambda", false, "serve through the emulated API Gateway and Lambda (their limits apply)")
	fs.BoolVar(&c.Edge, "edge", false, "with --via-lambda --backend aws: serve through an emulated CloudFront whose function sends upload PUTs straight to S3")
	fs.BoolVar(&c.LambdaColdStarts, "lambda-cold-starts", false, "with --via-lambda: a cold start (new clients, drivers, handler) for every invocation")
	fs.DurationVar(&c.UploadTTL, "upload-ttl", time.Hour, "how long an idle upload session lives")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", -1, "cap on one upload request's body; 0: none (default: none, or 4404019 with --via-lambda)")
	fs.Int64Var(&c.ChunkMinLength, "chunk-min-length", -1, "OCI-Chunk-Min-Length to advertise; 0: none (default: by backend)")
	fs.DurationVar(&c.SweepInterval, "sweep-interval", 5*time.Minute, "how often expired upload sessions are removed")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "grace period for in-flight requests on shutdown")
	fs.StringVar(&c.RetentionPolicy, "retention-policy", "", "apply this Amazon ECR lifecycle policy `file` (JSON) to every repository (docs/retention.md)")
	fs.DurationVar(&c.RetentionInterval, "retention-interval", time.Hour, "how often --retention-policy runs")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.Auth.PolicyFile, "auth-policy", "", "turn on token auth with this policy `file` (JSON or YAML; docs/auth.md)")
	fs.StringVar(&c.Auth.Service, "auth-service", "", "auth: service `name` (token audience; default: the listen address)")
	fs.StringVar(&c.Auth.KeyFile, "auth-key", "", "auth: token signing key `file`, created if missing (default <data>/token-key.pem)")
	fs.StringVar(&c.Auth.OIDCIssuers, "oidc-issuers", "", "auth: trusted OIDC issuers, `JSON` [{\"issuer\":…,\"audience\":…}]")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "berth serve: unexpected argument %q\n", fs.Arg(0))
		return c, errUsage
	}
	c.setDefaults()
	if err := c.validate(); err != nil {
		fmt.Fprintf(stderr, "berth serve: %v\n", err)
		return c, errUsage
	}
	return c, nil
}

func countSet(vs ...string) (n int) {
	for _, v := range vs {
		if v != "" {
			n++
		}
	}
	return n
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToLower(s))); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// backend is an opened pair of storage drivers.
type backend struct {
	items storage.Items
	blobs storage.Blobs
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

	regCfg := registry.Config{
		UploadTTL:      cfg.UploadTTL,
		MaxBodyBytes:   cfg.MaxBodyBytes,
		ChunkMinLength: cfg.ChunkMinLength,
		Logger:         log,
	}
	var edgeKeys *edge.MemoryStore
	if cfg.Edge {
		if edgeKeys, err = newEdgeKeys(ctx, log); err != nil {
			return err
		}
		regCfg.EdgeTokens = edge.NewKeyring(edgeKeys, 0)
	}
	reg := registry.New(regCfg, be.items, be.blobs)
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
	if cfg.ViaLambda {
		fn := apigwemu.Func(apigw.Handler(h))
		if cfg.LambdaColdStarts {
			fn = coldStarts(cfg.AWS, regCfg, log)
		}
		h = apigwemu.NewEmulator(fn, apigwemu.WithLogger(log))
	}
	if cfg.Edge {
		if h, err = withEdge(ctx, cfg.AWS, h, edgeKeys, log); err != nil {
			ln.Close()
			return err
		}
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("listening",
		slog.String("addr", ln.Addr().String()),
		slog.String("version", version),
		slog.String("backend", cfg.Backend),
		slog.Bool("via_lambda", cfg.ViaLambda),
		slog.Bool("edge", cfg.Edge),
		slog.Int64("max_body_bytes", cfg.MaxBodyBytes),
		slog.Bool("auth", cfg.Auth.PolicyFile != ""))

	sweepCtx, stopSweep := context.WithCancel(ctx)
	sweepDone := make(chan struct{})
	go func() {
		defer close(sweepDone)
		sweep(sweepCtx, reg, be.items, cfg.SweepInterval, log)
	}()
	retainDone := make(chan struct{})
	go func() {
		defer close(retainDone)
		if policy != nil {
			retain(sweepCtx, meta.New(be.items), policy, cfg.RetentionInterval, log)
		}
	}()
	defer func() { stopSweep(); <-sweepDone; <-retainDone }()

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

func (a authConfig) issuers() ([]oidc.IssuerConfig, error) {
	if a.OIDCIssuers == "" {
		return nil, nil
	}
	var out []oidc.IssuerConfig
	if err := json.Unmarshal([]byte(a.OIDCIssuers), &out); err != nil {
		return nil, fmt.Errorf("--oidc-issuers: %w", err)
	}
	return out, nil
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
func retain(ctx context.Context, store *meta.Store, policy *retention.Policy, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		rep, err := retention.Apply(ctx, store, policy, time.Now(), log)
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
func coldStarts(c awsConfig, regCfg registry.Config, log *slog.Logger) apigwemu.Function {
	c.Create = false
	return apigwemu.Func(func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		be, err := openAWS(ctx, c, log)
		if err != nil {
			return events.APIGatewayV2HTTPResponse{}, err
		}
		return apigw.Handler(registry.New(regCfg, be.items, be.blobs))(ctx, ev)
	})
}

// purger is a metadata driver without a TTL of its own (the embedded store):
// expired items stay hidden until it removes them.
type purger interface {
	PurgeExpired(ctx context.Context) (int, error)
}

// sweep removes expired upload sessions, and expired items from a store
// that has no TTL, every interval until ctx ends.
func sweep(ctx context.Context, reg *registry.Registry, items storage.Items, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := reg.SweepUploads(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("sweeping expired uploads", slog.Any("error", err))
		case n > 0:
			log.Info("removed expired uploads", slog.Int("count", n))
		}
		if p, ok := items.(purger); ok {
			if n, err := p.PurgeExpired(ctx); err != nil && ctx.Err() == nil {
				log.Warn("purging expired metadata", slog.Any("error", err))
			} else if n > 0 {
				log.Info("purged expired metadata", slog.Int("count", n))
			}
		}
	}
}

// openBackend opens the storage drivers cfg names.
func openBackend(ctx context.Context, cfg serveConfig, log *slog.Logger) (backend, error) {
	switch cfg.Backend {
	case backendAWS:
		return openAWS(ctx, cfg.AWS, log)
	default:
		return openEmbedded(cfg.Data)
	}
}
