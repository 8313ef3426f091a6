package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/berth-registry/berth/functions/internal/lambdaenv"
	"github.com/berth-registry/berth/pkg/apigw"
	"github.com/berth-registry/berth/pkg/audit"
	"github.com/berth-registry/berth/pkg/auth"
	"github.com/berth-registry/berth/pkg/auth/policy"
	"github.com/berth-registry/berth/pkg/auth/token"
	"github.com/berth-registry/berth/pkg/metrics"
)

// handler is the token function's handler with a local signing key in place
// of KMS and a policy that lets anyone pull library/*.
func handler(t *testing.T) apigw.HandlerFunc {
	t.Helper()
	return apigw.Handler(newHandler(tokenServer(t), nil, nil))
}

func tokenServer(t *testing.T) http.Handler {
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
	return setup.TokenHandler
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

// TestAuditAndMetrics runs the function's handler as main wires it (audit
// records and EMF on one writer, as both go to stdout) on the sample event:
// a refusal, then an anonymous grant, each one audit record carrying API
// Gateway's request id and source IP, and one EMF line per invocation.
func TestAuditAndMetrics(t *testing.T) {
	var out bytes.Buffer
	emf := metrics.NewEMF(&out, "berth-token")
	h := metrics.Invocation(emf, apigw.Handler(newHandler(tokenServer(t), audit.NewLogger(&out), emf)))
	ev := sampleEvent(t)
	if resp, err := h(context.Background(), ev); err != nil || resp.StatusCode != 401 {
		t.Fatalf("refused: %d %v", resp.StatusCode, err)
	}
	delete(ev.Headers, "authorization")
	if resp, err := h(context.Background(), ev); err != nil || resp.StatusCode != 200 {
		t.Fatalf("granted: %d %v", resp.StatusCode, err)
	}
	var audits, emfs []map[string]any
	for l := range strings.SplitSeq(strings.TrimSpace(out.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		switch m["log"] {
		case "audit":
			audits = append(audits, m)
		case "metrics":
			emfs = append(emfs, m)
		}
	}
	if len(audits) != 2 || len(emfs) != 2 {
		t.Fatalf("%d audit records, %d EMF lines, want 2 and 2:\n%s", len(audits), len(emfs), out.String())
	}
	for i, want := range []struct{ result, principal string }{{"DENIED", "anonymous"}, {"SUCCESS", "anonymous"}} {
		a := audits[i]
		if a["requestId"] != ev.RequestContext.RequestID || a["sourceIp"] != "198.51.100.23" || a["userAgent"] != "docker/29.0.1" ||
			a["action"] != "token-grant" || a["result"] != want.result || a["principal"] != want.principal {
			t.Errorf("audit record %d: %v", i, a)
		}
	}
	if strings.Contains(out.String(), "YWNjZXNzOnRva2Vu") || strings.Contains(out.String(), `"token":`) {
		t.Error("a credential or token reached the output")
	}
	if emfs[0]["TokenDenials"] != float64(1) || emfs[1]["TokenGrants"] != float64(1) || emfs[1]["Route"] != "token" ||
		emfs[1]["Function"] != "berth-token" || emfs[1]["StatusClass"] != "2xx" || emfs[0]["_aws"] == nil {
		t.Errorf("EMF lines: %v", emfs)
	}
}
