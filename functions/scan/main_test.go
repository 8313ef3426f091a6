package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/berth-registry/berth/functions/internal/lambdaenv"
)

func TestHandlerSampleEvent(t *testing.T) {
	raw, err := os.ReadFile("../../events/scan-s3-object-created.json")
	if err != nil {
		t.Fatal(err)
	}
	var ev events.S3Event
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(func(k string) string {
		return map[string]string{lambdaenv.Bucket: "berth-blobs-123456789012-eu-west-1", lambdaenv.LogLevel: "debug"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	if err := newHandler(cfg, lambdaenv.Logger(&logs, cfg.level))(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	var lines []map[string]any
	for l := range strings.Lines(logs.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 {
		t.Fatalf("want one log line per record, got %d: %s", len(lines), logs.String())
	}
	if lines[0]["msg"] != "scan: blob created" || lines[0]["digest"] != "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a" || lines[0]["size"] != float64(3623807) {
		t.Errorf("first record: %v", lines[0])
	}
	if lines[1]["msg"] != "scan: not a blob key" || lines[1]["level"] != "WARN" {
		t.Errorf("second record: %v", lines[1])
	}

	other := ev
	other.Records = ev.Records[:1]
	logs.Reset()
	cfg.bucket = "someone-elses"
	if err := newHandler(cfg, lambdaenv.Logger(&logs, cfg.level))(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "event for another bucket") {
		t.Errorf("foreign bucket not reported: %s", logs.String())
	}
}

func TestConfigRequiresBucket(t *testing.T) {
	if _, err := loadConfig(func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), lambdaenv.Bucket) {
		t.Errorf("missing bucket: %v", err)
	}
	if _, err := loadConfig(func(k string) string {
		return map[string]string{lambdaenv.Bucket: "b", lambdaenv.LogLevel: "loud"}[k]
	}); err == nil {
		t.Error("bad log level accepted")
	}
}
