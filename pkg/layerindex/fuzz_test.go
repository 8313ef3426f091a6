package layerindex_test

import (
	"archive/tar"
	"bytes"
	"context"
	"path"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/scanfixture"
	"github.com/berth-registry/berth/pkg/layerindex"
	"github.com/berth-registry/berth/pkg/oci"
)

var fuzzMediaTypes = []string{
	"", layerindex.MediaTypeOCILayer, layerindex.MediaTypeOCILayerGzip, layerindex.MediaTypeOCILayerZstd,
	layerindex.MediaTypeDockerLayerGzip, oci.MediaTypeImageConfig,
}

// FuzzIndex feeds arbitrary blobs to the tar walker (through each
// compression) and checks that indexing never fails for content reasons,
// never passes its limits and only records clean relative paths. The
// seeds (the fixture layers in every compression, and hostile tars) run
// in every `go test`.
func FuzzIndex(f *testing.F) {
	alp, err := scanfixture.Alpine()
	if err != nil {
		f.Fatal(err)
	}
	wh, err := scanfixture.Whiteout()
	if err != nil {
		f.Fatal(err)
	}
	for _, l := range append(alp.Layers, wh.Layers...) {
		f.Add(l.Blob, uint8(2))
		f.Add(l.Tar, uint8(1))
		f.Add(l.Tar, uint8(0))
		if z, err := scanfixture.Zstd(l.Tar); err == nil {
			f.Add(z, uint8(3))
		}
	}
	hostile, err := scanfixture.NewTar().
		Raw(&tar.Header{Name: "../../etc/os-release", Typeflag: tar.TypeReg, Size: 10}, []byte("ID=debian\n")).
		Raw(&tar.Header{Name: "/var/lib/dpkg/status", Typeflag: tar.TypeReg, Size: int64(len(oneDpkg))}, []byte(oneDpkg)).
		Symlink("a", "a").Opaque("x").Whiteout("y/z").
		File("p/package.json", []byte(`{"name":"x","version":"1"}`)).
		File("c/Cargo.lock", []byte("version = 3\n[[package]]\nname = \"a\"\nversion = \"1\"\n")).
		Bytes()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(hostile, uint8(1))
	f.Add(hostile[:700], uint8(1))
	f.Add([]byte("\x1f\x8b\x08\x00\x00\x00\x00\x00"), uint8(2))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0}, uint8(3))
	f.Add([]byte(`{"schemaVersion":2}`), uint8(0))

	limits := layerindex.Limits{
		MaxDecompressedBytes: 8 << 20, MaxEntries: 1000, MaxFileSize: 1 << 20,
		MaxSpoolBytes: 4 << 20, MaxPackages: 500, MemoryFileSize: 64 << 10,
	}
	f.Fuzz(func(t *testing.T, blob []byte, mt uint8) {
		lim := limits
		lim.TempDir = t.TempDir()
		d := oci.Descriptor{MediaType: fuzzMediaTypes[int(mt)%len(fuzzMediaTypes)], Digest: "sha256:00", Size: int64(len(blob))}
		l, err := layerindex.New(lim).Index(context.Background(), d, bytes.NewReader(blob))
		if err != nil {
			t.Fatalf("Index error on content: %v", err)
		}
		if l.Entries > lim.MaxEntries || len(l.Packages) > lim.MaxPackages {
			t.Fatalf("limits passed: %d entries, %d packages", l.Entries, len(l.Packages))
		}
		for _, lists := range [][]string{l.Files, l.Whiteouts, l.Opaque} {
			for _, p := range lists {
				if p != "." && (p == "" || strings.HasPrefix(p, "/") || path.Clean(p) != p || strings.HasPrefix(p, "../")) {
					t.Fatalf("unclean path %q", p)
				}
			}
		}
	})
}
