package main

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/berth-registry/berth/functions/internal/lambdaenv"
	"github.com/berth-registry/berth/pkg/auth"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/registry"
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
// middleware when auth is on.
func newHandler(s settings, log *slog.Logger, items meta.Items, blobs registry.Blobs, guard func(http.Handler) http.Handler) http.Handler {
	var h http.Handler = registry.New(registry.Config{
		UploadTTL:    s.uploadTTL,
		MaxBodyBytes: s.maxBodyBytes,
		// Advertised so chunking clients (regctl) send chunks that fit one
		// invocation; they only ever raise their chunk size to it.
		ChunkMinLength: min(4<<20, s.maxBodyBytes),
		Logger:         log,
	}, items, blobs)
	if guard != nil {
		h = guard(h)
	}
	return h
}

// secretGetter is the part of Secrets Manager cdnKey uses.
type secretGetter interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// cdnKey reads the CloudFront signing key (an RSA PEM) from Secrets Manager.
func cdnKey(ctx context.Context, sm secretGetter, secretID string) (*rsa.PrivateKey, error) {
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(secretID)})
	if err != nil {
		return nil, fmt.Errorf("cloudfront key %s: %w", secretID, err)
	}
	block, _ := pem.Decode([]byte(aws.ToString(out.SecretString)))
	if block == nil {
		return nil, fmt.Errorf("cloudfront key %s: no PEM block", secretID)
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("cloudfront key %s: %w", secretID, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("cloudfront key %s: %T, want RSA", secretID, k)
	}
	return rk, nil
}
