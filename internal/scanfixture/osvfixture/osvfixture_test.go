package osvfixture_test

import (
	"bytes"
	"context"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/scanfixture"
	"github.com/berth-registry/berth/internal/scanfixture/osvfixture"
	"github.com/berth-registry/berth/pkg/inventory"
	"github.com/berth-registry/berth/pkg/layerindex"
	"github.com/berth-registry/berth/pkg/sbom"
	"github.com/berth-registry/berth/pkg/vulndb"
)

// osRelease parses an os-release file (KEY=value, values optionally
// quoted).
func osRelease(s string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && !strings.HasPrefix(k, "#") {
			out[k] = strings.Trim(v, `"'`)
		}
	}
	return out
}

// image is what merging the fixture's layers must give: its expected
// packages under its os-release.
func image(img *scanfixture.Image) inventory.Image {
	out := inventory.Image{Packages: img.Expected}
	switch img.Name {
	case "debian":
		out.OSRelease = osRelease(scanfixture.DebianOSRelease)
	case "alpine":
		out.OSRelease = osRelease(scanfixture.AlpineOSRelease)
	}
	for _, l := range img.Layers {
		out.Layers = append(out.Layers, inventory.LayerStatus{Digest: l.Descriptor.Digest, Packages: len(l.Packages)})
	}
	return out
}

