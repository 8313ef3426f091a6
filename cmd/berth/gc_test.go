package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/pkg/gc"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/registry/registrytest"
)

func headStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Head(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestGCCommand runs `berth gc` against a running server (through its
// admin socket) and against a stopped data directory.
func TestGCCommand(t *testing.T) {
	dir := t.TempDir()
	base, stop := serveEmbedded(t, dir, "--gc-interval", "0")
	reg := registrytest.Remote(base)
	img := registrytest.NewImage([]byte(`{"note":"collected"}`), []byte("a layer"))
	registrytest.PushImage(t, reg, "r", "v1", img)
	req, _ := http.NewRequest(http.MethodDelete, base+"/v2/r/manifests/"+string(img.Digest), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delete manifest: %v %v", resp, err)
	}
	resp.Body.Close()
	time.Sleep(1100 * time.Millisecond) // unreferenced for longer than the grace

	gcRun := func(args ...string) (gc.Stats, string) {
		var out, errb bytes.Buffer
		if code := run(t.Context(), append([]string{"gc", "--data", dir}, args...), &out, &errb); code != 0 {
			t.Fatalf("berth gc %v: exit %d: %s", args, code, errb.String())
		}
		var st gc.Stats
		if strings.Contains(strings.Join(args, " "), "--json") {
			if err := json.Unmarshal(out.Bytes(), &st); err != nil {
				t.Fatalf("berth gc --json: %v: %s", err, out.String())
			}
		}
		return st, out.String()
	}
	layer := oci.FromBytes(oci.SHA256, []byte("a layer"))
	_, out := gcRun("--grace", "1s", "--dry-run")
	if !strings.Contains(out, "would delete "+string(layer)) || !strings.Contains(out, "2 blobs") {
		t.Fatalf("dry run output: %s", out)
	}
	st, _ := gcRun("--grace", "1s", "--json")
	if st.Deleted != 2 {
		t.Fatalf("gc through the running server: %+v", st)
	}
	if code := headStatus(t, base+"/v2/r/blobs/"+string(layer)); code != http.StatusNotFound {
		t.Fatalf("collected layer: HEAD %d", code)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The server is gone: berth gc opens the store itself.
	if st, _ := gcRun("--grace", "1s", "--json"); st.Deleted != 0 || st.OrphansScanned != 0 {
		t.Fatalf("gc of the stopped store: %+v", st)
	}
}

// TestServeGC: berth serve collects on its own with --gc-interval.
func TestServeGC(t *testing.T) {
	base, stop := serveEmbedded(t, t.TempDir(), "--gc-interval", "100ms", "--gc-grace", "1s")
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	d := registrytest.PushBlob(t, registrytest.Remote(base), "r", []byte("never referenced"))
	deadline := time.Now().Add(15 * time.Second)
	for headStatus(t, base+"/v2/r/blobs/"+string(d)) != http.StatusNotFound {
		if time.Now().After(deadline) {
			t.Fatal("the unreferenced blob was not collected")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
