// Package e2e drives real registry clients (crane, oras, regctl, skopeo,
// podman, cosign) against `berth serve` on every backend: the embedded
// store, the AWS drivers on the emulators, and the AWS drivers behind the
// emulated API Gateway and Lambda.
//
// Backends: all three by default (the AWS ones need the emulators of
// tests/emulators.sh, which tests/run.sh starts; outside CI they are left
// out when not running); BERTH_E2E_BACKENDS=embedded,aws selects.
// BERTH_E2E_REGISTRY=HOST:PORT runs the client tests against a registry
// that is already running instead (a reference registry, a deployment).
// Outside CI, BERTH_E2E_CLIENTS=crane,oras narrows the clients.
package e2e

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/tests/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// backends returns the backends this run covers: BERTH_E2E_BACKENDS, or
// all three. Outside CI, without running emulators, only the embedded one.
func backends(t *testing.T) []harness.Backend {
	all := []harness.Backend{harness.Embedded, harness.AWS, harness.Lambda}
	sel := os.Getenv("BERTH_E2E_BACKENDS")
	if sel == "" {
		if !harness.CI() && !harness.EmulatorsRunning() {
			t.Logf("emulators not running (tests/emulators.sh): embedded backend only")
			return all[:1]
		}
		return all
	}
	var out []harness.Backend
	for _, b := range strings.Split(sel, ",") {
		b := harness.Backend(strings.TrimSpace(b))
		if !slices.Contains(all, b) {
			t.Fatalf("BERTH_E2E_BACKENDS: unknown backend %q", b)
		}
		out = append(out, b)
	}
	return out
}

// forEachBackend starts one server per backend (in parallel) and runs fn
// against it.
func forEachBackend(t *testing.T, fn func(t *testing.T, s *harness.Server)) {
	if addr := os.Getenv("BERTH_E2E_REGISTRY"); addr != "" {
		fn(t, harness.Attach(t, addr))
		return
	}
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			t.Parallel()
			fn(t, harness.Start(t, harness.Config{Backend: b}))
		})
	}
}

// TestClients is the client matrix: every client against every backend.
// The subtests of one backend run in order against one server, each in its
// own repositories.
func TestClients(t *testing.T) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s *harness.Server)
		only harness.Backend // run on this backend only
	}{
		{"crane", testCrane, ""},
		{"crane-index", testCraneIndex, ""},
		{"big-layer", testBigLayer, ""},
		{"oras", testOras, ""},
		{"regctl-artifact", testRegctlArtifact, ""},
		{"regctl-chunked", testRegctlChunked, ""},
		{"skopeo", testSkopeo, ""},
		{"podman", testPodman, ""},
		{"cosign", testCosign, ""},
		{"tags", testTags, ""},
		{"deletes", testDeletes, ""},
		{"restart-chunked-upload", testRestart, ""},
		{"lambda-limits", testLambdaLimits, harness.Lambda},
	}
	forEachBackend(t, func(t *testing.T, s *harness.Server) {
		for _, tc := range tests {
			if tc.only != "" && tc.only != s.Backend() {
				continue
			}
			t.Run(tc.name, func(t *testing.T) { tc.fn(t, s) })
		}
	})
}

// repo returns a repository name unique to the test.
func repo(t *testing.T, suffix string) string {
	name := strings.ToLower(t.Name())
	name = strings.NewReplacer("/", "-", "_", "-").Replace(name)
	return "e2e/" + name + "/" + suffix
}

// ref is HOST:PORT/repo:tag (or @digest when tag starts with "sha").
func ref(s *harness.Server, repo, tagOrDigest string) string {
	if strings.HasPrefix(tagOrDigest, "sha256:") || strings.HasPrefix(tagOrDigest, "sha512:") {
		return s.Addr + "/" + repo + "@" + tagOrDigest
	}
	return s.Addr + "/" + repo + ":" + tagOrDigest
}

// do sends one raw request and fails the test on a transport error.
func do(t *testing.T, s *harness.Server, method, path string, body []byte, hdr map[string]string) (status int, header map[string][]string, respBody []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, b, err := s.Do(ctx, method, path, body, hdr)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, b
}

// ociError returns the first error code of an OCI error body, or "".
func ociError(body []byte) string {
	var e struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if json.Unmarshal(body, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	return e.Errors[0].Code
}

// onLambda reports whether requests pass through the emulated Lambda path,
// where one request carries at most about 4.4 MB of blob.
func onLambda(s *harness.Server) bool { return s.Backend() == harness.Lambda }

// headBlob reports the status of HEAD /v2/<repo>/blobs/<digest>.
func headBlob(t *testing.T, s *harness.Server, repo, digest string) int {
	t.Helper()
	st, _, _ := do(t, s, "HEAD", "/v2/"+repo+"/blobs/"+digest, nil, nil)
	return st
}

// headManifest reports the status of HEAD /v2/<repo>/manifests/<ref>.
func headManifest(t *testing.T, s *harness.Server, repo, reference string) int {
	t.Helper()
	st, _, _ := do(t, s, "HEAD", "/v2/"+repo+"/manifests/"+reference, nil, map[string]string{
		"Accept": strings.Join([]string{harness.MediaTypeManifest, harness.MediaTypeIndex,
			"application/vnd.docker.distribution.manifest.v2+json",
			"application/vnd.docker.distribution.manifest.list.v2+json"}, ", "),
	})
	return st
}

// uploadsOf returns the logged upload requests (POST, PATCH, PUT) for repo.
func uploadsOf(reqs []harness.Request, repo string) []harness.Request {
	var out []harness.Request
	for _, r := range reqs {
		if r.Repo == repo && (r.Route == "upload-start" || r.Route == "upload") {
			out = append(out, r)
		}
	}
	return out
}
