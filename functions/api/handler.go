package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/berth-registry/berth/functions/internal/lambdaenv"
	"github.com/berth-registry/berth/pkg/auth"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/storage"
)

// settings is the API function's configuration.
type settings struct {
	table, bucket string
	presignExpiry time.Duration
	uploadTTL     time.Duration
	maxBodyBytes  int64
	level         slog.Level
	authOn        bool
	auth          auth.AWSConfig
	// CloudFront signed blob URLs, when all three are set.
	cdnURL, cdnKeyPairID, cdnKeySecret string
	// The edge upload path's key store and the asynchronous verifier
	// (functions/internal/edgewire), each off when empty.
	edgeKVSARN, cleanupFunction string
}

func loadSettings(getenv func(string) string) (settings, error) {
	env := lambdaenv.New(getenv)
	s := settings{
		table:         env.Required(lambdaenv.Table),
		bucket:        env.Required(lambdaenv.Bucket),
		presignExpiry: env.Duration(lambdaenv.PresignExpiry, lambdaenv.DefaultPresignExpiry),
		uploadTTL:     env.Duration(lambdaenv.UploadTTL, lambdaenv.DefaultUploadTTL),
		maxBodyBytes:  env.Int64(lambdaenv.MaxBodyBytes, lambdaenv.DefaultMaxBodyBytes),
		level:         env.Level(lambdaenv.LogLevel),
		authOn:        env.Bool(lambdaenv.Auth, true),
		cdnURL:        env.String(lambdaenv.CDNURL, ""),
		cdnKeyPairID:  env.String(lambdaenv.CDNKeyPairID, ""),
		cdnKeySecret:  env.String(lambdaenv.CDNPrivateKeySecret, ""),
		edgeKVSARN:    env.String(lambdaenv.EdgeKVSARN, ""),
		// Read as written: a name, or an ARN for another account's function.
		cleanupFunction: env.String(lambdaenv.CleanupFunction, ""),
	}
	if s.authOn {
		// The middleware only verifies tokens: it needs the token function's
		// service, issuer and KMS key, not its identity providers.
		service := env.Required(lambdaenv.Service)
		s.auth = auth.AWSConfig{
			Service: service,
			// The service is the registry's public host (custom domain,
			// CloudFront or execute-api). The request's Host is not: behind
			// CloudFront it is the API's origin host, and a realm built from
			// it would send clients around the CDN.
			Realm:       "https://" + service + "/token",
			KMSKeyID:    env.Required(lambdaenv.TokenKMSKeyID),
			PolicyParam: env.Required(lambdaenv.AuthPolicyParam),
			Issuer:      env.String(lambdaenv.TokenIssuer, ""),
		}
	}
	err := env.Err()
	if set := countSet(s.cdnURL, s.cdnKeyPairID, s.cdnKeySecret); set != 0 && set != 3 {
		err = errors.Join(err, fmt.Errorf("%s, %s and %s must be set together", lambdaenv.CDNURL, lambdaenv.CDNKeyPairID, lambdaenv.CDNPrivateKeySecret))
	}
	return s, err
}

func countSet(vs ...string) (n int) {
	for _, v := range vs {
		if v != "" {
			n++
		}
	}
	return n
}

// newHandler is the /v2/ handler the function serves, guarded by the token
// middleware when auth is on. cfg carries what build made from clients
// (EdgeTokens, StartVerify); the settings fill in the rest.
func newHandler(s settings, log *slog.Logger, items storage.Items, blobs storage.Blobs, guard func(http.Handler) http.Handler, cfg registry.Config) http.Handler {
	cfg.UploadTTL, cfg.MaxBodyBytes, cfg.Logger = s.uploadTTL, s.maxBodyBytes, log
	// Advertised so chunking clients (regctl) send chunks that fit one
	// invocation; they only ever raise their chunk size to it.
	cfg.ChunkMinLength = min(4<<20, s.maxBodyBytes)
	var h http.Handler = registry.New(cfg, items, blobs)
	if guard != nil {
		h = guard(h)
	}
	return h
}
