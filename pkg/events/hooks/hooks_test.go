package hooks_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/driver/dynamo"
	"github.com/berth-registry/berth/pkg/driver/s3blob"
	"github.com/berth-registry/berth/pkg/events/eventbridge"
	"github.com/berth-registry/berth/pkg/events/eventbridge/ebtest"
	"github.com/berth-registry/berth/pkg/events/hooks"
	"github.com/berth-registry/berth/pkg/gc"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/retention"
	"github.com/berth-registry/berth/pkg/storage"
)

// TestRetentionAndGCEvents: retention expires an image and emits its
// DELETE; a later GC pass deletes the blobs only that image used and
// emits one blob DELETE each. Both drivers, the real EventBridge client
// against the PutEvents fake.
func TestRetentionAndGCEvents(t *testing.T) {
	backends := map[string]func(t *testing.T) (storage.Items, storage.Blobs){
		"embedded": func(t *testing.T) (storage.Items, storage.Blobs) {
			e := testenv.NewEmbedded(t)
			return e.Items, e.Blobs
		},
		"aws": func(t *testing.T) (storage.Items, storage.Blobs) {
			ddb := testenv.DynamoDB(t)
			s3c, presign := testenv.S3(t)
			table, bucket := testenv.FreshTable(t, ddb), testenv.FreshBucket(t, s3c)
			return dynamo.New(ddb, table), s3blob.WithoutRedirect(s3blob.New(s3c, presign, bucket))
		},
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			items, blobs := open(t)
			testRetentionAndGC(t, items, blobs)
		})
	}
}

func testRetentionAndGC(t *testing.T, items storage.Items, blobs storage.Blobs) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	clock := t0
	now := func() time.Time { return clock }
	g := registry.New(registry.Config{Now: now}, items, blobs)
	do := func(method, path, ct string, body []byte) {
		t.Helper()
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			t.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body)
		}
	}
	const manifestType = "application/vnd.oci.image.manifest.v1+json"
	push := func(tag string) (manifest oci.Digest, own map[string]float64) {
		cfg, layer := []byte(`{"tag":"`+tag+`"}`), []byte("layer of "+tag)
		own = map[string]float64{}
		for _, b := range [][]byte{cfg, layer} {
			d := oci.FromBytes(oci.SHA256, b)
			do("POST", "/v2/app/blobs/uploads/?digest="+string(d), "", b)
			own[string(d)] = float64(len(b))
		}
		m, _ := json.Marshal(map[string]any{
			"schemaVersion": 2, "mediaType": manifestType,
			"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": oci.FromBytes(oci.SHA256, cfg), "size": len(cfg)},
			"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": oci.FromBytes(oci.SHA256, layer), "size": len(layer)}},
		})
		do("PUT", "/v2/app/manifests/"+tag, manifestType, m)
		return oci.FromBytes(oci.SHA256, m), own
	}
	old, oldBlobs := push("v1")
	clock = t0.Add(24 * time.Hour)
	push("v2")

	fake := ebtest.New(t)
	em := eventbridge.New(fake.Client(), "", nil)
	policy, err := retention.Parse([]byte(`{"rules":[{"rulePriority":7,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	clock = t0.Add(48 * time.Hour)
	store := meta.New(items, meta.WithClock(now))
	log := slog.New(slog.DiscardHandler)
	rep, err := retention.Apply(ctx, store, policy, clock, log, hooks.Retention(em, now))
	if err != nil || rep.Expired != 1 {
		t.Fatalf("retention: %+v %v", rep, err)
	}
	got := fake.Entries()
	if len(got) != 1 || got[0].DetailType != "Berth Image Action" || !ebtest.TimeOf(t, got[0]).Equal(clock) {
		t.Fatalf("retention events %+v", got)
	}
	want := map[string]any{
		"version": "1", "result": "SUCCESS", "action-type": "DELETE", "repository-name": "app", "image-digest": string(old),
		"image-tags": []any{"v1"}, "manifest-media-type": manifestType, "reason": "retention", "retention-rule": float64(7),
	}
	if d := ebtest.DetailOf(t, got[0]); !reflect.DeepEqual(d, want) {
		t.Fatalf("retention detail\n got %v\nwant %v", d, want)
	}

	clock = t0.Add(72 * time.Hour)
	c := gc.Collector{Store: store, Blobs: blobs, Grace: time.Hour, Now: now, Log: log, OnDelete: hooks.GC(em, now)}
	st, err := c.Pass(ctx)
	if err != nil || st.Deleted != 2 {
		t.Fatalf("gc: %+v %v", st, err)
	}
	got = fake.Entries()[1:]
	var details []map[string]any
	for _, e := range got {
		if e.DetailType != "Berth Blob Action" || e.Source != "berth.registry" {
			t.Errorf("gc envelope %+v", e)
		}
		details = append(details, ebtest.DetailOf(t, e))
	}
	sort.Slice(details, func(i, j int) bool { return details[i]["blob-digest"].(string) < details[j]["blob-digest"].(string) })
	var wantGC []map[string]any
	for d, size := range oldBlobs {
		wantGC = append(wantGC, map[string]any{"version": "1", "result": "SUCCESS", "action-type": "DELETE", "blob-digest": d, "size": size, "reason": "gc"})
	}
	sort.Slice(wantGC, func(i, j int) bool { return wantGC[i]["blob-digest"].(string) < wantGC[j]["blob-digest"].(string) })
	if !reflect.DeepEqual(details, wantGC) {
		t.Fatalf("gc events\n got %v\nwant %v", details, wantGC)
	}
}
