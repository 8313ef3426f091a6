package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-registry/berth/tests/harness"
)

// testCosign signs an image with a local key and verifies the signature,
// with the classic tag scheme and with OCI 1.1 referrers.
func testCosign(t *testing.T, s *harness.Server) {
	c := harness.Client(t, "cosign").With("COSIGN_PASSWORD=", "COSIGN_YES=true", "SIGSTORE_NO_CACHE=true")
	other := c.With()
	other.Dir = t.TempDir()
	c.Run("generate-key-pair")
	other.Run("generate-key-pair")

	r := repo(t, "img")
	l := harness.WriteImage(t, "v1", 256<<10)
	crane(t).Run("push", "--insecure", l.Dir, ref(s, r, "v1"))
	image := ref(s, r, l.Digest())
	insecure := []string{"--allow-insecure-registry", "--allow-http-registry"}

	sign := append([]string{"sign", "--key", "cosign.key", "--tlog-upload=false"}, insecure...)
	c.Run(append(sign, image)...)
	verify := append([]string{"verify", "--key", "cosign.pub", "--insecure-ignore-tlog", "--output", "json"}, insecure...)
	checkVerified(t, c.Run(append(verify, image)...), l.Digest())
	// The wrong key must not verify.
	wrong := append([]string{"verify", "--key", filepath.Join(other.Dir, "cosign.pub"), "--insecure-ignore-tlog"}, insecure...)
	if res := c.Exec(append(wrong, image)...); res.Err == nil {
		t.Fatalf("cosign verified with the wrong key:\n%s", res.Output())
	}

	// OCI 1.1: the signature is a referrer of the image.
	exp := c.With("COSIGN_EXPERIMENTAL=1")
	exp.Run(append(append(sign, "--registry-referrers-mode=oci-1-1"), image)...)
	checkVerified(t, exp.Run(append(append(verify, "--experimental-oci11"), image)...), l.Digest())
	st, _, body := do(t, s, "GET", "/v2/"+r+"/referrers/"+l.Digest(), nil, nil)
	if st != 200 || !strings.Contains(string(body), "application/vnd.dev.cosign") {
		t.Fatalf("referrers after cosign --registry-referrers-mode=oci-1-1: %d %s", st, body)
	}
}

// checkVerified parses `cosign verify --output json` and expects a
// signature over digest.
func checkVerified(t *testing.T, out, digest string) {
	t.Helper()
	var sigs []struct {
		Critical struct {
			Image struct {
				Digest string `json:"docker-manifest-digest"`
			} `json:"image"`
		} `json:"critical"`
	}
	if err := json.Unmarshal([]byte(out), &sigs); err != nil || len(sigs) == 0 {
		t.Fatalf("cosign verify output (%v):\n%s", err, out)
	}
	for _, s := range sigs {
		if s.Critical.Image.Digest != digest {
			t.Fatalf("signature over %s, want %s", s.Critical.Image.Digest, digest)
		}
	}
}
