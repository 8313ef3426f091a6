package edgewire

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/berth-registry/berth/functions/internal/lambdaenv"
	"github.com/berth-registry/berth/pkg/edge"
)

// lambdaAPI answers Invoke like the Lambda service does for an Event
// invocation (202, empty body) and records what it got.
type lambdaAPI struct {
	path, invocationType, auth string
	body                       []byte
	status                     int
}

func (l *lambdaAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.path, l.invocationType, l.auth = r.URL.EscapedPath(), r.Header.Get("X-Amz-Invocation-Type"), r.Header.Get("Authorization")
	l.body, _ = io.ReadAll(r.Body)
	if l.status >= 400 {
		w.Header().Set("X-Amzn-ErrorType", "AccessDeniedException")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(l.status)
		_, _ = w.Write([]byte(`{"Message":"not allowed to invoke"}`))
		return
	}
	w.WriteHeader(l.status)
}

func lambdaClient(t *testing.T, h http.Handler) *lambda.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return lambda.NewFromConfig(aws.Config{
		Region:           "eu-west-1",
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		RetryMaxAttempts: 1,
	}, func(o *lambda.Options) { o.BaseEndpoint = aws.String(srv.URL) })
}

func TestStartVerifyQueuesAnEvent(t *testing.T) {
	api := &lambdaAPI{status: http.StatusAccepted}
	start := StartVerify(lambdaClient(t, api), "Berth-CleanupFunction-1A2B")
	if err := start(context.Background(), "team/app", "u-123"); err != nil {
		t.Fatal(err)
	}
	if api.path != "/2015-03-31/functions/Berth-CleanupFunction-1A2B/invocations" {
		t.Errorf("path %q", api.path)
	}
	if api.invocationType != "Event" {
		t.Errorf("X-Amz-Invocation-Type %q, want Event (asynchronous)", api.invocationType)
	}
	if !strings.Contains(api.auth, "/eu-west-1/lambda/aws4_request") {
		t.Errorf("not SigV4-signed for lambda: %q", api.auth)
	}
	var ev map[string]string
	if err := json.Unmarshal(api.body, &ev); err != nil {
		t.Fatal(err)
	}
	if ev["berth"] != "verify-upload" || ev["repo"] != "team/app" || ev["upload"] != "u-123" || len(ev) != 3 {
		t.Errorf("payload %s", api.body)
	}

	// Denied (the role lacks lambda:InvokeFunction): the hook reports it.
	api.status = http.StatusForbidden
	if err := start(context.Background(), "team/app", "u-123"); err == nil || !strings.Contains(err.Error(), "u-123") {
		t.Errorf("denied invoke: %v", err)
	}
	// A synchronous answer (200) means the event was not queued as asked.
	api.status = http.StatusOK
	if err := start(context.Background(), "team/app", "u-123"); err == nil || !strings.Contains(err.Error(), "status 200") {
		t.Errorf("200 instead of 202: %v", err)
	}
}

func TestHandlerDispatches(t *testing.T) {
	var logs bytes.Buffer
	log := lambdaenv.Logger(&logs, 0)
	var scheduled []events.EventBridgeEvent
	var verified []string
	verifyErr := error(nil)
	h := Handler(log,
		func(_ context.Context, ev events.EventBridgeEvent) error {
			scheduled = append(scheduled, ev)
			return nil
		},
		func(_ context.Context, repo, upload string) error {
			verified = append(verified, repo+"/"+upload)
			return verifyErr
		})
	ctx := context.Background()

	raw, err := os.ReadFile("../../../events/cleanup-schedule.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := h(ctx, raw); err != nil {
		t.Fatal(err)
	}
	if len(scheduled) != 1 || scheduled[0].DetailType != "Scheduled Event" || scheduled[0].ID == "" || len(verified) != 0 {
		t.Fatalf("schedule event: scheduled %+v, verified %v", scheduled, verified)
	}

	// What StartVerify sends.
	payload, _ := json.Marshal(VerifyEvent{Berth: KindVerify, Repo: "a/b", Upload: "u1"})
	if err := h(ctx, payload); err != nil {
		t.Fatal(err)
	}
	if len(verified) != 1 || verified[0] != "a/b/u1" || len(scheduled) != 1 {
		t.Fatalf("verify event: scheduled %d, verified %v", len(scheduled), verified)
	}

	// A failed verification fails the invocation (Lambda retries it).
	verifyErr = errors.New("s3 unavailable")
	if err := h(ctx, payload); !errors.Is(err, verifyErr) {
		t.Errorf("failed verification: %v", err)
	}
	// A malformed one is dropped, and logged.
	if err := h(ctx, json.RawMessage(`{"berth":"verify-upload","repo":"a/b"}`)); err != nil {
		t.Errorf("malformed verify event: %v", err)
	}
	if len(verified) != 2 || !strings.Contains(logs.String(), "malformed event") || !strings.Contains(logs.String(), "s3 unavailable") {
		t.Errorf("verified %v, logs %s", verified, logs.String())
	}
	if err := h(ctx, json.RawMessage(`[1,2]`)); err == nil {
		t.Error("an event that is neither kind was accepted")
	}
}

// failingStore fails every write, like a role without PutKey.
type failingStore struct{ *edge.MemoryStore }

func (failingStore) KeyPut(context.Context, string, string) error {
	return errors.New("AccessDeniedException: cloudfront-keyvaluestore:PutKey")
}

func TestRotateLogs(t *testing.T) {
	var logs bytes.Buffer
	log := lambdaenv.Logger(&logs, 0)
	ctx := context.Background()
	store := edge.NewMemoryStore()
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)

	if err := Rotate(ctx, store, now, log); err != nil {
		t.Fatal(err)
	}
	kid, err := store.KeyGet(ctx, edge.KeyCurrent)
	if err != nil || kid == "" {
		t.Fatalf("no current key after the first rotation: %q %v", kid, err)
	}
	var line map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(logs.Bytes()), &line); err != nil {
		t.Fatal(err)
	}
	if line["msg"] != "cleanup: rotate upload token keys" || line["current"] != kid || line["added"] != kid || line["level"] != "INFO" {
		t.Errorf("log line %v", line)
	}

	logs.Reset()
	err = Rotate(ctx, failingStore{edge.NewMemoryStore()}, now, log)
	if err == nil || !strings.Contains(err.Error(), "PutKey") {
		t.Fatalf("failed rotation: %v", err)
	}
	if !strings.Contains(logs.String(), `"level":"ERROR"`) || !strings.Contains(logs.String(), "PutKey") {
		t.Errorf("failure not logged: %s", logs.String())
	}
}

func TestTokens(t *testing.T) {
	if tok := Tokens(aws.Config{}, ""); tok != nil {
		t.Errorf("edge off: %T, want a nil interface (the registry checks for nil)", tok)
	}
	tok := Tokens(aws.Config{Region: "us-east-1"}, "arn:aws:cloudfront::123456789012:key-value-store/x")
	if _, ok := tok.(*edge.Keyring); !ok {
		t.Errorf("edge on: %T, want *edge.Keyring", tok)
	}
}
