package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// DefaultTimeout bounds one client command.
const DefaultTimeout = 4 * time.Minute

// ToolDirs are the directories searched for client binaries, in order:
// $BERTH_TOOLS_BIN (set by tests/run.sh from install.sh's last line), the
// install.sh default cache, then $PATH (apt's skopeo, podman, buildah).
func ToolDirs() []string {
	var dirs []string
	if d := os.Getenv("BERTH_TOOLS_BIN"); d != "" {
		dirs = append(dirs, d)
	}
	if d := os.Getenv("BERTH_TOOLS_DIR"); d != "" {
		dirs = append(dirs, filepath.Join(d, "bin"))
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		if home, err := os.UserHomeDir(); err == nil {
			cache = filepath.Join(home, ".cache")
		}
	}
	if cache != "" {
		dirs = append(dirs, filepath.Join(cache, "berth-tools", "bin"))
	}
	return dirs
}

// LookTool finds a client binary by name in ToolDirs, then $PATH.
func LookTool(name string) (string, error) {
	for _, d := range ToolDirs() {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found in %s or $PATH (run tests/tools/install.sh)", name, strings.Join(ToolDirs(), ", "))
	}
	return p, nil
}

// Selected reports whether client name is part of this run. Outside CI,
// BERTH_E2E_CLIENTS (comma-separated, e.g. "crane,oras") selects a subset;
// in CI every client runs.
func Selected(name string) bool {
	sel := os.Getenv("BERTH_E2E_CLIENTS")
	if CI() || sel == "" {
		return true
	}
	return slices.Contains(strings.Split(sel, ","), name)
}

// Tool is a client binary with the environment it runs in.
type Tool struct {
	tb   testing.TB
	Name string
	Path string
	// Env is added to the process environment of every run.
	Env []string
	// Dir is the working directory (default: a temp dir of the test).
	Dir string
	// Timeout bounds each run (default DefaultTimeout).
	Timeout time.Duration
}

// Client returns the named client. A client missing from the machine fails
// the test (CI must never skip a client); outside CI a client left out of
// BERTH_E2E_CLIENTS skips it.
func Client(tb testing.TB, name string) *Tool {
	tb.Helper()
	if !Selected(name) {
		tb.Skipf("%s not in BERTH_E2E_CLIENTS=%s", name, os.Getenv("BERTH_E2E_CLIENTS"))
	}
	p, err := LookTool(name)
	if err != nil {
		tb.Fatal(err)
	}
	return &Tool{tb: tb, Name: name, Path: p, Dir: tb.TempDir(), Timeout: DefaultTimeout,
		Env: []string{"HOME=" + tb.TempDir()}}
}

// With returns a copy of the tool with more environment.
func (c *Tool) With(env ...string) *Tool {
	cp := *c
	cp.Env = append(slices.Clone(c.Env), env...)
	return &cp
}

// Result is the outcome of one client run.
type Result struct {
	Stdout, Stderr string
	Err            error
}

// Output is stdout and stderr together, for messages.
func (r Result) Output() string {
	return strings.TrimSpace(r.Stdout + "\n" + r.Stderr)
}

// Exec runs the client with args and returns what happened.
func (c *Tool) Exec(args ...string) Result {
	return c.ExecInput(nil, args...)
}

// ExecInput runs the client with stdin.
func (c *Tool) ExecInput(stdin []byte, args ...string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Path, args...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.WaitDelay = 5 * time.Second
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("timed out after %s: %w", c.Timeout, err)
	}
	c.tb.Logf("%s %s (%s)", c.Name, strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	return Result{Stdout: stdout.String(), Stderr: stderr.String(), Err: err}
}

// Run runs the client and fails the test if it does not succeed; it
// returns stdout.
func (c *Tool) Run(args ...string) string {
	c.tb.Helper()
	r := c.Exec(args...)
	if r.Err != nil {
		c.tb.Fatalf("%s %s: %v\n%s", c.Name, strings.Join(args, " "), r.Err, r.Output())
	}
	return r.Stdout
}

// RunInput is Run with stdin.
func (c *Tool) RunInput(stdin []byte, args ...string) string {
	c.tb.Helper()
	r := c.ExecInput(stdin, args...)
	if r.Err != nil {
		c.tb.Fatalf("%s %s: %v\n%s", c.Name, strings.Join(args, " "), r.Err, r.Output())
	}
	return r.Stdout
}

// Version returns the client's version line, for reports.
func (c *Tool) Version() string {
	args := map[string][]string{
		"crane":  {"version"},
		"regctl": {"version", "--format", "{{.VCSTag}}"},
		"oras":   {"version"},
		"cosign": {"version"},
	}[c.Name]
	if args == nil {
		args = []string{"--version"}
	}
	r := c.Exec(args...)
	out := r.Output()
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "GitVersion") || strings.HasPrefix(line, "Version") {
			return strings.Join(strings.Fields(line), " ")
		}
	}
	first, _, _ := strings.Cut(out, "\n")
	return strings.TrimSpace(first)
}
