package events_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/pkg/events"
)

var t0 = time.Date(2026, 12, 5, 7, 0, 0, 0, time.UTC)

func pushEvent() events.Event {
	return events.New(events.DetailImageAction, t0, events.Detail{
		ActionType: events.ActionPush, RepositoryName: "team/app", ImageDigest: "sha256:ab",
		ImageTag: "v1", ManifestMediaType: "application/vnd.oci.image.manifest.v1+json",
		ArtifactMediaType: "application/vnd.oci.image.config.v1+json", Actor: "ci",
	})
}

func TestSignature(t *testing.T) {
	// RFC 4231, test case 2.
	secret, body := []byte("Jefe"), []byte("what do ya want for nothing?")
	const want = "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
	if got := events.Sign(secret, body); got != want {
		t.Fatalf("signature %q, want %q", got, want)
	}
	if !events.VerifySignature(secret, body, want) {
		t.Fatal("signature does not verify")
	}
	if events.VerifySignature([]byte("other"), body, want) || events.VerifySignature(secret, []byte("what?"), want) {
		t.Fatal("signature verifies under another secret or body")
	}
}

func TestCloudEventShape(t *testing.T) {
	ev := pushEvent()
	b, err := events.MarshalCloudEvent(ev)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"specversion": "1.0", "id": ev.ID, "source": "berth.registry", "type": "berth.image.action.v1",
		"subject": "team/app", "time": "2026-12-05T07:00:00Z", "datacontenttype": "application/json",
		"data": map[string]any{
			"version": "1", "event-id": ev.ID, "action-type": "PUSH", "result": "SUCCESS",
			"repository-name": "team/app", "image-digest": "sha256:ab", "image-tag": "v1",
			"manifest-media-type": "application/vnd.oci.image.manifest.v1+json",
			"artifact-media-type": "application/vnd.oci.image.config.v1+json", "actor": "ci",
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("cloudevent\n got %v\nwant %v", got, want)
	}
	if len(ev.ID) != 36 || ev.ID == events.New(events.DetailImageAction, t0, events.Detail{}).ID {
		t.Fatalf("id %q: want a fresh UUID per event", ev.ID)
	}
}

// receiver is a webhook endpoint that answers the scripted statuses in
// turn (then 204) and keeps what it got.
type receiver struct {
	mu       sync.Mutex
	statuses []int
	bodies   [][]byte
	headers  []http.Header
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bodies = append(r.bodies, b)
	r.headers = append(r.headers, req.Header.Clone())
	status := http.StatusNoContent
	if len(r.statuses) > 0 {
		status, r.statuses = r.statuses[0], r.statuses[1:]
	}
	w.WriteHeader(status)
}

func TestWebhookRetriesThenDelivers(t *testing.T) {
	rcv := &receiver{statuses: []int{http.StatusServiceUnavailable, http.StatusTooManyRequests}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	wh := events.NewWebhook(events.WebhookConfig{URL: srv.URL, Secret: []byte("k"), Backoff: time.Millisecond})
	ev := pushEvent()
	wh.Emit(context.Background(), ev)
	if err := wh.Close(context.Background()); err != nil { // drains the queue
		t.Fatal(err)
	}
	if got, want := wh.Stats(), (events.Stats{Sent: 1, Retries: 2}); got != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
	if len(rcv.bodies) != 3 {
		t.Fatalf("%d posts, want 3", len(rcv.bodies))
	}
	want, _ := events.MarshalCloudEvent(ev)
	for i, b := range rcv.bodies {
		if string(b) != string(want) {
			t.Errorf("post %d body %s, want %s", i, b, want)
		}
		h := rcv.headers[i]
		if h.Get("Content-Type") != "application/cloudevents+json" {
			t.Errorf("post %d content type %q", i, h.Get("Content-Type"))
		}
		if sig := h.Get(events.SignatureHeader); !events.VerifySignature([]byte("k"), b, sig) {
			t.Errorf("post %d signature %q does not verify", i, sig)
		}
	}
}

func TestWebhookGivesUp(t *testing.T) {
	// A 400 is final; five 500s exhaust the attempts.
	rcv := &receiver{statuses: []int{400, 500, 500, 500, 500, 500}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	wh := events.NewWebhook(events.WebhookConfig{URL: srv.URL, Backoff: time.Millisecond})
	wh.Emit(context.Background(), pushEvent())
	wh.Emit(context.Background(), pushEvent())
	if err := wh.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := wh.Stats(), (events.Stats{Failed: 2, Retries: 4}); got != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
	if len(rcv.bodies) != 6 || rcv.headers[0].Get(events.SignatureHeader) != "" {
		t.Fatalf("%d posts (want 6), signature %q without a secret", len(rcv.bodies), rcv.headers[0].Get(events.SignatureHeader))
	}
	wh.Emit(context.Background(), pushEvent()) // after Close: dropped, no panic
	if wh.Stats().Dropped != 1 {
		t.Fatalf("emit after close: %+v", wh.Stats())
	}
}

func TestWebhookQueueFullDrops(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	wh := events.NewWebhook(events.WebhookConfig{URL: srv.URL, Queue: 1})
	// The first event may be taken by the worker (which then blocks) or
	// sit in the queue; either way at most two fit and the rest drop,
	// without Emit ever blocking.
	for range 10 {
		wh.Emit(context.Background(), pushEvent())
	}
	close(release)
	if err := wh.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := wh.Stats()
	if st.Sent+st.Dropped != 10 || st.Dropped < 8 || st.Failed != 0 {
		t.Fatalf("stats %+v: want 10 accounted for, at least 8 dropped", st)
	}
}

func TestLogFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	lf, err := events.OpenLogFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := pushEvent(), events.BlobDeletion(t0, "sha256:cd", 42)
	lf.Emit(context.Background(), a)
	lf.Emit(context.Background(), b)
	if err := lf.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []events.CloudEvent
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ce events.CloudEvent
		if err := json.Unmarshal(sc.Bytes(), &ce); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, ce)
	}
	if len(lines) != 2 || lines[0].ID != a.ID || lines[1].Type != "berth.blob.action.v1" || lines[1].Subject != "sha256:cd" ||
		lines[1].Data.Reason != "gc" || lines[1].Data.Size != 42 || lines[1].Data.ActionType != "DELETE" {
		t.Fatalf("lines %+v", lines)
	}
	if lf.Stats().Sent != 2 {
		t.Fatalf("stats %+v", lf.Stats())
	}
}
