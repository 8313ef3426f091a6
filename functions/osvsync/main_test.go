package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berth-registry/berth/functions/internal/lambdaenv"
	"github.com/berth-registry/berth/functions/internal/osvsyncwire"
	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/osvsync"
)

// exports is a fake OSV bucket: a body and ETag per ecosystem, 304 on a
// matching If-None-Match.
type exports struct {
	mu    sync.Mutex
	body  map[string]string
	etag  map[string]string
	n     int // versions handed out
	calls int
}

func (e *exports) set(eco, body string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	e.body[eco], e.etag[eco] = body, fmt.Sprintf(`"v%d"`, e.n)
}

func (e *exports) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls++
	eco := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/"), "/all.zip")
	body, ok := e.body[eco]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("If-None-Match") == e.etag[eco] {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("ETag", e.etag[eco])
	_, _ = w.Write([]byte(body))
}

// invoker records the asynchronous invocations.
type invoker struct {
	mu    sync.Mutex
	calls []lambda.InvokeInput
}

func (i *invoker) Invoke(_ context.Context, in *lambda.InvokeInput, _ ...func(*lambda.Options)) (*lambda.InvokeOutput, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.calls = append(i.calls, *in)
	return &lambda.InvokeOutput{StatusCode: 202}, nil
}

func scheduleEvent(t *testing.T) json.RawMessage {
	t.Helper()
	raw, err := os.ReadFile("../../events/osvsync-schedule.json")
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// The scheduled event syncs into the bucket (versitygw) and, when data
// changed, queues exactly one re-match event for the scan function, in
// the shape of events/scan-rematch.json.
func TestScheduleSyncsAndRequestsRematch(t *testing.T) {
	src := &exports{body: map[string]string{}, etag: map[string]string{}}
	src.set("Debian", "debian v1")
	src.set("Red Hat", "rhel v1")
	srv := httptest.NewServer(src)
	defer srv.Close()
	client, _ := testenv.S3(t)
	bucket := testenv.FreshBucket(t, client)

	s, err := loadSettings(func(k string) string {
		return map[string]string{
			lambdaenv.Bucket: bucket, lambdaenv.OSVBaseURL: srv.URL, lambdaenv.OSVEcosystems: "Debian, Red Hat",
			lambdaenv.ScanFunction: "berth-ScanFunction",
		}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := lambdaenv.Logger(&logs, s.Level)
	inv := &invoker{}
	syncer := osvsync.New(client, osvsync.Config{Bucket: s.Bucket, BaseURL: s.BaseURL, Ecosystems: s.Ecosystems, Log: log})
	run := osvsyncwire.Job{Sync: syncer.Sync, Rematch: osvsyncwire.Rematch(inv, s.ScanFunction), Log: log}.Run

	if err := run(t.Context(), scheduleEvent(t)); err != nil {
		t.Fatal(err)
	}
	if err := run(t.Context(), scheduleEvent(t)); err != nil { // unchanged: no second request
		t.Fatal(err)
	}
	src.set("Red Hat", "rhel v2")
	if err := run(t.Context(), scheduleEvent(t)); err != nil {
		t.Fatal(err)
	}
	if len(inv.calls) != 2 {
		t.Fatalf("%d re-match requests, want 2 (first run, Red Hat change); logs:\n%s", len(inv.calls), logs.String())
	}
	var sample, first, second osvsync.RematchEvent
	raw, err := os.ReadFile("../../events/scan-rematch.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct {
		b []byte
		v *osvsync.RematchEvent
	}{{raw, &sample}, {inv.calls[0].Payload, &first}, {inv.calls[1].Payload, &second}} {
		if err := json.Unmarshal(u.b, u.v); err != nil {
			t.Fatal(err)
		}
	}
	if sample.Berth != osvsync.KindRematch || first.Berth != osvsync.KindRematch ||
		!slices.Equal(first.Ecosystems, []string{"Debian", "Red Hat"}) || !slices.Equal(second.Ecosystems, []string{"Red Hat"}) {
		t.Errorf("events: sample %+v, first %+v, second %+v", sample, first, second)
	}
	if c := inv.calls[0]; aws.ToString(c.FunctionName) != "berth-ScanFunction" || c.InvocationType != "Event" {
		t.Errorf("invoke %s %s", aws.ToString(c.FunctionName), c.InvocationType)
	}
	out, err := client.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("osv/Red Hat/all.zip")})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(out.Body)
	if b.String() != "rhel v2" {
		t.Errorf("stored %q", b.String())
	}

	// A failing ecosystem fails the run (the error metric shows it) but
	// does not hold back the re-match of what did change.
	src.set("Debian", "debian v2")
	s.Ecosystems = append(s.Ecosystems, "NoSuchEcosystem")
	syncer = osvsync.New(client, osvsync.Config{Bucket: s.Bucket, BaseURL: s.BaseURL, Ecosystems: s.Ecosystems, Log: log})
	run = osvsyncwire.Job{Sync: syncer.Sync, Rematch: osvsyncwire.Rematch(inv, s.ScanFunction), Log: log}.Run
	if err := run(t.Context(), scheduleEvent(t)); err == nil || !strings.Contains(err.Error(), "NoSuchEcosystem") {
		t.Errorf("run with a missing ecosystem: %v", err)
	}
	if len(inv.calls) != 3 {
		t.Errorf("re-match not requested after a partial failure")
	}
}

// Handler wires the real clients from an aws.Config (here the S3
// emulator's); without BERTH_SCAN_FUNCTION it requests no re-match.
func TestHandlerFromConfig(t *testing.T) {
	src := &exports{body: map[string]string{}, etag: map[string]string{}}
	src.set("Go", "go v1")
	srv := httptest.NewServer(src)
	defer srv.Close()
	ep := testenv.S3Emulator(t)
	client, _ := testenv.S3Client(ep)
	bucket := testenv.FreshBucket(t, client)
	cfg := aws.Config{
		Region:       testenv.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(ep.AccessKey, ep.SecretKey, ""),
		BaseEndpoint: aws.String(ep.URL),
	}
	var logs bytes.Buffer
	h := osvsyncwire.Handler(cfg, osvsyncwire.Settings{Bucket: bucket, BaseURL: srv.URL, Ecosystems: []string{"Go"}}, lambdaenv.Logger(&logs, 0))
	if err := h(t.Context(), scheduleEvent(t)); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), `"changed":["Go"]`) || !strings.Contains(logs.String(), `"rematch":false`) {
		t.Errorf("logs:\n%s", logs.String())
	}
}

func TestSettings(t *testing.T) {
	if _, err := loadSettings(func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), lambdaenv.Bucket) {
		t.Errorf("missing bucket: %v", err)
	}
	s, err := loadSettings(func(k string) string { return map[string]string{lambdaenv.Bucket: "b"}[k] })
	if err != nil || s.Ecosystems != nil || s.BaseURL != "" || s.ScanFunction != "" {
		t.Errorf("defaults: %+v %v", s, err)
	}
}
