package e2e

import (
	"strings"
	"testing"

	"github.com/berth-registry/berth/tests/harness"
)

// regctl returns regctl configured for plain HTTP to the server, plus the
// given `registry set` flags.
func regctl(t *testing.T, s *harness.Server, flags ...string) *harness.Tool {
	c := harness.Client(t, "regctl")
	c.Run(append([]string{"registry", "set", s.Addr, "--tls", "disabled"}, flags...)...)
	return c
}

// testRegctlArtifact attaches an SBOM to an image with `artifact put
// --subject` and lists it.
func testRegctlArtifact(t *testing.T, s *harness.Server) {
	c := regctl(t, s)
	r := repo(t, "img")
	l := harness.WriteImage(t, "v1", 256<<10)
	c.Run("image", "copy", l.Regctl(), ref(s, r, "v1"))
	if got := strings.TrimSpace(c.Run("image", "digest", ref(s, r, "v1"))); got != l.Digest() {
		t.Fatalf("regctl image digest = %s, want %s", got, l.Digest())
	}
	sbom := []byte(`{"spdxVersion":"SPDX-2.3","name":"e2e"}`)
	writeFile(t, c.Dir, "sbom.json", sbom)
	c.Run("artifact", "put", "--subject", ref(s, r, "v1"), "--artifact-type", sbomType,
		"--file", "sbom.json", "--file-media-type", sbomType, "--annotation", "org.example.e2e=yes")

	list := c.Run("artifact", "list", ref(s, r, "v1"), "--format", "{{range .Descriptors}}{{.Digest}} {{.ArtifactType}}\n{{end}}")
	var digest string
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		if d, at, ok := strings.Cut(line, " "); ok && at == sbomType {
			digest = d
		}
	}
	if digest == "" {
		t.Fatalf("regctl artifact list shows no %s:\n%s", sbomType, list)
	}
	filtered := c.Run("artifact", "list", ref(s, r, "v1"), "--filter-artifact-type", sigType, "--format", "{{len .Descriptors}}")
	if strings.TrimSpace(filtered) != "0" {
		t.Fatalf("artifact list filtered by %s: %s", sigType, filtered)
	}
	checkReferrers(t, s, r, l.Digest(), sbomType, digest)
	if got := c.Run("artifact", "get", "--subject", ref(s, r, "v1"), "--filter-artifact-type", sbomType); got != string(sbom) {
		t.Fatalf("regctl artifact get = %q", got)
	}
}

// testRegctlChunked copies an image with a 64 MiB layer with regctl in
// 4 MiB chunks (PATCH with Content-Range), the way big layers go through
// Lambda, and pulls it back.
func testRegctlChunked(t *testing.T, s *harness.Server) {
	c := regctl(t, s, "--blob-max", "4194304", "--blob-chunk", "4194304")
	r := repo(t, "big")
	l := harness.WriteImage(t, "big", 64<<20)
	layer := l.Images[0].Layers[0]
	mark := s.Mark()
	c.Run("image", "copy", l.Regctl(), ref(s, r, "big"))
	if got := strings.TrimSpace(c.Run("image", "digest", ref(s, r, "big"))); got != l.Digest() {
		t.Fatalf("regctl image digest = %s, want %s", got, l.Digest())
	}
	if !s.Attached() {
		patches := 0
		for _, req := range uploadsOf(s.RequestsSince(mark), r) {
			if req.Method == "PATCH" {
				patches++
				if req.Status != 202 {
					t.Fatalf("chunk PATCH answered %d", req.Status)
				}
			}
		}
		if want := int(layer.Size / (5 << 20)); patches < want {
			t.Fatalf("%d PATCH requests for a %d byte layer: not chunked", patches, layer.Size)
		}
	}
	if got := harness.Digest([]byte(c.Run("blob", "get", s.Addr+"/"+r, layer.Digest))); got != layer.Digest {
		t.Fatalf("64 MiB layer came back as %s", got)
	}
	if s.Backend() == harness.AWS || s.Backend() == harness.Lambda {
		// Pulls are redirects to S3: no blob bytes through the registry.
		st, hdr, _ := do(t, s, "GET", "/v2/"+r+"/blobs/"+layer.Digest, nil, nil)
		if st != 307 || len(hdr["Location"]) == 0 {
			t.Fatalf("blob GET on %s: %d, want 307 with Location", s.Backend(), st)
		}
	}
}
