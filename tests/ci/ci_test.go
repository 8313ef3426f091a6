// Package ci checks the GitHub Actions workflow of docs/ci.md: its shape,
// that docs/ci.md carries it verbatim, and, against a local `berth serve`,
// every step and documented command that needs neither AWS, Docker nor
// the GitHub runner, with the real binaries from `make dist`.
package ci

import (
	"archive/tar"
	"context"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/tests/harness"
	"gopkg.in/yaml.v3"
)

func TestMain(m *testing.M) { harness.Main(m) }

type step struct {
	ID   string            `yaml:"id"`
	Name string            `yaml:"name"`
	Uses string            `yaml:"uses"`
	Run  string            `yaml:"run"`
	If   string            `yaml:"if"`
	With map[string]string `yaml:"with"`
}

type workflow struct {
	Permissions map[string]string `yaml:"permissions"`
	Env         map[string]string `yaml:"env"`
	Jobs        map[string]struct {
		RunsOn string `yaml:"runs-on"`
		Steps  []step `yaml:"steps"`
	} `yaml:"jobs"`
}

// How each `run:` step is tested. A step that is not listed fails
// TestWorkflowShape: every new command needs a decision.
var stepModes = map[string]string{
	"install":   "run",
	"login":     "needs AWS",
	"push-edge": "needs AWS",
	"build-oci": "needs Docker", // replaced by an OCI archive the test writes
	"push":      "run",
}

func workflowPath(tb testing.TB) string {
	return filepath.Join(harness.Root(tb), "docs", "examples", "github-actions.yml")
}

func readWorkflow(tb testing.TB) (workflow, []step) {
	tb.Helper()
	b, err := os.ReadFile(workflowPath(tb))
	if err != nil {
		tb.Fatal(err)
	}
	var wf workflow
	if err := yaml.Unmarshal(b, &wf); err != nil {
		tb.Fatalf("docs/examples/github-actions.yml: %v", err)
	}
	job, ok := wf.Jobs["image"]
	if !ok {
		tb.Fatalf("no job image in %v", wf.Jobs)
	}
	return wf, job.Steps
}

func TestWorkflowShape(t *testing.T) {
	wf, steps := readWorkflow(t)
	if wf.Permissions["id-token"] != "write" {
		t.Errorf("permissions = %v, want id-token: write (the AWS role and Berth's OIDC trust need the job's token)", wf.Permissions)
	}
	for _, k := range []string{"REGISTRY", "IMAGE", "BERTH_VERSION", "BERTH_RELEASES", "AWS_ROLE", "AWS_REGION"} {
		if wf.Env[k] == "" {
			t.Errorf("env %s is not set", k)
		}
	}
	pinned := regexp.MustCompile(`^[\w-]+/[\w-]+@v\d+$`)
	var ids []string
	for i, s := range steps {
		switch {
		case s.Uses != "" && s.Run != "":
			t.Errorf("step %d has both uses and run", i)
		case s.Uses != "":
			if !pinned.MatchString(s.Uses) {
				t.Errorf("step %d uses %q, want owner/action@vN", i, s.Uses)
			}
		case s.Run != "":
			if _, ok := stepModes[s.ID]; !ok {
				t.Errorf("step %d (%q) runs commands but has no id tests/ci knows; add it to stepModes", i, s.Name)
			}
			ids = append(ids, s.ID)
		default:
			t.Errorf("step %d has neither uses nor run", i)
		}
	}
	for id := range stepModes {
		if !slices.Contains(ids, id) {
			t.Errorf("stepModes names %q, which the workflow no longer has", id)
		}
	}
	var aws *step
	for i := range steps {
		if strings.HasPrefix(steps[i].Uses, "aws-actions/configure-aws-credentials@") {
			aws = &steps[i]
		}
	}
	if aws == nil || aws.With["role-to-assume"] == "" || aws.With["aws-region"] == "" {
		t.Errorf("configure-aws-credentials step with role-to-assume and aws-region: %+v", aws)
	}
}

// TestDocsCarryWorkflow: docs/ci.md shows the workflow file verbatim, and
// each of its shell blocks says where it runs.
func TestDocsCarryWorkflow(t *testing.T) {
	doc := readDoc(t)
	wf, err := os.ReadFile(workflowPath(t))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(doc, "```yaml\n"+string(wf)+"```\n") {
		t.Error("docs/ci.md does not contain docs/examples/github-actions.yml verbatim in a yaml block")
	}
	blocks := shellBlocks(doc)
	if len(blocks) < 4 {
		t.Fatalf("docs/ci.md has %d sh blocks, want at least 4", len(blocks))
	}
	for _, b := range blocks {
		first, _, _ := strings.Cut(b, "\n")
		if !strings.HasPrefix(first, "# needs ") && !strings.HasPrefix(first, "# run by tests/ci") {
			t.Errorf("sh block does not start with `# needs …` or `# run by tests/ci`:\n%s", b)
		}
	}
}

