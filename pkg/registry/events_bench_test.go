package registry_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/events"
	"github.com/berth-registry/berth/pkg/events/eventbridge"
	"github.com/berth-registry/berth/pkg/events/eventbridge/ebtest"
	"github.com/berth-registry/berth/pkg/registry"
)

// BenchmarkPushEvents measures what emitting costs a push: one image
// (config and a 256 KiB layer, both new, then the manifest by tag) pushed
// through the handler on the embedded store, without an emitter and with
// each kind. The EventBridge emitter makes one signed PutEvents call to a
// local fake per push (synchronous, as behind Lambda); the webhook only
// queues. docs/events.md reports the ratios.
func BenchmarkPushEvents(b *testing.B) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer hook.Close()
	emitters := []struct {
		name string
		make func(b *testing.B) (registry.Emitter, func())
	}{
		{"none", func(*testing.B) (registry.Emitter, func()) { return nil, func() {} }},
		{"eventbridge", func(b *testing.B) (registry.Emitter, func()) {
			return eventbridge.New(ebtest.New(b).Client(), "", nil), func() {}
		}},
		{"webhook", func(*testing.B) (registry.Emitter, func()) {
			wh := events.NewWebhook(events.WebhookConfig{URL: hook.URL, Secret: []byte("k")})
			return wh, func() { _ = wh.Close(context.Background()) }
		}},
		{"log", func(b *testing.B) (registry.Emitter, func()) {
			lf, err := events.OpenLogFile(filepath.Join(b.TempDir(), "events.jsonl"), nil)
			if err != nil {
				b.Fatal(err)
			}
			return lf, func() { _ = lf.Close() }
		}},
	}
	for _, e := range emitters {
		b.Run(e.name, func(b *testing.B) {
			em, done := e.make(b)
			defer done()
			p := newPusher(b, em)
			b.SetBytes(256 << 10)
			for b.Loop() {
				p.push(b)
			}
		})
	}
}

// BenchmarkPushEventsPaired alternates a push without an emitter and one
// with an emitter (each on its own store) in every iteration, so load from
// other processes on a shared machine hits both alike; it reports each
// one's time per push and their ratio.
func BenchmarkPushEventsPaired(b *testing.B) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer hook.Close()
	for _, e := range []struct {
		name  string
		after bool // delivered after the response, as the api function does
		make  func(b *testing.B) (registry.Emitter, func())
	}{
		{"eventbridge", false, func(b *testing.B) (registry.Emitter, func()) {
			return eventbridge.New(ebtest.New(b).Client(), "", nil), func() {}
		}},
		{"eventbridge-after-response", true, func(b *testing.B) (registry.Emitter, func()) {
			return eventbridge.New(ebtest.New(b).Client(), "", nil), func() {}
		}},
		{"webhook", false, func(*testing.B) (registry.Emitter, func()) {
			wh := events.NewWebhook(events.WebhookConfig{URL: hook.URL, Secret: []byte("k")})
			return wh, func() { _ = wh.Close(context.Background()) }
		}},
	} {
		b.Run(e.name, func(b *testing.B) {
			em, done := e.make(b)
			defer done()
			var after afterResponse
			if e.after {
				em = events.Deferred{Emitter: em, Deferrer: &after}
			}
			plain, emitting := newPusher(b, nil), newPusher(b, em)
			var tPlain, tEmit time.Duration
			for b.Loop() {
				start := time.Now()
				plain.push(b)
				mid := time.Now()
				emitting.push(b)
				tPlain, tEmit = tPlain+mid.Sub(start), tEmit+time.Since(mid)
				// Behind Lambda this runs after the response, while
				// the client already has it (functions/internal/afterresponse).
				after.run()
			}
			b.ReportMetric(float64(tPlain.Nanoseconds())/float64(b.N), "ns/push-plain")
			b.ReportMetric(float64(tEmit.Nanoseconds())/float64(b.N), "ns/push-emitting")
			b.ReportMetric(float64(tEmit)/float64(tPlain), "ratio")
		})
	}
}

// afterResponse queues deferred work as the api function's extension does
// and runs it when told: after the push, outside the time the client waits.
type afterResponse struct{ queue []func(context.Context) }

