// Package apiwire is the api function behind its main: from an aws.Config
// and the settings the main read from the environment it builds the
// drivers (pkg/awsbackend), the token guard, the edge upload hooks
// (functions/internal/edgewire) and the /v2/ handler.
package apiwire

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/berth-registry/berth/functions/internal/edgewire"
	"github.com/berth-registry/berth/functions/internal/obswire"
	"github.com/berth-registry/berth/internal/awsmetrics"
	"github.com/berth-registry/berth/pkg/auth"
	"github.com/berth-registry/berth/pkg/awsbackend"
	"github.com/berth-registry/berth/pkg/events"
	"github.com/berth-registry/berth/pkg/events/eventbridge"
	"github.com/berth-registry/berth/pkg/immutability"
	"github.com/berth-registry/berth/pkg/metrics"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/storage"
)

// Settings is the api function's configuration.
type Settings struct {
	Backend      awsbackend.Settings
	Level        slog.Level
	UploadTTL    time.Duration
	MaxBodyBytes int64
	// Auth, when set, guards /v2/ with token checks (AuthConfig makes it).
	// The middleware only verifies tokens: it needs the token function's
	// service, issuer and KMS key, not its identity providers.
	Auth *auth.AWSConfig
	// The edge upload path's key store (BERTH_EDGE_KVS_ARN) and the
	// function that verifies multipart direct uploads asynchronously, each
	// off when empty.
	EdgeKVSARN, CleanupFunction string
	// TagImmutability decides which tags may not move
	// (BERTH_TAG_IMMUTABILITY); nil: every tag is mutable.
	TagImmutability *immutability.Rules
	// EventBus receives registry events (a name or ARN, "default"); empty:
	// no events.
	EventBus string
	// AfterResponse, when set, delivers the events after each
	// invocation's response was sent (the Lambda extension in
	// functions/internal/afterresponse) instead of before it; nil: before.
	AfterResponse events.Deferrer
	// Audit receives one audit record per request (audit.NewLogger on
	// stdout); nil: none. Metrics receives the request figures and the
	// SDK's retries (metrics.EMF on stdout); nil: none. Both are built by
	// the main, not read from the environment.
	Audit   *slog.Logger
	Metrics metrics.Recorder
}

// Handler builds the function's handler (once per cold start).
func Handler(ctx context.Context, cfg aws.Config, s Settings, log *slog.Logger) (http.Handler, error) {
	if s.Metrics != nil {
		// A copy: the caller's config keeps its own options.
		cfg.APIOptions = append(slices.Clip(cfg.APIOptions), awsmetrics.Retries(s.Metrics))
	}
	be, err := awsbackend.Open(ctx, cfg, s.Backend, log)
	if err != nil {
		return nil, err
	}
	var guard func(http.Handler) http.Handler
	if s.Auth != nil {
		a := *s.Auth
		a.Logger = log
		setup, err := auth.NewAWS(ctx, cfg, a)
		if err != nil {
			return nil, err
		}
		guard = setup.Middleware
	}
	regCfg := registry.Config{EdgeTokens: edgewire.Tokens(cfg, s.EdgeKVSARN)}
	if s.EventBus != "" {
		var em events.Emitter = eventbridge.NewFromConfig(cfg, s.EventBus, log)
		if s.AfterResponse != nil {
			em = events.Deferred{Emitter: em, Deferrer: s.AfterResponse}
		}
		regCfg.Events = em
	}
	if s.CleanupFunction != "" {
		regCfg.StartVerify = edgewire.StartVerify(lambda.NewFromConfig(cfg), s.CleanupFunction)
	}
	return New(s, log, be.Items, be.Blobs, guard, regCfg), nil
}

// New is the /v2/ handler over the given drivers, guarded by guard when
// set. regCfg carries what Handler made from clients (EdgeTokens,
// StartVerify); the settings fill in the rest.
func New(s Settings, log *slog.Logger, items storage.Items, blobs storage.Blobs, guard func(http.Handler) http.Handler, regCfg registry.Config) http.Handler {
	regCfg.UploadTTL, regCfg.MaxBodyBytes, regCfg.Logger = s.UploadTTL, s.MaxBodyBytes, log
	// BERTH_AUTH=off: every caller may push and pull everywhere, so a
	// pusher's HEAD may mount a blob from any repository.
	regCfg.Open = guard == nil
	if s.TagImmutability != nil {
		regCfg.ImmutableTags = s.TagImmutability.Immutable
	}
	// Advertised so chunking clients (regctl) send chunks that fit one
	// invocation; they only ever raise their chunk size to it.
	regCfg.ChunkMinLength = min(4<<20, s.MaxBodyBytes)
	if s.Metrics != nil {
		regCfg.Metrics = s.Metrics
	}
	var h http.Handler = registry.New(regCfg, items, blobs)
	if guard != nil {
		h = guard(h)
	}
	return obswire.Observe(h, s.Audit, s.Metrics)
}

// AuthConfig is the token guard's configuration for a registry served at
// service. The realm is the public service host (custom domain, CloudFront
// or execute-api), never the request's Host: behind CloudFront that is the
// API's origin host, and a realm built from it would send clients around
// the CDN.
func AuthConfig(service, kmsKeyID, policyParam, issuer string) *auth.AWSConfig {
	return &auth.AWSConfig{
		Service:     service,
		Realm:       "https://" + service + "/token",
		KMSKeyID:    kmsKeyID,
		PolicyParam: policyParam,
		Issuer:      issuer,
	}
}
