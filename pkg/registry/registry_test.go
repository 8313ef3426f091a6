package registry_test

import (
	"io/fs"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/registry/registrytest"
	"github.com/berth-registry/berth/pkg/storage"
)

func embeddedEnv(cfg registry.Config) func(t *testing.T) registrytest.Env {
	return func(t *testing.T) registrytest.Env {
		e := testenv.NewEmbedded(t)
		return registrytest.Env{
			Handler:      registry.New(cfg, e.Items, e.Blobs),
			MaxBodyBytes: cfg.MaxBodyBytes,
			Restart: func(t *testing.T) http.Handler {
				if err := e.Items.Close(); err != nil {
					t.Fatal(err)
				}
				e = testenv.OpenEmbedded(t, e.Dir)
				return registry.New(cfg, e.Items, e.Blobs)
			},
			Leftovers: func(t *testing.T) []string { return strayFiles(t, e.Dir) },
		}
	}
}

// strayFiles lists files under dir that are neither blobs nor the database.
func strayFiles(t *testing.T, dir string) []string {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "meta.db" || strings.HasPrefix(rel, "blobs"+string(filepath.Separator)) && !strings.Contains(filepath.Base(rel), ".tmp") {
			return nil
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEmbedded(t *testing.T) {
	registrytest.Run(t, embeddedEnv(registry.Config{}))
}

func TestEmbeddedBodyLimit(t *testing.T) {
	registrytest.Run(t, embeddedEnv(registry.Config{MaxBodyBytes: 4_404_019, ChunkMinLength: 1 << 20}))
}

// TestCoreImports keeps the registry core free of the AWS SDK and the
// drivers (it depends only on the seams), and keeps every import between the
// layers pointing down: the drivers and the storage seams with their
// contract suites (tests included) never import the logic that consumes
// them, pkg/meta and pkg/registry.
func TestCoreImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/berth-registry/berth/pkg/registry").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/aws/") || strings.Contains(dep, "/pkg/driver/") || strings.HasPrefix(dep, "go.etcd.io/") {
			t.Errorf("pkg/registry depends on %s", dep)
		}
	}

	const mod = "github.com/berth-registry/berth/"
	out, err = exec.Command("go", "list", "-test", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`,
		mod+"pkg/driver/...", mod+"pkg/storage/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 4 {
		t.Fatalf("go list listed %d packages under pkg/driver and pkg/storage, want the drivers and storagetest:\n%s", len(lines), out)
	}
	for _, line := range lines {
		pkg, deps, _ := strings.Cut(line, " ")
		for _, dep := range strings.Fields(deps) {
			if dep == mod+"pkg/meta" || dep == mod+"pkg/registry" || strings.HasPrefix(dep, mod+"pkg/registry/") {
				t.Errorf("%s depends on %s: drivers and seams must not import the logic above them", pkg, dep)
			}
		}
	}

	// The seams themselves sit on the OCI vocabulary alone.
	out, err = exec.Command("go", "list", "-deps", mod+"pkg/storage").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, mod) && dep != mod+"pkg/storage" && dep != mod+"pkg/oci" {
			t.Errorf("pkg/storage depends on %s; it may import only pkg/oci", dep)
		}
	}
}

func TestEmbeddedFaults(t *testing.T) {
	registrytest.RunFaults(t, func(t *testing.T) (storage.Items, storage.Blobs) {
		e := testenv.NewEmbedded(t)
		return e.Items, e.Blobs
	})
}
