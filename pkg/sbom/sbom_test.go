package sbom

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/pkg/inventory"
	"github.com/berth-registry/berth/pkg/oci"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json")

const (
	layer1 = oci.Digest("sha256:1111111111111111111111111111111111111111111111111111111111111111")
	layer2 = oci.Digest("sha256:2222222222222222222222222222222222222222222222222222222222222222")
)

var created = time.Date(2026, 12, 5, 9, 30, 0, 0, time.FixedZone("CET", 3600))

func subject() oci.Descriptor {
	return oci.Descriptor{
		MediaType: oci.MediaTypeImageManifest,
		Digest:    "sha256:abababababababababababababababababababababababababababababababab",
		Size:      1234,
	}
}

func sampleImage() inventory.Image {
	return inventory.Image{
		OSRelease: map[string]string{"ID": "debian", "VERSION_ID": "12"},
		Layers: []inventory.LayerStatus{
			{Digest: layer1, Packages: 2},
			{Digest: layer2, Packages: 1, Error: "tar: unexpected EOF"},
		},
		Packages: []inventory.Package{
			{Name: "libc6", Version: "2.36-9+deb12u7", Ecosystem: "Debian", PURL: "pkg:deb/debian/libc6@2.36-9%2Bdeb12u7?arch=amd64",
				Path: "var/lib/dpkg/status", Extractor: "os/dpkg", SourceName: "glibc", Layer: layer1},
			{Name: "bash", Version: "5.2.15-2+b2", Ecosystem: "Debian", PURL: "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64",
				Path: "var/lib/dpkg/status", Extractor: "os/dpkg", SourceName: "bash", SourceVersion: "5.2.15-2", Layer: layer1},
			{Name: "golang.org/x/text", Version: "0.3.7", Ecosystem: "Go", PURL: "pkg:golang/golang.org/x/text@v0.3.7",
				Path: "usr/local/bin/app", Extractor: "go/binary", Layer: layer2},
		},
	}
}

func sampleFindings(img inventory.Image) []inventory.Finding {
	return []inventory.Finding{
		{ID: "GO-2022-1059", Aliases: []string{"CVE-2022-32149", "GHSA-69ch-w2m2-3vjp"},
			Summary:  "Denial of service via crafted Accept-Language header in golang.org/x/text/language",
			Severity: inventory.SeverityHigh, Score: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H",
			Fixed: "0.3.8", Package: img.Packages[2], Ecosystem: "Go"},
		{ID: "BERTH-TEST-DEB-1", Summary: "glibc <test> & friends", Severity: inventory.SeverityUnknown,
			Fixed: "2.36-9+deb12u7+berth1", Package: img.Packages[0], Ecosystem: "Debian:12"},
		{ID: "BERTH-TEST-NOFIX", Severity: inventory.SeverityLow, Score: "2.1", Package: img.Packages[1], Ecosystem: "Debian:12"},
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run with -update after checking):\n%s", name, got)
	}
}

func TestSPDXGolden(t *testing.T) {
	img := sampleImage()
	b, err := SPDX(img, subject(), "library/app:1.0", created)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "spdx.golden.json", b)
	validateSPDX(t, b)
	// Deterministic.
	again, _ := SPDX(img, subject(), "library/app:1.0", created)
	if !bytes.Equal(b, again) {
		t.Error("not deterministic")
	}
	// The namespace changes with the content and the subject.
	ns := func(b []byte) string {
		var d struct{ DocumentNamespace string }
		json.Unmarshal(b, &d)
		return d.DocumentNamespace
	}
	img2 := sampleImage()
	img2.Packages = img2.Packages[:2]
	other, _ := SPDX(img2, subject(), "library/app:1.0", created)
	sub := subject()
	sub.Digest = "sha256:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"
	other2, _ := SPDX(img, sub, "library/app:1.0", created)
	if ns(b) == ns(other) || ns(b) == ns(other2) {
		t.Error("namespace does not follow content and subject")
	}
}

