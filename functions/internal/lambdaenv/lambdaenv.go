// Package lambdaenv reads the Lambda functions' configuration from
// environment variables (the deployment contract in docs/lambda.md). Each
// main names the variables it reads through a Reader, so the template test
// can check every one of them is set on that function in template.yaml.
package lambdaenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Environment variable names. Names and defaults are fixed by the
// deployment contract shared with the CDK app and the auth functions. The
// defaults that belong to a component live with it: BERTH_MAX_BODY_BYTES's
// is apigw.MaxBodyBytes, BERTH_PRESIGN_EXPIRY's awsbackend.DefaultPresignExpiry.
const (
	Table               = "BERTH_TABLE"
	Bucket              = "BERTH_BUCKET"
	PresignExpiry       = "BERTH_PRESIGN_EXPIRY"
	CDNURL              = "BERTH_CDN_URL"
	CDNKeyPairID        = "BERTH_CDN_KEY_PAIR_ID"
	CDNPrivateKeySecret = "BERTH_CDN_PRIVATE_KEY_SECRET"
	UploadTTL           = "BERTH_UPLOAD_TTL"
	MaxBodyBytes        = "BERTH_MAX_BODY_BYTES"
	LogLevel            = "BERTH_LOG_LEVEL"
	Auth                = "BERTH_AUTH"
	Service             = "BERTH_SERVICE"
	TokenKMSKeyID       = "BERTH_TOKEN_KMS_KEY_ID"
	TokenIssuer         = "BERTH_TOKEN_ISSUER"
	TokenTTL            = "BERTH_TOKEN_TTL"
	AuthPolicyParam     = "BERTH_AUTH_POLICY_PARAM"
	STSAudience         = "BERTH_STS_AUDIENCE"
	OIDCIssuers         = "BERTH_OIDC_ISSUERS"
	RetentionPolicy     = "BERTH_RETENTION_POLICY" // ECR lifecycle policy JSON for cleanup (docs/retention.md)
	// TagImmutability holds the api function's per-repository tag
	// immutability rules, a JSON array (pkg/immutability,
	// docs/retention.md); empty: every tag is mutable.
	TagImmutability = "BERTH_TAG_IMMUTABILITY"
	// GCGrace is how long a blob must have been unreferenced before the
	// cleanup function deletes it (a Go duration; "0" turns GC off).
	GCGrace = "BERTH_GC_GRACE"
	// EventBus is the EventBridge bus the api and cleanup functions put
	// registry events on (docs/events.md): a name or ARN, "default" for
	// the account's default bus; unset or "off": no events.
	EventBus = "BERTH_EVENT_BUS"
	// OSVEcosystems are the OSV ecosystems the osvsync function copies
	// into the bucket, comma separated as OSV spells them ("Debian,Red
	// Hat,PyPI"); unset: osvsync.DefaultEcosystems.
	OSVEcosystems = "BERTH_OSV_ECOSYSTEMS"
	// OSVBaseURL is where the OSV exports are fetched from
	// (<base>/<Ecosystem>/all.zip); unset: osvsync.DefaultBaseURL.
	OSVBaseURL = "BERTH_OSV_BASE_URL"
	// ScanFunction names the scan function (name or ARN) the osvsync
	// function invokes asynchronously with a re-match event after a run
	// that stored new data; unset: no re-match is requested.
	ScanFunction     = "BERTH_SCAN_FUNCTION"
	DefaultTokenTTL  = 15 * time.Minute
	DefaultUploadTTL = time.Hour
)

