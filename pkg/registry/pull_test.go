package registry_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/registry/registrytest"
	"github.com/berth-registry/berth/pkg/storage"
)

// failWrites is a metadata driver whose writes all fail as a throttled
// table's do once retries are exhausted; reads go through.
type failWrites struct{ storage.Items }

func (failWrites) ItemAdd(context.Context, storage.Item, int64, storage.Cond) (storage.Item, error) {
	return storage.Item{}, fmt.Errorf("add: %w", storage.ErrUnavailable)
}

func (failWrites) Transact(context.Context, []storage.Op) error {
	return fmt.Errorf("transact: %w", storage.ErrUnavailable)
}

// A manifest GET or HEAD records the pull (retention's sinceImagePulled)
// at most once per manifest and per tag a UTC day, with one conditional
// write and no extra read: never on the day of the push, one transaction
// (tag + manifest) by tag, one add by digest. A record that fails never
// fails the pull.
func TestPullRecorded(t *testing.T) {
	runLazy(t, func(t *testing.T, e *lazyEnv) {
		img := registrytest.NewImage([]byte(`{"pulled":true}`), []byte("layer"))
		registrytest.PushImage(t, e.g, "app", "v1", img)
		tag, digest := "/v2/app/manifests/v1", "/v2/app/manifests/"+string(img.Digest)
		pull := func(h http.Handler, method, path string) map[string]int {
			t.Helper()
			e.items.Reset()
			rec := call(t, h, method, path, nil, "Accept", "application/vnd.oci.image.manifest.v1+json")
			if rec.Code != http.StatusOK || rec.Header().Get("Docker-Content-Digest") != string(img.Digest) {
				t.Fatalf("%s %s: %d %v %s", method, path, rec.Code, rec.Header(), rec.Body)
			}
			if method == http.MethodGet && rec.Body.String() != string(img.Manifest) {
				t.Fatalf("GET %s: body %q", path, rec.Body)
			}
			return e.items.Reset()
		}
		read := map[string]int{"ItemGet": 1}
		want := func(what string, got, want map[string]int) {
			t.Helper()
			if !maps.Equal(got, want) {
				t.Fatalf("%s: driver calls %v, want %v", what, got, want)
			}
		}

		// The day of the push counts as a pull: nothing to record.
		want("HEAD by tag, day of the push", pull(e.g, "HEAD", tag), read)
		want("GET by tag, day of the push", pull(e.g, "GET", tag), read)
		want("GET by digest, day of the push", pull(e.g, "GET", digest), read)

		e.clk.advance(25 * time.Hour)
		want("HEAD by tag, next day", pull(e.g, "HEAD", tag), map[string]int{"ItemGet": 1, "Transact": 1})
		want("GET by tag, same day", pull(e.g, "GET", tag), read)
		want("GET by digest after the tag", pull(e.g, "GET", digest), read)

		e.clk.advance(24 * time.Hour)
		want("GET by digest, next day", pull(e.g, "GET", digest), map[string]int{"ItemGet": 1, "ItemAdd": 1})
		want("HEAD by digest, same day", pull(e.g, "HEAD", digest), read)

		// Writes fail: the pulls still answer, and are recorded by the
		// first pull that can write.
		e.clk.advance(24 * time.Hour)
		broken := registry.New(registry.Config{Now: e.clk.now}, failWrites{e.items}, e.blobs)
		pull(broken, "GET", tag)
		pull(broken, "HEAD", digest)
		want("GET by tag after failed records", pull(e.g, "GET", tag), map[string]int{"ItemGet": 1, "Transact": 1})
	})
}
