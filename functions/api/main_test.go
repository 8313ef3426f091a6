package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/berth-registry/berth/functions/internal/apiwire"
	"github.com/berth-registry/berth/functions/internal/lambdaenv"
	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/apigw"
	"github.com/berth-registry/berth/pkg/audit"
	"github.com/berth-registry/berth/pkg/auth"
	"github.com/berth-registry/berth/pkg/auth/policy"
	"github.com/berth-registry/berth/pkg/auth/token"
	"github.com/berth-registry/berth/pkg/awsbackend"
	"github.com/berth-registry/berth/pkg/edge"
	"github.com/berth-registry/berth/pkg/metrics"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/registry/registrytest"
)

var baseEnv = map[string]string{
	lambdaenv.Table: "berth-table", lambdaenv.Bucket: "berth-bucket", lambdaenv.Auth: "off",
}

func getenv(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// handler is the function's handler over the embedded drivers.
func handler(t *testing.T) apigw.HandlerFunc { return handlerWith(t, registry.Config{}) }

// handlerWith is handler with build's client-made hooks in cfg.
func handlerWith(t *testing.T, cfg registry.Config) apigw.HandlerFunc {
	t.Helper()
	s, err := loadSettings(getenv(baseEnv))
	if err != nil {
		t.Fatal(err)
	}
	e := testenv.NewEmbedded(t)
	return apigw.Handler(apiwire.New(s, slog.New(slog.DiscardHandler), e.Items, e.Blobs, nil, cfg))
}

func event(t *testing.T, name string) events.APIGatewayV2HTTPRequest {
	t.Helper()
	raw, err := os.ReadFile("../../events/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func ociCode(t *testing.T, resp events.APIGatewayV2HTTPResponse) string {
	t.Helper()
	var e struct{ Errors []struct{ Code string } }
	if err := json.Unmarshal([]byte(resp.Body), &e); err != nil || len(e.Errors) == 0 {
		t.Fatalf("no OCI error in %d %q", resp.StatusCode, resp.Body)
	}
	return e.Errors[0].Code
}

func TestSampleEvents(t *testing.T) {
	h := handler(t)
	resp, err := h(context.Background(), event(t, "api-blob-get.json"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 404 || ociCode(t, resp) != "BLOB_UNKNOWN" {
		t.Errorf("blob GET on an empty registry: %d %s", resp.StatusCode, resp.Body)
	}
	// The manifest's config blob was never pushed.
	resp, err = h(context.Background(), event(t, "api-manifest-put.json"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 400 || ociCode(t, resp) != "MANIFEST_BLOB_UNKNOWN" {
		t.Errorf("manifest PUT without its config blob: %d %s", resp.StatusCode, resp.Body)
	}
	if resp.Headers["Docker-Distribution-Api-Version"] != "registry/2.0" || resp.Headers["Content-Type"] == "" {
		t.Errorf("headers %v", resp.Headers)
	}
}

func TestAuthGuards(t *testing.T) {
	signer, err := token.LoadOrCreateKeyFile(filepath.Join(t.TempDir(), "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse([]byte(`{"version":"1","rules":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	setup, err := auth.New(auth.Config{Service: "a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com", Signer: signer, Policy: pol})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := loadSettings(getenv(baseEnv))
	e := testenv.NewEmbedded(t)
	h := apigw.Handler(apiwire.New(s, slog.New(slog.DiscardHandler), e.Items, e.Blobs, setup.Middleware, registry.Config{}))
	resp, err := h(context.Background(), event(t, "api-blob-get.json")) // carries a forged bearer token
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 401 || !strings.Contains(resp.Headers["Www-Authenticate"], `realm="https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/token"`) {
		t.Errorf("forged token: %d %v", resp.StatusCode, resp.Headers)
	}
}

func TestSettings(t *testing.T) {
	if _, err := loadSettings(getenv(map[string]string{})); err == nil ||
		!strings.Contains(err.Error(), lambdaenv.Table) || !strings.Contains(err.Error(), lambdaenv.TokenKMSKeyID) {
		t.Errorf("empty environment (auth on by default): %v", err)
	}
	if s, err := loadSettings(getenv(baseEnv)); err != nil || s.MaxBodyBytes != apigw.MaxBodyBytes || s.Backend.Bucket != "berth-bucket" {
		t.Errorf("defaults %+v, %v", s, err)
	}
	env := map[string]string{lambdaenv.CDNURL: "https://cdn.example.com"}
	for k, v := range baseEnv {
		env[k] = v
	}
	if _, err := loadSettings(getenv(env)); err == nil || !strings.Contains(err.Error(), "together") {
		t.Errorf("partial CloudFront settings: %v", err)
	}
	env[lambdaenv.MaxBodyBytes], env[lambdaenv.CDNURL] = "1000", ""
	s, err := loadSettings(getenv(env))
	if err != nil || s.MaxBodyBytes != 1000 || s.Backend.PresignExpiry != awsbackend.DefaultPresignExpiry || s.Auth != nil {
		t.Errorf("settings %+v, %v", s, err)
	}
	// With auth on, the token realm is the public service host, never the
	// request's (origin) host.
	env[lambdaenv.Auth], env[lambdaenv.Service] = "on", "registry.example.com"
	env[lambdaenv.TokenKMSKeyID], env[lambdaenv.AuthPolicyParam] = "alias/berth", "/berth/policy"
	s, err = loadSettings(getenv(env))
	if err != nil || s.Auth == nil || s.Auth.Realm != "https://registry.example.com/token" || s.Auth.Service != "registry.example.com" {
		t.Errorf("auth settings %+v, %v", s.Auth, err)
	}
	if s.EventBus != "" {
		t.Errorf("event bus without %s: %q", lambdaenv.EventBus, s.EventBus)
	}
	env[lambdaenv.EventBus] = "default"
	if s, err = loadSettings(getenv(env)); err != nil || s.EventBus != "default" {
		t.Errorf("event bus %q, %v", s.EventBus, err)
	}
	env[lambdaenv.EventBus] = "off"
	if s, err = loadSettings(getenv(env)); err != nil || s.EventBus != "" {
		t.Errorf("event bus off: %q, %v", s.EventBus, err)
	}
	delete(env, lambdaenv.EventBus)
	if s.EdgeKVSARN != "" || s.CleanupFunction != "" {
		t.Errorf("edge settings without their variables: %+v", s)
	}
	env[lambdaenv.EdgeKVSARN], env[lambdaenv.CleanupFunction] = "arn:aws:cloudfront::123456789012:key-value-store/k", "Berth-Cleanup"
	if s, err = loadSettings(getenv(env)); err != nil || s.EdgeKVSARN != env[lambdaenv.EdgeKVSARN] || s.CleanupFunction != "Berth-Cleanup" {
		t.Errorf("edge settings %+v, %v", s, err)
	}
}

// TestEdgeUploadLocation: with an upload token keyring (what build makes
// from BERTH_EDGE_KVS_ARN) an upload POST answers with an edge Location
// once the store holds a key, and with the API's own before the cleanup
// function's first rotation.
func TestEdgeUploadLocation(t *testing.T) {
	ctx := context.Background()
	store := edge.NewMemoryStore()
	h := handlerWith(t, registry.Config{EdgeTokens: edge.NewKeyring(store, time.Nanosecond)})
	post := events.APIGatewayV2HTTPRequest{
		RawPath: "/v2/team/app/blobs/uploads/",
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "POST", Path: "/v2/team/app/blobs/uploads/"},
		},
		Headers: map[string]string{"host": "registry.example.com"},
	}
	resp, err := h(ctx, post)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 202 || !strings.HasPrefix(resp.Headers["Location"], "/v2/team/app/blobs/uploads/") {
		t.Fatalf("POST before any key: %d %v", resp.StatusCode, resp.Headers)
	}
	if _, err := edge.Rotate(ctx, store, edge.Rotation{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err = h(ctx, post)
	if err != nil {
		t.Fatal(err)
	}
	loc := resp.Headers["Location"]
	if resp.StatusCode != 202 || !strings.HasPrefix(loc, edge.PathPrefix) {
		t.Fatalf("POST with a key: %d %v", resp.StatusCode, resp.Headers)
	}
	c, err := edge.Verify(strings.TrimPrefix(loc, edge.PathPrefix), edge.Lookup(ctx, store), time.Now())
	if err != nil || c.Repo != "team/app" || c.Upload != resp.Headers["Docker-Upload-Uuid"] {
		t.Errorf("token %+v %v, upload uuid %q", c, err, resp.Headers["Docker-Upload-Uuid"])
	}
}

// BERTH_TAG_IMMUTABILITY reaches the handler; rules that do not parse
// stop the cold start, naming the variable (fail closed).
func TestTagImmutabilitySetting(t *testing.T) {
	env := map[string]string{lambdaenv.TagImmutability: `[{"repositories":["team/**"],"imageTagMutability":"IMMUTABLE"}]`}
	for k, v := range baseEnv {
		env[k] = v
	}
	s, err := loadSettings(getenv(env))
	if err != nil || s.TagImmutability == nil || !s.TagImmutability.Immutable("team/app", "v1") {
		t.Fatalf("settings %+v, %v", s, err)
	}
	e := testenv.NewEmbedded(t)
	h := apiwire.New(s, slog.New(slog.DiscardHandler), e.Items, e.Blobs, nil, registry.Config{})
	one := registrytest.NewImage([]byte(`{"n":1}`), []byte("one"))
	two := registrytest.NewImage([]byte(`{"n":2}`), []byte("two"))
	registrytest.PushImage(t, h, "team/app", "v1", one)
	registrytest.PushImage(t, h, "team/app", "", two)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("PUT", "/v2/team/app/manifests/v1", bytes.NewReader(two.Manifest))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "DENIED") {
		t.Fatalf("moving an immutable tag: %d %s", rec.Code, rec.Body)
	}
	for _, bad := range []string{`{"repositories":["a"]}`, `[{"repositories":["a"],"imageTagMutability":"IMMUTABLE_WITH_EXCLUSION"}]`} {
		env[lambdaenv.TagImmutability] = bad
		if _, err := loadSettings(getenv(env)); err == nil || !strings.Contains(err.Error(), lambdaenv.TagImmutability) {
			t.Errorf("invalid rules %s: %v", bad, err)
		}
	}
}

// TestAuditAndMetrics runs the sample manifest PUT (its config blob was
// never pushed) through the handler as main wires it: the audit record says
// FAILURE with API Gateway's request id and source IP, the invocation's one
// EMF line counts a 4xx on the manifest route and no push.
func TestAuditAndMetrics(t *testing.T) {
	s, err := loadSettings(getenv(baseEnv))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	emf := metrics.NewEMF(&out, "berth-api")
	s.Audit, s.Metrics = audit.NewLogger(&out), emf
	e := testenv.NewEmbedded(t)
	h := metrics.Invocation(emf, apigw.Handler(apiwire.New(s, slog.New(slog.DiscardHandler), e.Items, e.Blobs, nil, registry.Config{})))
	ev := event(t, "api-manifest-put.json")
	resp, err := h(context.Background(), ev)
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("manifest PUT: %d %v", resp.StatusCode, err)
	}
	if resp.Headers["X-Request-Id"] != ev.RequestContext.RequestID {
		t.Errorf("X-Request-Id %q, want API Gateway's %q", resp.Headers["X-Request-Id"], ev.RequestContext.RequestID)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want an audit record and an EMF line:\n%s", out.String())
	}
	var rec, emfLine map[string]any
	if json.Unmarshal([]byte(lines[0]), &rec) != nil || json.Unmarshal([]byte(lines[1]), &emfLine) != nil {
		t.Fatalf("not JSON:\n%s", out.String())
	}
	if rec["log"] != "audit" || rec["requestId"] != ev.RequestContext.RequestID || rec["sourceIp"] != ev.RequestContext.HTTP.SourceIP ||
		rec["action"] != "push" || rec["resource"] != "manifest" || rec["result"] != "FAILURE" || rec["status"] != float64(400) ||
		rec["principal"] != "anonymous" {
		t.Errorf("audit record %v", rec)
	}
	if emfLine["log"] != "metrics" || emfLine["Route"] != "manifest" || emfLine["StatusClass"] != "4xx" || emfLine["Requests"] != float64(1) ||
		emfLine["ManifestPushes"] != nil || emfLine["_aws"] == nil {
		t.Errorf("EMF line %v", emfLine)
	}
}
