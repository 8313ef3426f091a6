package oci

import (
	"errors"
	"strings"
	"testing"
)

const (
	d256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	d512 = "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
)

func TestParseDigest(t *testing.T) {
	good := []string{d256, d512}
	for _, s := range good {
		if _, err := ParseDigest(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	bad := map[string]bool{ // value: whether it is "unsupported" rather than malformed
		"":                                  false,
		"sha256:abc":                        false,
		"sha256:" + strings.Repeat("E", 64): false, // uppercase hex
		"sha384:" + strings.Repeat("a", 96): true,
		"md5:" + strings.Repeat("a", 32):    true,
		"sha256" + strings.Repeat("a", 64):  false,
		"sha256:../../etc/passwd":           false,
	}
	for s, unsupported := range bad {
		_, err := ParseDigest(s)
		if err == nil {
			t.Errorf("%q accepted", s)
			continue
		}
		if unsupported != errors.Is(err, ErrDigestUnsupported) {
			t.Errorf("%q: unsupported=%v, err %v", s, unsupported, err)
		}
	}
}

func TestNames(t *testing.T) {
	for _, n := range []string{"a", "library/ubuntu", "a.b/c_d/e__f/g-h", "a--b", strings.Repeat("a", 255)} {
		if !ValidName(n) {
			t.Errorf("%q rejected", n)
		}
	}
	for _, n := range []string{"", "A", "a/", "/a", "a//b", "a/../b", "..", "a_", "a___b", "a..b", "-a", strings.Repeat("a", 256), "a:b", "a b"} {
		if ValidName(n) {
			t.Errorf("%q accepted", n)
		}
	}
	for _, tag := range []string{"latest", "v1.0.0", "_x", "A-b.c_D", strings.Repeat("a", 128)} {
		if !ValidTag(tag) {
			t.Errorf("tag %q rejected", tag)
		}
	}
	for _, tag := range []string{"", ".x", "-x", "a/b", "a:b", strings.Repeat("a", 129)} {
		if ValidTag(tag) {
			t.Errorf("tag %q accepted", tag)
		}
	}
}

func TestParseReference(t *testing.T) {
	if r, err := ParseReference("latest"); err != nil || r.Tag != "latest" || r.IsDigest() {
		t.Fatalf("tag: %+v %v", r, err)
	}
	if r, err := ParseReference(d512); err != nil || r.Digest != Digest(d512) || r.String() != d512 {
		t.Fatalf("digest: %+v %v", r, err)
	}
	if _, err := ParseReference("sha256:zz"); err == nil {
		t.Fatal("bad digest accepted")
	}
	if _, err := ParseReference("bad tag"); err == nil {
		t.Fatal("bad tag accepted")
	}
}

func desc(mt string) string {
	return `{"mediaType":"` + mt + `","digest":"` + d256 + `","size":0}`
}

func TestParseManifest(t *testing.T) {
	img := `{"schemaVersion":2,"mediaType":"` + MediaTypeImageManifest + `","config":` + desc(MediaTypeImageConfig) +
		`,"layers":[` + desc("application/vnd.oci.image.layer.v1.tar+gzip") + `,{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip","digest":"` + d512 + `","size":5,"urls":["https://example.com/l"]}]}`
	m, err := ParseManifest(MediaTypeImageManifest, []byte(img))
	if err != nil {
		t.Fatal(err)
	}
	if m.ArtifactType != MediaTypeImageConfig || len(m.Layers) != 2 || len(m.Blobs()) != 2 {
		t.Fatalf("unexpected %+v (blobs %d)", m, len(m.Blobs()))
	}
	// No Content-Type: the body's mediaType decides.
	if _, err := ParseManifest("", []byte(img)); err != nil {
		t.Fatal(err)
	}
	idx := `{"schemaVersion":2,"mediaType":"` + MediaTypeImageIndex + `","manifests":[` + desc(MediaTypeImageManifest) + `],"subject":` + desc(MediaTypeImageManifest) + `}`
	m, err = ParseManifest(MediaTypeImageIndex, []byte(idx))
	if err != nil || !m.IsIndex() || m.Subject == nil || len(m.Manifests) != 1 {
		t.Fatalf("index: %+v %v", m, err)
	}
	artifact := `{"schemaVersion":2,"mediaType":"` + MediaTypeImageManifest + `","artifactType":"application/x.sbom","config":` + desc(MediaTypeEmptyJSON) + `,"layers":[]}`
	if m, err = ParseManifest(MediaTypeImageManifest, []byte(artifact)); err != nil || m.ArtifactType != "application/x.sbom" {
		t.Fatalf("artifact: %+v %v", m, err)
	}
	docker := `{"schemaVersion":2,"mediaType":"` + MediaTypeDockerManifest + `","config":` + desc("application/vnd.docker.container.image.v1+json") + `,"layers":[]}`
	if _, err = ParseManifest(MediaTypeDockerManifest, []byte(docker)); err != nil {
		t.Fatal(err)
	}
	bad := map[string][2]string{
		"not json":          {MediaTypeImageManifest, `{`},
		"array":             {MediaTypeImageManifest, `[]`},
		"type mismatch":     {MediaTypeImageIndex, img},
		"unknown type":      {"application/json", `{"schemaVersion":2,"mediaType":"application/json"}`},
		"schema 1":          {MediaTypeImageManifest, strings.Replace(img, `"schemaVersion":2`, `"schemaVersion":1`, 1)},
		"no config":         {MediaTypeImageManifest, `{"schemaVersion":2,"layers":[]}`},
		"bad digest":        {MediaTypeImageManifest, strings.Replace(img, d256, "sha256:123", 1)},
		"negative size":     {MediaTypeImageManifest, strings.Replace(img, `"size":0`, `"size":-1`, 1)},
		"index with layers": {MediaTypeImageIndex, `{"schemaVersion":2,"mediaType":"` + MediaTypeImageIndex + `","manifests":[],"layers":[]}`},
		"bad data":          {MediaTypeImageManifest, strings.Replace(img, `"size":0}`, `"size":0,"data":"YQ=="}`, 1)},
		"bad content type":  {"a/b; =", img},
	}
	for name, c := range bad {
		if _, err := ParseManifest(c[0], []byte(c[1])); !errors.Is(err, ErrManifestInvalid) {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add(MediaTypeImageManifest, []byte(`{"schemaVersion":2,"config":`+desc(MediaTypeImageConfig)+`,"layers":[]}`))
	f.Add(MediaTypeImageIndex, []byte(`{"schemaVersion":2,"manifests":[`+desc(MediaTypeImageManifest)+`]}`))
	f.Add("", []byte(`{"schemaVersion":2,"subject":{},"manifests":null}`))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		m, err := ParseManifest(ct, body)
		if err != nil {
			if !errors.Is(err, ErrManifestInvalid) {
				t.Fatalf("error not typed: %v", err)
			}
			return
		}
		if !IsManifestMediaType(m.MediaType) {
			t.Fatalf("accepted media type %q", m.MediaType)
		}
		for _, d := range append(m.Blobs(), m.Manifests...) {
			if _, err := ParseDigest(string(d.Digest)); err != nil || d.Size < 0 {
				t.Fatalf("accepted bad descriptor %+v", d)
			}
		}
	})
}

func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"latest", d256, d512, "sha256:", "a:b", "..", "v1.2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReference(s)
		if err != nil {
			return
		}
		if r.IsDigest() == (r.Tag != "") {
			t.Fatalf("reference %+v is both or neither", r)
		}
		if r.Tag != "" && !ValidTag(r.Tag) {
			t.Fatalf("invalid tag accepted %q", r.Tag)
		}
		if strings.ContainsAny(r.String(), "/\\") {
			t.Fatalf("path separator in reference %q", r.String())
		}
	})
}
