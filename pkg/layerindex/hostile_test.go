package layerindex_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/scanfixture"
	"github.com/berth-registry/berth/pkg/layerindex"
	"github.com/berth-registry/berth/pkg/oci"
)

var gzDesc = oci.Descriptor{MediaType: layerindex.MediaTypeOCILayerGzip, Digest: "sha256:0000000000000000000000000000000000000000000000000000000000000000"}
var tarDesc = oci.Descriptor{MediaType: layerindex.MediaTypeOCILayer, Digest: gzDesc.Digest}

const oneDpkg = "Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b2\n\n"

func mustTar(t *testing.T, b *scanfixture.TarBuilder) []byte {
	t.Helper()
	out, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustGzip(t *testing.T, b []byte) []byte {
	t.Helper()
	out, err := scanfixture.Gzip(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMalformedInput(t *testing.T) {
	good := mustTar(t, scanfixture.NewTar().File("var/lib/dpkg/status", []byte(oneDpkg)).File("z/filler", bytes.Repeat([]byte("x"), 4096)))
	gz := mustGzip(t, good)
	tests := []struct {
		name     string
		d        oci.Descriptor
		blob     []byte
		wantErr  string
		wantPkgs int
	}{
		{"garbage labelled a tar", tarDesc, bytes.Repeat([]byte("not a tar "), 100), "malformed", 0},
		{"garbage labelled gzip", gzDesc, []byte("\x1f\x8bgarbage"), "gzip", 0},
		{"truncated gzip", gzDesc, gz[:len(gz)-30], "truncated", 1},
		{"truncated tar inside a file", tarDesc, good[:len(good)-2048], "truncated", 1},
		{"corrupt header after a good entry", tarDesc, append(append([]byte{}, good[:512*5]...), bytes.Repeat([]byte{0xff}, 1024)...), "malformed", 1},
		{"empty blob", gzDesc, nil, "empty", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := layerindex.New(layerindex.Limits{}).Index(context.Background(), tc.d, bytes.NewReader(tc.blob))
			if err != nil {
				t.Fatalf("Index error %v; bad content must be a layer error", err)
			}
			if l.Error == "" || !strings.Contains(l.Error, tc.wantErr) {
				t.Errorf("Error = %q, want one mentioning %q", l.Error, tc.wantErr)
			}
			if len(l.Packages) != tc.wantPkgs {
				t.Errorf("packages = %v, want %d kept", l.Packages, tc.wantPkgs)
			}
		})
	}
}

func TestNotLayer(t *testing.T) {
	failing := readerFunc(func([]byte) (int, error) { t.Error("a non-layer blob was read"); return 0, io.EOF })
	for _, mt := range []string{oci.MediaTypeImageConfig, "application/vnd.cncf.helm.chart.content.v1.tar+gzip", "application/spdx+json"} {
		l, err := layerindex.New(layerindex.Limits{}).Index(context.Background(), oci.Descriptor{MediaType: mt, Digest: gzDesc.Digest}, failing)
		if err != nil || !l.NotLayer {
			t.Errorf("%s: %+v %v", mt, l, err)
		}
	}
	// An unknown media type (an S3 event knows only the digest) is sniffed.
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	l, err := layerindex.New(layerindex.Limits{}).Index(context.Background(), oci.Descriptor{Digest: gzDesc.Digest}, bytes.NewReader(cfg))
	if err != nil || !l.NotLayer {
		t.Errorf("config with no media type: %+v %v", l, err)
	}
	gz := mustGzip(t, mustTar(t, scanfixture.NewTar().File("var/lib/dpkg/status", []byte(oneDpkg))))
	for _, blob := range [][]byte{gz, mustTar(t, scanfixture.NewTar().File("var/lib/dpkg/status", []byte(oneDpkg)))} {
		l, err = layerindex.New(layerindex.Limits{}).Index(context.Background(), oci.Descriptor{Digest: gzDesc.Digest}, bytes.NewReader(blob))
		if err != nil || l.NotLayer || len(l.Packages) != 1 {
			t.Errorf("layer with no media type: %+v %v", l, err)
		}
	}
	// Media types lie about compression; the magic bytes decide.
	l, err = layerindex.New(layerindex.Limits{}).Index(context.Background(), tarDesc, bytes.NewReader(gz))
	if err != nil || l.Error != "" || len(l.Packages) != 1 {
		t.Errorf("gzip labelled tar: %+v %v", l, err)
	}
	for _, mt := range []string{layerindex.MediaTypeDockerLayerGzip, layerindex.MediaTypeDockerForeignLayerGzip, layerindex.MediaTypeOCILayerNonDistribGzip} {
		if !layerindex.IsLayerMediaType(mt) {
			t.Errorf("%s is not a layer media type", mt)
		}
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestReaderAndContextFailures(t *testing.T) {
	gz := mustGzip(t, mustTar(t, scanfixture.NewTar().File("var/lib/dpkg/status", []byte(oneDpkg)).File("big", bytes.Repeat([]byte{1}, 1<<20))))
	boom := errors.New("connection reset")
	r := io.MultiReader(bytes.NewReader(gz[:len(gz)/2]), readerFunc(func([]byte) (int, error) { return 0, boom }))
	if _, err := layerindex.New(layerindex.Limits{}).Index(context.Background(), gzDesc, r); !errors.Is(err, boom) {
		t.Errorf("reader failure: err = %v, want %v", err, boom)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := layerindex.New(layerindex.Limits{}).Index(ctx, gzDesc, bytes.NewReader(gz)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v", err)
	}
}

func TestDecompressionBomb(t *testing.T) {
	// 256 MiB of zeros in one file compresses to about 256 KiB.
	pr, pw := io.Pipe()
	go func() {
		zw := gzip.NewWriter(pw)
		tw := tar.NewWriter(zw)
		_ = tw.WriteHeader(&tar.Header{Name: "var/lib/dpkg/status", Mode: 0o644, Size: int64(len(oneDpkg)), Typeflag: tar.TypeReg})
		_, _ = tw.Write([]byte(oneDpkg))
		_ = tw.WriteHeader(&tar.Header{Name: "zeros", Mode: 0o644, Size: 256 << 20, Typeflag: tar.TypeReg})
		_, _ = io.Copy(tw, io.LimitReader(zeroReader{}, 256<<20))
		_ = tw.Close()
		_ = zw.Close()
		_ = pw.Close()
	}()
	defer pr.Close()
	l, err := layerindex.New(layerindex.Limits{MaxDecompressedBytes: 16 << 20}).Index(context.Background(), gzDesc, pr)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(l.Error, "decompressed bytes") || len(l.Packages) != 1 {
		t.Errorf("Error = %q, packages %d", l.Error, len(l.Packages))
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestZipBomb(t *testing.T) {
	// A jar holding a nested jar that stores 64 MiB of zeros (deflated
	// to about 64 KiB in the outer jar): nested jars are read into
	// memory, and the archive extractor may open at most MaxFileSize.
	var innerBuf bytes.Buffer
	zw := zip.NewWriter(&innerBuf)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "zeros.bin", Method: zip.Store})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, 64<<20)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	inner := innerBuf.Bytes()
	outer := jar(t, map[string][]byte{
		"META-INF/maven/com.example/bomb/pom.properties": []byte("version=1.0\ngroupId=com.example\nartifactId=bomb\n"),
		"lib/inner.jar": inner,
	})
	l := indexTar(t, layerindex.Limits{MaxFileSize: 8 << 20}, scanfixture.NewTar().File("app/bomb.jar", outer))
	if !strings.Contains(l.Error, "max opened bytes") {
		t.Errorf("Error = %q, want the archive limit named", l.Error)
	}
}

func TestPathTraversalAndLinks(t *testing.T) {
	b := scanfixture.NewTar().
		Raw(&tar.Header{Name: "../../../var/lib/dpkg/status", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(oneDpkg))}, []byte(oneDpkg)).
		Raw(&tar.Header{Name: "/lib/apk/db/installed", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(scanfixture.AlpineInstalled))}, []byte(scanfixture.AlpineInstalled)).
		Raw(&tar.Header{Name: "./a/../../.wh.etc", Typeflag: tar.TypeReg, Mode: 0o644}, nil).
		Symlink("loop/a", "b").Symlink("loop/b", "a").Symlink("loop/self", "self").
		Symlink("etc/os-release", "../etc/os-release").
		Symlink("usr/lib/python3/site-packages/x-1.dist-info/METADATA", "/proc/self/root/usr/lib/python3/site-packages/x-1.dist-info/METADATA").
		Raw(&tar.Header{Name: "hard/status", Typeflag: tar.TypeLink, Linkname: "../var/lib/dpkg/status"}, nil)
	l := indexTar(t, layerindex.Limits{}, b)
	if l.Error != "" {
		t.Fatalf("Error = %q", l.Error)
	}
	if !has(l, "Debian", "bash", "5.2.15-2+b2", "var/lib/dpkg/status", "os/dpkg") || !has(l, "Alpine", "musl", "1.2.5-r0", "lib/apk/db/installed", "os/apk") {
		t.Errorf("packages = %+v", l.Packages)
	}
	if len(l.Whiteouts) != 1 || l.Whiteouts[0] != "etc" {
		t.Errorf("Whiteouts = %v", l.Whiteouts)
	}
	// The link where a METADATA file would be replaces an earlier one.
	wantFiles := []string{"var/lib/dpkg/status", "lib/apk/db/installed", "usr/lib/python3/site-packages/x-1.dist-info/METADATA"}
	if fmt.Sprint(l.Files) != fmt.Sprint(wantFiles) {
		t.Errorf("Files = %v, want %v", l.Files, wantFiles)
	}
}

func TestGiganticFiles(t *testing.T) {
	// A 1 GiB file nobody wants and a 300 MiB jar over the file limit,
	// streamed uncompressed: read through, never held.
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		_ = tw.WriteHeader(&tar.Header{Name: "data/huge.bin", Mode: 0o644, Size: 1 << 30, Typeflag: tar.TypeReg})
		_, _ = io.Copy(tw, io.LimitReader(zeroReader{}, 1<<30))
		_ = tw.WriteHeader(&tar.Header{Name: "app/huge.jar", Mode: 0o644, Size: 300 << 20, Typeflag: tar.TypeReg})
		_, _ = io.Copy(tw, io.LimitReader(zeroReader{}, 300<<20))
		_ = tw.WriteHeader(&tar.Header{Name: "var/lib/dpkg/status", Mode: 0o644, Size: int64(len(oneDpkg)), Typeflag: tar.TypeReg})
		_, _ = tw.Write([]byte(oneDpkg))
		_ = tw.Close()
		_ = pw.Close()
	}()
	defer pr.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	l, err := layerindex.New(layerindex.Limits{}).Index(context.Background(), tarDesc, pr)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(l.Error, "app/huge.jar skipped") || len(l.Packages) != 1 {
		t.Errorf("Error = %q, packages %v", l.Error, l.Packages)
	}
	// 1.3 GiB went through; what was allocated is the stream buffers.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("allocated %d bytes indexing a 1.3 GiB layer", alloc)
	}
}

