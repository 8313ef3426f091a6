package e2e

import (
	"bytes"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-registry/berth/tests/harness"
)

const (
	artifactType = "application/vnd.berth.e2e.artifact"
	sigType      = "application/vnd.berth.e2e.signature"
	sbomType     = "application/spdx+json"
)

// writeFile writes content to name in dir.
func writeFile(t *testing.T, dir, name string, content []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
		t.Fatal(err)
	}
}

// testOras pushes and pulls an artifact, copies an image from an OCI
// layout, attaches a referrer through the referrers API and discovers it.
func testOras(t *testing.T, s *harness.Server) {
	c := harness.Client(t, "oras")
	r := repo(t, "art")
	payload := harness.Random(300 << 10)
	writeFile(t, c.Dir, "payload.bin", payload)

	c.Run("push", "--plain-http", "--artifact-type", artifactType, ref(s, r, "v1"), "payload.bin:application/octet-stream")
	out := filepath.Join(t.TempDir(), "pulled")
	c.Run("pull", "--plain-http", "-o", out, ref(s, r, "v1"))
	got, err := os.ReadFile(filepath.Join(out, "payload.bin"))
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("oras pull: payload differs (err %v)", err)
	}

	// An image from an OCI layout.
	l := harness.WriteImage(t, "img", 512<<10)
	c.Run("cp", "--to-plain-http", "--from-oci-layout", l.Oras(), ref(s, r, "img"))
	if st := headManifest(t, s, r, l.Digest()); st != 200 {
		t.Fatalf("HEAD image copied by oras: %d", st)
	}

	// A referrer, written and read through the referrers API.
	writeFile(t, c.Dir, "sig.txt", []byte("signed by e2e\n"))
	var attached struct{ Digest string }
	res := c.Run("attach", "--plain-http", "--distribution-spec", "v1.1-referrers-api",
		"--artifact-type", sigType, "--format", "json", ref(s, r, "v1"), "sig.txt:text/plain")
	if err := json.Unmarshal([]byte(res), &attached); err != nil || attached.Digest == "" {
		t.Fatalf("oras attach output: %v\n%s", err, res)
	}
	disc := c.Run("discover", "--plain-http", "--distribution-spec", "v1.1-referrers-api", "--format", "json", ref(s, r, "v1"))
	if !strings.Contains(disc, attached.Digest) || !strings.Contains(disc, sigType) {
		t.Fatalf("oras discover does not list %s (%s):\n%s", attached.Digest, sigType, disc)
	}
	subject := strings.TrimSpace(harness.Client(t, "crane").Run("digest", "--insecure", ref(s, r, "v1")))
	checkReferrers(t, s, r, subject, sigType, attached.Digest)
}

// checkReferrers reads the referrers index of subject directly, unfiltered
// and filtered by artifactType, and expects want among them.
func checkReferrers(t *testing.T, s *harness.Server, r, subject, artType, want string) {
	t.Helper()
	for _, q := range []string{"", "?artifactType=" + url.QueryEscape(artType)} {
		st, hdr, body := do(t, s, "GET", "/v2/"+r+"/referrers/"+subject+q, nil, nil)
		if st != 200 {
			t.Fatalf("GET referrers%s: %d %s", q, st, body)
		}
		var idx struct {
			MediaType string `json:"mediaType"`
			Manifests []struct {
				Digest       string `json:"digest"`
				ArtifactType string `json:"artifactType"`
			} `json:"manifests"`
		}
		if err := json.Unmarshal(body, &idx); err != nil || idx.MediaType != harness.MediaTypeIndex {
			t.Fatalf("referrers%s: not an image index (%v): %s", q, err, body)
		}
		found := false
		for _, m := range idx.Manifests {
			if q != "" && m.ArtifactType != artType {
				t.Fatalf("filter %s returned %s of type %s", q, m.Digest, m.ArtifactType)
			}
			found = found || m.Digest == want && m.ArtifactType == artType
		}
		if !found {
			t.Fatalf("referrers%s of %s: %s missing: %s", q, subject, want, body)
		}
		if q != "" && !strings.Contains(strings.Join(hdr["Oci-Filters-Applied"], ","), "artifactType") {
			t.Fatalf("filtered referrers without OCI-Filters-Applied: %v", hdr)
		}
	}
}
