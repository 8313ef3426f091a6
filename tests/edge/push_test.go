package edge_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/tests/harness"
)

// TestBerthPushAndCopy: `berth push` of a 3 × 256 MiB image and `berth
// copy` to another repository through the emulated deployment. The layers
// go to S3 with presigned URLs the API hands out (no layer byte through
// Lambda, nor through CloudFront), the copy mounts instead of moving bytes,
// and every layer pulls back byte-identical from both repositories.
func TestBerthPushAndCopy(t *testing.T) {
	s := start(t)
	const layer = 256 << 20
	img := harness.WriteImage(t, "v1", layer, layer, layer)
	bin := harness.Binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	run := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(cmd.Environ(), "CI=true", "DOCKER_CONFIG="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("berth %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("berth %s:\n%s", args[0], out)
		return string(out)
	}

	mark := s.Mark()
	out := run("push", img.Dir, s.Addr+"/push/app:v1")
	if !strings.Contains(out, img.Digest()) {
		t.Errorf("berth push did not print the pushed digest %s", img.Digest())
	}
	for _, r := range s.RequestsSince(mark) {
		if r.BytesIn > lambdaMaxBody {
			t.Errorf("%s %s carried %d bytes through Lambda", r.Method, r.Path, r.BytesIn)
		}
	}

	mark = s.Mark()
	run("copy", s.Addr+"/push/app:v1", s.Addr+"/copy/app:v1")
	for _, r := range s.RequestsSince(mark) {
		if r.BytesIn > lambdaMaxBody {
			t.Errorf("copy: %s %s carried %d bytes through Lambda", r.Method, r.Path, r.BytesIn)
		}
		if r.Route == "upload" && r.Method == http.MethodPatch {
			t.Errorf("copy within one registry uploaded bytes (%s %s) instead of mounting", r.Method, r.Path)
		}
	}

	// A re-run finds everything in place and uploads nothing.
	mark = s.Mark()
	run("push", img.Dir, s.Addr+"/push/app:v1")
	for _, r := range s.RequestsSince(mark) {
		if r.Route == "upload-start" {
			t.Errorf("re-run started an upload: %s %s", r.Method, r.Path)
		}
	}

	for _, repo := range []string{"push/app", "copy/app"} {
		for _, l := range img.Images[0].Layers {
			if got := pullDigest(t, s, repo, l.Digest); got != l.Digest {
				t.Errorf("%s: layer %s pulled back as %s", repo, l.Digest, got)
			}
		}
	}
}

// pullDigest GETs a blob (following the registry's redirect to S3) and
// returns the sha256 of what came back.
func pullDigest(t *testing.T, s *harness.Server, repo, digest string) string {
	t.Helper()
	resp, err := http.Get(s.URL() + "/v2/" + repo + "/blobs/" + digest)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s blob %s: %s", repo, digest, resp.Status)
	}
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		t.Fatal(err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
