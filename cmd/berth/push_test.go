package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/tests/harness"
)

// testRegistry serves the embedded backend over HTTP on 127.0.0.1, which
// berth push talks plain HTTP to without flags, and keeps the docker
// config of the test machine out of the way.
func testRegistry(t *testing.T) string {
	t.Helper()
	t.Setenv("DOCKER_CONFIG", filepath.Join(t.TempDir(), "docker"))
	t.Setenv("CI", "true")
	b, err := openEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.close() })
	srv := httptest.NewServer(registry.New(registry.Config{}, b.items, b.blobs))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func runCmd(t *testing.T, args ...string) (string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run(context.Background(), args, &out, &errOut); code != 0 {
		t.Fatalf("berth %s: exit %d\n%s", strings.Join(args, " "), code, errOut.String())
	}
	return out.String(), errOut.String()
}

func TestPushAndCopyCommands(t *testing.T) {
	host := testRegistry(t)
	l := harness.WriteIndex(t, "v2", 2<<20, "linux/amd64", "linux/arm64")
	ref := host + "/cli/app:v2"

	out, log := runCmd(t, "push", "--jobs", "2", l.Dir, ref)
	if out != ref+"@"+l.Digest()+"\n" {
		t.Fatalf("stdout %q", out)
	}
	// CI=true: one line per blob and manifest, then the summary.
	if n := strings.Count(log, "\nblob ") + strings.Count(log[:5], "blob "); n != 4 || !strings.Contains(log, "manifest ") ||
		!strings.Contains(log, "uploaded 4 blobs") || !strings.Contains(log, "MB/s") {
		t.Fatalf("progress log:\n%s", log)
	}
	_, log = runCmd(t, "push", l.Dir, ref)
	if !strings.Contains(log, "uploaded 0 blobs (0 B), skipped 4") {
		t.Fatalf("second push did not skip everything:\n%s", log)
	}

	dst := host + "/cli/arm:copied"
	out, _ = runCmd(t, "copy", "-q", "--platform", "linux/arm64", ref, dst)
	want := dst + "@" + l.Images[1].Manifest.Digest + "\n"
	if out != want {
		t.Fatalf("copy stdout %q, want %q", out, want)
	}
	r, err := name.ParseReference(dst)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := remote.Head(r); err != nil || d.Digest.String() != l.Images[1].Manifest.Digest {
		t.Fatalf("copied image: %v %v", d, err)
	}
}

func TestPushCommandUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"push", "only-one-arg"}, &out, &errOut); code != 2 {
		t.Fatalf("exit %d, want 2 (usage)", code)
	}
	if !strings.Contains(errOut.String(), "usage: berth push") {
		t.Fatalf("stderr %q", errOut.String())
	}
	errOut.Reset()
	if code := run(context.Background(), []string{"push", filepath.Join(t.TempDir(), "missing"), "127.0.0.1:1/a:b"}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "no such file") {
		t.Fatalf("missing source: exit %d, %q", code, errOut.String())
	}
}