func TestSpooling(t *testing.T) {
	appJar := jar(t, map[string][]byte{
		"META-INF/maven/com.example/lib/pom.properties": []byte("version=2.0\ngroupId=com.example\nartifactId=lib\n"),
		"filler.bin": bytes.Repeat([]byte("incompressible? no, but stored big "), 100_000),
	})
	b := func() *scanfixture.TarBuilder {
		return scanfixture.NewTar().File("app/a.jar", appJar).File("app/b.jar", appJar)
	}
	// Over the in-memory size, each jar goes to a temporary file.
	l := indexTar(t, layerindex.Limits{MemoryFileSize: 1024, TempDir: t.TempDir()}, b())
	if l.Error != "" || !has(l, "Maven", "com.example:lib", "2.0", "app/b.jar", "java/archive") {
		t.Errorf("spooled: Error %q packages %+v", l.Error, l.Packages)
	}
	// With a spool budget for one jar, the second is skipped and noted.
	l = indexTar(t, layerindex.Limits{MemoryFileSize: 1024, MaxSpoolBytes: int64(len(appJar)) + 10, TempDir: t.TempDir()}, b())
	if !strings.Contains(l.Error, "app/b.jar skipped") || !has(l, "Maven", "com.example:lib", "2.0", "app/a.jar", "java/archive") {
		t.Errorf("budget: Error %q packages %+v", l.Error, l.Packages)
	}
}

