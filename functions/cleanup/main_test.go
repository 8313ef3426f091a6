package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/berth-registry/berth/functions/internal/lambdaenv"
	"github.com/berth-registry/berth/pkg/driver/boltdb"
	"github.com/berth-registry/berth/pkg/driver/fsblob"
	"github.com/berth-registry/berth/pkg/registry"
)

func TestSweepOnSchedule(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 11, 3, 8, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	dir := t.TempDir()
	items, err := boltdb.Open(filepath.Join(dir, "meta.db"), boltdb.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	defer items.Close()
	blobs, err := fsblob.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(registry.Config{Now: clock}, items, blobs)

	// Two abandoned uploads, one with staged bytes.
	for i := range 2 {
		w := httptest.NewRecorder()
		reg.ServeHTTP(w, httptest.NewRequest("POST", "/v2/app/blobs/uploads/", nil))
		if w.Code != http.StatusAccepted {
			t.Fatalf("POST: %d %s", w.Code, w.Body)
		}
		if i == 0 {
			w2 := httptest.NewRecorder()
			req := httptest.NewRequest("PATCH", w.Header().Get("Location"), strings.NewReader("partial"))
			req.Header.Set("Content-Range", "0-6")
			reg.ServeHTTP(w2, req)
			if w2.Code != http.StatusAccepted {
				t.Fatalf("PATCH: %d %s", w2.Code, w2.Body)
			}
		}
	}
	raw, err := os.ReadFile("../../events/cleanup-schedule.json")
	if err != nil {
		t.Fatal(err)
	}
	var ev events.EventBridgeEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	h := newHandler(reg, lambdaenv.Logger(&logs, 0))

	// Within the upload TTL nothing goes.
	if err := h(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	now.Add(int64(2 * time.Hour))
	if err := h(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	var removed []float64
	for l := range strings.Lines(logs.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "cleanup: sweep uploads" {
			removed = append(removed, m["removed"].(float64))
		}
	}
	if len(removed) != 2 || removed[0] != 0 || removed[1] != 2 {
		t.Errorf("removed per run = %v, want [0 2]; logs:\n%s", removed, logs.String())
	}
}

func TestSettings(t *testing.T) {
	if _, err := loadSettings(func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), lambdaenv.Table) || !strings.Contains(err.Error(), lambdaenv.Bucket) {
		t.Errorf("missing settings: %v", err)
	}
}
