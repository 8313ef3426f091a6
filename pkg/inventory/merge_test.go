package inventory

import (
	"reflect"
	"testing"

	"github.com/berth-registry/berth/pkg/oci"
)

func pkg(name, p string) Package {
	return Package{Name: name, Version: "1", Ecosystem: "PyPI", Path: p, Extractor: "python/wheelegg"}
}

func names(img Image) []string {
	out := []string{}
	for _, p := range img.Packages {
		out = append(out, p.Name+"@"+string(p.Layer))
	}
	return out
}

func TestMergeHidingRules(t *testing.T) {
	const (
		d1 = oci.Digest("sha256:1111111111111111111111111111111111111111111111111111111111111111")
		d2 = oci.Digest("sha256:2222222222222222222222222222222222222222222222222222222222222222")
		d3 = oci.Digest("sha256:3333333333333333333333333333333333333333333333333333333333333333")
	)
	base := func() *Layer {
		return &Layer{Digest: d1, Packages: []Package{
			pkg("a", "site/a-1.dist-info/METADATA"),
			pkg("b", "site/b-1.dist-info/METADATA"),
			pkg("c", "other/c-1.dist-info/METADATA"),
		}}
	}
	tests := []struct {
		name  string
		upper []*Layer
		want  []string
	}{
		{"nothing above", nil, []string{"a@" + string(d1), "b@" + string(d1), "c@" + string(d1)}},
		{"whiteout of the file's directory", []*Layer{{Digest: d2, Whiteouts: []string{"site/a-1.dist-info"}}},
			[]string{"b@" + string(d1), "c@" + string(d1)}},
		{"whiteout of the file itself", []*Layer{{Digest: d2, Whiteouts: []string{"site/b-1.dist-info/METADATA"}}},
			[]string{"a@" + string(d1), "c@" + string(d1)}},
		{"whiteout of a sibling prefix does not hide", []*Layer{{Digest: d2, Whiteouts: []string{"site/a-1.dist"}}},
			[]string{"a@" + string(d1), "b@" + string(d1), "c@" + string(d1)}},
		{"opaque ancestor", []*Layer{{Digest: d2, Opaque: []string{"site"}}},
			[]string{"c@" + string(d1)}},
		{"opaque of the path itself is not an ancestor", []*Layer{{Digest: d2, Opaque: []string{"site/a-1.dist-info/METADATA"}}},
			[]string{"a@" + string(d1), "b@" + string(d1), "c@" + string(d1)}},
		{"replaced file declares the new version", []*Layer{{Digest: d2,
			Files:    []string{"site/a-1.dist-info/METADATA"},
			Packages: []Package{pkg("a2", "site/a-1.dist-info/METADATA")}}},
			[]string{"b@" + string(d1), "c@" + string(d1), "a2@" + string(d2)}},
		{"replaced file that declares nothing still hides", []*Layer{{Digest: d2, Files: []string{"/site/b-1.dist-info/METADATA"}}},
			[]string{"a@" + string(d1), "c@" + string(d1)}},
		{"whiteout then re-add in a third layer", []*Layer{
			{Digest: d2, Whiteouts: []string{"site"}},
			{Digest: d3, Files: []string{"site/a-1.dist-info/METADATA"}, Packages: []Package{pkg("a3", "site/a-1.dist-info/METADATA")}}},
			[]string{"c@" + string(d1), "a3@" + string(d3)}},
		{"a layer's own whiteout does not hide its own packages", []*Layer{{Digest: d2, Opaque: []string{"new"},
			Whiteouts: []string{"new/x"}, Files: []string{"new/x/METADATA"}, Packages: []Package{pkg("x", "new/x/METADATA")}}},
			[]string{"a@" + string(d1), "b@" + string(d1), "c@" + string(d1), "x@" + string(d2)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := Merge(append([]*Layer{base()}, tc.upper...))
			if got := names(img); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("visible = %v, want %v", got, tc.want)
			}
			if len(img.Layers) != 1+len(tc.upper) || img.Layers[0].Packages != 3 || img.Layers[0].Digest != d1 {
				t.Errorf("layers = %+v", img.Layers)
			}
		})
	}
}

func TestMergeOSReleaseAndDistroEcosystem(t *testing.T) {
	debianish := map[string]string{"ID": "debian", "VERSION_ID": "12"}
	ubuntu := map[string]string{"ID": "ubuntu", "VERSION_ID": "22.04"}
	deb := Package{Name: "libc6", Version: "2.36", Ecosystem: "Linux", Path: "var/lib/dpkg/status", Extractor: "os/dpkg"}
	rpm := Package{Name: "bash", Version: "5", Ecosystem: "", Path: "var/lib/rpm/rpmdb.sqlite", Extractor: "os/rpm"}
	layers := []*Layer{
		{Digest: "sha256:aa", OSRelease: debianish},
		{Digest: "sha256:bb", OSRelease: ubuntu},
		{Digest: "sha256:cc", Packages: []Package{deb, rpm}, Files: []string{"var/lib/dpkg/status"}, Error: "limit reached"},
	}
	img := Merge(layers)
	if img.OSRelease["ID"] != "ubuntu" {
		t.Fatalf("OSRelease = %v, want the topmost (ubuntu)", img.OSRelease)
	}
	if img.Packages[0].Ecosystem != "Ubuntu" || img.Packages[1].Ecosystem != "" {
		t.Errorf("ecosystems = %q, %q; want Ubuntu for dpkg and rpm untouched", img.Packages[0].Ecosystem, img.Packages[1].Ecosystem)
	}
	if img.Layers[2].Error != "limit reached" || img.Layers[2].Packages != 2 {
		t.Errorf("layer status = %+v", img.Layers[2])
	}

	// A later layer deleting both os-release locations leaves none (the
	// layer index does not say which of the two its os-release came from).
	layers = append(layers, &Layer{Digest: "sha256:dd", Whiteouts: []string{"etc", "usr/lib/os-release"}})
	if img := Merge(layers); img.OSRelease != nil {
		t.Errorf("OSRelease = %v after etc was deleted, want none", img.OSRelease)
	}
}

func TestMergeNilAndEmpty(t *testing.T) {
	img := Merge(nil)
	if img.Packages == nil || len(img.Layers) != 0 {
		t.Errorf("Merge(nil) = %+v", img)
	}
	img = Merge([]*Layer{nil, {Digest: "sha256:aa", Packages: []Package{pkg("a", "a/METADATA")}}})
	if len(img.Packages) != 1 || img.Layers[0].Error == "" || img.Layers[1].Digest != "sha256:aa" {
		t.Errorf("Merge with a missing index = %+v", img)
	}
}
