// Package osvfixture writes the OSV records the scanner's fixture images
// (internal/scanfixture) are matched against, and says which findings
// each fixture must yield. Every level of the scanner's tests (vulndb,
// pkg/scan, the e2e suite) uses the same records and asserts the same
// findings.
//
// The records, by fixture:
//
//   - debian: BERTH-TEST-DEB-1 for Debian:12 source package glibc, fixed
//     in "<installed glibc version>+berth1", which sorts after the
//     installed version: every installed binary package built from glibc
//     (libc6, libc-bin, …) is affected. BERTH-TEST-DEB-2 for bash, fixed
//     in bash's installed source version: not affected. Both versions are
//     read from the dpkg database the debian fixture copies, so the
//     records fit whatever this machine has installed.
//   - alpine: BERTH-TEST-APK-1 for Alpine:v3.20 openssl fixed 3.3.2-r0
//     (libcrypto3 3.3.1-r0, origin openssl, is affected);
//     BERTH-TEST-APK-2 for busybox fixed 1.36.1-r20 (1.36.1-r29 is not).
//   - gobinary: GO-2022-1059 as published (golang.org/x/text fixed in
//     0.3.8, CVE-2022-32149), with its GHSA alias's CVSS vector (7.5,
//     HIGH): the program links x/text 0.3.7.
//   - whiteout: BERTH-TEST-PY-1 for PyPI requests fixed 2.20.0 (requests
//     2.19.0 is deleted by the second layer's whiteout, so it must not be
//     reported) and BERTH-TEST-PY-2 for urllib3 fixed 1.26.5 (1.26.4 is
//     visible: reported).
package osvfixture

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/berth-registry/berth/internal/scanfixture"
	"github.com/berth-registry/berth/pkg/inventory"
)

// Record IDs.
const (
	DebGlibc      = "BERTH-TEST-DEB-1"
	DebBash       = "BERTH-TEST-DEB-2"
	ApkOpenSSL    = "BERTH-TEST-APK-1"
	ApkBusybox    = "BERTH-TEST-APK-2"
	GoText        = "GO-2022-1059"
	PyRequests    = "BERTH-TEST-PY-1"
	PyUrllib3     = "BERTH-TEST-PY-2"
	glibcSource   = "glibc"
	bashSource    = "bash"
	fixSuffix     = "+berth1"
	modified      = "2026-12-01T00:00:00Z"
	goTextVector  = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"
	openSSLVector = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:H"
)

// Finding is one expected finding: a record ID against a (binary)
// package name, with the fix and severity the record gives it.
type Finding struct {
	ID       string
	Package  string
	Fixed    string
	Severity inventory.Severity
}

// Data is the fixture records and the findings each fixture must yield.
type Data struct {
	// Records are the OSV records as JSON, by ecosystem directory
	// ("Debian", "Alpine", "Go", "PyPI"), in ID order.
	Records map[string][]Record
	// Expected are each fixture's findings (by scanfixture.Image.Name),
	// in Project's order.
	Expected map[string][]Finding
}

// Record is one OSV record.
type Record struct {
	ID   string
	JSON []byte
}

// Host computes the data for the dpkg database the debian fixture copies
// (scanfixture.HostDpkgStatus).
func Host() (*Data, error) {
	status, err := os.ReadFile(scanfixture.HostDpkgStatus)
	if err != nil {
		return nil, fmt.Errorf("osvfixture: %w", err)
	}
	return New(status)
}