func fixtures(t *testing.T) []*scanfixture.Image {
	t.Helper()
	imgs, err := scanfixture.All(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return imgs
}

func TestFixturesYieldExactlyTheExpectedFindings(t *testing.T) {
	data, err := osvfixture.Host()
	if err != nil {
		t.Fatal(err)
	}
	zipDir, looseDir := t.TempDir(), t.TempDir()
	if err := data.WriteZip(zipDir); err != nil {
		t.Fatal(err)
	}
	if err := data.WriteLoose(looseDir); err != nil {
		t.Fatal(err)
	}
	imgs := fixtures(t)
	for layout, dir := range map[string]string{"zip": zipDir, "loose": looseDir} {
		db, err := vulndb.Open(os.DirFS(dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, img := range imgs {
			t.Run(layout+"/"+img.Name, func(t *testing.T) {
				want := data.Expected[img.Name]
				if len(want) == 0 {
					t.Fatalf("no expected findings for %s", img.Name)
				}
				got, err := db.Match(context.Background(), image(img))
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%d packages, %d findings", len(img.Expected), len(got))
				if p := osvfixture.Project(got); !reflect.DeepEqual(p, want) {
					t.Errorf("findings:\n got %+v\nwant %+v", p, want)
				}
				// Each finding names the layer and file of its package.
				for _, f := range got {
					if f.Package.Layer == "" || f.Package.Path == "" {
						t.Errorf("%s: no layer or path: %+v", f.ID, f.Package)
					}
				}
				// The report round-trips the real findings exactly.
				rep, err := sbom.Report(image(img), got, img.ManifestDescriptor, "scanfixture/"+img.Name, time.Unix(0, 0))
				if err != nil {
					t.Fatal(err)
				}
				back, err := sbom.ParseReport(rep)
				if err != nil || !reflect.DeepEqual(back, got) {
					t.Errorf("report round trip: %v\n got %+v\nwant %+v", err, back, got)
				}
			})
		}
	}
}

// The records that must not match are live: they do match a package they
// were not written to spare.
func TestNonFindingsAreDeliberate(t *testing.T) {
	data, err := osvfixture.Host()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := data.WriteZip(dir); err != nil {
		t.Fatal(err)
	}
	db, err := vulndb.Open(os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	ids := func(img inventory.Image) []string {
		got, err := db.Match(context.Background(), img)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, f := range got {
			out = append(out, f.ID+" "+f.Package.Name)
		}
		return out
	}
	// The whiteout fixture's first layer alone still has requests.
	wh, err := scanfixture.Whiteout()
	if err != nil {
		t.Fatal(err)
	}
	got := ids(inventory.Image{Packages: wh.Layers[0].Packages})
	if want := []string{"BERTH-TEST-PY-2 urllib3", "BERTH-TEST-PY-1 requests"}; !reflect.DeepEqual(got, want) {
		t.Errorf("without the whiteout: %q, want %q", got, want)
	}
	// An older bash and busybox are affected.
	deb := inventory.Image{OSRelease: osRelease(scanfixture.DebianOSRelease), Packages: []inventory.Package{
		{Name: "bash", Version: "5.0-1", Ecosystem: "Debian"}}}
	if got := ids(deb); !reflect.DeepEqual(got, []string{"BERTH-TEST-DEB-2 bash"}) {
		t.Errorf("old bash: %q", got)
	}
	alp := inventory.Image{OSRelease: osRelease(scanfixture.AlpineOSRelease), Packages: []inventory.Package{
		{Name: "busybox", Version: "1.36.1-r19", Ecosystem: "Alpine"}}}
	if got := ids(alp); !reflect.DeepEqual(got, []string{"BERTH-TEST-APK-2 busybox"}) {
		t.Errorf("old busybox: %q", got)
	}
}

func TestDebianRecordsFollowTheStatusFile(t *testing.T) {
	status := []byte(`Package: libc6
Status: install ok installed
Source: glibc
Version: 2.36-9+deb12u4

Package: libc-bin
Status: install ok installed
Source: glibc
Version: 2.36-9+deb12u4

Package: locales
Status: deinstall ok config-files
Source: glibc
Version: 2.36-9+deb12u4

Package: bash
Status: install ok installed
Source: bash (5.2.15-2)
Version: 5.2.15-2+b7
`)
	data, err := osvfixture.New(status)
	if err != nil {
		t.Fatal(err)
	}
	want := []osvfixture.Finding{
		{ID: "BERTH-TEST-DEB-1", Package: "libc-bin", Fixed: "2.36-9+deb12u4+berth1", Severity: inventory.SeverityUnknown},
		{ID: "BERTH-TEST-DEB-1", Package: "libc6", Fixed: "2.36-9+deb12u4+berth1", Severity: inventory.SeverityUnknown},
	}
	if !reflect.DeepEqual(data.Expected["debian"], want) {
		t.Errorf("expected %+v", data.Expected["debian"])
	}
	var bash string
	for _, r := range data.Records["Debian"] {
		if r.ID == "BERTH-TEST-DEB-2" {
			bash = string(r.JSON)
		}
	}
	// bash is fixed at its source version, which the binNMU binary's
	// version sorts after.
	if !strings.Contains(bash, `"fixed": "5.2.15-2"`) {
		t.Errorf("bash record: %s", bash)
	}
	if _, err := osvfixture.New([]byte("Package: zsh\nStatus: install ok installed\nVersion: 1\n")); err == nil {
		t.Error("no error without glibc and bash")
	}
}

func TestZipIsDeterministic(t *testing.T) {
	data, err := osvfixture.Host()
	if err != nil {
		t.Fatal(err)
	}
	a, err := data.Zip("PyPI")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := data.Zip("PyPI")
	if !bytes.Equal(a, b) {
		t.Error("all.zip bytes differ between runs")
	}
}

// The whole matching path on real bytes: each fixture's layers through
// the layer indexer, merged, matched.
func TestIndexedFixturesYieldExactlyTheExpectedFindings(t *testing.T) {
	data, err := osvfixture.Host()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := data.WriteZip(dir); err != nil {
		t.Fatal(err)
	}
	db, err := vulndb.Open(os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	ix := layerindex.New(layerindex.Limits{})
	for _, img := range fixtures(t) {
		t.Run(img.Name, func(t *testing.T) {
			var layers []*inventory.Layer
			for _, fl := range img.Layers {
				l, err := ix.Index(context.Background(), fl.Descriptor, bytes.NewReader(fl.Blob))
				if err != nil {
					t.Fatal(err)
				}
				layers = append(layers, l)
			}
			merged := inventory.Merge(layers)
			got, err := db.Match(context.Background(), merged)
			if err != nil {
				t.Fatal(err)
			}
			if p := osvfixture.Project(got); !reflect.DeepEqual(p, data.Expected[img.Name]) {
				t.Errorf("findings:\n got %+v\nwant %+v", p, data.Expected[img.Name])
			}
		})
	}
}
