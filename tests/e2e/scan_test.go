package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/scanfixture"
	"github.com/berth-registry/berth/internal/scanfixture/osvfixture"
	"github.com/berth-registry/berth/pkg/inventory"
	"github.com/berth-registry/berth/pkg/sbom"
	"github.com/berth-registry/berth/tests/harness"
)

// TestScan runs `berth serve --scan` with the OSV fixture data, pushes
// the four fixture images with real clients (oras, regctl, skopeo), and
// reads the SBOM and the report back with oras discover, regctl artifact
// list and berth scan (table, JSON, --fail-on and the no-report exit
// code).
func TestScan(t *testing.T) {
	work := t.TempDir()
	imgs, err := scanfixture.All(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(work, "layout")
	if err := scanfixture.WriteLayout(layout, imgs...); err != nil {
		t.Fatal(err)
	}
	data, err := osvfixture.Host()
	if err != nil {
		t.Fatal(err)
	}
	osvDir := filepath.Join(work, "osv")
	if err := data.WriteZip(osvDir); err != nil {
		t.Fatal(err)
	}
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			s := harness.Start(t, harness.Config{Backend: b, Args: []string{"--scan", "--osv-data", osvDir}})
			testScan(t, s, imgs, layout, data)
		})
	}
}

func testScan(t *testing.T, s *harness.Server, imgs []*scanfixture.Image, layout string, data *osvfixture.Data) {
	r := repo(t, "fixtures")
	oras := harness.Client(t, "oras")
	reg := regctl(t, s)
	skopeo, policy := containersTool(t, s, "skopeo")
	push := map[string]func(dst string){
		"debian": func(dst string) { oras.Run("cp", "--to-plain-http", "--from-oci-layout", layout+":debian", dst) },
		"alpine": func(dst string) { reg.Run("image", "copy", "ocidir://"+layout+":alpine", dst) },
		"gobinary": func(dst string) {
			skopeo.Run("copy", "--policy", policy, "--preserve-digests", "--dest-tls-verify=false", "oci:"+layout+":gobinary", "docker://"+dst)
		},
		"whiteout": func(dst string) { oras.Run("cp", "--to-plain-http", "--from-oci-layout", layout+":whiteout", dst) },
	}
	for _, img := range imgs {
		dst := ref(s, r, img.Name)
		push[img.Name](dst)

		// berth scan --wait: the report appears once the background scan
		// is done.
		var out struct {
			Images []struct {
				Digest   string              `json:"digest"`
				Report   string              `json:"report"`
				Findings []inventory.Finding `json:"findings"`
			} `json:"images"`
		}
		raw, code := berthScan(t, "--wait", "3m", "--format", "json", dst)
		if code != 0 {
			t.Fatalf("berth scan --format json %s: exit %d\n%s", dst, code, raw)
		}
		if err := json.Unmarshal([]byte(raw), &out); err != nil || len(out.Images) != 1 {
			t.Fatalf("berth scan --format json: %v\n%s", err, raw)
		}
		if got, want := osvfixture.Project(out.Images[0].Findings), data.Expected[img.Name]; !reflect.DeepEqual(got, want) {
			t.Fatalf("%s findings:\n got %+v\nwant %+v", img.Name, got, want)
		}
		if out.Images[0].Digest != string(img.ManifestDescriptor.Digest) {
			t.Fatalf("berth scan reported %s, pushed %s", out.Images[0].Digest, img.ManifestDescriptor.Digest)
		}

		// The referrers, as oras and regctl see them.
		disc := oras.Run("discover", "--plain-http", "--distribution-spec", "v1.1-referrers-api", "--format", "json", dst)
		for _, at := range []string{sbom.ArtifactTypeSBOM, sbom.ArtifactTypeReport} {
			if !strings.Contains(disc, `"`+at+`"`) {
				t.Fatalf("oras discover %s shows no %s:\n%s", dst, at, disc)
			}
		}
		if !strings.Contains(disc, out.Images[0].Report) {
			t.Fatalf("oras discover does not list the report %s berth scan read:\n%s", out.Images[0].Report, disc)
		}
		list := reg.Run("artifact", "list", dst, "--format", "{{range .Descriptors}}{{.ArtifactType}} {{.Digest}}\n{{end}}")
		if strings.Count(list, sbom.ArtifactTypeSBOM+" ") != 1 || strings.Count(list, sbom.ArtifactTypeReport+" ") != 1 {
			t.Fatalf("regctl artifact list %s: want one SBOM and one report:\n%s", dst, list)
		}
		checkReferrers(t, s, r, string(img.ManifestDescriptor.Digest), sbom.ArtifactTypeReport, out.Images[0].Report)

		// The table names every finding.
		table, code := berthScan(t, dst)
		if code != 0 {
			t.Fatalf("berth scan %s: exit %d\n%s", dst, code, table)
		}
		for _, f := range data.Expected[img.Name] {
			if !strings.Contains(table, f.ID) || !strings.Contains(table, f.Package) {
				t.Fatalf("berth scan table lacks %s %s:\n%s", f.ID, f.Package, table)
			}
		}
	}

	// --fail-on: alpine's finding is CRITICAL, whiteout's MEDIUM.
	if out, code := berthScan(t, "--fail-on", "high", ref(s, r, "alpine")); code != 3 {
		t.Fatalf("berth scan --fail-on high alpine: exit %d, want 3\n%s", code, out)
	}
	if out, code := berthScan(t, "--fail-on", "high", ref(s, r, "whiteout")); code != 0 {
		t.Fatalf("berth scan --fail-on high whiteout: exit %d, want 0\n%s", code, out)
	}
	// Something that is no image has no report: exit 4 at once.
	writeFile(t, oras.Dir, "notes.txt", []byte("not an image\n"))
	oras.Run("push", "--plain-http", "--artifact-type", artifactType, ref(s, r, "notes"), "notes.txt:text/plain")
	if out, code := berthScan(t, ref(s, r, "notes")); code != 4 {
		t.Fatalf("berth scan of an artifact: exit %d, want 4\n%s", code, out)
	}
}

// berthScan runs `berth scan` against the plain-HTTP server and returns
// its output (stdout, then stderr) and exit code.
func berthScan(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.Binary(t), append([]string{"scan", "--plain-http"}, args...)...)
	cmd.Env = append(cmd.Environ(), "HOME="+t.TempDir(), "DOCKER_CONFIG="+t.TempDir())
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), 0
	case errors.As(err, &ee):
		return stdout.String() + stderr.String(), ee.ExitCode()
	}
	t.Fatalf("berth scan: %v", err)
	return "", -1
}
