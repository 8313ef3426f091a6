package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionString(t *testing.T) {
	const path = "github.com/berth-registry/berth"
	cases := []struct {
		name string
		set  string
		info *debug.BuildInfo
		want string
	}{
		{"no build info", "dev", nil, "berth dev"},
		{"go test", "dev", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: path, Version: "(devel)"}}, "berth dev"},
		{"make build", "v1.2.0-3-gabc1234", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: path, Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc1234def"}, {Key: "vcs.modified", Value: "true"}}},
			"berth v1.2.0-3-gabc1234 (commit abc1234def (modified), go1.26.8)"},
		{"checkout build without -X", "dev", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: path, Version: "v0.0.0-20261204174911-ffd4a1bcee93+dirty"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "ffd4a1bcee9382c935c290b677461252622a5059"}, {Key: "vcs.modified", Value: "true"}}},
			"berth v0.0.0-20261204174911-ffd4a1bcee93+dirty (commit ffd4a1bcee9382c935c290b677461252622a5059 (modified), go1.26.8)"},
		{"go install tag", "dev", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: path, Version: "v1.2.0", Sum: "h1:abc="}},
			"berth v1.2.0 (module " + path + "@v1.2.0 h1:abc=, go1.26.8)"},
		{"go install commit", "dev", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: path, Version: "v1.2.1-0.20261204101500-0123456789ab"}},
			"berth v1.2.1-0.20261204101500-0123456789ab (commit 0123456789ab, module " + path + "@v1.2.1-0.20261204101500-0123456789ab, go1.26.8)"},
	}
	for _, c := range cases {
		if got := versionString(c.set, c.info); got != c.want {
			t.Errorf("%s: versionString = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestPseudoVersionCommit(t *testing.T) {
	for v, want := range map[string]string{
		"v0.0.0-20261204101500-0123456789ab":              "0123456789ab",
		"v1.2.1-0.20261204101500-0123456789ab":            "0123456789ab",
		"v1.2.1-pre.0.20261204101500-0123456789ab":        "0123456789ab",
		"v2.0.0-20261204101500-0123456789ab+incompatible": "0123456789ab",
		"v1.2.0":              "",
		"v1.2.0-rc.1":         "",
		"v1.2.0-abcdefabcdef": "",
	} {
		if got := pseudoVersionCommit(v); got != want {
			t.Errorf("pseudoVersionCommit(%q) = %q, want %q", v, got, want)
		}
	}
}

// TestVersionOfBuiltBinary builds bin/berth the way `make build` does and
// checks that the -X version and the checkout's commit are both printed.
func TestVersionOfBuiltBinary(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git is needed to stamp the commit:", err)
	}
	rev, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD: %v (the test runs inside the checkout)", err)
	}
	bin := filepath.Join(t.TempDir(), "berth")
	build := exec.Command("go", "build", "-trimpath", "-buildvcs=auto", "-ldflags", "-X main.version=v9.9.9-test", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^berth v9\.9\.9-test \(commit ` + strings.TrimSpace(string(rev)) + `( \(modified\))?, go[0-9.]+\S*\)\n$`)
	if !re.Match(out) {
		t.Errorf("berth version = %q, want it to match %s", out, re)
	}
}
