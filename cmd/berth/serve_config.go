package main

// `berth serve` configuration: flags, defaults and validation. serve.go
// runs what this describes.

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berth-registry/berth/pkg/apigw"
	"github.com/berth-registry/berth/pkg/auth/oidc"
	"github.com/berth-registry/berth/pkg/awsbackend"
	"github.com/berth-registry/berth/pkg/gc"
)

// Backends `berth serve` can run on.
const (
	backendEmbedded = "embedded"
	backendAWS      = "aws"
)

// serveConfig is everything `berth serve` can be told. Flags fill it in
// parseServeFlags; setDefaults is the one place defaults live.
type serveConfig struct {
	Addr    string // listen address, HOST:PORT (port 0: any free port)
	Data    string // embedded backend: data directory
	Backend string // embedded | aws
	AWS     awsFlags
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
	// TagImmutability is a JSON file of per-repository tag mutability
	// rules (pkg/immutability, docs/retention.md).
	TagImmutability string
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
	ChunkMinLength int64
	SweepInterval  time.Duration // how often expired upload sessions are removed
	// GCInterval is how often a garbage collection pass runs (0: never);
	// GCGrace how long a blob must have been unreferenced to be deleted.
	GCInterval      time.Duration
	GCGrace         time.Duration
	ShutdownTimeout time.Duration // how long in-flight requests get on SIGTERM
	LogLevel        string        // debug | info | warn | error
	Auth            authConfig
	Events          eventsConfig
	Scan            scanConfig
	Obs             obsConfig
}

