package scanfixture

import (
	"reflect"
	"testing"

	"github.com/berth-registry/berth/pkg/inventory"
)

func TestDeterministic(t *testing.T) {
	for _, build := range []func() (*Image, error){Alpine, Whiteout, Debian} {
		a, err := build()
		if err != nil {
			t.Fatal(err)
		}
		b, err := build()
		if err != nil {
			t.Fatal(err)
		}
		if a.ManifestDescriptor.Digest != b.ManifestDescriptor.Digest {
			t.Errorf("%s: manifest digest differs between builds", a.Name)
		}
		zl, err := a.Layers[0].WithMediaType(MediaTypeLayerZstd)
		if err != nil {
			t.Fatal(err)
		}
		zl2, err := b.Layers[0].WithMediaType(MediaTypeLayerZstd)
		if err != nil || zl.Descriptor.Digest != zl2.Descriptor.Digest {
			t.Errorf("%s: zstd layer differs between builds (%v)", a.Name, err)
		}
		for _, p := range a.Expected {
			if p.Layer == "" {
				t.Errorf("%s: expected package %s has no layer", a.Name, p.Name)
			}
		}
	}
}

func TestDpkgInstalled(t *testing.T) {
	status := []byte(`Package: libc6
Status: install ok installed
Source: glibc
Version: 2.36-9+deb12u14
Description: GNU C Library
 continuation line: Package: not-a-package

Package: gone
Status: deinstall ok config-files
Version: 1.0

Package: libfoo1
Status: install ok installed
Source: foo (1.2-3)
Version: 1.2-3+b1

Package: bash
Status: install ok installed
Source: bash
Version: 5.2.15-2+b2
`)
	want := []inventory.Package{
		{Name: "libc6", Version: "2.36-9+deb12u14", Ecosystem: "Debian", Path: DpkgStatusPath, Extractor: "os/dpkg", SourceName: "glibc"},
		{Name: "libfoo1", Version: "1.2-3+b1", Ecosystem: "Debian", Path: DpkgStatusPath, Extractor: "os/dpkg", SourceName: "foo", SourceVersion: "1.2-3"},
		{Name: "bash", Version: "5.2.15-2+b2", Ecosystem: "Debian", Path: DpkgStatusPath, Extractor: "os/dpkg"},
	}
	if got := DpkgInstalled(status); !reflect.DeepEqual(got, want) {
		t.Errorf("DpkgInstalled =\n%+v\nwant\n%+v", got, want)
	}
}
