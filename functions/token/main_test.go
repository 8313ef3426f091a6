package main

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/berth-registry/berth/functions/internal/lambdaenv"
	"github.com/berth-registry/berth/pkg/apigw"
	"github.com/berth-registry/berth/pkg/auth"
	"github.com/berth-registry/berth/pkg/auth/policy"
	"github.com/berth-registry/berth/pkg/auth/token"
)

// handler is the token function's handler with a local signing key in place
// of KMS and a policy that lets anyone pull library/*.
func handler(t *testing.T) apigw.HandlerFunc {
	t.Helper()
	signer, err := token.LoadOrCreateKeyFile(t.TempDir() + "/key.pem")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse([]byte("version: \"1\"\nrules:\n  - repositories: [\"library/**\"]\n    principals: [anonymous]\n    actions: [pull]\n"))
	if err != nil {
		t.Fatal(err)
	}
	setup, err := auth.New(auth.Config{Service: "a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com", Signer: signer, Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	return apigw.Handler(newHandler(setup.TokenHandler, nil, nil))
}

func sampleEvent(t *testing.T) events.APIGatewayV2HTTPRequest {
	t.Helper()
	raw, err := os.ReadFile("../../events/token-get.json")
	if err != nil {
		t.Fatal(err)
	}
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestSampleEvent(t *testing.T) {
	h := handler(t)
	ev := sampleEvent(t)
	// The sample carries Basic credentials that are neither an IAM proof nor
	// an OIDC token: refused, not downgraded to anonymous.
	resp, err := h(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 401 || !strings.Contains(resp.Body, "UNAUTHORIZED") {
		t.Errorf("bad credentials: %d %s", resp.StatusCode, resp.Body)
	}
	// Without credentials the anonymous pull rule applies.
	delete(ev.Headers, "authorization")
	resp, err = h(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		Token string `json:"token"`
	}
	if resp.StatusCode != 200 || json.Unmarshal([]byte(resp.Body), &tok) != nil || tok.Token == "" {
		t.Errorf("anonymous pull token: %d %s", resp.StatusCode, resp.Body)
	}
	ev.RawPath, ev.RequestContext.HTTP.Path = "/other", "/other"
	if resp, _ := h(context.Background(), ev); resp.StatusCode != 404 {
		t.Errorf("unrouted path: %d", resp.StatusCode)
	}
}

func TestSettings(t *testing.T) {
	env := map[string]string{
		lambdaenv.Service: "r.example", lambdaenv.TokenKMSKeyID: "alias/berth", lambdaenv.AuthPolicyParam: "/berth/policy",
		lambdaenv.OIDCIssuers: `[{"issuer":"https://token.actions.githubusercontent.com","audience":"r.example"}]`,
	}
	s, err := loadSettings(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if len(s.auth.OIDCIssuers) != 1 || s.auth.TokenTTL != lambdaenv.DefaultTokenTTL {
		t.Errorf("settings: %+v", s.auth)
	}
	if _, err := loadSettings(func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), lambdaenv.TokenKMSKeyID) {
		t.Errorf("missing settings: %v", err)
	}
	if s.auth.Limits != (auth.Limits{}) {
		t.Errorf("limits without settings: %+v, want zero (auth.DefaultLimits)", s.auth.Limits)
	}
	env[lambdaenv.TokenRatePerIP], env[lambdaenv.TokenRateGlobal] = "120/m:10", "off"
	if s, err = loadSettings(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if s.auth.Limits.PerIP != (auth.RateLimit{Rate: 2, Burst: 10}) || s.auth.Limits.Global != auth.Off {
		t.Errorf("limits: %+v", s.auth.Limits)
	}
	env[lambdaenv.TokenRatePerIP] = "fast"
	if _, err := loadSettings(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), lambdaenv.TokenRatePerIP) {
		t.Errorf("bad rate limit: %v", err)
	}
}
