package vulndb

import (
	"context"
	"testing"
	"testing/fstest"

	"github.com/berth-registry/berth/pkg/inventory"
)

// FuzzRecord feeds arbitrary bytes as a loose record and as a zip entry:
// loading and matching must neither panic nor fail the database.
func FuzzRecord(f *testing.F) {
	f.Add([]byte(`{"id":"X","affected":[{"package":{"ecosystem":"Debian:12","name":"bash"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"5.3"}]}],"versions":["5.2"]}]}`), "5.2-1")
	f.Add([]byte(`{"id":"X","severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N"}],"affected":[{"package":{"ecosystem":"PyPI","name":"bash"},"ranges":[{"type":"SEMVER","events":[{"limit":"1"},{"last_affected":"x:y"}]}]}]}`), "1!2.0")
	f.Add([]byte(`{"id":"X","database_specific":{"severity":[1]},"affected":[{"package":{"ecosystem":"Alpine:v3.20","name":"bash"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"1.0_alpha"},{"fixed":"1.0-r1"}]}]}]}`), "1.0_rc1-r0")
	f.Fuzz(func(t *testing.T, data []byte, version string) {
		fsys := fstest.MapFS{
			"Debian/x.json": {Data: data},
			"PyPI/all.zip":  {Data: zipOf(t, map[string][]byte{"x.json": data})},
			"Alpine/x.json": {Data: data},
		}
		db, err := Open(fsys)
		if err != nil {
			t.Fatal(err)
		}
		img := inventory.Image{OSRelease: map[string]string{"ID": "debian", "VERSION_ID": "12"}, Packages: []inventory.Package{
			{Name: "bash", Version: version, Ecosystem: "Debian"},
			{Name: "bash", Version: version, Ecosystem: "PyPI"},
			{Name: "bash", Version: version, Ecosystem: "Alpine"},
		}}
		if _, err := db.Match(context.Background(), img); err != nil {
			t.Fatal(err)
		}
		img.OSRelease = map[string]string{"ID": "alpine", "VERSION_ID": "3.20.1"}
		if _, err := db.Match(context.Background(), img); err != nil {
			t.Fatal(err)
		}
	})
}
