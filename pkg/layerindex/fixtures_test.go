package layerindex_test

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/scanfixture"
	"github.com/berth-registry/berth/pkg/inventory"
	"github.com/berth-registry/berth/pkg/layerindex"
)

// key is what the fixtures pin of a package (the PURL is checked apart).
func key(p inventory.Package) inventory.Package {
	p.PURL = ""
	return p
}

func keys(ps []inventory.Package) []inventory.Package {
	out := []inventory.Package{}
	for _, p := range ps {
		out = append(out, key(p))
	}
	return out
}

func indexImage(t *testing.T, img *scanfixture.Image) []*inventory.Layer {
	t.Helper()
	ix := layerindex.New(layerindex.Limits{})
	var out []*inventory.Layer
	for _, fl := range img.Layers {
		l, err := ix.Index(context.Background(), fl.Descriptor, bytes.NewReader(fl.Blob))
		if err != nil {
			t.Fatalf("Index: %v", err)
		}
		if l.Error != "" || l.NotLayer {
			t.Fatalf("layer %s: error %q notLayer %v", fl.Descriptor.Digest, l.Error, l.NotLayer)
		}
		if l.Indexer != layerindex.IndexerName || l.Digest != fl.Descriptor.Digest || l.Schema != inventory.Schema {
			t.Errorf("layer header = %+v", l)
		}
		// The indexer does not set Layer; the fixtures' packages carry it.
		want := keys(fl.Packages)
		for i := range want {
			want[i].Layer = ""
		}
		if got := keys(l.Packages); !reflect.DeepEqual(got, want) {
			t.Errorf("%s layer packages:\n got %d %v\nwant %d %v", img.Name, len(got), head(got), len(want), head(want))
			diff(t, got, want)
		}
		out = append(out, l)
	}
	return out
}

func head(ps []inventory.Package) []inventory.Package {
	if len(ps) > 3 {
		return ps[:3]
	}
	return ps
}

func diff(t *testing.T, got, want []inventory.Package) {
	t.Helper()
	g := map[inventory.Package]bool{}
	for _, p := range got {
		g[p] = true
	}
	w := map[inventory.Package]bool{}
	for _, p := range want {
		w[p] = true
		if !g[p] {
			t.Errorf("missing %+v", p)
		}
	}
	for _, p := range got {
		if !w[p] {
			t.Errorf("unexpected %+v", p)
		}
	}
}

func TestDebianFixture(t *testing.T) {
	img, err := scanfixture.Debian()
	if err != nil {
		t.Fatal(err)
	}
	// The expected set is computed from the machine's own dpkg database
	// by scanfixture.DpkgInstalled, a parser independent of osv-scalibr's.
	if len(img.Expected) < 10 {
		t.Fatalf("only %d installed packages in %s", len(img.Expected), scanfixture.HostDpkgStatus)
	}
	layers := indexImage(t, img)
	l := layers[0]
	if l.OSRelease["ID"] != "debian" || l.OSRelease["VERSION_ID"] != "12" || l.OSRelease["VERSION_CODENAME"] != "bookworm" {
		t.Errorf("OSRelease = %v", l.OSRelease)
	}
	if !reflect.DeepEqual(l.Files, []string{scanfixture.DpkgStatusPath}) {
		t.Errorf("Files = %v", l.Files)
	}
	var libc *inventory.Package
	for i, p := range l.Packages {
		if !strings.HasPrefix(p.PURL, "pkg:deb/debian/"+strings.ReplaceAll(url.PathEscape(p.Name), "+", "%2B")+"@") || strings.Contains(p.PURL, "distro=") {
			t.Errorf("PURL of %s = %q", p.Name, p.PURL)
		}
		if p.Name == "libc6" {
			libc = &l.Packages[i]
		}
	}
	if libc == nil || libc.SourceName != "glibc" {
		t.Errorf("libc6 = %+v, want source glibc", libc)
	}
	img2 := inventory.Merge(layers)
	if len(img2.Packages) != len(img.Expected) || img2.Packages[0].Layer != img.Layers[0].Descriptor.Digest {
		t.Errorf("merged %d packages, want %d", len(img2.Packages), len(img.Expected))
	}
}

func TestAlpineFixture(t *testing.T) {
	img, err := scanfixture.Alpine()
	if err != nil {
		t.Fatal(err)
	}
	layers := indexImage(t, img)
	if layers[0].OSRelease["VERSION_ID"] != "3.20.3" {
		t.Errorf("OSRelease = %v", layers[0].OSRelease)
	}
	if got := layers[0].Packages[2].PURL; !strings.HasPrefix(got, "pkg:apk/alpine/libcrypto3@3.3.1-r0") {
		t.Errorf("libcrypto3 PURL = %q", got)
	}
	// Every compression the indexer reads yields the same inventory.
	for _, mt := range []string{scanfixture.MediaTypeLayerZstd, scanfixture.MediaTypeLayerTar} {
		zl, err := img.Layers[0].WithMediaType(mt)
		if err != nil {
			t.Fatal(err)
		}
		l, err := layerindex.New(layerindex.Limits{}).Index(context.Background(), zl.Descriptor, bytes.NewReader(zl.Blob))
		if err != nil || l.Error != "" || !reflect.DeepEqual(keys(l.Packages), keys(layers[0].Packages)) {
			t.Errorf("%s: err %v layer error %q packages %v", mt, err, l.Error, l.Packages)
		}
	}
}

func TestGoBinaryFixture(t *testing.T) {
	img, err := scanfixture.GoBinary(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	layers := indexImage(t, img)
	found := false
	for _, p := range layers[0].Packages {
		if p.Name == "golang.org/x/text" && p.Version == "0.3.7" && p.Ecosystem == "Go" && p.PURL == "pkg:golang/golang.org/x/text@0.3.7" {
			found = true
		}
	}
	if !found {
		t.Errorf("golang.org/x/text 0.3.7 not found in %v", layers[0].Packages)
	}
}

func TestWhiteoutFixture(t *testing.T) {
	img, err := scanfixture.Whiteout()
	if err != nil {
		t.Fatal(err)
	}
	layers := indexImage(t, img)
	if want := []string{scanfixture.SitePackages + "/requests-2.19.0.dist-info"}; !reflect.DeepEqual(layers[1].Whiteouts, want) {
		t.Errorf("Whiteouts = %v, want %v", layers[1].Whiteouts, want)
	}
	merged := inventory.Merge(layers)
	if got := keys(merged.Packages); !reflect.DeepEqual(got, keys(img.Expected)) {
		t.Errorf("merged = %v, want %v", got, img.Expected)
	}
}

func TestLayoutWriter(t *testing.T) {
	img, err := scanfixture.Whiteout()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := scanfixture.WriteLayout(dir, img); err != nil {
		t.Fatal(err)
	}
	for dg, b := range img.Blobs() {
		got, err := os.ReadFile(dir + "/blobs/sha256/" + dg.Encoded())
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("blob %s: %v", dg, err)
		}
	}
	idx, err := os.ReadFile(dir + "/index.json")
	if err != nil || !strings.Contains(string(idx), `"org.opencontainers.image.ref.name":"whiteout"`) {
		t.Errorf("index.json = %s, %v", idx, err)
	}
}
