package registry_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/access"
	"github.com/berth-registry/berth/pkg/events/eventbridge"
	"github.com/berth-registry/berth/pkg/events/eventbridge/ebtest"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/storage"
)

// ci is an authenticated caller, as the auth middleware puts one in the
// request's context.
type ci struct{ access.Open }

func (ci) Subject() string { return "arn:aws:iam::123456789012:role/ci" }

func asCI(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(access.NewContext(r.Context(), ci{})))
	})
}

// TestEvents asserts the exact event of each write on both drivers, with
// the real EventBridge client against a PutEvents fake, and that a write
// that fails emits nothing.
func TestEvents(t *testing.T) {
	backends := map[string]func(t *testing.T) (storage.Items, storage.Blobs){
		"embedded": func(t *testing.T) (storage.Items, storage.Blobs) {
			e := testenv.NewEmbedded(t)
			return e.Items, e.Blobs
		},
		"aws": func(t *testing.T) (storage.Items, storage.Blobs) {
			open, _ := awsDrivers(t, false)
			items, blobs := open()
			return items, blobs
		},
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) { testEvents(t, open) })
	}
}

func testEvents(t *testing.T, open func(t *testing.T) (storage.Items, storage.Blobs)) {
	t0 := time.Date(2026, 12, 5, 7, 30, 0, 0, time.UTC)
	fake := ebtest.New(t)
	em := eventbridge.New(fake.Client(), "berth-events", nil)
	items, blobs := open(t)
	g := asCI(registry.New(registry.Config{Events: em, Now: func() time.Time { return t0 }}, items, blobs))

	const (
		manifestType = "application/vnd.oci.image.manifest.v1+json"
		configType   = "application/vnd.oci.image.config.v1+json"
		actor        = "arn:aws:iam::123456789012:role/ci"
	)
	config, layer := []byte(`{"architecture":"arm64","os":"linux"}`), []byte("layer bytes")
	manifest := func(extra string) []byte {
		m := map[string]any{
			"schemaVersion": 2, "mediaType": manifestType,
			"config":      map[string]any{"mediaType": configType, "digest": "sha256:" + sha256hex(config), "size": len(config)},
			"layers":      []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + sha256hex(layer), "size": len(layer)}},
			"annotations": map[string]string{"x": extra},
		}
		b, _ := json.Marshal(m)
		return b
	}
	m1, m2 := manifest("one"), manifest("two")
	d1, d2 := "sha256:"+sha256hex(m1), "sha256:"+sha256hex(m2)
	ct := []string{"Content-Type", manifestType}

	seen := 0
	expect := func(step string, want ...map[string]any) {
		t.Helper()
		got := fake.Entries()[seen:]
		seen += len(got)
		if len(got) != len(want) {
			t.Fatalf("%s: %d events, want %d: %+v", step, len(got), len(want), got)
		}
		for i, e := range got {
			if e.Source != "berth.registry" || e.DetailType != "Berth Image Action" || e.EventBusName != "berth-events" || !ebtest.TimeOf(t, e).Equal(t0) {
				t.Errorf("%s: envelope %+v", step, e)
			}
			if d := ebtest.DetailOf(t, e); !reflect.DeepEqual(d, want[i]) {
				t.Errorf("%s: detail\n got %v\nwant %v", step, d, want[i])
			}
		}
	}
	event := func(action string, fields ...any) map[string]any {
		m := map[string]any{"version": "1", "result": "SUCCESS", "action-type": action, "repository-name": "team/app", "actor": actor}
		for i := 0; i+1 < len(fields); i += 2 {
			m[fields[i].(string)] = fields[i+1]
		}
		return m
	}

	// A manifest whose blobs are not there fails, and emits nothing.
	if rec := call(t, g, "PUT", "/v2/team/app/manifests/v1", m1, ct...); rec.Code != http.StatusBadRequest {
		t.Fatalf("put without blobs: %d %s", rec.Code, rec.Body)
	}
	expect("failed push")
	for _, b := range [][]byte{config, layer} {
		if rec := call(t, g, "POST", "/v2/team/app/blobs/uploads/?digest=sha256:"+sha256hex(b), b); rec.Code != http.StatusCreated {
			t.Fatalf("blob push: %d %s", rec.Code, rec.Body)
		}
	}
	expect("blob uploads") // blobs alone are not images

	if rec := call(t, g, "PUT", "/v2/team/app/manifests/v1", m1, ct...); rec.Code != http.StatusCreated {
		t.Fatalf("push by tag: %d %s", rec.Code, rec.Body)
	}
	expect("push by tag", event("PUSH", "image-digest", d1, "image-tag", "v1", "manifest-media-type", manifestType, "artifact-media-type", configType))

	if rec := call(t, g, "PUT", "/v2/team/app/manifests/"+d2, m2, ct...); rec.Code != http.StatusCreated {
		t.Fatalf("push by digest: %d %s", rec.Code, rec.Body)
	}
	expect("push by digest", event("PUSH", "image-digest", d2, "manifest-media-type", manifestType, "artifact-media-type", configType))

	if rec := call(t, g, "PUT", "/v2/team/app/manifests/latest", m1, ct...); rec.Code != http.StatusCreated {
		t.Fatalf("re-tag: %d %s", rec.Code, rec.Body)
	}
	expect("re-tag", event("PUSH", "image-digest", d1, "image-tag", "latest", "manifest-media-type", manifestType, "artifact-media-type", configType))

	if rec := call(t, g, "DELETE", "/v2/team/app/manifests/latest", nil); rec.Code != http.StatusAccepted {
		t.Fatalf("tag delete: %d %s", rec.Code, rec.Body)
	}
	expect("tag delete", event("DELETE", "image-digest", d1, "image-tag", "latest", "manifest-media-type", manifestType))

	if rec := call(t, g, "DELETE", "/v2/team/app/manifests/latest", nil); rec.Code != http.StatusNotFound {
		t.Fatalf("second tag delete: %d %s", rec.Code, rec.Body)
	}
	expect("failed tag delete")

	if rec := call(t, g, "DELETE", "/v2/team/app/manifests/"+d1, nil); rec.Code != http.StatusAccepted {
		t.Fatalf("manifest delete: %d %s", rec.Code, rec.Body)
	}
	expect("manifest delete", event("DELETE", "image-digest", d1, "image-tags", []any{"v1"}, "manifest-media-type", manifestType, "artifact-media-type", configType))

	if rec := call(t, g, "DELETE", "/v2/team/app/manifests/"+d1, nil); rec.Code != http.StatusNotFound {
		t.Fatalf("second manifest delete: %d %s", rec.Code, rec.Body)
	}
	expect("failed manifest delete")
	if st := em.Stats(); st.Sent != 5 || st.Failed != 0 {
		t.Fatalf("emitter stats %+v", st)
	}
}

// A bus that fails does not fail the push: the event is counted as lost.
func TestEventLossDoesNotFailPush(t *testing.T) {
	fake := ebtest.New(t)
	em := eventbridge.New(fake.Client(), "", nil)
	e := testenv.NewEmbedded(t)
	g := registry.New(registry.Config{Events: em}, e.Items, e.Blobs)
	cfg := []byte(`{}`)
	if rec := call(t, g, "POST", "/v2/r/blobs/uploads/?digest=sha256:"+sha256hex(cfg), cfg); rec.Code != http.StatusCreated {
		t.Fatalf("blob: %d", rec.Code)
	}
	m := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` + sha256hex(cfg) + `","size":2},"layers":[]}`)
	fake.FailNext(1)
	if rec := call(t, g, "PUT", "/v2/r/manifests/v1", m, "Content-Type", "application/vnd.oci.image.manifest.v1+json"); rec.Code != http.StatusCreated {
		t.Fatalf("push with a failing bus: %d %s", rec.Code, rec.Body)
	}
	if st := em.Stats(); st.Failed != 1 || st.Sent != 0 || fake.Calls() != 1 || len(fake.Entries()) != 0 {
		t.Fatalf("stats %+v, calls %d", st, fake.Calls())
	}
}
