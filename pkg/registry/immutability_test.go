package registry_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/berth-registry/berth/pkg/immutability"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/registry/registrytest"
)

// Tag immutability rules (pkg/immutability) reach the handler through
// Config.ImmutableTags: a push that would move an immutable tag answers
// 403 DENIED naming the tag, and changes nothing; an excluded tag moves;
// pushing the same manifest again under an immutable tag is allowed; a
// repository no rule names is mutable.
func TestImmutableTagsHTTP(t *testing.T) {
	rules, err := immutability.Parse([]byte(`[
	 {"repositories":["team/**"],"imageTagMutability":"IMMUTABLE_WITH_EXCLUSION",
	  "imageTagMutabilityExclusionFilters":[{"filterType":"WILDCARD","filter":"latest"}]}]`))
	if err != nil {
		t.Fatal(err)
	}
	runLazyWith(t, registry.Config{ImmutableTags: rules.Immutable}, func(t *testing.T, e *lazyEnv) {
		one := registrytest.NewImage([]byte(`{"n":1}`), []byte("layer one"))
		two := registrytest.NewImage([]byte(`{"n":2}`), []byte("layer two"))
		for _, img := range []registrytest.Image{one, two} {
			registrytest.PushImage(t, e.g, "team/app", "", img)
			registrytest.PushImage(t, e.g, "other", "", img)
		}
		put := func(repo, tag string, img registrytest.Image) *httptest.ResponseRecorder {
			t.Helper()
			return call(t, e.g, "PUT", "/v2/"+repo+"/manifests/"+tag, img.Manifest, "Content-Type", "application/vnd.oci.image.manifest.v1+json")
		}
		digestOf := func(repo, tag string) string {
			t.Helper()
			rec := call(t, e.g, "HEAD", "/v2/"+repo+"/manifests/"+tag, nil)
			return rec.Header().Get("Docker-Content-Digest")
		}
		for _, tag := range []string{"v1", "latest"} {
			if rec := put("team/app", tag, one); rec.Code != http.StatusCreated {
				t.Fatalf("first push of %s: %d %s", tag, rec.Code, rec.Body)
			}
		}
		// Moving v1 is refused with the existing mapping of ErrTagImmutable.
		rec := put("team/app", "v1", two)
		var body struct {
			Errors []struct {
				Code   string
				Detail map[string]string
			}
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusForbidden ||
			len(body.Errors) != 1 || body.Errors[0].Code != "DENIED" || body.Errors[0].Detail["tag"] != "v1" {
			t.Fatalf("moving an immutable tag: %d %s", rec.Code, rec.Body)
		}
		if got := digestOf("team/app", "v1"); got != string(one.Digest) {
			t.Fatalf("v1 now %s, want it unchanged (%s)", got, one.Digest)
		}
		// Its DELETE is refused too; the manifest can still be deleted by
		// digest (that is what retention does).
		if rec := call(t, e.g, "DELETE", "/v2/team/app/manifests/v1", nil); rec.Code != http.StatusForbidden {
			t.Fatalf("DELETE of an immutable tag: %d %s", rec.Code, rec.Body)
		}
		// The same manifest again: allowed.
		if rec := put("team/app", "v1", one); rec.Code != http.StatusCreated {
			t.Fatalf("same manifest under its immutable tag: %d %s", rec.Code, rec.Body)
		}
		// An excluded tag moves; so does any tag of a repository no rule names.
		if rec := put("team/app", "latest", two); rec.Code != http.StatusCreated || digestOf("team/app", "latest") != string(two.Digest) {
			t.Fatalf("moving the excluded latest: %d %s", rec.Code, rec.Body)
		}
		for _, img := range []registrytest.Image{one, two} {
			if rec := put("other", "v1", img); rec.Code != http.StatusCreated {
				t.Fatalf("a tag of an unnamed repository: %d %s", rec.Code, rec.Body)
			}
		}
		if got := digestOf("other", "v1"); got != string(two.Digest) {
			t.Fatalf("other:v1 is %s, want %s", got, two.Digest)
		}
	})
}