func TestReportGoldenAndRoundTrip(t *testing.T) {
	img := sampleImage()
	findings := sampleFindings(img)
	b, err := Report(img, findings, subject(), "library/app:1.0", created)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "report.golden.json", b)
	validateCycloneDX(t, b)
	got, err := ParseReport(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, findings) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, findings)
	}
}

func TestReportEmptyAndForeignPackage(t *testing.T) {
	// No findings, no packages: still a valid report with empty arrays.
	b, err := Report(inventory.Image{}, nil, subject(), "", created)
	if err != nil {
		t.Fatal(err)
	}
	validateCycloneDX(t, b)
	if got, err := ParseReport(b); err != nil || len(got) != 0 {
		t.Errorf("empty report: %v %v", got, err)
	}
	// A finding whose package is not in the image still gets a component;
	// two identical packages stay two components.
	p := inventory.Package{Name: "x", Version: "1", Ecosystem: "npm"}
	img := inventory.Image{Packages: []inventory.Package{p, p}}
	f := []inventory.Finding{
		{ID: "A", Severity: inventory.SeverityMedium, Package: inventory.Package{Name: "y", Version: "2", Ecosystem: "npm"}, Ecosystem: "npm"},
		{ID: "B", Severity: inventory.SeverityMedium, Package: p, Ecosystem: "npm"},
	}
	b, err = Report(img, f, subject(), "r", created)
	if err != nil {
		t.Fatal(err)
	}
	validateCycloneDX(t, b)
	got, err := ParseReport(b)
	if err != nil || !reflect.DeepEqual(got, f) {
		t.Errorf("round trip: %+v %v", got, err)
	}
}

func TestParseReportRejects(t *testing.T) {
	for _, doc := range []string{
		`not json`,
		`{"spdxVersion": "SPDX-2.3"}`,
		`{"bomFormat": "CycloneDX", "specVersion": "2.0"}`,
		`{"bomFormat": "CycloneDX", "specVersion": "1.6", "vulnerabilities": [{"id": "X", "affects": [{"ref": "nowhere"}]}]}`,
	} {
		if _, err := ParseReport([]byte(doc)); !errors.Is(err, ErrNotReport) {
			t.Errorf("%s: err %v", doc, err)
		}
	}
}

