package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ContainersEnv writes a private configuration for the containers tools
// (podman, skopeo, buildah) and returns the environment that selects it:
// vfs storage under a temp dir (works as root without a daemon or
// fuse-overlayfs), the given registries marked insecure (plain HTTP), an
// accept-anything signature policy, cgroupfs and file event logging.
func ContainersEnv(tb testing.TB, registries ...string) []string {
	tb.Helper()
	dir := tb.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
		return p
	}
	storage := write("storage.conf", fmt.Sprintf("[storage]\ndriver = \"vfs\"\nrunroot = %q\ngraphroot = %q\n",
		filepath.Join(dir, "run"), filepath.Join(dir, "root")))
	var reg strings.Builder
	reg.WriteString("unqualified-search-registries = []\nshort-name-mode = \"disabled\"\n")
	for _, r := range registries {
		fmt.Fprintf(&reg, "\n[[registry]]\nlocation = %q\ninsecure = true\n", r)
	}
	registriesConf := write("registries.conf", reg.String())
	policy := write("policy.json", `{"default":[{"type":"insecureAcceptAnything"}]}`+"\n")
	containers := write("containers.conf", fmt.Sprintf("[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nevents_logfile_path = %q\n[containers]\n",
		filepath.Join(dir, "events.log")))
	auth := write("auth.json", "{}\n")
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		tb.Fatal(err)
	}
	return []string{
		"CONTAINERS_STORAGE_CONF=" + storage,
		"CONTAINERS_REGISTRIES_CONF=" + registriesConf,
		"CONTAINERS_CONF=" + containers,
		"CONTAINERS_POLICY=" + policy, // read by Policy, for --policy / --signature-policy
		"TMPDIR=" + tmp,
		"XDG_RUNTIME_DIR=" + filepath.Join(dir, "run"),
		"REGISTRY_AUTH_FILE=" + auth,
	}
}

// Policy returns the signature policy file from a ContainersEnv environment.
func Policy(env []string) string {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "CONTAINERS_POLICY="); ok {
			return v
		}
	}
	return ""
}
