package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-registry/berth/pkg/registry/registrytest"
)

// berth serve --tag-immutability enforces the rules, and refuses to start
// with rules it cannot read or parse, naming the flag.
func TestServeTagImmutability(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "immutability.json")
	if err := os.WriteFile(rules, []byte(`[{"repositories":["team/**"],"imageTagMutability":"IMMUTABLE_WITH_EXCLUSION",
	  "imageTagMutabilityExclusionFilters":[{"filterType":"WILDCARD","filter":"latest"}]}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	base, stop := serveEmbedded(t, filepath.Join(dir, "data"), "--gc-interval", "0", "--tag-immutability", rules)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	reg := registrytest.Remote(base)
	one := registrytest.NewImage([]byte(`{"n":1}`), []byte("one"))
	two := registrytest.NewImage([]byte(`{"n":2}`), []byte("two"))
	registrytest.PushImage(t, reg, "team/app", "v1", one)
	registrytest.PushImage(t, reg, "team/app", "latest", one)
	registrytest.PushImage(t, reg, "team/app", "latest", two) // excluded: moves
	put := func(tag string) int {
		req, _ := http.NewRequest(http.MethodPut, base+"/v2/team/app/manifests/"+tag, bytes.NewReader(two.Manifest))
		req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := put("v1"); code != http.StatusForbidden {
		t.Fatalf("moving immutable v1: %d, want 403", code)
	}

	for name, doc := range map[string]string{
		"invalid": `[{"repositories":["a"],"imageTagMutability":"IMMUTABLE_WITH_EXCLUSION"}]`,
		"missing": "",
	} {
		path := filepath.Join(dir, name+".json")
		if doc != "" {
			if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		err := runServe(t.Context(), []string{"--addr", "127.0.0.1:0", "--data", t.TempDir(), "--tag-immutability", path}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--tag-immutability") {
			t.Errorf("%s rules: %v, want an error naming --tag-immutability", name, err)
		}
	}
}
