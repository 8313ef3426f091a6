package registry_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/access"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/registry/registrytest"
)

// checker allows push on push and pull on pull (repository names).
type checker struct{ push, pull map[string]bool }

func (c checker) MayPush(repo string) bool { return c.push[repo] }
func (c checker) MayPull(repo string) bool { return c.pull[repo] }

func withAccess(h http.Handler, c access.Checker) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(access.NewContext(r.Context(), c)))
	})
}

func status(h http.Handler, method, path string) int {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w.Code
}

// TestHeadMounts: a pusher's HEAD of a blob the registry holds in a
// repository the pusher may read answers 200 and links the blob, so the
// client uploads nothing (issue 15); every other caller gets the plain
// answer, and a GET never writes.
func TestHeadMounts(t *testing.T) {
	e := testenv.NewEmbedded(t)
	open := registry.New(registry.Config{Open: true}, e.Items, e.Blobs)
	body := []byte("a layer the registry already holds")
	d := string(registrytest.PushBlob(t, open, "team/a", body))

	if got := status(open, "GET", "/v2/team/get/blobs/"+d); got != 404 {
		t.Errorf("GET in another repository: %d, want 404 (a pull never mounts)", got)
	}
	if got := status(open, "HEAD", "/v2/team/get/blobs/"+d); got != 200 {
		t.Errorf("HEAD without auth: %d, want 200 (mounted)", got)
	}
	if got := status(open, "GET", "/v2/team/get/blobs/"+d); got != 200 {
		t.Errorf("GET after the mount: %d", got)
	}

	closed := registry.New(registry.Config{}, e.Items, e.Blobs)
	if got := status(closed, "HEAD", "/v2/team/b/blobs/"+d); got != 404 {
		t.Errorf("HEAD with neither Open nor an access checker: %d, want 404", got)
	}
	for _, tc := range []struct {
		name string
		c    checker
		want int
	}{
		{"pull only", checker{pull: map[string]bool{"team/a": true, "team/b": true}}, 404},
		{"push but may not read the source", checker{push: map[string]bool{"team/b": true}, pull: map[string]bool{"team/b": true}}, 404},
		{"push and may read the source", checker{push: map[string]bool{"team/b": true}, pull: map[string]bool{"team/a": true}}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := status(withAccess(closed, tc.c), "HEAD", "/v2/team/b/blobs/"+d); got != tc.want {
				t.Errorf("HEAD: %d, want %d", got, tc.want)
			}
		})
	}
	// The mounted blob is part of team/b now: a manifest may reference it.
	img := registrytest.NewImage(body)
	registrytest.PushBlob(t, open, "team/b", img.Config)
	registrytest.PutManifest(t, open, "team/b", "v1", "application/vnd.oci.image.manifest.v1+json", img.Manifest)
	if got := status(open, "HEAD", "/v2/team/nothing/blobs/sha256:"+sha256hex([]byte("stored nowhere"))); got != 404 {
		t.Errorf("HEAD of a blob stored nowhere: %d", got)
	}
}
