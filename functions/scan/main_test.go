package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/berth-registry/berth/functions/internal/lambdaenv"
	"github.com/berth-registry/berth/functions/internal/scanwire"
	"github.com/berth-registry/berth/pkg/scan"
)

// jobs records what the handler asks of the scanner.
type jobs struct{ got []scan.Job }

func (j *jobs) Do(_ context.Context, job scan.Job) error { j.got = append(j.got, job); return nil }
func (j *jobs) RematchStats(context.Context) (scan.RematchStats, error) {
	return scan.RematchStats{}, nil
}

// The S3 sample: one layer blob is indexed; a key that is no blob, and a
// record of another bucket, are logged and dropped (they would fail the
// same way on every retry). scanwire's tests run the events against the
// emulators.
func TestHandlerSampleEvent(t *testing.T) {
	raw, err := os.ReadFile("../../events/scan-s3-object-created.json")
	if err != nil {
		t.Fatal(err)
	}
	s, err := loadSettings(func(k string) string {
		return map[string]string{lambdaenv.Table: "t", lambdaenv.Bucket: "berth-blobs-123456789012-eu-west-1", lambdaenv.LogLevel: "debug"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	j := &jobs{}
	if err := scanwire.Handler(j, s.Backend.Bucket, lambdaenv.Logger(&logs, s.Level))(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	if len(j.got) != 1 || j.got[0].Kind != scan.JobIndex || j.got[0].Digest != "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a" {
		t.Errorf("jobs %+v", j.got)
	}
	var lines []map[string]any
	for l := range strings.Lines(logs.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 || lines[0]["msg"] != "scan: blob indexed" || lines[0]["size"] != float64(3623807) ||
		lines[1]["msg"] != "scan: not a blob key" || lines[1]["level"] != "WARN" {
		t.Errorf("logs:\n%s", logs.String())
	}

	logs.Reset()
	j.got = nil
	if err := scanwire.Handler(j, "someone-elses", lambdaenv.Logger(&logs, s.Level))(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	if len(j.got) != 0 || !strings.Contains(logs.String(), "event for another bucket") {
		t.Errorf("foreign bucket: jobs %v, logs %s", j.got, logs.String())
	}
}

func TestSettings(t *testing.T) {
	if _, err := loadSettings(func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), lambdaenv.Bucket) || !strings.Contains(err.Error(), lambdaenv.Table) {
		t.Errorf("missing settings: %v", err)
	}
	s, err := loadSettings(func(k string) string {
		return map[string]string{lambdaenv.Table: "t", lambdaenv.Bucket: "b", lambdaenv.EventBus: "off"}[k]
	})
	if err != nil || s.EventBus != "" || s.Backend.Table != "t" {
		t.Errorf("events off: %+v %v", s, err)
	}
	if _, err := loadSettings(func(k string) string {
		return map[string]string{lambdaenv.Table: "t", lambdaenv.Bucket: "b", lambdaenv.LogLevel: "loud"}[k]
	}); err == nil {
		t.Error("bad log level accepted")
	}
}
