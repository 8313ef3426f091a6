// Package harness runs `berth serve` and real registry clients for the
// end-to-end suites (tests/e2e, tests/authe2e and others).
//
// A suite's TestMain calls Main; tests call Start for a server on a free
// loopback port with the backend they want, Client for a third-party client
// binary installed by tests/tools/install.sh, and the image builders for
// content to push. Everything a test creates lives under t.TempDir() or is
// stopped in t.Cleanup.
package harness

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The state of one test process: where berth was built. Main removes it.
var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// Main runs the suite's tests and removes what the harness built. Call it
// from TestMain: func TestMain(m *testing.M) { harness.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// CI reports whether the tests run in CI (CI=true), where nothing may be
// skipped for a missing tool.
func CI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v != "" && v != "false" && v != "0"
}

// Root returns the module's root directory.
func Root(tb testing.TB) string {
	tb.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		tb.Fatalf("go env GOMOD: %v", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		tb.Fatal("not inside the berth module")
	}
	// Suites with heavy dependencies of their own (tests/containerd) are
	// nested modules: the registry's module is the nearest parent whose
	// go.mod declares it.
	for dir := filepath.Dir(mod); ; dir = filepath.Dir(dir) {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			strings.HasPrefix(string(b), "module github.com/berth-registry/berth\n") {
			return dir
		}
		if parent := filepath.Dir(dir); parent == dir {
			tb.Fatalf("no parent of %s is the berth module", mod)
		}
	}
}

// Binary returns the berth binary: $BERTH_BIN when set, otherwise one built
// from this checkout once per test process.
func Binary(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("BERTH_BIN"); p != "" {
		return p
	}
	build.once.Do(func() {
		root := Root(tb)
		build.dir, build.err = os.MkdirTemp("", "berth-e2e-bin-")
		if build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "berth")
		cmd := exec.Command("go", "build", "-o", build.bin, "-ldflags", "-X main.version=e2e", "./cmd/berth")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			build.err = fmt.Errorf("go build ./cmd/berth: %w\n%s", err, out.String())
		}
	})
	if build.err != nil {
		tb.Fatal(build.err)
	}
	return build.bin
}
