package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-registry/berth/pkg/oci"
)

// freeAddr is a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func send(t *testing.T, method, url string, body []byte, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestServeAuditAndMetrics pushes and pulls an image through berth serve
// with --audit-log and --metrics-addr, then reads both.
func TestServeAuditAndMetrics(t *testing.T) {
	dir := t.TempDir()
	auditFile := filepath.Join(dir, "audit.jsonl")
	metricsAddr := freeAddr(t)
	base, stop := serveEmbedded(t, dir, "--audit-log", auditFile, "--metrics-addr", metricsAddr, "--gc-interval", "0")

	config, layer := []byte(`{"os":"linux"}`), []byte("layer bytes")
	for _, b := range [][]byte{config, layer} {
		resp := send(t, "POST", base+"/v2/team/app/blobs/uploads/", nil)
		if resp.StatusCode != 202 {
			t.Fatalf("POST: %d", resp.StatusCode)
		}
		loc := resp.Header.Get("Location")
		if !strings.HasPrefix(loc, "http") {
			loc = base + loc
		}
		sep := "?"
		if strings.Contains(loc, "?") {
			sep = "&"
		}
		if resp := send(t, "PUT", loc+sep+"digest="+string(oci.FromBytes(oci.SHA256, b)), b); resp.StatusCode != 201 {
			t.Fatalf("PUT: %d", resp.StatusCode)
		}
	}
	desc := func(mt string, b []byte) string {
		return fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d}`, mt, oci.FromBytes(oci.SHA256, b), len(b))
	}
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":` +
		desc("application/vnd.oci.image.config.v1+json", config) + `,"layers":[` + desc("application/vnd.oci.image.layer.v1.tar", layer) + `]}`)
	mt := "application/vnd.oci.image.manifest.v1+json"
	resp := send(t, "PUT", base+"/v2/team/app/manifests/v1", manifest, "Content-Type", mt)
	if resp.StatusCode != 201 {
		t.Fatalf("manifest PUT: %d", resp.StatusCode)
	}
	pushID := resp.Header.Get("X-Request-Id")
	if resp := send(t, "GET", base+"/v2/team/app/manifests/v1", nil, "Accept", mt); resp.StatusCode != 200 {
		t.Fatalf("manifest GET: %d", resp.StatusCode)
	}

	// Prometheus: scraped before shutdown.
	mresp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	exposition, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{
		"berth_manifest_pushes_total 1\n",
		"berth_manifest_pulls_total 1\n",
		fmt.Sprintf("berth_blob_bytes_uploaded_total %d\n", len(config)+len(layer)),
		"berth_upload_sessions_started_total 2\n",
		"berth_upload_sessions_ended_total 2\n",
		"berth_upload_sessions_open 0\n",
		`berth_http_requests_total{route="manifest",status_class="2xx"} 2` + "\n",
		`berth_http_requests_total{route="upload-start",status_class="2xx"} 2` + "\n",
		`berth_http_request_duration_seconds_count{route="upload"} 2` + "\n",
	} {
		if !bytes.Contains(exposition, []byte(want)) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// The audit file: one record per request, the push by its request id.
	f, err := os.Open(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fi, _ := f.Stat(); fi.Mode().Perm() != 0o600 {
		t.Errorf("audit log mode %v", fi.Mode().Perm())
	}
	var n int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if rec["requestId"] == pushID {
			if rec["action"] != "push" || rec["resource"] != "manifest" || rec["repository"] != "team/app" || rec["reference"] != "v1" ||
				rec["digest"] != string(oci.FromBytes(oci.SHA256, manifest)) || rec["result"] != "SUCCESS" ||
				rec["principal"] != "anonymous" || rec["sourceIp"] != "127.0.0.1" || rec["log"] != "audit" {
				t.Errorf("push record %v", rec)
			}
			pushID = ""
		}
	}
	if n != 6 || pushID != "" {
		t.Errorf("%d records (want 6), push record found: %v", n, pushID == "")
	}
}