func TestParseForeignReport(t *testing.T) {
	// A report as another tool writes it: grouped affects, several
	// ratings, no berth properties.
	doc := `{"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
	  "components": [{"type": "library", "bom-ref": "a", "name": "lodash", "version": "4.17.20", "purl": "pkg:npm/lodash@4.17.20"},
	                 {"type": "library", "bom-ref": "b", "name": "lodash", "version": "4.17.19"}],
	  "vulnerabilities": [{"id": "GHSA-35jh-r3h4-6jhm", "references": [{"id": "CVE-2021-23337", "source": {"name": "NVD"}}],
	    "ratings": [{"severity": "medium"}, {"severity": "high", "vector": "CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H", "method": "CVSSv31"}],
	    "recommendation": "Upgrade to 4.17.21", "affects": [{"ref": "a"}, {"ref": "b"}]}]}`
	got, err := ParseReport([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := []inventory.Finding{
		{ID: "GHSA-35jh-r3h4-6jhm", Aliases: []string{"CVE-2021-23337"}, Severity: inventory.SeverityHigh,
			Score: "CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H", Fixed: "4.17.21",
			Package: inventory.Package{Name: "lodash", Version: "4.17.20", PURL: "pkg:npm/lodash@4.17.20"}},
		{ID: "GHSA-35jh-r3h4-6jhm", Aliases: []string{"CVE-2021-23337"}, Severity: inventory.SeverityHigh,
			Score: "CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H", Fixed: "4.17.21",
			Package: inventory.Package{Name: "lodash", Version: "4.17.19"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v", got)
	}
}

func TestImagePURL(t *testing.T) {
	d := oci.Descriptor{Digest: "sha256:abc"}
	arm := oci.Descriptor{Digest: "sha256:abc", Platform: &oci.Platform{Architecture: "arm64", OS: "linux"}}
	for _, c := range []struct {
		name string
		d    oci.Descriptor
		want string
	}{
		{"library/Debian:12", d, "pkg:oci/debian@sha256%3Aabc?repository_url=library/Debian&tag=12"},
		{"localhost:5000/team/app@sha256:abc", d, "pkg:oci/app@sha256%3Aabc?repository_url=localhost%3A5000/team/app"},
		{"app", arm, "pkg:oci/app@sha256%3Aabc?arch=arm64&repository_url=app"},
		{"", d, "pkg:oci/image@sha256%3Aabc"},
	} {
		if got := imagePURL(c.name, c.d); got != c.want {
			t.Errorf("%q: %s, want %s", c.name, got, c.want)
		}
	}
}

func TestNoDigest(t *testing.T) {
	if _, err := SPDX(inventory.Image{}, oci.Descriptor{}, "x", created); err == nil {
		t.Error("SPDX without a subject digest")
	}
	if _, err := Report(inventory.Image{}, nil, oci.Descriptor{}, "x", created); err == nil {
		t.Error("Report without a subject digest")
	}
}

// --- schema checks -------------------------------------------------------
//
// The parts of the official JSON schemas (spdx-schema.json for 2.3,
// bom-1.6.schema.json) that a consumer relies on, written out here
// because the tests run without network: required fields, enums,
// patterns, and references that must resolve.

type obj = map[string]any

func decode(t *testing.T, b []byte) obj {
	t.Helper()
	var m obj
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func require(t *testing.T, where string, m obj, fields ...string) {
	t.Helper()
	for _, f := range fields {
		v, ok := m[f]
		if !ok || v == nil {
			t.Errorf("%s: required %q missing", where, f)
			continue
		}
		if s, isStr := v.(string); isStr && s == "" {
			t.Errorf("%s: %q empty", where, f)
		}
	}
}

func str(m obj, f string) string { s, _ := m[f].(string); return s }

func arr(t *testing.T, where string, m obj, f string) []obj {
	t.Helper()
	raw, ok := m[f].([]any)
	if !ok {
		t.Errorf("%s: %q is not an array", where, f)
		return nil
	}
	out := make([]obj, 0, len(raw))
	for i, r := range raw {
		o, ok := r.(obj)
		if !ok {
			t.Errorf("%s.%s[%d] is not an object", where, f, i)
			continue
		}
		out = append(out, o)
	}
	return out
}

func oneOf(t *testing.T, where, v string, allowed ...string) {
	t.Helper()
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	t.Errorf("%s: %q not one of %v", where, v, allowed)
}

var (
	spdxIDPattern   = regexp.MustCompile(`^SPDXRef-[a-zA-Z0-9.-]+$`)
	dateTimePattern = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
	uuidURNPattern  = regexp.MustCompile(`^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	purlPattern     = regexp.MustCompile(`^pkg:[a-z][a-z0-9.+-]*/[^@?#]*[^/@?#](@[^?#]+)?(\?[^#]*)?(#.*)?$`)
)

func validateSPDX(t *testing.T, b []byte) {
	t.Helper()
	d := decode(t, b)
	require(t, "document", d, "spdxVersion", "dataLicense", "SPDXID", "name", "documentNamespace", "creationInfo")
	if str(d, "spdxVersion") != "SPDX-2.3" || str(d, "dataLicense") != "CC0-1.0" || str(d, "SPDXID") != "SPDXRef-DOCUMENT" {
		t.Errorf("document header: %v %v %v", d["spdxVersion"], d["dataLicense"], d["SPDXID"])
	}
	if ns := str(d, "documentNamespace"); strings.Contains(ns, "#") || !strings.Contains(ns, ":") {
		t.Errorf("documentNamespace %q is not an absolute URI without fragment", ns)
	}
	ci, _ := d["creationInfo"].(obj)
	require(t, "creationInfo", ci, "created", "creators")
	if !dateTimePattern.MatchString(str(ci, "created")) {
		t.Errorf("created %q", ci["created"])
	}
	creators, _ := ci["creators"].([]any)
	if len(creators) == 0 {
		t.Error("no creators")
	}
	for _, c := range creators {
		if s, _ := c.(string); !regexp.MustCompile(`^(Tool|Person|Organization): .+`).MatchString(s) {
			t.Errorf("creator %q", c)
		}
	}
	ids := map[string]bool{"SPDXRef-DOCUMENT": true}
	for i, p := range arr(t, "document", d, "packages") {
		where := fmt.Sprintf("packages[%d]", i)
		require(t, where, p, "SPDXID", "name", "downloadLocation")
		id := str(p, "SPDXID")
		if !spdxIDPattern.MatchString(id) {
			t.Errorf("%s: SPDXID %q", where, id)
		}
		if ids[id] {
			t.Errorf("%s: duplicate SPDXID %q", where, id)
		}
		ids[id] = true
		// filesAnalyzed defaults to true, which would require a
		// packageVerificationCode.
		if fa, ok := p["filesAnalyzed"].(bool); !ok || fa {
			if _, ok := p["packageVerificationCode"]; !ok {
				t.Errorf("%s: filesAnalyzed without packageVerificationCode", where)
			}
		}
		if ppp, ok := p["primaryPackagePurpose"]; ok {
			oneOf(t, where, ppp.(string), "APPLICATION", "FRAMEWORK", "LIBRARY", "CONTAINER", "OPERATING-SYSTEM", "DEVICE", "FIRMWARE", "SOURCE", "ARCHIVE", "FILE", "INSTALL", "OTHER")
		}
		if _, ok := p["externalRefs"]; ok {
			for j, r := range arr(t, where, p, "externalRefs") {
				w := fmt.Sprintf("%s.externalRefs[%d]", where, j)
				require(t, w, r, "referenceCategory", "referenceType", "referenceLocator")
				oneOf(t, w, str(r, "referenceCategory"), "OTHER", "PERSISTENT-ID", "PERSISTENT_ID", "SECURITY", "PACKAGE-MANAGER", "PACKAGE_MANAGER")
				if str(r, "referenceType") == "purl" && !purlPattern.MatchString(str(r, "referenceLocator")) {
					t.Errorf("%s: purl %q", w, r["referenceLocator"])
				}
			}
		}
	}
	describes := 0
	for i, r := range arr(t, "document", d, "relationships") {
		where := fmt.Sprintf("relationships[%d]", i)
		require(t, where, r, "spdxElementId", "relationshipType", "relatedSpdxElement")
		oneOf(t, where, str(r, "relationshipType"), "DESCRIBES", "CONTAINS", "DEPENDS_ON", "CONTAINED_BY", "DESCRIBED_BY", "OTHER")
		if !ids[str(r, "spdxElementId")] || !ids[str(r, "relatedSpdxElement")] {
			t.Errorf("%s: dangling element %v → %v", where, r["spdxElementId"], r["relatedSpdxElement"])
		}
		if str(r, "relationshipType") == "DESCRIBES" && str(r, "spdxElementId") == "SPDXRef-DOCUMENT" {
			describes++
		}
	}
	if describes == 0 {
		t.Error("document DESCRIBES nothing")
	}
}

func validateCycloneDX(t *testing.T, b []byte) {
	t.Helper()
	d := decode(t, b)
	require(t, "bom", d, "bomFormat", "specVersion")
	if str(d, "bomFormat") != "CycloneDX" || str(d, "specVersion") != "1.6" {
		t.Errorf("header %v %v", d["bomFormat"], d["specVersion"])
	}
	if !uuidURNPattern.MatchString(str(d, "serialNumber")) {
		t.Errorf("serialNumber %q", d["serialNumber"])
	}
	if v, ok := d["version"].(float64); !ok || v < 1 {
		t.Errorf("version %v", d["version"])
	}
	refs := map[string]bool{}
	checkComponent := func(where string, c obj) {
		require(t, where, c, "type", "name")
		oneOf(t, where, str(c, "type"), "application", "framework", "library", "container", "platform", "operating-system", "device", "device-driver", "firmware", "file", "machine-learning-model", "data", "cryptographic-asset")
		if r, ok := c["bom-ref"]; ok {
			if refs[r.(string)] {
				t.Errorf("%s: duplicate bom-ref %v", where, r)
			}
			refs[r.(string)] = true
		}
		if p, ok := c["purl"]; ok && !purlPattern.MatchString(p.(string)) {
			t.Errorf("%s: purl %q", where, p)
		}
		if _, ok := c["properties"]; ok {
			for j, p := range arr(t, where, c, "properties") {
				require(t, fmt.Sprintf("%s.properties[%d]", where, j), p, "name")
			}
		}
	}
	md, _ := d["metadata"].(obj)
	if !dateTimePattern.MatchString(str(md, "timestamp")) {
		t.Errorf("timestamp %v", md["timestamp"])
	}
	if tools, ok := md["tools"].(obj); ok {
		for i, c := range arr(t, "tools", tools, "components") {
			checkComponent(fmt.Sprintf("tools.components[%d]", i), c)
		}
	}
	if c, ok := md["component"].(obj); ok {
		checkComponent("metadata.component", c)
	} else {
		t.Error("no metadata.component")
	}
	for i, c := range arr(t, "bom", d, "components") {
		checkComponent(fmt.Sprintf("components[%d]", i), c)
	}
	for i, v := range arr(t, "bom", d, "vulnerabilities") {
		where := fmt.Sprintf("vulnerabilities[%d]", i)
		require(t, where, v, "id")
		if r, ok := v["bom-ref"]; ok {
			if refs[r.(string)] {
				t.Errorf("%s: duplicate bom-ref %v", where, r)
			}
			refs[r.(string)] = true
		}
		if _, ok := v["references"]; ok {
			for j, r := range arr(t, where, v, "references") {
				require(t, fmt.Sprintf("%s.references[%d]", where, j), r, "id", "source")
			}
		}
		for j, r := range arr(t, where, v, "ratings") {
			w := fmt.Sprintf("%s.ratings[%d]", where, j)
			if s, ok := r["severity"]; ok {
				oneOf(t, w, s.(string), "critical", "high", "medium", "low", "info", "none", "unknown")
			}
			if m, ok := r["method"]; ok {
				oneOf(t, w, m.(string), "CVSSv2", "CVSSv3", "CVSSv31", "CVSSv4", "OWASP", "SSVC", "other")
			}
			if s, ok := r["score"]; ok {
				if f, isNum := s.(float64); !isNum || f < 0 || f > 10 {
					t.Errorf("%s: score %v", w, s)
				}
			}
		}
		affects := arr(t, where, v, "affects")
		if len(affects) == 0 {
			t.Errorf("%s: affects nothing", where)
		}
		for j, a := range affects {
			w := fmt.Sprintf("%s.affects[%d]", where, j)
			require(t, w, a, "ref")
			if !refs[str(a, "ref")] {
				t.Errorf("%s: ref %v names no component", w, a["ref"])
			}
			if _, ok := a["versions"]; ok {
				for k, av := range arr(t, w, a, "versions") {
					if st, ok := av["status"]; ok {
						oneOf(t, fmt.Sprintf("%s.versions[%d]", w, k), st.(string), "affected", "unaffected", "unknown")
					}
				}
			}
		}
	}
}