// TestDeployDocMarked: every shell block of docs/deploy.md says whether it
// needs AWS or which test runs it, as docs/ci.md's blocks do.
func TestDeployDocMarked(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(harness.Root(t), "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := shellBlocks(string(b))
	if len(blocks) < 4 {
		t.Fatalf("docs/deploy.md has %d sh blocks, want at least 4", len(blocks))
	}
	for _, b := range blocks {
		first, _, _ := strings.Cut(b, "\n")
		if !strings.HasPrefix(first, "# needs ") && !strings.HasPrefix(first, "# run by tests/ci") {
			t.Errorf("docs/deploy.md sh block does not start with `# needs …` or `# run by tests/ci`:\n%s", b)
		}
	}
}

// TestDeployOfflineSteps runs the steps docs/deploy.md gives before any AWS
// call: the Lambda bundles and an offline synth of the CDK app with the
// pinned CLI (cdk-nag included), and checks the template came out.
func TestDeployOfflineSteps(t *testing.T) {
	root := harness.Root(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "build", "synth")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build synth: %v\n%s", err, out)
	}
	matches, err := filepath.Glob(filepath.Join(root, "infra", "cdk.out", "*.template.json"))
	if err != nil || len(matches) == 0 {
		t.Fatalf("make synth wrote no template to infra/cdk.out (%v)", err)
	}
	tpl, err := os.ReadFile(matches[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"AWS::CloudFront::Distribution", "AWS::CloudFront::Function", "AWS::Lambda::Function", "AWS::DynamoDB::Table"} {
		if !strings.Contains(string(tpl), want) {
			t.Errorf("synthesized template %s has no %s", filepath.Base(matches[0]), want)
		}
	}
}

func readDoc(tb testing.TB) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(harness.Root(tb), "docs", "ci.md"))
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func shellBlocks(doc string) []string {
	var out []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(doc, -1) {
		out = append(out, m[1])
	}
	return out
}

// runner runs workflow commands as GitHub's bash shell does (bash -e -o
// pipefail), in one workspace, with the workflow's env and overrides.
type runner struct {
	t         *testing.T
	workspace string
	env       []string
}

func (r *runner) run(name, script string, extra ...string) string {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script)
	cmd.Dir = r.workspace
	cmd.Env = append(append(os.Environ(), r.env...), extra...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("step %s failed: %v\n%s\n--- script:\n%s", name, err, out, script)
	}
	return string(out)
}