// eventsConfig delivers registry events (docs/events.md) as CloudEvents
// JSON: posted to a webhook, appended to a file, or both.
type eventsConfig struct {
	Webhook    string // URL; empty: no webhook
	SecretFile string // HMAC key for X-Berth-Signature; empty: unsigned
	LogFile    string // JSON lines; empty: none
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

// awsFlags configures the S3 + DynamoDB backend. Credentials, region and
// endpoints come from the standard AWS configuration chain
// (AWS_ENDPOINT_URL_S3 and AWS_ENDPOINT_URL_DYNAMODB included).
type awsFlags struct {
	awsbackend.Settings
	// CDNPrivateKey is the CloudFront signing key: a PEM file or a Secrets
	// Manager secret ARN; setDefaults puts it where Settings wants it.
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
			c.MaxBodyBytes = apigw.MaxBodyBytes
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
	if c.GCGrace <= 0 {
		c.GCGrace = gc.DefaultGrace
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 15 * time.Second
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.Scan.Refresh <= 0 {
		c.Scan.Refresh = time.Hour
	}
	if c.Scan.Workers <= 0 {
		c.Scan.Workers = 2
	}
	if c.Auth.KeyFile == "" {
		c.Auth.KeyFile = filepath.Join(c.Data, "token-key.pem")
	}
	if c.AWS.PresignExpiry <= 0 {
		c.AWS.PresignExpiry = awsbackend.DefaultPresignExpiry
	}
	if strings.HasPrefix(c.AWS.CDNPrivateKey, "arn:") {
		c.AWS.CloudFront.KeySecret = c.AWS.CDNPrivateKey
	} else {
		c.AWS.CloudFront.KeyFile = c.AWS.CDNPrivateKey
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
		if c.AWS.CloudFront.Validate() != nil {
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
	if c.Events.Webhook != "" {
		if u, err := url.Parse(c.Events.Webhook); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("--events-webhook %q: want an http(s) URL", c.Events.Webhook))
		}
	}
	if c.Events.SecretFile != "" && c.Events.Webhook == "" {
		errs = append(errs, errors.New("--events-secret-file needs --events-webhook"))
	}
	if c.Scan.Enabled && c.Scan.OSVData == "" {
		errs = append(errs, errors.New("--scan needs --osv-data"))
	}
	if !c.Scan.Enabled && c.Scan.OSVData != "" {
		errs = append(errs, errors.New("--osv-data needs --scan"))
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
	c.storeFlags(fs)
	fs.BoolVar(&c.AWS.Create, "create", false, "aws: create the bucket and table when missing")
	fs.DurationVar(&c.AWS.PresignExpiry, "presign-expiry", awsbackend.DefaultPresignExpiry, "aws: lifetime of presigned blob URLs")
	fs.BoolVar(&c.AWS.NoRedirect, "no-redirect", false, "aws: serve blob bytes instead of redirecting to S3")
	fs.StringVar(&c.AWS.CloudFront.URL, "cdn-url", "", "aws: CloudFront `URL` whose origin is the bucket; blob GETs redirect to signed URLs under it")
	fs.StringVar(&c.AWS.CloudFront.KeyPairID, "cdn-key-pair-id", "", "aws: CloudFront public key `id`")
	fs.StringVar(&c.AWS.CDNPrivateKey, "cdn-private-key", "", "aws: CloudFront signing key: PEM `file` or Secrets Manager secret ARN")
	fs.BoolVar(&c.ViaLambda, "via-lambda", false, "serve through the emulated API Gateway and Lambda (their limits apply)")
	fs.BoolVar(&c.Edge, "edge", false, "with --via-lambda --backend aws: serve through an emulated CloudFront whose function sends upload PUTs straight to S3")
	fs.BoolVar(&c.LambdaColdStarts, "lambda-cold-starts", false, "with --via-lambda: a cold start (new clients, drivers, handler) for every invocation")
	fs.DurationVar(&c.UploadTTL, "upload-ttl", time.Hour, "how long an idle upload session lives")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", -1, "cap on one upload request's body in bytes; 0: none; -1: none, or "+strconv.Itoa(apigw.MaxBodyBytes)+" with --via-lambda")
	fs.Int64Var(&c.ChunkMinLength, "chunk-min-length", -1, "OCI-Chunk-Min-Length to advertise; 0: none (default: by backend)")
	fs.DurationVar(&c.SweepInterval, "sweep-interval", 5*time.Minute, "how often expired upload sessions are removed")
	fs.DurationVar(&c.GCInterval, "gc-interval", time.Hour, "how often garbage collection deletes unreferenced blobs; 0: never (docs/gc.md)")
	fs.DurationVar(&c.GCGrace, "gc-grace", gc.DefaultGrace, "how long a blob must have been unreferenced before garbage collection deletes it")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "grace period for in-flight requests on shutdown")
	fs.StringVar(&c.RetentionPolicy, "retention-policy", "", "apply this Amazon ECR lifecycle policy `file` (JSON) to every repository (docs/retention.md)")
	fs.DurationVar(&c.RetentionInterval, "retention-interval", time.Hour, "how often --retention-policy runs")
	fs.StringVar(&c.TagImmutability, "tag-immutability", "", "per-repository tag immutability rules `file` (JSON, ECR's imageTagMutability settings; docs/retention.md)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.Auth.PolicyFile, "auth-policy", "", "turn on token auth with this policy `file` (JSON or YAML; docs/auth.md)")
	fs.StringVar(&c.Auth.Service, "auth-service", "", "auth: service `name` (token audience; default: the listen address)")
	fs.StringVar(&c.Auth.KeyFile, "auth-key", "", "auth: token signing key `file`, created if missing (default <data>/token-key.pem)")
	fs.StringVar(&c.Events.Webhook, "events-webhook", "", "post registry events as CloudEvents JSON to this `URL`, with retries (docs/events.md)")
	fs.StringVar(&c.Events.SecretFile, "events-secret-file", "", "sign webhook posts (X-Berth-Signature: sha256=HMAC) with the key in this `file`")
	fs.StringVar(&c.Events.LogFile, "events-log", "", "append registry events as CloudEvents JSON lines to this `file`")
	fs.BoolVar(&c.Scan.Enabled, "scan", false, "scan pushed images for vulnerabilities in the background and attach SBOM and report as referrers (docs/scanning.md)")
	fs.StringVar(&c.Scan.OSVData, "osv-data", "", "scan: OSV vulnerability data `directory` (<Ecosystem>/all.zip or <Ecosystem>/*.json)")
	fs.DurationVar(&c.Scan.Refresh, "osv-refresh", time.Hour, "scan: how often --osv-data is checked for new data (changes re-match every scanned image)")
	fs.IntVar(&c.Scan.Workers, "scan-workers", 2, "scan: jobs (layer indexing, image scans) run at once")
	fs.StringVar(&c.Obs.AuditLog, "audit-log", "", "append one audit record (JSON) per request to this `file`; - for stderr (docs/audit.md)")
	fs.StringVar(&c.Obs.AuditIPHeader, "audit-ip-header", "", "audit: take the client address from this `header` set by a trusted reverse proxy (X-Forwarded-For: its last entry)")
	fs.StringVar(&c.Obs.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://`HOST:PORT`/metrics (docs/audit.md)")
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

// storeFlags registers the flags that name the store (berth serve, berth
// gc, berth retention preview).
func (c *serveConfig) storeFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Data, "data", "./.berth", "data `directory` of the embedded backend")
	fs.StringVar(&c.Backend, "backend", backendEmbedded, "storage backend: embedded or aws")
	fs.StringVar(&c.AWS.Bucket, "bucket", "", "aws: S3 bucket `name`")
	fs.StringVar(&c.AWS.Table, "table", "", "aws: DynamoDB table `name`")
	fs.BoolVar(&c.AWS.S3PathStyle, "s3-path-style", false, "aws: path-style S3 addressing (emulators)")
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToLower(s))); err != nil {
		return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
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
