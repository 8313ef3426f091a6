// Package auth puts Docker token authentication in front of the /v2/ API:
// a token endpoint (the distribution token spec) that turns an IAM proof
// (package stsproof), an OIDC ID token (package oidc) or nothing
// (anonymous) into a short-lived ES256 token (package token) granting the
// intersection of the requested scopes and what the policy (package
// policy) allows; and a middleware that checks those tokens on every /v2/
// request. docs/auth.md is the user-facing description.
package auth

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/berth-registry/berth/pkg/auth/oidc"
	"github.com/berth-registry/berth/pkg/auth/policy"
	"github.com/berth-registry/berth/pkg/auth/stsproof"
	"github.com/berth-registry/berth/pkg/auth/token"
)

// Config assembles the auth pieces from already-built parts.
type Config struct {
	// Service is the registry's service name: the token audience and the
	// challenge's service parameter. Required.
	Service string
	// Realm is the token endpoint URL put in challenges; "" derives
	// <scheme>://<request host>/token from each request.
	Realm string
	// Issuer is the tokens' iss. Default "berth".
	Issuer string
	// TokenTTL is the tokens' lifetime. Default 15m.
	TokenTTL time.Duration
	// Signer signs tokens. Required.
	Signer token.Signer
	// Policy decides grants. Required.
	Policy PolicySource
	// STS verifies IAM proofs; nil refuses them.
	STS STSVerifier
	// OIDC verifies OIDC ID tokens; nil refuses them.
	OIDC OIDCVerifier
	// Logger receives audit lines. Default: discard.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Limits bounds the token requests that need a signature or an
	// identity check; zero fields take DefaultLimits.
	Limits Limits
}

// Setup is everything a server mounts: the middleware around /v2/ and the
// token endpoint.
type Setup struct {
	// TokenHandler serves the token endpoint (mount it at the realm's path,
	// /token by default).
	TokenHandler http.Handler
	// Verifier checks tokens (the middleware's).
	Verifier *token.Verifier
	// Issuer mints tokens (for tests and the CLI).
	Issuer *token.Issuer

	realm, service string
	log            *slog.Logger
}

// Middleware wraps the /v2/ handler.
func (s *Setup) Middleware(next http.Handler) http.Handler {
	return Middleware(next, s.Verifier, s.realm, s.service, WithLogger(s.log))
}

// New builds a Setup from cfg.
func New(cfg Config) (*Setup, error) {
	if cfg.Service == "" || cfg.Signer == nil || cfg.Policy == nil {
		return nil, errors.New("auth: Service, Signer and Policy are required")
	}
	if cfg.Issuer == "" {
		cfg.Issuer = "berth"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	iss := token.NewIssuer(cfg.Signer, cfg.Issuer, cfg.TokenTTL, cfg.Now)
	v, err := token.NewVerifier(token.VerifierConfig{
		Issuer: cfg.Issuer, Audience: cfg.Service, Keys: []*ecdsa.PublicKey{cfg.Signer.PublicKey()}, Now: cfg.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	ts := &tokenServer{issuer: iss, service: cfg.Service, policy: cfg.Policy, sts: cfg.STS, oidc: cfg.OIDC, log: cfg.Logger, now: cfg.Now,
		limiter: newLimiter(cfg.Limits, cfg.Now)}
	return &Setup{TokenHandler: ts, Verifier: v, Issuer: iss, realm: cfg.Realm, service: cfg.Service, log: cfg.Logger}, nil
}

// LocalConfig configures auth for `berth serve`.
type LocalConfig struct {
	PolicyFile  string // required: the policy document (JSON or YAML)
	KeyFile     string // required: the token key (PEM, created 0600 if missing)
	Service     string // required
	Realm       string // "" → derived per request
	STSAudience string // default Service; IAM proofs must be signed for it
	OIDCIssuers []oidc.IssuerConfig
	TokenTTL    time.Duration
	Limits      Limits // zero fields: DefaultLimits
	Logger      *slog.Logger
	// STSOptions and OIDCOptions reach the verifiers (tests point them at
	// in-process STS and OIDC servers).
	STSOptions  []stsproof.Option
	OIDCOptions []oidc.Option
}

// NewLocal builds the Setup of `berth serve --auth-policy FILE`: policy from
// a file, tokens signed with a local key file, IAM proofs checked against
// the real STS endpoints.
func NewLocal(ctx context.Context, cfg LocalConfig) (*Setup, error) {
	if cfg.PolicyFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("auth: PolicyFile and KeyFile are required")
	}
	pol, err := policy.LoadFile(cfg.PolicyFile)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	signer, err := token.LoadOrCreateKeyFile(cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return build(Config{Service: cfg.Service, Realm: cfg.Realm, TokenTTL: cfg.TokenTTL, Logger: cfg.Logger, Signer: signer, Policy: pol, Limits: cfg.Limits},
		cfg.STSAudience, cfg.OIDCIssuers, cfg.STSOptions, cfg.OIDCOptions)
}

// AWSConfig configures auth for the Lambda functions (see the deployment
// contract's BERTH_* variables).
type AWSConfig struct {
	Service     string // BERTH_SERVICE
	Realm       string // "" → derived per request
	Issuer      string // BERTH_TOKEN_ISSUER
	TokenTTL    time.Duration
	KMSKeyID    string // BERTH_TOKEN_KMS_KEY_ID
	PolicyParam string // BERTH_AUTH_POLICY_PARAM
	PolicyTTL   time.Duration
	STSAudience string // BERTH_STS_AUDIENCE, default Service
	OIDCIssuers []oidc.IssuerConfig
	Limits      Limits // BERTH_TOKEN_RATE_PER_IP, BERTH_TOKEN_RATE_GLOBAL
	Logger      *slog.Logger
}

// NewAWS builds the Setup used in AWS: tokens signed by KMS (public key
// fetched once, verification local), policy from SSM Parameter Store.
func NewAWS(ctx context.Context, awsCfg aws.Config, cfg AWSConfig) (*Setup, error) {
	if cfg.KMSKeyID == "" || cfg.PolicyParam == "" {
		return nil, errors.New("auth: KMSKeyID and PolicyParam are required")
	}
	signer, err := token.NewKMSSigner(ctx, kms.NewFromConfig(awsCfg), cfg.KMSKeyID)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	src := policy.NewSSMSource(ssm.NewFromConfig(awsCfg), cfg.PolicyParam, cfg.PolicyTTL, cfg.Logger)
	return build(Config{Service: cfg.Service, Realm: cfg.Realm, Issuer: cfg.Issuer, TokenTTL: cfg.TokenTTL, Logger: cfg.Logger, Signer: signer, Policy: src, Limits: cfg.Limits},
		cfg.STSAudience, cfg.OIDCIssuers, nil, nil)
}

// build adds the STS verifier (always: it only calls STS when a proof is
// presented) and the OIDC verifier (when issuers are configured) to cfg.
func build(cfg Config, stsAudience string, issuers []oidc.IssuerConfig, stsOpts []stsproof.Option, oidcOpts []oidc.Option) (*Setup, error) {
	if cfg.Service == "" {
		return nil, errors.New("auth: Service is required")
	}
	if stsAudience == "" {
		stsAudience = cfg.Service
	}
	sv, err := stsproof.NewVerifier(stsAudience, stsOpts...)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	cfg.STS = sv
	if len(issuers) > 0 {
		ov, err := oidc.NewVerifier(issuers, oidcOpts...)
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		cfg.OIDC = ov
	}
	return New(cfg)
}
