// Command token is the token function: the Docker token realm (GET and POST
// /token) behind API Gateway. It exchanges an IAM proof or an OIDC ID token
// for a short-lived registry token signed by KMS, granting what the policy
// in SSM Parameter Store allows (package auth; docs/auth.md).
package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/berth-registry/berth/functions/internal/lambdaenv"
	"github.com/berth-registry/berth/functions/internal/obswire"
	"github.com/berth-registry/berth/pkg/apigw"
	"github.com/berth-registry/berth/pkg/audit"
	"github.com/berth-registry/berth/pkg/auth"
	"github.com/berth-registry/berth/pkg/metrics"
)

type settings struct {
	auth  auth.AWSConfig
	level slog.Level
}

func loadSettings(getenv func(string) string) (settings, error) {
	env := lambdaenv.New(getenv)
	s := settings{level: env.Level(lambdaenv.LogLevel), auth: auth.AWSConfig{
		Service:     env.Required(lambdaenv.Service),
		KMSKeyID:    env.Required(lambdaenv.TokenKMSKeyID),
		PolicyParam: env.Required(lambdaenv.AuthPolicyParam),
		Issuer:      env.String(lambdaenv.TokenIssuer, ""),
		TokenTTL:    env.Duration(lambdaenv.TokenTTL, lambdaenv.DefaultTokenTTL),
		STSAudience: env.String(lambdaenv.STSAudience, ""),
	}}
	env.JSON(lambdaenv.OIDCIssuers, &s.auth.OIDCIssuers)
	env.Parse(lambdaenv.TokenRatePerIP, func(v string) (err error) { s.auth.Limits.PerIP, err = auth.ParseRateLimit(v); return err })
	env.Parse(lambdaenv.TokenRateGlobal, func(v string) (err error) { s.auth.Limits.Global, err = auth.ParseRateLimit(v); return err })
	return s, env.Err()
}

func main() {
	s, err := loadSettings(os.Getenv)
	log := lambdaenv.Logger(os.Stderr, s.level)
	if err != nil {
		log.Error("configuration", slog.Any("error", err))
		os.Exit(1)
	}
	ctx := context.Background()
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		log.Error("aws configuration", slog.Any("error", err))
		os.Exit(1)
	}
	s.auth.Logger = log
	setup, err := auth.NewAWS(ctx, awsCfg, s.auth)
	if err != nil {
		log.Error("auth setup", slog.Any("error", err))
		os.Exit(1)
	}
	// Audit records and EMF lines go to stdout, the function's log group,
	// apart from the diagnostic log on stderr (docs/audit.md).
	emf := metrics.NewEMF(os.Stdout, os.Getenv("AWS_LAMBDA_FUNCTION_NAME"))
	lambda.Start(metrics.Invocation(emf, apigw.Handler(newHandler(setup.TokenHandler, audit.NewLogger(os.Stdout), emf))))
}

// newHandler serves the token endpoint at the paths API Gateway routes
// here, recording each request in the audit trail and the metrics.
func newHandler(token http.Handler, auditLog *slog.Logger, rec metrics.Recorder) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /token", token)
	mux.Handle("POST /token", token)
	return obswire.Observe(mux, auditLog, rec)
}