func TestManyEntriesAndPackages(t *testing.T) {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		for i := range 100_000 {
			_ = tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d%03d/f%06d", i%500, i), Mode: 0o644, Typeflag: tar.TypeReg})
		}
		_ = tw.WriteHeader(&tar.Header{Name: "var/lib/dpkg/status", Mode: 0o644, Size: int64(len(oneDpkg)), Typeflag: tar.TypeReg})
		_, _ = tw.Write([]byte(oneDpkg))
		_ = tw.Close()
		_ = pw.Close()
	}()
	defer pr.Close()
	l, err := layerindex.New(layerindex.Limits{}).Index(context.Background(), tarDesc, pr)
	if err != nil || l.Error != "" || l.Entries != 100_001 || len(l.Packages) != 1 {
		t.Fatalf("100,000 entries: err %v Error %q entries %d packages %d", err, l.Error, l.Entries, len(l.Packages))
	}

	many := scanfixture.NewTar().File("var/lib/dpkg/status", []byte(oneDpkg))
	for i := range 50 {
		many.File(fmt.Sprintf("f%d", i), nil)
	}
	l = indexTar(t, layerindex.Limits{MaxEntries: 20}, many)
	if !strings.Contains(l.Error, "more than 20 tar entries") || l.Entries != 20 || len(l.Packages) != 1 {
		t.Errorf("entry limit: Error %q entries %d packages %d", l.Error, l.Entries, len(l.Packages))
	}

	var status strings.Builder
	for i := range 100 {
		fmt.Fprintf(&status, "Package: p%d\nStatus: install ok installed\nVersion: 1.%d\n\n", i, i)
	}
	l = indexTar(t, layerindex.Limits{MaxPackages: 10}, scanfixture.NewTar().File("var/lib/dpkg/status", []byte(status.String())))
	if !strings.Contains(l.Error, "more than 10 packages") || len(l.Packages) != 10 {
		t.Errorf("package limit: Error %q packages %d", l.Error, len(l.Packages))
	}
}
