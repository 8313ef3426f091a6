package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-registry/berth/tests/harness"
)

// containersTool returns skopeo or podman with a private storage and
// registries configuration that marks the server insecure.
func containersTool(t *testing.T, s *harness.Server, name string) (*harness.Tool, string) {
	env := harness.ContainersEnv(t, s.Addr)
	return harness.Client(t, name).With(env...), harness.Policy(env)
}

// testSkopeo copies an OCI layout to the registry and back.
func testSkopeo(t *testing.T, s *harness.Server) {
	c, policy := containersTool(t, s, "skopeo")
	r := repo(t, "img")
	l := harness.WriteImage(t, "v1", 1<<20, 64<<10)
	c.Run("copy", "--policy", policy, "--preserve-digests", "--dest-tls-verify=false", l.Skopeo(), "docker://"+ref(s, r, "v1"))
	raw := c.Run("inspect", "--policy", policy, "--tls-verify=false", "--raw", "docker://"+ref(s, r, "v1"))
	if !bytes.Equal([]byte(raw), l.Blob(t, l.Digest())) {
		t.Fatalf("skopeo inspect --raw: manifest differs:\n%s", raw)
	}
	back := filepath.Join(t.TempDir(), "back")
	c.Run("copy", "--policy", policy, "--preserve-digests", "--src-tls-verify=false", "docker://"+ref(s, r, "v1"), "oci:"+back+":back")
	if got := harness.Digest(mustRead(t, filepath.Join(back, "blobs", "sha256", strings.TrimPrefix(l.Digest(), "sha256:")))); got != l.Digest() {
		t.Fatalf("skopeo copy back: manifest %s missing", l.Digest())
	}
	tags := c.Run("list-tags", "--tls-verify=false", "docker://"+s.Addr+"/"+r)
	if !strings.Contains(tags, `"v1"`) {
		t.Fatalf("skopeo list-tags:\n%s", tags)
	}
}

// testPodman pulls an image with podman, pushes it under a new name and
// pulls that back (vfs storage; `podman run` does not work here).
func testPodman(t *testing.T, s *harness.Server) {
	c, _ := containersTool(t, s, "podman")
	r := repo(t, "img")
	l := harness.WriteImage(t, "v1", 1<<20)
	crane(t).Run("push", "--insecure", l.Dir, ref(s, r, "v1"))

	c.Run("pull", "--tls-verify=false", ref(s, r, "v1"))
	c.Run("tag", ref(s, r, "v1"), ref(s, r, "pushed"))
	c.Run("push", "--tls-verify=false", ref(s, r, "pushed"))
	c.Run("rmi", "--all", "--force")
	c.Run("pull", "--tls-verify=false", ref(s, r, "pushed"))
	id := strings.TrimSpace(c.Run("image", "inspect", "--format", "{{.Config.Env}}", ref(s, r, "pushed")))
	if !strings.Contains(id, "PATH=/usr/bin:/bin") {
		t.Fatalf("podman image inspect after round trip: %q", id)
	}
	if st := headManifest(t, s, r, "pushed"); st != 200 {
		t.Fatalf("HEAD manifest pushed by podman: %d", st)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