// The edge upload path (docs/deploy.md, "Edge uploads"). Only the CDK
// deployment sets these; template.yaml (SAM) has no edge path.
const (
	// EdgeKVSARN is the ARN of the CloudFront KeyValueStore holding the
	// upload token keys (arn:aws:cloudfront::<account>:key-value-store/<id>).
	// Set: the api function hands out /_upload/<token> Locations (once the
	// store holds a current key) and the cleanup function rotates the keys
	// on every run. Unset: no edge path; the API takes every upload itself.
	EdgeKVSARN = "BERTH_EDGE_KVS_ARN"
	// CleanupFunction names the cleanup function (name or ARN) the api
	// function invokes asynchronously (InvocationType Event) to verify the
	// digest of a completed multipart direct upload (berth push). Unset: no
	// asynchronous verification hook.
	CleanupFunction = "BERTH_CLEANUP_FUNCTION"
	// TokenRatePerIP and TokenRateGlobal limit how many tokens one token
	// function instance signs, per source IP and in all ("5/s:20",
	// "120/m", "off"; unset: auth.DefaultLimits, right in AWS).
	TokenRatePerIP  = "BERTH_TOKEN_RATE_PER_IP"
	TokenRateGlobal = "BERTH_TOKEN_RATE_GLOBAL"
)

// Reader reads variables and collects every problem, so a misconfigured
// function reports all of them in one cold start.
type Reader struct {
	getenv func(string) string
	errs   []error
}

// New reads from getenv (os.Getenv in a main, a map in tests).
func New(getenv func(string) string) *Reader { return &Reader{getenv: getenv} }

// Err reports every missing or malformed variable.
func (r *Reader) Err() error { return errors.Join(r.errs...) }

// Required returns the variable's value or records that it is missing.
func (r *Reader) Required(key string) string {
	v := strings.TrimSpace(r.getenv(key))
	if v == "" {
		r.errs = append(r.errs, fmt.Errorf("%s is required", key))
	}
	return v
}

// String returns the variable's value, or def when unset.
func (r *Reader) String(key, def string) string {
	if v := strings.TrimSpace(r.getenv(key)); v != "" {
		return v
	}
	return def
}

// Duration parses a Go duration, or returns def when unset.
func (r *Reader) Duration(key string, def time.Duration) time.Duration {
	v := strings.TrimSpace(r.getenv(key))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: want a positive Go duration such as 20m", key, v))
		return def
	}
	return d
}

// Int64 parses a non-negative integer, or returns def when unset.
func (r *Reader) Int64(key string, def int64) int64 {
	v := strings.TrimSpace(r.getenv(key))
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: want a non-negative integer", key, v))
		return def
	}
	return n
}

// JSON decodes a JSON value into v, leaving v alone when unset.
func (r *Reader) JSON(key string, v any) {
	s := strings.TrimSpace(r.getenv(key))
	if s == "" {
		return
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s: %w", key, err))
	}
}

// Parse hands key's value to parse when set; its error is collected.
func (r *Reader) Parse(key string, parse func(string) error) {
	s := strings.TrimSpace(r.getenv(key))
	if s == "" {
		return
	}
	if err := parse(s); err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s: %w", key, err))
	}
}

// Bool parses "on"/"off" (and true/false, 1/0), or returns def when unset.
func (r *Reader) Bool(key string, def bool) bool {
	switch v := strings.ToLower(strings.TrimSpace(r.getenv(key))); v {
	case "":
		return def
	case "on", "true", "1", "yes":
		return true
	case "off", "false", "0", "no":
		return false
	default:
		r.errs = append(r.errs, fmt.Errorf("%s=%q: want on or off", key, v))
		return def
	}
}

// BusName is the value of BERTH_EVENT_BUS as the functions use it: the
// bus name or ARN, "" for "off" (no events).
func BusName(v string) string {
	if v == "off" {
		return ""
	}
	return v
}

// Level parses debug|info|warn|error, default info.
func (r *Reader) Level(key string) slog.Level {
	v := strings.TrimSpace(r.getenv(key))
	if v == "" {
		return slog.LevelInfo
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(v)); err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: want debug, info, warn or error", key, v))
		return slog.LevelInfo
	}
	return l
}

// Logger is the functions' JSON logger (CloudWatch parses it).
func Logger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}
