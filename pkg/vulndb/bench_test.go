package vulndb

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/berth-registry/berth/pkg/inventory"
)

// debianLike builds n records shaped like Debian's export (DSA/DLA and
// DEBIAN-CVE records: a details paragraph, one to three releases per
// record, introduced 0 / fixed) over a pool of source packages.
func debianLike(t testing.TB, n int) []byte {
	t.Helper()
	entries := make(map[string][]byte, n)
	details := "Several vulnerabilities were discovered in the package, which could result in denial of service or the execution of arbitrary code. " +
		"For the stable distribution, these problems have been fixed in the version below. We recommend that you upgrade your packages."
	for i := range n {
		var aff []any
		for r, rel := range []string{"Debian:11", "Debian:12", "Debian:13"} {
			if (i+r)%3 == 0 && r != 1 {
				continue
			}
			aff = append(aff, affected(rel, fmt.Sprintf("src%04d", i%4000), intro("0"), fix(fmt.Sprintf("%d.%d-%d+deb%du1", i%7, i%13, i%5, 11+r))))
		}
		id := fmt.Sprintf("DEBIAN-CVE-2099-%06d", i)
		entries[id+".json"] = mustJSON(t, rec{"id": id, "modified": "2026-01-01T00:00:00Z", "details": details,
			"aliases": []string{fmt.Sprintf("CVE-2099-%06d", i)}, "affected": aff})
	}
	return zipOf(t, entries)
}

func TestConcurrentMatch(t *testing.T) {
	db := open(t, fstest.MapFS{"Debian/all.zip": {Data: debianLike(t, 2000)}, "npm/all.zip": {Data: zipOf(t, map[string][]byte{
		"N.json": mustJSON(t, rec{"id": "N-1", "affected": []any{affected("npm", "a", intro("0"))}})})}})
	img := inventory.Image{OSRelease: debian12, Packages: []inventory.Package{
		{Name: "libsrc1", SourceName: "src0001", Version: "0.0-0", Ecosystem: "Debian"},
		{Name: "a", Version: "1.0.0", Ecosystem: "npm"},
	}}
	first := match(t, db, img)
	if len(first) == 0 {
		t.Fatal("no findings")
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := db.Match(context.Background(), img)
			if err != nil || len(got) != len(first) {
				t.Errorf("concurrent match: %d findings, %v", len(got), err)
			}
		}()
	}
	wg.Wait()
}

// BenchmarkLoadDebianLike measures loading a Debian-sized export (60,000
// records; Debian's real all.zip held about that many in 2026) and the
// heap the index keeps.
func BenchmarkLoadDebianLike(b *testing.B) {
	data := debianLike(b, 60000)
	b.ReportMetric(float64(len(data))/(1<<20), "zipMB")
	pkgs := make([]inventory.Package, 0, 700)
	for i := range 700 {
		pkgs = append(pkgs, inventory.Package{Name: fmt.Sprintf("bin%d", i), SourceName: fmt.Sprintf("src%04d", i*5), Version: "1.0-1", Ecosystem: "Debian"})
	}
	img := inventory.Image{OSRelease: debian12, Packages: pkgs}
	b.ResetTimer()
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		db := open(b, fstest.MapFS{"Debian/all.zip": {Data: data}})
		if _, err := db.Match(context.Background(), img); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "indexMB")
		if s := db.Stats(); s.Records != 60000 {
			b.Fatalf("stats %+v", s)
		}
		runtime.KeepAlive(db)
	}
}

// BenchmarkMatch measures matching a 700-package image against a loaded
// index.
func BenchmarkMatch(b *testing.B) {
	db := open(b, fstest.MapFS{"Debian/all.zip": {Data: debianLike(b, 60000)}})
	pkgs := make([]inventory.Package, 0, 700)
	for i := range 700 {
		pkgs = append(pkgs, inventory.Package{Name: fmt.Sprintf("bin%d", i), SourceName: fmt.Sprintf("src%04d", i*5), Version: "1.0-1", Ecosystem: "Debian"})
	}
	img := inventory.Image{OSRelease: debian12, Packages: pkgs}
	if _, err := db.Match(context.Background(), img); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := db.Match(context.Background(), img); err != nil {
			b.Fatal(err)
		}
	}
}