// New computes the data for a debian fixture built from this dpkg status
// file. It fails if glibc or bash is not installed in it: the debian
// fixture's findings are defined by them.
func New(dpkgStatus []byte) (*Data, error) {
	installed := scanfixture.DpkgInstalled(dpkgStatus)
	var glibcVersion, bashVersion string
	var glibcBinaries []string
	for _, p := range installed {
		src, ver := p.Name, p.Version
		if p.SourceName != "" {
			src = p.SourceName
		}
		if p.SourceVersion != "" {
			ver = p.SourceVersion
		}
		switch src {
		case glibcSource:
			glibcBinaries = append(glibcBinaries, p.Name)
			if glibcVersion == "" || p.Name == "libc6" {
				glibcVersion = ver
			}
		case bashSource:
			if p.Name == "bash" {
				bashVersion = ver
			}
		}
	}
	if glibcVersion == "" || bashVersion == "" {
		return nil, fmt.Errorf("osvfixture: the dpkg database has no installed glibc (%q) or bash (%q)", glibcVersion, bashVersion)
	}
	glibcFixed := glibcVersion + fixSuffix

	d := &Data{Records: map[string][]Record{}, Expected: map[string][]Finding{}}
	add := func(dir string, r map[string]any) error {
		r["schema_version"] = "1.6.0"
		r["modified"] = modified
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		d.Records[dir] = append(d.Records[dir], Record{ID: r["id"].(string), JSON: b})
		return nil
	}
	for _, r := range []struct {
		dir string
		rec map[string]any
	}{
		{"Debian", distroRecord(DebGlibc, "Debian:12", glibcSource, glibcFixed,
			"glibc: berth test vulnerability, fixed after the installed version")},
		{"Debian", distroRecord(DebBash, "Debian:12", bashSource, bashVersion,
			"bash: berth test vulnerability, fixed in the installed version")},
		{"Alpine", withSeverity(distroRecord(ApkOpenSSL, "Alpine:v3.20", "openssl", "3.3.2-r0",
			"openssl: berth test vulnerability (libcrypto3 3.3.1-r0 is affected)"), openSSLVector)},
		{"Alpine", distroRecord(ApkBusybox, "Alpine:v3.20", "busybox", "1.36.1-r20",
			"busybox: berth test vulnerability fixed before the installed version")},
		{"Go", goText()},
		{"PyPI", pypiRecord(PyRequests, "requests", "2.20.0", "",
			"requests: berth test vulnerability; the whiteout fixture deletes requests, so it is never reported")},
		{"PyPI", pypiRecord(PyUrllib3, "urllib3", "1.26.5", "MODERATE",
			"urllib3: berth test vulnerability, fixed after the installed 1.26.4")},
	} {
		if err := add(r.dir, r.rec); err != nil {
			return nil, err
		}
	}
	for _, recs := range d.Records {
		sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })
	}

	for _, b := range glibcBinaries {
		d.Expected["debian"] = append(d.Expected["debian"], Finding{DebGlibc, b, glibcFixed, inventory.SeverityUnknown})
	}
	d.Expected["alpine"] = []Finding{{ApkOpenSSL, "libcrypto3", "3.3.2-r0", inventory.SeverityCritical}}
	d.Expected["gobinary"] = []Finding{{GoText, "golang.org/x/text", "0.3.8", inventory.SeverityHigh}}
	d.Expected["whiteout"] = []Finding{{PyUrllib3, "urllib3", "1.26.5", inventory.SeverityMedium}}
	for _, fs := range d.Expected {
		sortFindings(fs)
	}
	return d, nil
}

func distroRecord(id, ecosystem, source, fixed, summary string) map[string]any {
	return map[string]any{
		"id":      id,
		"summary": summary,
		"details": summary + ". Written by internal/scanfixture/osvfixture; not a real advisory.",
		"affected": []any{map[string]any{
			"package": map[string]any{"ecosystem": ecosystem, "name": source},
			"ranges": []any{map[string]any{"type": "ECOSYSTEM", "events": []any{
				map[string]string{"introduced": "0"}, map[string]string{"fixed": fixed},
			}}},
		}},
	}
}

func withSeverity(r map[string]any, vector string) map[string]any {
	r["severity"] = []any{map[string]string{"type": "CVSS_V3", "score": vector}}
	return r
}

func pypiRecord(id, name, fixed, severity, summary string) map[string]any {
	r := distroRecord(id, "PyPI", name, fixed, summary)
	if severity != "" {
		// GHSA style.
		r["database_specific"] = map[string]any{"severity": severity}
	}
	return r
}