// TestWorkflowRuns runs the install and push steps against `berth serve`:
// the release archives come from `make dist` for this machine's platform,
// served from a file:// URL in the layout the workflow expects.
func TestWorkflowRuns(t *testing.T) {
	wf, steps := readWorkflow(t)
	root := harness.Root(t)
	tmp := t.TempDir()
	const version = "v0.0.0-citest"
	releases := filepath.Join(tmp, "releases")
	makeDist := func(dir string) string {
		dist := exec.Command("make", "dist", "VERSION="+version, "DIST_PLATFORMS=linux/"+runtime.GOARCH, "DIST_DIR="+dir)
		dist.Dir = root
		if out, err := dist.CombinedOutput(); err != nil {
			t.Fatalf("make dist: %v\n%s", err, out)
		}
		sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
		if err != nil {
			t.Fatal(err)
		}
		return string(sums)
	}
	// Reproducible: a second build elsewhere gives the same bytes.
	first := makeDist(filepath.Join(releases, version))
	if again := makeDist(filepath.Join(tmp, "again")); again != first || !strings.Contains(first, "berth_"+version+"_linux_"+runtime.GOARCH+".tar.gz") {
		t.Errorf("make dist twice: SHA256SUMS\n%s then\n%s", first, again)
	}

	srv := harness.Start(t, harness.Config{})
	home := filepath.Join(tmp, "home")
	workspace := filepath.Join(tmp, "workspace")
	for _, d := range []string{home, workspace} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	githubPath := filepath.Join(tmp, "github_path")
	env := []string{"HOME=" + home, "GITHUB_PATH=" + githubPath, "GITHUB_SHA=0123456789abcdef0123456789abcdef01234567"}
	for k, v := range wf.Env {
		env = append(env, k+"="+v)
	}
	// The overrides: this registry, this release, this test's archive URL.
	env = append(env, "REGISTRY="+srv.Addr, "BERTH_VERSION="+version, "BERTH_RELEASES=file://"+releases)
	r := &runner{t: t, workspace: workspace, env: env}
	byID := map[string]step{}
	for _, s := range steps {
		byID[s.ID] = s
	}

	r.run("install", byID["install"].Run)
	bin := filepath.Join(home, ".local", "bin")
	if p, err := os.ReadFile(githubPath); err != nil || strings.TrimSpace(string(p)) != bin {
		t.Errorf("GITHUB_PATH = %q (%v), want %s", p, err, bin)
	}
	if v := r.run("berth version", filepath.Join(bin, "berth")+" version"); !strings.HasPrefix(v, "berth "+version) {
		t.Errorf("installed berth version = %q, want %s", v, version)
	}
	if v := r.run("helper version", filepath.Join(bin, "docker-credential-berth")+" version"); !strings.Contains(v, "docker-credential-berth") {
		t.Errorf("installed helper version = %q", v)
	}
	if left, _ := filepath.Glob(filepath.Join(workspace, "*")); len(left) != 0 {
		t.Errorf("install left %v in the workspace", left)
	}

	// build-oci needs Docker: write the OCI archive buildx would, a tar of
	// an OCI layout with one image, in its place.
	layout := harness.WriteImage(t, "latest", 3<<20, 64<<10)
	writeTar(t, layout.Dir, filepath.Join(workspace, "image.oci.tar"))

	pathEnv := "PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")
	r.run("push", byID["push"].Run, pathEnv)

	ref := "/v2/" + wf.Env["IMAGE"] + "/manifests/0123456789abcdef0123456789abcdef01234567"
	req, err := http.NewRequest(http.MethodHead, srv.URL()+ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != layout.Digest() {
		t.Errorf("HEAD %s = %d, digest %q; want 200 and %s", ref, resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), layout.Digest())
	}
}

// TestDocsGoInstall runs the go install alternative of docs/ci.md from
// this checkout: the module proxy cannot serve an unreleased version, so
// the module path and version become ./cmd/... and nothing else changes.
func TestDocsGoInstall(t *testing.T) {
	var script string
	for _, b := range shellBlocks(readDoc(t)) {
		if strings.HasPrefix(b, "# run by tests/ci") && strings.Contains(b, "go install") {
			script = b
		}
	}
	const mod = "github.com/berth-registry/berth/cmd/"
	if strings.Count(script, mod) != 2 || strings.Count(script, "@${BERTH_VERSION}") != 2 {
		t.Fatalf("go install block changed; the test rewrites %s<cmd>@${BERTH_VERSION}:\n%s", mod, script)
	}
	local := strings.ReplaceAll(strings.ReplaceAll(script, "@${BERTH_VERSION}", ""), mod, "./cmd/")
	tmp := t.TempDir()
	gopath := filepath.Join(tmp, "gopath")
	githubPath := filepath.Join(tmp, "github_path")
	// GOPATH is the job's; the module cache stays the machine's so
	// nothing is downloaded again.
	modcache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{t: t, workspace: harness.Root(t), env: []string{
		"GOPATH=" + gopath, "GOMODCACHE=" + strings.TrimSpace(string(modcache)), "GOFLAGS=-buildvcs=false",
		"GITHUB_PATH=" + githubPath, "BERTH_VERSION=v0.0.0-citest", "CGO_ENABLED=0",
	}}
	r.run("go install", local)
	bin := filepath.Join(gopath, "bin")
	if p, err := os.ReadFile(githubPath); err != nil || strings.TrimSpace(string(p)) != bin {
		t.Errorf("GITHUB_PATH = %q (%v), want %s", p, err, bin)
	}
	for _, name := range []string{"berth", "docker-credential-berth"} {
		if fi, err := os.Stat(filepath.Join(bin, name)); err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("%s not installed in %s: %v", name, bin, err)
		}
	}
	if v := r.run("berth version", filepath.Join(bin, "berth")+" version"); !strings.HasPrefix(v, "berth ") {
		t.Errorf("berth version = %q", v)
	}
}

// writeTar writes dir's files into a tar at dst, paths relative to dir,
// as `docker buildx build --output type=oci,dest=…` lays them out.
func writeTar(tb testing.TB, dir, dst string) {
	tb.Helper()
	f, err := os.Create(dst)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, Size: fi.Size(), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		tb.Fatal(err)
	}
}
