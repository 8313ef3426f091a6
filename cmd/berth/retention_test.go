package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/registry/registrytest"
	"github.com/berth-registry/berth/pkg/retention"
)

const previewPolicy = `{"rules":[
 {"rulePriority":1,"description":"untagged for a week","selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}},
 {"rulePriority":2,"description":"unused for a month","selection":{"tagStatus":"any","countType":"sinceImagePulled","countUnit":"days","countNumber":30},"action":{"type":"expire"}}]}`

// seedRetention writes a data directory whose images were pushed and
// pulled in the past (through a registry on a clock set back), and returns
// the digests by name.
func seedRetention(t *testing.T, dir string) map[string]oci.Digest {
	t.Helper()
	be, err := openEmbedded(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer be.close()
	var at time.Time
	reg := registry.New(registry.Config{Now: func() time.Time { return at }}, be.items, be.blobs)
	img := func(seed string) registrytest.Image {
		return registrytest.NewImage([]byte(`{"seed":"`+seed+`"}`), []byte("layer "+seed))
	}
	out := map[string]oci.Digest{}
	at = time.Now().Add(-40 * 24 * time.Hour)
	out["untagged"] = registrytest.PushImage(t, reg, "app", "", img("untagged")).Digest
	out["unused"] = registrytest.PushImage(t, reg, "app", "v1", img("unused")).Digest
	out["used"] = registrytest.PushImage(t, reg, "other", "latest", img("used")).Digest
	at = time.Now().Add(-2 * 24 * time.Hour)
	w := httptest.NewRecorder()
	reg.ServeHTTP(w, httptest.NewRequest("GET", "/v2/other/manifests/latest", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("pull: %d %s", w.Code, w.Body)
	}
	at = time.Now()
	out["new"] = registrytest.PushImage(t, reg, "app", "new", img("new")).Digest
	return out
}

// TestRetentionPreview runs `berth retention preview` against a running
// server (through its admin socket) and against the stopped data
// directory: the same answer, and nothing deleted.
func TestRetentionPreview(t *testing.T) {
	dir := t.TempDir()
	d := seedRetention(t, dir)
	policy := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(policy, []byte(previewPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stop := serveEmbedded(t, dir, "--gc-interval", "0")
	preview := func(wantCode int, args ...string) (previewReport, string) {
		t.Helper()
		var out, errb bytes.Buffer
		if code := run(t.Context(), append([]string{"retention", "preview", "--data", dir}, args...), &out, &errb); code != wantCode {
			t.Fatalf("berth retention preview %v: exit %d, want %d: %s%s", args, code, wantCode, out.String(), errb.String())
		}
		var rep previewReport
		if slices.Contains(args, "--json") {
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatalf("--json: %v: %s", err, out.String())
			}
		}
		return rep, out.String() + errb.String()
	}
	expired := func(rep previewReport) map[string]string {
		out := map[string]string{}
		for _, r := range rep.Repositories {
			for _, x := range r.Expired {
				for name, dg := range d {
					if dg == x.Digest {
						out[name] = fmt.Sprintf("%s rule %d %s", r.Repository, x.Rule, x.Reason)
					}
				}
			}
		}
		return out
	}
	want := map[string]string{"untagged": "app rule 1 rule", "unused": "app rule 2 rule"}

	viaServer, _ := preview(0, policy, "--json")
	if got := expired(viaServer); len(got) != 2 || got["untagged"] != want["untagged"] || got["unused"] != want["unused"] {
		t.Fatalf("preview through the server: %v, want %v", got, want)
	}
	if s := viaServer.Summary; s != (previewSummary{Repositories: 2, Images: 4, Manifests: 4, Expired: 2, ByRule: 2}) {
		t.Errorf("summary %+v", s)
	}
	for _, x := range viaServer.Repositories[0].Expired {
		if x.Digest == d["unused"] && !x.Pulled.Equal(x.Pushed) {
			t.Errorf("never pulled: pulled %v, want the push %v", x.Pulled, x.Pushed)
		}
	}
	_, text := preview(0, policy)
	for _, s := range []string{"app: 2 of 3 manifests would be deleted", string(d["unused"]) + "  v1", "2 (unused for a month)",
		"other: nothing expires", "preview: 2 manifests would be deleted", "nothing was deleted"} {
		if !strings.Contains(text, s) {
			t.Errorf("text output lacks %q:\n%s", s, text)
		}
	}
	// REPO limits it to one repository; an unknown one is an error.
	if one, _ := preview(0, policy, "other", "--json"); len(one.Repositories) != 1 || len(one.Repositories[0].Expired) != 0 {
		t.Errorf("preview of other: %+v", one)
	}
	if _, out := preview(1, policy, "nope"); !strings.Contains(out, "repository unknown") {
		t.Errorf("unknown repository: %s", out)
	}
	// A policy that does not parse is refused before anything is asked.
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"rules":[{"rulePriority":1}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, out := preview(1, bad); !strings.Contains(out, "bad.json") || !strings.Contains(out, "selection is required") {
		t.Errorf("invalid policy: %s", out)
	}
	// (No HEAD of the manifests here: that would be a pull.)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Nothing was deleted.
	be, err := openEmbedded(dir)
	if err != nil {
		t.Fatal(err)
	}
	store := meta.New(be.items)
	n := 0
	for _, repo := range []string{"app", "other"} {
		list, err := store.ManifestList(t.Context(), repo)
		if err != nil {
			t.Fatal(err)
		}
		n += len(list)
	}
	if err := be.close(); err != nil {
		t.Fatal(err)
	}
	if n != len(d) {
		t.Fatalf("%d manifests after the previews, want all %d", n, len(d))
	}
	// The server is gone: the preview opens the store itself, same answer.
	direct, _ := preview(0, policy, "--json")
	if got := expired(direct); len(got) != 2 || direct.Summary != viaServer.Summary {
		t.Errorf("direct preview: %v %+v, through the server %+v", got, direct.Summary, viaServer.Summary)
	}
	// Apply deletes exactly what the preview listed.
	if be, err = openEmbedded(dir); err != nil {
		t.Fatal(err)
	}
	defer be.close()
	p, _ := retention.Parse([]byte(previewPolicy))
	rep, err := retention.Apply(t.Context(), meta.New(be.items), p, time.Now(), slog.New(slog.DiscardHandler))
	if err != nil || rep.Expired != direct.Summary.Expired {
		t.Errorf("apply: %+v, %v; the preview said %d", rep, err, direct.Summary.Expired)
	}
}