// goText is GO-2022-1059 as the Go vulnerability database publishes it
// (references trimmed), with the CVSS vector of its GHSA alias
// (GHSA-69ch-w2m2-3vjp) added: Go's records carry no severity.
func goText() map[string]any {
	return map[string]any{
		"id":        GoText,
		"published": "2022-10-11T18:16:24Z",
		"aliases":   []string{"CVE-2022-32149", "GHSA-69ch-w2m2-3vjp"},
		"summary":   "Denial of service via crafted Accept-Language header in golang.org/x/text/language",
		"details": "An attacker may cause a denial of service by crafting an Accept-Language header which " +
			"ParseAcceptLanguage will take significant time to parse.",
		"severity": []any{map[string]string{"type": "CVSS_V3", "score": goTextVector}},
		"affected": []any{map[string]any{
			"package": map[string]any{"name": "golang.org/x/text", "ecosystem": "Go"},
			"ranges": []any{map[string]any{"type": "SEMVER", "events": []any{
				map[string]string{"introduced": "0"}, map[string]string{"fixed": "0.3.8"},
			}}},
			"ecosystem_specific": map[string]any{"imports": []any{map[string]any{
				"path":    "golang.org/x/text/language",
				"symbols": []string{"MatchStrings", "MustParse", "Parse", "ParseAcceptLanguage"},
			}}},
		}},
		"references": []any{
			map[string]string{"type": "REPORT", "url": "https://go.dev/issue/56152"},
			map[string]string{"type": "FIX", "url": "https://go.dev/cl/442235"},
		},
		"database_specific": map[string]any{"url": "https://pkg.go.dev/vuln/GO-2022-1059", "review_status": "REVIEWED"},
	}
}

// zipTime is every zip entry's modification time, so all.zip's bytes
// depend only on the records.
func zipTime() time.Time { return time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC) }

// Zip returns one ecosystem's records as OSV's all.zip export: one
// "<ID>.json" entry per record.
func (d *Data) Zip(dir string) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, r := range d.Records[dir] {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: r.ID + ".json", Method: zip.Deflate, Modified: zipTime()})
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(r.JSON); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteZip writes dir/<Ecosystem>/all.zip for each ecosystem.
func (d *Data) WriteZip(dir string) error {
	for _, eco := range d.ecosystems() {
		b, err := d.Zip(eco)
		if err != nil {
			return fmt.Errorf("osvfixture: %w", err)
		}
		if err := write(filepath.Join(dir, eco, "all.zip"), b); err != nil {
			return err
		}
	}
	return nil
}

// WriteLoose writes each record as dir/<Ecosystem>/<ID prefix>/<ID>.json
// (one directory level deeper than the ecosystem, as a mirror that
// shards its files would).
func (d *Data) WriteLoose(dir string) error {
	for _, eco := range d.ecosystems() {
		for _, r := range d.Records[eco] {
			prefix, _, _ := strings.Cut(r.ID, "-")
			if err := write(filepath.Join(dir, eco, prefix, r.ID+".json"), r.JSON); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d *Data) ecosystems() []string {
	out := make([]string, 0, len(d.Records))
	for eco := range d.Records {
		out = append(out, eco)
	}
	sort.Strings(out)
	return out
}

func write(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("osvfixture: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("osvfixture: %w", err)
	}
	return nil
}

// Project reduces findings to the comparable Finding form, sorted by ID
// then package name, so a test asserts
// reflect.DeepEqual(osvfixture.Project(got), data.Expected[fixture]).
func Project(findings []inventory.Finding) []Finding {
	out := make([]Finding, 0, len(findings))
	for _, f := range findings {
		out = append(out, Finding{ID: f.ID, Package: f.Package.Name, Fixed: f.Fixed, Severity: f.Severity})
	}
	sortFindings(out)
	return out
}

func sortFindings(fs []Finding) {
	sort.Slice(fs, func(i, j int) bool {
		if fs[i].ID != fs[j].ID {
			return fs[i].ID < fs[j].ID
		}
		return fs[i].Package < fs[j].Package
	})
}
