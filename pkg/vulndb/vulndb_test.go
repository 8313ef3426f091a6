package vulndb

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/berth-registry/berth/pkg/inventory"
)

// rec builds an OSV record as JSON.
type rec map[string]any

func affected(eco, name string, events ...map[string]string) map[string]any {
	evs := make([]any, len(events))
	for i, e := range events {
		evs[i] = e
	}
	return map[string]any{
		"package": map[string]any{"ecosystem": eco, "name": name},
		"ranges":  []any{map[string]any{"type": "ECOSYSTEM", "events": evs}},
	}
}

func intro(v string) map[string]string { return map[string]string{"introduced": v} }
func fix(v string) map[string]string   { return map[string]string{"fixed": v} }
func last(v string) map[string]string  { return map[string]string{"last_affected": v} }
func limit(v string) map[string]string { return map[string]string{"limit": v} }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// zipOf builds an all.zip from named entries.
func zipOf(t testing.TB, entries map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	// Deterministic archive.
	for _, n := range sortedKeys(entries) {
		w, err := zw.Create(n)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(entries[n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sortedKeys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// layouts returns the same records as an all.zip per ecosystem and as
// loose (nested) json files.
func layouts(t *testing.T, byEco map[string][]rec) map[string]fs.FS {
	t.Helper()
	zipped, loose := fstest.MapFS{}, fstest.MapFS{}
	for eco, recs := range byEco {
		entries := map[string][]byte{}
		for i, r := range recs {
			b := mustJSON(t, r)
			entries[fmt.Sprintf("%s.json", r["id"])] = b
			loose[fmt.Sprintf("%s/n%d/%s.json", eco, i%2, r["id"])] = &fstest.MapFile{Data: b}
		}
		zipped[eco+"/all.zip"] = &fstest.MapFile{Data: zipOf(t, entries)}
	}
	return map[string]fs.FS{"zip": zipped, "loose": loose}
}

func open(t testing.TB, fsys fs.FS, opts ...Option) *DB {
	t.Helper()
	db, err := Open(fsys, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func match(t *testing.T, db *DB, img inventory.Image) []inventory.Finding {
	t.Helper()
	fs, err := db.Match(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// summary renders findings as "ID pkg@version fixed=F sev" lines.
func summary(fs []inventory.Finding) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%s %s@%s fixed=%s %s %s", f.ID, f.Package.Name, f.Package.Version, f.Fixed, f.Severity, f.Ecosystem))
	}
	return out
}

func check(t *testing.T, got []inventory.Finding, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if g := summary(got); !reflect.DeepEqual(g, want) {
		t.Errorf("findings:\n got %q\nwant %q", g, want)
	}
}

var debian12 = map[string]string{"ID": "debian", "VERSION_ID": "12", "VERSION_CODENAME": "bookworm"}

func TestMatchDebianBySourcePackage(t *testing.T) {
	data := map[string][]rec{"Debian": {
		{"id": "DEB-1", "summary": "glibc bug", "aliases": []string{"CVE-2099-1"},
			"affected": []any{affected("Debian:12", "glibc", intro("0"), fix("2.36-9+deb12u99"))}},
		{"id": "DEB-2", "affected": []any{affected("Debian:12", "bash", intro("0"), fix("5.2.15-2+b2"))}},
		// Another release's record for the same package does not apply.
		{"id": "DEB-3", "affected": []any{affected("Debian:11", "glibc", intro("0"), fix("9.9"))}},
		// Keyed by the binary name: Debian's records never are.
		{"id": "DEB-4", "affected": []any{affected("Debian:12", "libc6", intro("0"), fix("9.9"))}},
		{"id": "DEB-5", "withdrawn": "2024-01-01T00:00:00Z", "affected": []any{affected("Debian:12", "glibc", intro("0"))}},
	}}
	img := inventory.Image{
		OSRelease: debian12,
		Packages: []inventory.Package{
			{Name: "libc6", Version: "2.36-9+deb12u7", Ecosystem: "Debian", SourceName: "glibc", Path: "var/lib/dpkg/status", Layer: "sha256:aa"},
			{Name: "libc-bin", Version: "2.36-9+deb12u7", Ecosystem: "Debian", SourceName: "glibc", Path: "var/lib/dpkg/status", Layer: "sha256:aa"},
			{Name: "bash", Version: "5.2.15-2+b2", Ecosystem: "Debian", Path: "var/lib/dpkg/status", Layer: "sha256:aa"},
		},
	}
	for name, fsys := range layouts(t, data) {
		t.Run(name, func(t *testing.T) {
			got := match(t, open(t, fsys), img)
			check(t, got,
				"DEB-1 libc-bin@2.36-9+deb12u7 fixed=2.36-9+deb12u99 UNKNOWN Debian:12",
				"DEB-1 libc6@2.36-9+deb12u7 fixed=2.36-9+deb12u99 UNKNOWN Debian:12",
			)
			if f := got[0]; f.Summary != "glibc bug" || !reflect.DeepEqual(f.Aliases, []string{"CVE-2099-1"}) || f.Package.Layer != "sha256:aa" || f.Package.Path != "var/lib/dpkg/status" {
				t.Errorf("finding details: %+v", f)
			}
		})
	}
}

func TestMatchSourceVersion(t *testing.T) {
	// A binNMU binary ("+b1") is matched at its source's version.
	data := map[string][]rec{"Debian": {
		{"id": "DEB-1", "affected": []any{affected("Debian:12", "foo", intro("0"), fix("1.0-2"))}},
	}}
	img := inventory.Image{OSRelease: debian12, Packages: []inventory.Package{
		{Name: "libfoo1", Version: "1.0-2+b1", SourceName: "foo", SourceVersion: "1.0-2", Ecosystem: "Debian"},
	}}
	check(t, match(t, open(t, layouts(t, data)["zip"]), img))
}

func TestMatchAlpinePerBinaryOfOrigin(t *testing.T) {
	data := map[string][]rec{"Alpine": {
		{"id": "APK-1", "affected": []any{affected("Alpine:v3.20", "openssl", intro("0"), fix("3.3.2-r0"))}},
		{"id": "APK-2", "affected": []any{affected("Alpine:v3.20", "busybox", intro("0"), fix("1.36.1-r20"))}},
		{"id": "APK-3", "affected": []any{affected("Alpine:v3.19", "openssl", intro("0"), fix("3.3.2-r0"))}},
	}}
	img := inventory.Image{
		OSRelease: map[string]string{"ID": "alpine", "VERSION_ID": "3.20.3"},
		Packages: []inventory.Package{
			{Name: "musl", Version: "1.2.5-r0", SourceName: "musl", Ecosystem: "Alpine"},
			{Name: "busybox", Version: "1.36.1-r29", SourceName: "busybox", Ecosystem: "Alpine"},
			{Name: "libcrypto3", Version: "3.3.1-r0", SourceName: "openssl", Ecosystem: "Alpine"},
			{Name: "libssl3", Version: "3.3.1-r0", SourceName: "openssl", Ecosystem: "Alpine"},
		},
	}
	check(t, match(t, open(t, layouts(t, data)["loose"]), img),
		"APK-1 libcrypto3@3.3.1-r0 fixed=3.3.2-r0 UNKNOWN Alpine:v3.20",
		"APK-1 libssl3@3.3.1-r0 fixed=3.3.2-r0 UNKNOWN Alpine:v3.20",
	)
}

func TestMatchDistroNeedsRelease(t *testing.T) {
	data := map[string][]rec{"Debian": {
		{"id": "DEB-1", "affected": []any{affected("Debian:12", "bash", intro("0"))}},
	}}
	db := open(t, layouts(t, data)["zip"])
	pkgs := []inventory.Package{{Name: "bash", Version: "5.2", Ecosystem: "Debian"}}
	// sid: no VERSION_ID, no release to match in; an Alpine image's
	// os-release does not apply to dpkg packages.
	for _, osr := range []map[string]string{nil, {"ID": "debian"}, {"ID": "alpine", "VERSION_ID": "3.20.0"}} {
		check(t, match(t, db, inventory.Image{OSRelease: osr, Packages: pkgs}))
	}
}

func TestDistroOf(t *testing.T) {
	for _, c := range []struct {
		osr    map[string]string
		accept []string
		reject []string
	}{
		{map[string]string{"ID": "ubuntu", "VERSION_ID": "22.04", "VERSION": "22.04.4 LTS (Jammy Jellyfish)"},
			[]string{"Ubuntu:22.04:LTS", "Ubuntu:22.04"}, []string{"Ubuntu:Pro:22.04:LTS", "Ubuntu:20.04:LTS"}},
		{map[string]string{"ID": "ubuntu", "VERSION_ID": "24.04"}, []string{"Ubuntu:24.04:LTS"}, nil},
		{map[string]string{"ID": "ubuntu", "VERSION_ID": "24.10"}, []string{"Ubuntu:24.10"}, []string{"Ubuntu:24.10:LTS"}},
		{map[string]string{"ID": "ubuntu", "VERSION_ID": "23.04"}, []string{"Ubuntu:23.04"}, []string{"Ubuntu:23.04:LTS"}},
		{map[string]string{"ID": "alpine", "VERSION_ID": "3.21.0_alpha20240807"}, []string{"Alpine:v3.21"}, []string{"Alpine:v3.2"}},
		{map[string]string{"ID": "rhel", "VERSION_ID": "9.4"},
			[]string{"Red Hat:enterprise_linux:9::appstream", "Red Hat:enterprise_linux:9::baseos"}, []string{"Red Hat:enterprise_linux:8::baseos", "Red Hat:enterprise_linux:90::x"}},
		{map[string]string{"ID": "rocky", "VERSION_ID": "9.3"}, []string{"Rocky Linux:9", "Rocky Linux"}, []string{"Rocky Linux:8"}},
		{map[string]string{"ID": "almalinux", "VERSION_ID": "9.4"}, []string{"AlmaLinux:9"}, []string{"AlmaLinux:9.4"}},
		{map[string]string{"ID": "opensuse-leap", "VERSION_ID": "15.5"}, []string{"openSUSE:Leap 15.5"}, nil},
		{map[string]string{"ID": "opensuse-tumbleweed", "VERSION_ID": "20241201"}, []string{"openSUSE:Tumbleweed"}, []string{"openSUSE:Leap 15.5"}},
		{map[string]string{"ID": "mageia", "VERSION_ID": "9"}, []string{"Mageia:9"}, nil},
		{map[string]string{"ID": "wolfi", "VERSION_ID": "20230201"}, []string{"Wolfi"}, []string{"Wolfi:20230201"}},
		{map[string]string{"ID": "chainguard"}, []string{"Chainguard"}, nil},
	} {
		d, ok := distroOf(c.osr)
		if !ok {
			t.Errorf("%v: no distro", c.osr)
			continue
		}
		for _, a := range c.accept {
			if !d.accept(a) {
				t.Errorf("%v: %q not accepted", c.osr, a)
			}
		}
		for _, r := range c.reject {
			if d.accept(r) {
				t.Errorf("%v: %q accepted", c.osr, r)
			}
		}
	}
}

// goRecord is GO-2022-1059 as published (trimmed of references), plus
// the CVSS vector of its GHSA alias so it has a severity.
func goRecord() rec {
	return rec{
		"schema_version": "1.3.1",
		"id":             "GO-2022-1059",
		"modified":       "2024-05-20T16:03:47Z",
		"published":      "2022-10-11T18:16:24Z",
		"aliases":        []string{"CVE-2022-32149", "GHSA-69ch-w2m2-3vjp"},
		"summary":        "Denial of service via crafted Accept-Language header in golang.org/x/text/language",
		"details":        "An attacker may cause a denial of service by crafting an Accept-Language header which ParseAcceptLanguage will take significant time to parse.",
		"severity":       []any{map[string]string{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}},
		"affected": []any{map[string]any{
			"package": map[string]string{"name": "golang.org/x/text", "ecosystem": "Go"},
			"ranges":  []any{map[string]any{"type": "SEMVER", "events": []any{intro("0"), fix("0.3.8")}}},
			"ecosystem_specific": map[string]any{"imports": []any{map[string]any{
				"path": "golang.org/x/text/language", "symbols": []string{"MatchStrings", "MustParse", "Parse", "ParseAcceptLanguage"}}}},
		}},
	}
}

func TestMatchLanguageEcosystems(t *testing.T) {
	data := map[string][]rec{
		"Go": {goRecord(),
			{"id": "GO-STD", "affected": []any{map[string]any{
				"package": map[string]string{"name": "stdlib", "ecosystem": "Go"},
				"ranges": []any{map[string]any{"type": "SEMVER", "events": []any{
					intro("0"), fix("1.20.14"), intro("1.21.0-0"), fix("1.21.7")}}}}}},
		},
		"PyPI": {
			{"id": "PY-1", "database_specific": map[string]string{"severity": "MODERATE"},
				"affected": []any{affected("PyPI", "Zope.Interface", intro("0"), fix("5.0"))}},
			{"id": "PY-2", "affected": []any{affected("PyPI", "requests", intro("2.0"), last("2.19.1"))}},
		},
		"Maven": {{"id": "MVN-1", "affected": []any{affected("Maven", "org.apache.logging.log4j:log4j-core", intro("2.0-beta9"), fix("2.15.0"))}}},
		"npm":   {{"id": "NPM-1", "affected": []any{affected("npm", "lodash", intro("0"), fix("4.17.21"))}}},
		"crates.io": {{"id": "RUST-1", "affected": []any{map[string]any{
			"package":  map[string]string{"name": "smallvec", "ecosystem": "crates.io"},
			"versions": []string{"1.6.0"}}}}},
	}
	img := inventory.Image{Packages: []inventory.Package{
		{Name: "golang.org/x/text", Version: "v0.3.7", Ecosystem: "Go", Path: "usr/local/bin/app"},
		{Name: "stdlib", Version: "go1.21.3", Ecosystem: "Go", Path: "usr/local/bin/app"},
		{Name: "zope_interface", Version: "4.7.1", Ecosystem: "PyPI"},
		{Name: "requests", Version: "2.19.0", Ecosystem: "PyPI"},
		{Name: "log4j-core", Version: "2.14.1", Ecosystem: "Maven", PURL: "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"},
		{Name: "lodash", Version: "4.17.21", Ecosystem: "npm"},
		{Name: "smallvec", Version: "1.6.0", Ecosystem: "crates.io"},
	}}
	for name, fsys := range layouts(t, data) {
		t.Run(name, func(t *testing.T) {
			got := match(t, open(t, fsys), img)
			check(t, got,
				"GO-2022-1059 golang.org/x/text@v0.3.7 fixed=0.3.8 HIGH Go",
				"PY-1 zope_interface@4.7.1 fixed=5.0 MEDIUM PyPI",
				"GO-STD stdlib@go1.21.3 fixed=1.21.7 UNKNOWN Go",
				"MVN-1 log4j-core@2.14.1 fixed=2.15.0 UNKNOWN Maven",
				"PY-2 requests@2.19.0 fixed= UNKNOWN PyPI",
				"RUST-1 smallvec@1.6.0 fixed= UNKNOWN crates.io",
			)
			if got[0].Score != "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H" {
				t.Errorf("score %q", got[0].Score)
			}
		})
	}
}

func TestRangeEvaluation(t *testing.T) {
	for _, c := range []struct {
		version string
		events  []map[string]string
		hit     bool
		fixed   string
	}{
		{"1.0.0", []map[string]string{intro("0"), fix("1.0.0")}, false, ""},
		{"0.9.9", []map[string]string{intro("0"), fix("1.0.0")}, true, "1.0.0"},
		{"0.9.9", []map[string]string{intro("1.0.0")}, false, ""},
		{"1.5.0", []map[string]string{intro("1.0.0")}, true, ""},
		// Unsorted events, two segments: the nearest fix above.
		{"2.1.0", []map[string]string{fix("2.2.0"), intro("2.0.0"), fix("1.2.0"), intro("1.0.0")}, true, "2.2.0"},
		{"1.5.0", []map[string]string{fix("2.2.0"), intro("2.0.0"), fix("1.2.0"), intro("1.0.0")}, false, ""},
		{"1.1.0", []map[string]string{intro("0"), fix("1.2.0"), fix("1.3.0")}, true, "1.2.0"},
		{"1.2.0", []map[string]string{intro("0"), last("1.2.0")}, true, ""},
		{"1.2.1", []map[string]string{intro("0"), last("1.2.0")}, false, ""},
		{"1.5.0", []map[string]string{intro("0"), limit("1.4.0")}, false, ""},
		{"1.3.0", []map[string]string{intro("0"), limit("1.4.0")}, true, ""},
		{"1.3.0", []map[string]string{intro("0"), limit("*")}, true, ""},
	} {
		var evs []event
		for _, m := range c.events {
			for k, v := range m {
				kind := map[string]eventKind{"introduced": evIntroduced, "fixed": evFixed, "last_affected": evLastAffected, "limit": evLimit}[k]
				evs = append(evs, event{kind, v})
			}
		}
		for _, semver := range []bool{true, false} {
			e := &entry{ranges: []rangeSpec{{semver: semver, events: evs}}}
			inst := &installed{raw: c.version, base: "npm"}
			hit, fixed := e.affects(inst)
			if hit != c.hit || fixed != c.fixed {
				t.Errorf("%s in %v (semver %v): got %v %q, want %v %q", c.version, c.events, semver, hit, fixed, c.hit, c.fixed)
			}
		}
	}
}

func TestRangeWithUnparsableEventIsSkipped(t *testing.T) {
	data := map[string][]rec{"Debian": {
		{"id": "DEB-1", "affected": []any{affected("Debian:12", "bash", intro("0"), fix("x:1.0"))}},
		{"id": "DEB-2", "affected": []any{affected("Debian:12", "bash", intro("0"), fix("6.0-1"))}},
	}}
	img := inventory.Image{OSRelease: debian12, Packages: []inventory.Package{{Name: "bash", Version: "5.2.15-2", Ecosystem: "Debian"}}}
	check(t, match(t, open(t, layouts(t, data)["zip"]), img), "DEB-2 bash@5.2.15-2 fixed=6.0-1 UNKNOWN Debian:12")
}

func TestSeverity(t *testing.T) {
	for _, c := range []struct {
		name  string
		r     rec
		want  inventory.Severity
		score string
	}{
		{"cvss3.1 critical", rec{"severity": []any{map[string]string{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}}}, inventory.SeverityCritical, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"},
		{"cvss3.0 medium", rec{"severity": []any{map[string]string{"type": "CVSS_V3", "score": "CVSS:3.0/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:L/A:L"}}}, inventory.SeverityMedium, "CVSS:3.0/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:L/A:L"},
		{"cvss4 high", rec{"severity": []any{map[string]string{"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:N/VA:N/SC:N/SI:N/SA:N"}}}, inventory.SeverityHigh, "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:N/VA:N/SC:N/SI:N/SA:N"},
		{"highest vector wins", rec{"severity": []any{
			map[string]string{"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"},
			map[string]string{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}}}, inventory.SeverityHigh, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"},
		{"label beats vector", rec{"database_specific": map[string]string{"severity": "LOW"},
			"severity": []any{map[string]string{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}}}, inventory.SeverityLow, ""},
		{"ubuntu label", rec{"severity": []any{map[string]string{"type": "Ubuntu", "score": "medium"}}}, inventory.SeverityMedium, ""},
		{"cvss2 ignored", rec{"severity": []any{map[string]string{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:P/I:P/A:P"}}}, inventory.SeverityUnknown, ""},
		{"garbage vector", rec{"severity": []any{map[string]string{"type": "CVSS_V3", "score": "CVSS:3.1/AV:X"}}}, inventory.SeverityUnknown, ""},
		{"non-string label", rec{"database_specific": map[string]any{"severity": 3}}, inventory.SeverityUnknown, ""},
		{"ecosystem_specific per entry", rec{"ecosystem_specific": map[string]string{"severity": "CRITICAL"}}, inventory.SeverityCritical, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := rec{"id": "X-1"}
			a := affected("npm", "p", intro("0"))
			for k, v := range c.r {
				if k == "ecosystem_specific" {
					a[k] = v
				} else {
					r[k] = v
				}
			}
			r["affected"] = []any{a}
			db := open(t, layouts(t, map[string][]rec{"npm": {r}})["loose"])
			got := match(t, db, inventory.Image{Packages: []inventory.Package{{Name: "p", Version: "1.0.0", Ecosystem: "npm"}}})
			if len(got) != 1 || got[0].Severity != c.want || got[0].Score != c.score {
				t.Fatalf("got %+v, want %s %q", got, c.want, c.score)
			}
		})
	}
}

func TestDeduplicatesAcrossCopiesAndEntries(t *testing.T) {
	r := rec{"id": "NPM-1", "affected": []any{
		affected("npm", "a", intro("0"), fix("3.0.0")),
		affected("npm", "a", intro("1.0.0"), fix("2.0.0")),
	}}
	fsys := fstest.MapFS{
		"npm/all.zip":      {Data: zipOf(t, map[string][]byte{"NPM-1.json": mustJSON(t, r)})},
		"npm/NPM-1.json":   {Data: mustJSON(t, r)},
		"npm:x/NPM-1.json": {Data: mustJSON(t, r)},
	}
	pkg := inventory.Package{Name: "a", Version: "1.5.0", Ecosystem: "npm", Path: "app/package-lock.json", Layer: "sha256:l1"}
	other := pkg
	other.Layer = "sha256:l2"
	got := match(t, open(t, fsys), inventory.Image{Packages: []inventory.Package{pkg, pkg, other}})
	check(t, got, "NPM-1 a@1.5.0 fixed=2.0.0 UNKNOWN npm", "NPM-1 a@1.5.0 fixed=2.0.0 UNKNOWN npm")
	if got[0].Package.Layer != "sha256:l1" || got[1].Package.Layer != "sha256:l2" {
		t.Errorf("layers: %v %v", got[0].Package.Layer, got[1].Package.Layer)
	}
}

func TestOrder(t *testing.T) {
	crit := map[string]string{"severity": "CRITICAL"}
	data := map[string][]rec{"npm": {
		{"id": "B", "affected": []any{affected("npm", "x", intro("0"))}},
		{"id": "A", "affected": []any{affected("npm", "x", intro("0"))}},
		{"id": "C", "database_specific": crit, "affected": []any{affected("npm", "y", intro("0")), affected("npm", "x", intro("0"))}},
	}}
	img := inventory.Image{Packages: []inventory.Package{
		{Name: "y", Version: "1.0.0", Ecosystem: "npm"},
		{Name: "x", Version: "1.0.0", Ecosystem: "npm"},
	}}
	check(t, match(t, open(t, layouts(t, data)["zip"]), img),
		"C x@1.0.0 fixed= CRITICAL npm", "C y@1.0.0 fixed= CRITICAL npm",
		"A x@1.0.0 fixed= UNKNOWN npm", "B x@1.0.0 fixed= UNKNOWN npm")
}

func TestBadRecordsAreSkippedAndCounted(t *testing.T) {
	good := mustJSON(t, rec{"id": "NPM-1", "affected": []any{affected("npm", "a", intro("0"))}})
	big := mustJSON(t, rec{"id": "NPM-BIG", "details": strings.Repeat("x", 4096), "affected": []any{affected("npm", "a", intro("0"))}})
	fsys := fstest.MapFS{
		"npm/all.zip": {Data: zipOf(t, map[string][]byte{
			"a.json":       good,
			"bad.json":     []byte("{not json"),
			"noid.json":    []byte(`{"affected": []}`),
			"big.json":     big,
			"README.txt":   []byte("ignored"),
			"array.json":   []byte(`[1,2]`),
			"trunc.json":   good[:len(good)/2],
			"nested/.json": []byte(`{}`),
		})},
		"npm/loose-bad.json": {Data: []byte("\x00\x01")},
		"npm/loose-big.json": {Data: big},
	}
	db := open(t, fsys, WithMaxRecordSize(1024))
	got := match(t, db, inventory.Image{Packages: []inventory.Package{{Name: "a", Version: "1.0.0", Ecosystem: "npm"}}})
	check(t, got, "NPM-1 a@1.0.0 fixed= UNKNOWN npm")
	s := db.Stats()
	want := Stats{Loaded: []string{"npm"}, Files: 3, Records: 1, Malformed: 6, Oversized: 2}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("stats %+v, want %+v", s, want)
	}
}

func TestRecordLimit(t *testing.T) {
	entries := map[string][]byte{}
	for i := range 5 {
		entries[fmt.Sprintf("%d.json", i)] = mustJSON(t, rec{"id": fmt.Sprintf("N-%d", i), "affected": []any{affected("npm", "a", intro("0"))}})
	}
	db := open(t, fstest.MapFS{"npm/all.zip": {Data: zipOf(t, entries)}}, WithMaxRecords(3))
	got := match(t, db, inventory.Image{Packages: []inventory.Package{{Name: "a", Version: "1.0.0", Ecosystem: "npm"}}})
	if len(got) != 3 {
		t.Errorf("%d findings, want 3", len(got))
	}
	if s := db.Stats(); s.Truncated != 1 || s.Records != 3 {
		t.Errorf("stats %+v", s)
	}
}

func TestZipEntryLyingAboutItsSize(t *testing.T) {
	// A zip whose central directory declares a small size for an entry
	// that inflates to more: the inflated bytes are bounded anyway.
	payload := mustJSON(t, rec{"id": "N-1", "details": strings.Repeat("a", 1<<16), "affected": []any{affected("npm", "a", intro("0"))}})
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateRaw(&zip.FileHeader{Name: "x.json", Method: zip.Store, CompressedSize64: uint64(len(payload)), UncompressedSize64: 10})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(payload)
	zw.Close()
	db := open(t, fstest.MapFS{"npm/all.zip": {Data: buf.Bytes()}}, WithMaxRecordSize(1024))
	check(t, match(t, db, inventory.Image{Packages: []inventory.Package{{Name: "a", Version: "1.0.0", Ecosystem: "npm"}}}))
	if s := db.Stats(); s.Malformed+s.Oversized != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestNotAZipFailsMatch(t *testing.T) {
	db := open(t, fstest.MapFS{"npm/all.zip": {Data: []byte("<html>rate limited</html>")}})
	_, err := db.Match(context.Background(), inventory.Image{Packages: []inventory.Package{{Name: "a", Version: "1", Ecosystem: "npm"}}})
	if err == nil || !strings.Contains(err.Error(), "npm/all.zip") {
		t.Errorf("err %v", err)
	}
	// Other ecosystems are unaffected.
	if _, err := db.Match(context.Background(), inventory.Image{Packages: []inventory.Package{{Name: "a", Version: "1", Ecosystem: "PyPI"}}}); err != nil {
		t.Error(err)
	}
}

func TestLazyLoading(t *testing.T) {
	data := layouts(t, map[string][]rec{
		"npm":  {{"id": "N-1", "affected": []any{affected("npm", "a", intro("0"))}}},
		"PyPI": {{"id": "P-1", "affected": []any{affected("PyPI", "a", intro("0"))}}},
	})["zip"]
	db := open(t, data)
	if s := db.Stats(); len(s.Loaded) != 0 {
		t.Fatalf("loaded at open: %v", s.Loaded)
	}
	match(t, db, inventory.Image{Packages: []inventory.Package{{Name: "a", Version: "1.0", Ecosystem: "PyPI"}}})
	if s := db.Stats(); !reflect.DeepEqual(s.Loaded, []string{"PyPI"}) {
		t.Errorf("loaded %v", s.Loaded)
	}
	if got := db.Ecosystems(); !reflect.DeepEqual(got, []string{"PyPI", "npm"}) {
		t.Errorf("ecosystems %v", got)
	}
}

func TestCancelledContext(t *testing.T) {
	db := open(t, layouts(t, map[string][]rec{"npm": {{"id": "N-1", "affected": []any{affected("npm", "a", intro("0"))}}}})["zip"])
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := db.Match(ctx, inventory.Image{Packages: []inventory.Package{{Name: "a", Version: "1", Ecosystem: "npm"}}}); !errors.Is(err, context.Canceled) {
		t.Errorf("err %v", err)
	}
	// Not cached: a later match loads.
	check(t, match(t, db, inventory.Image{Packages: []inventory.Package{{Name: "a", Version: "1.0.0", Ecosystem: "npm"}}}), "N-1 a@1.0.0 fixed= UNKNOWN npm")
}

func TestVersion(t *testing.T) {
	mk := func(data string, mod time.Time) fstest.MapFS {
		return fstest.MapFS{
			"npm/all.zip":    {Data: []byte(data), ModTime: mod},
			"npm/notes.txt":  {Data: []byte("not data")},
			".cache/x.json":  {Data: []byte("{}")},
			"Go/sub/a.json":  {Data: []byte("{}")},
			"top-level.json": {Data: []byte("{}")},
		}
	}
	t0 := time.Unix(1700000000, 0)
	v := func(fsys fs.FS, opts ...Option) string { return open(t, fsys, opts...).Version() }
	base := v(mk("abc", t0))
	if base != v(mk("abc", t0)) {
		t.Error("version not stable")
	}
	if base == v(mk("abc", t0.Add(time.Second))) {
		t.Error("modtime change not seen")
	}
	if base == v(mk("abcd", t0)) {
		t.Error("size change not seen")
	}
	other := mk("abc", t0)
	other["npm/notes.txt"] = &fstest.MapFile{Data: []byte("changed, but not data")}
	if base != v(other) {
		t.Error("non-data file changed the version")
	}
	// With contents hashed, the modification time does not matter but
	// a same-size rewrite does.
	h := v(mk("abc", t0), HashContents())
	if h != v(mk("abc", t0.Add(time.Hour)), HashContents()) {
		t.Error("content hash depends on modtime")
	}
	if h == v(mk("abd", t0), HashContents()) {
		t.Error("content change not seen")
	}
	if !strings.HasPrefix(base, "osv-") || len(base) != 36 {
		t.Errorf("version %q", base)
	}
}

// opaqueFS hides io.ReaderAt and io.Seeker, like a streaming (S3) fs.FS.
type opaqueFS struct{ fs.FS }

type opaqueFile struct{ f fs.File }

func (o opaqueFile) Stat() (fs.FileInfo, error) { return o.f.Stat() }
func (o opaqueFile) Read(p []byte) (int, error) { return o.f.Read(p) }
func (o opaqueFile) Close() error               { return o.f.Close() }

func (o opaqueFS) Open(name string) (fs.File, error) {
	f, err := o.FS.Open(name)
	if err != nil {
		return nil, err
	}
	if _, dir := f.(fs.ReadDirFile); dir {
		return f, nil
	}
	return opaqueFile{f}, nil
}

func TestStreamingFSIsSpooled(t *testing.T) {
	data := layouts(t, map[string][]rec{"npm": {{"id": "N-1", "affected": []any{affected("npm", "a", intro("0"))}}}})["zip"]
	tmp := t.TempDir()
	db := open(t, opaqueFS{data}, WithTempDir(tmp))
	check(t, match(t, db, inventory.Image{Packages: []inventory.Package{{Name: "a", Version: "1.0.0", Ecosystem: "npm"}}}), "N-1 a@1.0.0 fixed= UNKNOWN npm")
	// The spool file is gone.
	if ents, _ := readDir(tmp); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
	// Over the archive limit: an error, not a silent empty result.
	db = open(t, opaqueFS{data}, WithTempDir(tmp), WithMaxArchiveSize(10))
	if _, err := db.Match(context.Background(), inventory.Image{Packages: []inventory.Package{{Name: "a", Version: "1", Ecosystem: "npm"}}}); err == nil {
		t.Error("no error over the archive limit")
	}
}

func TestEmptyData(t *testing.T) {
	db := open(t, fstest.MapFS{})
	check(t, match(t, db, inventory.Image{OSRelease: debian12, Packages: []inventory.Package{{Name: "bash", Version: "5", Ecosystem: "Debian"}}}))
	if db.Version() == "" {
		t.Error("empty version")
	}
}

func readDir(dir string) ([]fs.DirEntry, error) { return os.ReadDir(dir) }
