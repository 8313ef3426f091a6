package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/berth-registry/berth/functions/internal/cleanupwire"
	"github.com/berth-registry/berth/functions/internal/edgewire"
	"github.com/berth-registry/berth/functions/internal/lambdaenv"
	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/driver/boltdb"
	"github.com/berth-registry/berth/pkg/edge"
	berthevents "github.com/berth-registry/berth/pkg/events"
	"github.com/berth-registry/berth/pkg/gc"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/registry/registrytest"
	"github.com/berth-registry/berth/pkg/retention"
	"github.com/berth-registry/berth/pkg/sweep"
)

func TestSweepOnSchedule(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 11, 3, 8, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	e := testenv.NewEmbedded(t, boltdb.WithClock(clock))
	items, blobs := e.Items, e.Blobs
	reg := registry.New(registry.Config{Now: clock}, items, blobs)

	// Two abandoned uploads, one with staged bytes, one stored by an empty
	// PATCH; and a third never written, which an upload POST alone does
	// not store (there is nothing to sweep).
	for _, body := range []string{"partial", "", "-"} {
		w := httptest.NewRecorder()
		reg.ServeHTTP(w, httptest.NewRequest("POST", "/v2/app/blobs/uploads/", nil))
		if w.Code != http.StatusAccepted {
			t.Fatalf("POST: %d %s", w.Code, w.Body)
		}
		if body == "-" {
			continue
		}
		w2 := httptest.NewRecorder()
		reg.ServeHTTP(w2, httptest.NewRequest("PATCH", w.Header().Get("Location"), strings.NewReader(body)))
		if w2.Code != http.StatusAccepted {
			t.Fatalf("PATCH: %d %s", w2.Code, w2.Body)
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
	h := cleanupwire.Job{Sweep: sweep.Sweeper{Store: meta.New(items, meta.WithClock(clock)), Blobs: blobs}, Now: clock, Log: lambdaenv.Logger(&logs, 0)}.Run

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
	env := func(policy string) func(string) string {
		return func(k string) string {
			return map[string]string{lambdaenv.Table: "t", lambdaenv.Bucket: "b", lambdaenv.RetentionPolicy: policy}[k]
		}
	}
	if s, err := loadSettings(env("")); err != nil || s.Retention != nil || s.GCGrace != gc.DefaultGrace || s.EventBus != "" {
		t.Errorf("no policy: %+v, %v", s, err)
	}
	withBus := func(k string) string {
		if k == lambdaenv.EventBus {
			return "arn:aws:events:eu-west-1:123456789012:event-bus/berth"
		}
		return env("")(k)
	}
	if s, err := loadSettings(withBus); err != nil || s.EventBus != "arn:aws:events:eu-west-1:123456789012:event-bus/berth" {
		t.Errorf("event bus: %+v, %v", s, err)
	}
	if s, err := loadSettings(env(retentionPolicy)); err != nil || s.Retention == nil || len(s.Retention.Rules) != 2 {
		t.Errorf("policy: %+v, %v", s, err)
	}
	pulled := `{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"sinceImagePulled","countUnit":"days","countNumber":30},"action":{"type":"expire"}}]}`
	if s, err := loadSettings(env(pulled)); err != nil || s.Retention == nil {
		t.Errorf("sinceImagePulled: %+v, %v", s, err)
	}
	// A policy Berth cannot honour stops the cold start, naming the variable.
	archive := `{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"sinceImagePulled","countUnit":"days","countNumber":30},"action":{"type":"transition","targetStorageClass":"archive"}}]}`
	if _, err := loadSettings(env(archive)); err == nil || !strings.Contains(err.Error(), lambdaenv.RetentionPolicy) || !errors.Is(err, retention.ErrUnsupported) {
		t.Errorf("transition: %v", err)
	}
	if _, err := loadSettings(env(`{"rules":[}`)); err == nil || !strings.Contains(err.Error(), lambdaenv.RetentionPolicy) {
		t.Errorf("malformed policy: %v", err)
	}
}

const retentionPolicy = `{"rules":[
 {"rulePriority":1,"description":"keep three builds","selection":{"tagStatus":"tagged","tagPatternList":["build-*"],"countType":"imageCountMoreThan","countNumber":3},"action":{"type":"expire"}},
 {"rulePriority":2,"description":"untagged for a day","selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":1},"action":{"type":"expire"}}
]}`

// The scheduled event applies BERTH_RETENTION_POLICY to every repository
// of a real registry (embedded drivers) and logs each expiry.
func TestRetentionOnSchedule(t *testing.T) {
	var now atomic.Int64
	start := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	now.Store(start.UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	e := testenv.NewEmbedded(t, boltdb.WithClock(clock))
	items, blobs := e.Items, e.Blobs
	reg := registry.New(registry.Config{Now: clock}, items, blobs)
	push := func(repo, ref, seed string) oci.Digest {
		t.Helper()
		img := registrytest.NewImage([]byte(fmt.Sprintf(`{"seed":%q}`, seed)))
		return registrytest.PushImage(t, reg, repo, ref, img).Digest
	}
	// Five builds an hour apart in two repositories, plus an untagged image.
	for i := range 5 {
		push("team/api", fmt.Sprintf("build-%d", i), fmt.Sprintf("api-%d", i))
		push("team/web", fmt.Sprintf("build-%d", i), fmt.Sprintf("web-%d", i))
		now.Add(int64(time.Hour))
	}
	untagged := push("team/api", "", "scratch")
	now.Add(int64(36 * time.Hour))

	raw, err := os.ReadFile("../../events/cleanup-schedule.json")
	if err != nil {
		t.Fatal(err)
	}
	var ev events.EventBridgeEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	s, err := loadSettings(func(k string) string {
		return map[string]string{lambdaenv.Table: "t", lambdaenv.Bucket: "b", lambdaenv.RetentionPolicy: retentionPolicy}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	store := meta.New(items, meta.WithClock(clock))
	h := cleanupwire.Job{Sweep: sweep.Sweeper{Store: store, Blobs: blobs}, Retention: s.Retention, Now: clock, Log: lambdaenv.Logger(&logs, 0)}.Run
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // the function's timeout
	defer cancel()
	if err := h(ctx, ev); err != nil {
		t.Fatal(err)
	}
	var expired []string
	var summary map[string]any
	for l := range strings.Lines(logs.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		switch m["msg"] {
		case "retention: expired":
			expired = append(expired, fmt.Sprintf("%s %v %v", m["repo"], m["tags"], m["rule"]))
			if m["digest"] == "" || m["reason"] != retention.ReasonRule {
				t.Errorf("expiry log %v", m)
			}
		case "cleanup: retention":
			summary = m
		}
	}
	slices.Sort(expired)
	want := []string{"team/api [] 2", "team/api [build-0] 1", "team/api [build-1] 1", "team/web [build-0] 1", "team/web [build-1] 1"}
	if !slices.Equal(expired, want) {
		t.Errorf("expired\n %v\nwant\n %v\nlogs:\n%s", expired, want, logs.String())
	}
	if summary == nil || summary["repositories"] != 2.0 || summary["expired"] != 5.0 || summary["stopped"] != false {
		t.Errorf("summary %v", summary)
	}
	for _, repo := range []string{"team/api", "team/web"} {
		tags, _, err := store.TagList(ctx, repo, "", 0)
		if err != nil || !slices.Equal(tags, []string{"build-2", "build-3", "build-4"}) {
			t.Errorf("%s tags %v, %v", repo, tags, err)
		}
	}
	if _, err := store.ManifestGet(ctx, "team/api", untagged); !errors.Is(err, meta.ErrManifestUnknown) {
		t.Errorf("untagged image: %v", err)
	}
}

// deniedKeys is a key store the role may read but not write (a missing
// cloudfront-keyvaluestore:PutKey grant).
type deniedKeys struct{ *edge.MemoryStore }

func (deniedKeys) KeyPut(context.Context, string, string) error {
	return errors.New("AccessDeniedException: not authorized to perform cloudfront-keyvaluestore:PutKey")
}

// TestRotationOnSchedule: each scheduled run rotates the upload token keys
// (the first creates the current key); a failed rotation is logged and
// fails the invocation, but the sweep still runs.
func TestRotationOnSchedule(t *testing.T) {
	clock := func() time.Time { return time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC) }
	e := testenv.NewEmbedded(t, boltdb.WithClock(clock))
	items, blobs := e.Items, e.Blobs
	sw := sweep.Sweeper{Store: meta.New(items, meta.WithClock(clock)), Blobs: blobs}
	ctx := context.Background()
	var logs bytes.Buffer
	keys := edge.NewMemoryStore()
	h := cleanupwire.Job{Sweep: sw, Keys: keys, Now: clock, Log: lambdaenv.Logger(&logs, 0)}.Run
	if err := h(ctx, events.EventBridgeEvent{ID: "run-1"}); err != nil {
		t.Fatal(err)
	}
	kid, err := keys.KeyGet(ctx, edge.KeyCurrent)
	if err != nil {
		t.Fatalf("no current key after the first run: %v", err)
	}
	if _, err := keys.KeyGet(ctx, edge.KeyPrefix+kid); err != nil {
		t.Fatalf("current key %s has no secret: %v", kid, err)
	}
	if !strings.Contains(logs.String(), `"msg":"cleanup: rotate upload token keys"`) || !strings.Contains(logs.String(), `"added":"`+kid+`"`) {
		t.Errorf("rotation not logged:\n%s", logs.String())
	}

	logs.Reset()
	h = cleanupwire.Job{Sweep: sw, Keys: deniedKeys{edge.NewMemoryStore()}, Now: clock, Log: lambdaenv.Logger(&logs, 0)}.Run
	err = h(ctx, events.EventBridgeEvent{ID: "run-2"})
	if err == nil || !strings.Contains(err.Error(), "PutKey") {
		t.Errorf("denied rotation: %v", err)
	}
	if !strings.Contains(logs.String(), `"msg":"cleanup: sweep uploads"`) || !strings.Contains(logs.String(), `"level":"ERROR","msg":"cleanup: rotate upload token keys"`) {
		t.Errorf("the sweep did not run after a failed rotation, or the failure was not logged:\n%s", logs.String())
	}
}

// TestVerifyEvent: the api function's asynchronous verify-upload event
// reaches the registry's verifier through the function's entry point
// (what main starts), not the scheduled path.
func TestVerifyEvent(t *testing.T) {
	e := testenv.NewEmbedded(t)
	items, blobs := e.Items, e.Blobs
	var logs bytes.Buffer
	log := lambdaenv.Logger(&logs, 0)
	reg := registry.New(registry.Config{}, items, blobs)
	ran := false
	scheduled := func(context.Context, events.EventBridgeEvent) error { ran = true; return nil }
	h := edgewire.Handler(log, scheduled, registry.NewVerifier(items, blobs, log).Verify)
	ctx := context.Background()

	// An ordinary session is not a multipart direct upload: the verifier
	// refuses it, and the invocation fails (so it is visible and retried).
	// Its first PATCH stores it (an upload POST alone stores nothing).
	w := httptest.NewRecorder()
	reg.ServeHTTP(w, httptest.NewRequest("POST", "/v2/app/blobs/uploads/", nil))
	id := w.Header().Get("Docker-Upload-UUID")
	if w.Code != http.StatusAccepted || id == "" {
		t.Fatalf("POST: %d %v", w.Code, w.Header())
	}
	w = httptest.NewRecorder()
	reg.ServeHTTP(w, httptest.NewRequest("PATCH", "/v2/app/blobs/uploads/"+id, strings.NewReader("some bytes")))
	if w.Code != http.StatusAccepted {
		t.Fatalf("PATCH: %d %s", w.Code, w.Body)
	}
	ev, _ := json.Marshal(edgewire.VerifyEvent{Berth: edgewire.KindVerify, Repo: "app", Upload: id})
	if err := h(ctx, ev); err == nil || !strings.Contains(err.Error(), "not a multipart direct upload") {
		t.Errorf("verify of an ordinary session: %v", err)
	}
	// A session that is gone (swept, or verified by an earlier try) is
	// nothing to do.
	ev, _ = json.Marshal(edgewire.VerifyEvent{Berth: edgewire.KindVerify, Repo: "app", Upload: "0123456789abcdef0123456789abcdef"})
	if err := h(ctx, ev); err != nil {
		t.Errorf("verify of an unknown session: %v", err)
	}
	if ran || !strings.Contains(logs.String(), "upload session gone") {
		t.Errorf("scheduled path ran %v; logs:\n%s", ran, logs.String())
	}
}

// TestGCOnSchedule: what retention expires is collected by a run after the
// grace period: its blobs' bytes go, what is still referenced stays.
func TestGCOnSchedule(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	e := testenv.NewEmbedded(t, boltdb.WithClock(clock))
	reg := registry.New(registry.Config{Now: clock}, e.Items, e.Blobs)
	base := []byte("shared base layer")
	var imgs []registrytest.Image
	for i := range 3 {
		img := registrytest.NewImage([]byte(fmt.Sprintf(`{"seed":%d}`, i)), base, []byte(fmt.Sprintf("layer %d", i)))
		registrytest.PushImage(t, reg, "app", fmt.Sprintf("build-%d", i), img)
		imgs = append(imgs, img)
		now.Add(int64(time.Hour))
	}
	policy, err := retention.Parse([]byte(`{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPatternList":["build-*"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	store := meta.New(e.Items, meta.WithClock(clock))
	var logs bytes.Buffer
	rec := &recorder{}
	job := cleanupwire.Job{
		Sweep: sweep.Sweeper{Store: store, Blobs: e.Blobs}, Retention: policy, Now: clock, Log: lambdaenv.Logger(&logs, 0),
		GC:     &gc.Collector{Store: store, Blobs: e.Blobs, Orphans: e.Blobs, Grace: 24 * time.Hour, Now: clock, Log: lambdaenv.Logger(&logs, 0)},
		Events: rec,
	}
	ev := events.EventBridgeEvent{ID: "gc"}
	if err := job.Run(t.Context(), ev); err != nil { // retention expires build-0 and build-1
		t.Fatal(err)
	}
	// One DELETE event per expired image, with its tag and the reason.
	var expired []string
	for _, x := range rec.take() {
		d := x.Detail
		if x.DetailType != berthevents.DetailImageAction || d.ActionType != "DELETE" || d.Reason != "retention" || d.RetentionRule != 1 || d.RepositoryName != "app" {
			t.Errorf("retention event %+v", x)
		}
		expired = append(expired, strings.Join(d.ImageTags, ","))
	}
	if slices.Sort(expired); !slices.Equal(expired, []string{"build-0", "build-1"}) {
		t.Errorf("retention events for %v", expired)
	}
	now.Add(int64(25 * time.Hour))
	if err := job.Run(t.Context(), ev); err != nil { // GC collects their configs and own layers
		t.Fatal(err)
	}
	var passes []map[string]any
	for l := range strings.Lines(logs.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err == nil && m["msg"] == "gc pass" {
			passes = append(passes, m)
		}
	}
	if len(passes) != 2 || passes[0]["deleted"] != 0.0 || passes[1]["deleted"] != 4.0 {
		t.Fatalf("gc passes %v", passes)
	}
	// One blob DELETE event per collected blob.
	gcEvents := map[string]int64{}
	for _, x := range rec.take() {
		if x.DetailType != berthevents.DetailBlobAction || x.Detail.ActionType != "DELETE" || x.Detail.Reason != "gc" {
			t.Errorf("gc event %+v", x)
		}
		gcEvents[x.Detail.BlobDigest] = x.Detail.Size
	}
	for _, img := range imgs[:2] {
		for _, b := range [][]byte{img.Config, img.Layers[1]} {
			if size, ok := gcEvents[string(oci.FromBytes(oci.SHA256, b))]; !ok || size != int64(len(b)) {
				t.Errorf("gc event for %s: size %d, sent %v", oci.FromBytes(oci.SHA256, b), size, ok)
			}
		}
	}
	if len(gcEvents) != 4 {
		t.Errorf("%d gc events, want 4", len(gcEvents))
	}
	have := map[oci.Digest]bool{}
	objs, _, err := e.Blobs.BlobList(t.Context(), "", 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		have[o.Digest] = true
	}
	want := []oci.Digest{oci.FromBytes(oci.SHA256, base), oci.FromBytes(oci.SHA256, imgs[2].Config), oci.FromBytes(oci.SHA256, imgs[2].Layers[1])}
	if len(have) != len(want) {
		t.Fatalf("%d blobs stored after GC, want %d", len(have), len(want))
	}
	for _, d := range want {
		if !have[d] {
			t.Errorf("%s was collected but build-2 references it", d)
		}
	}
}

// recorder keeps the events emitted to it.
type recorder struct {
	mu  sync.Mutex
	evs []berthevents.Event
}

func (r *recorder) Emit(_ context.Context, ev berthevents.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
}

// take returns the events so far and forgets them.
func (r *recorder) take() []berthevents.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	evs := r.evs
	r.evs = nil
	return evs
}