func (a *afterResponse) Defer(f func(context.Context)) { a.queue = append(a.queue, f) }

func (a *afterResponse) run() {
	for _, f := range a.queue {
		f(context.Background())
	}
	a.queue = a.queue[:0]
}

// pusher pushes one new image per call: a config and a fresh 256 KiB
// layer, then the manifest under a new tag.
type pusher struct {
	g     http.Handler
	layer []byte
	n     int
}

func newPusher(b *testing.B, em registry.Emitter) *pusher {
	env := testenv.NewEmbedded(b)
	var cfg registry.Config
	if em != nil {
		cfg.Events = em
	}
	return &pusher{g: registry.New(cfg, env.Items, env.Blobs), layer: make([]byte, 256<<10)}
}

func (p *pusher) push(b *testing.B) {
	p.n++
	_, _ = rand.Read(p.layer)
	config := []byte(`{"architecture":"amd64","os":"linux"}`)
	ld, cd := "sha256:"+sha256hex(p.layer), "sha256:"+sha256hex(config)
	for _, blob := range []struct {
		d string
		p []byte
	}{{cd, config}, {ld, p.layer}} {
		if rec := call(b, p.g, "POST", "/v2/bench/app/blobs/uploads/?digest="+blob.d, blob.p); rec.Code != http.StatusCreated {
			b.Fatalf("blob: %d %s", rec.Code, rec.Body)
		}
	}
	m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`, cd, len(config), ld, len(p.layer))
	if rec := call(b, p.g, "PUT", fmt.Sprintf("/v2/bench/app/manifests/b%d", p.n), []byte(m),
		"Content-Type", "application/vnd.oci.image.manifest.v1+json"); rec.Code != http.StatusCreated {
		b.Fatalf("manifest: %d %s", rec.Code, rec.Body)
	}
}

// BenchmarkEmit is the cost of one Emit alone, which the push benchmark's
// noise (a shared machine, a growing store) can hide: the overhead per
// push is this divided by BenchmarkPushEvents/none.
func BenchmarkEmit(b *testing.B) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer hook.Close()
	ev := events.New(events.DetailImageAction, testTime, events.Detail{ActionType: events.ActionPush, RepositoryName: "bench/app",
		ImageDigest: "sha256:" + sha256hex([]byte("m")), ImageTag: "v1", ManifestMediaType: "application/vnd.oci.image.manifest.v1+json"})
	b.Run("eventbridge", func(b *testing.B) {
		em := eventbridge.New(ebtest.New(b).Client(), "", nil)
		for b.Loop() {
			em.Emit(context.Background(), ev)
		}
		if st := em.Stats(); st.Failed != 0 {
			b.Fatalf("stats %+v", st)
		}
	})
	b.Run("eventbridge-after-response", func(b *testing.B) {
		// What the request waits for behind Lambda: the hand-over to the
		// extension. The PutEvents calls run after the timer stops.
		var after afterResponse
		em := eventbridge.New(ebtest.New(b).Client(), "", nil)
		d := events.Deferred{Emitter: em, Deferrer: &after}
		for b.Loop() {
			d.Emit(context.Background(), ev)
		}
		b.StopTimer()
		after.run()
		if st := em.Stats(); st.Failed != 0 || st.Sent != int64(b.N) {
			b.Fatalf("stats %+v after %d emits", st, b.N)
		}
	})
	b.Run("webhook", func(b *testing.B) {
		// Queue sized for the run: Emit's cost, not drops, is measured.
		wh := events.NewWebhook(events.WebhookConfig{URL: hook.URL, Secret: []byte("k"), Queue: 1 << 20})
		for b.Loop() {
			wh.Emit(context.Background(), ev)
		}
		b.StopTimer()
		_ = wh.Close(context.Background())
	})
	b.Run("log", func(b *testing.B) {
		lf, err := events.OpenLogFile(filepath.Join(b.TempDir(), "events.jsonl"), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer lf.Close()
		for b.Loop() {
			lf.Emit(context.Background(), ev)
		}
	})
}

var testTime = time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
