package vulndb

import (
	"regexp"
	"strings"

	"github.com/berth-registry/berth/pkg/inventory"
)

// distro is the OSV ecosystem an image's distro packages are matched in.
type distro struct {
	// family is the package format ("dpkg", "apk", "rpm"): a package is
	// matched in the distro's ecosystem only if it is of that format.
	family string
	base   string
	// accept says whether a record's full ecosystem applies to this
	// release.
	accept func(eco string) bool
}

// distroFamily names the package format of an inventory ecosystem.
func distroFamily(eco string) string {
	switch baseEcosystem(eco) {
	case "Debian", "Ubuntu":
		return "dpkg"
	case "Alpine", "Wolfi", "Chainguard":
		return "apk"
	case "Red Hat", "Rocky Linux", "AlmaLinux", "openSUSE", "SUSE", "Mageia", "Azure Linux", "openEuler":
		return "rpm"
	}
	return ""
}

func exactly(names ...string) func(string) bool {
	return func(eco string) bool {
		for _, n := range names {
			if eco == n {
				return true
			}
		}
		return false
	}
}

var alpineRelease = regexp.MustCompile(`^(\d+)\.(\d+)`)

// distroOf maps an image's os-release to the OSV ecosystem its distro
// packages are published under, the way OSV names releases:
//
//   - Debian: "Debian:<VERSION_ID>" ("Debian:12"). Testing and sid have
//     no VERSION_ID and no OSV release: their packages are not matched.
//   - Ubuntu: "Ubuntu:<VERSION_ID>:LTS" for LTS releases, else
//     "Ubuntu:<VERSION_ID>" (osv-scalibr v0.5.3 purl/ecosystem maps
//     "22.04" to "22.04:LTS" and "22.10" to "22.10" the same way). An LTS
//     release is one whose VERSION says "LTS", or an even year's .04.
//     Ubuntu Pro's ecosystems ("Ubuntu:Pro:…") are not matched: a plain
//     image does not get Pro's packages.
//   - Alpine: "Alpine:v<major>.<minor>" ("3.20.3" → "Alpine:v3.20").
//   - Red Hat: "Red Hat:enterprise_linux:<major>::<repo>" (any repository
//     of the major release: an image's CPE names only baseos but it holds
//     appstream packages too).
//   - Rocky Linux: "Rocky Linux:<major>" (and the unversioned "Rocky
//     Linux" osv-scalibr uses); AlmaLinux: "AlmaLinux:<major>".
//   - openSUSE Leap: "openSUSE:Leap <VERSION_ID>" (as osv-scalibr),
//     Tumbleweed: "openSUSE:Tumbleweed"; Mageia: "Mageia:<VERSION_ID>".
//   - Wolfi and Chainguard: their unversioned ecosystems (rolling).
//
// SUSE Linux Enterprise, Azure Linux and openEuler are not matched: their
// OSV release names do not follow from os-release alone (SUSE's name the
// product and service pack), or osv-scalibr's semantic package cannot
// order their versions (Azure Linux).
//
// Derivatives (ID_LIKE only) are not matched: their package versions
// are their own.
func distroOf(osr map[string]string) (distro, bool) {
	id := strings.ToLower(osr["ID"])
	ver := osr["VERSION_ID"]
	major, _, _ := strings.Cut(ver, ".")
	switch id {
	case "debian":
		if ver == "" {
			return distro{}, false
		}
		return distro{"dpkg", "Debian", exactly("Debian:" + ver)}, true
	case "ubuntu":
		if ver == "" {
			return distro{}, false
		}
		if isUbuntuLTS(ver, osr["VERSION"]) {
			return distro{"dpkg", "Ubuntu", exactly("Ubuntu:"+ver+":LTS", "Ubuntu:"+ver)}, true
		}
		return distro{"dpkg", "Ubuntu", exactly("Ubuntu:" + ver)}, true
	case "alpine":
		m := alpineRelease.FindStringSubmatch(ver)
		if m == nil {
			return distro{}, false
		}
		return distro{"apk", "Alpine", exactly("Alpine:v" + m[1] + "." + m[2])}, true
	case "rhel":
		if major == "" {
			return distro{}, false
		}
		prefix := "Red Hat:enterprise_linux:" + major + ":"
		return distro{"rpm", "Red Hat", func(eco string) bool { return strings.HasPrefix(eco, prefix) }}, true
	case "rocky":
		if major == "" {
			return distro{}, false
		}
		return distro{"rpm", "Rocky Linux", exactly("Rocky Linux:"+major, "Rocky Linux")}, true
	case "almalinux":
		if major == "" {
			return distro{}, false
		}
		return distro{"rpm", "AlmaLinux", exactly("AlmaLinux:" + major)}, true
	case "opensuse-leap":
		if ver == "" {
			return distro{}, false
		}
		return distro{"rpm", "openSUSE", exactly("openSUSE:Leap " + ver)}, true
	case "opensuse-tumbleweed":
		return distro{"rpm", "openSUSE", exactly("openSUSE:Tumbleweed")}, true
	case "mageia":
		if ver == "" {
			return distro{}, false
		}
		return distro{"rpm", "Mageia", exactly("Mageia:" + ver)}, true
	case "wolfi":
		return distro{"apk", "Wolfi", exactly("Wolfi")}, true
	case "chainguard":
		return distro{"apk", "Chainguard", exactly("Chainguard")}, true
	}
	return distro{}, false
}

func isUbuntuLTS(versionID, version string) bool {
	if strings.Contains(version, "LTS") {
		return true
	}
	year, month, ok := strings.Cut(versionID, ".")
	if !ok || month != "04" || len(year) != 2 {
		return false
	}
	return (year[1]-'0')%2 == 0
}

// isLanguageEcosystem says whether packages of eco are matched as the
// inventory names them (no release).
func isLanguageEcosystem(eco string) bool {
	switch eco {
	case "Go", "PyPI", "npm", "Maven", "crates.io", "RubyGems", "NuGet", "Packagist", "Pub", "Hex":
		return true
	}
	return false
}

// target says in which ecosystem, under which name and at which version
// a package is looked up. ok is false for packages nothing can match.
type target struct {
	base    string
	name    string
	version string
	accept  func(string) bool
}

func targetOf(p inventory.Package, d distro, haveDistro bool) (target, bool) {
	base := baseEcosystem(p.Ecosystem)
	if fam := distroFamily(base); fam != "" {
		if !haveDistro || fam != d.family {
			return target{}, false
		}
		// Distro advisories are per source package, at the source
		// version (a binNMU's "+b1" binary keeps its source's version).
		name, version := p.Name, p.Version
		if p.SourceName != "" {
			name = p.SourceName
		}
		if p.SourceVersion != "" {
			version = p.SourceVersion
		}
		return target{base: d.base, name: name, version: version, accept: d.accept}, true
	}
	if !isLanguageEcosystem(base) {
		return target{}, false
	}
	name, version := p.Name, p.Version
	switch base {
	case "Go":
		// Module versions carry a "v", the toolchain a "go" prefix;
		// OSV's Go records have neither.
		version = strings.TrimPrefix(version, "v")
		if name == "stdlib" || name == "toolchain" {
			version = strings.TrimPrefix(version, "go")
		}
	case "Maven":
		if !strings.Contains(name, ":") {
			if ga, ok := mavenFromPURL(p.PURL); ok {
				name = ga
			}
		}
	}
	return target{base: base, name: name, version: version, accept: exactly(base)}, true
}

// mavenFromPURL reads "group:artifact" from pkg:maven/group/artifact@v.
func mavenFromPURL(purl string) (string, bool) {
	rest, ok := strings.CutPrefix(purl, "pkg:maven/")
	if !ok {
		return "", false
	}
	rest, _, _ = strings.Cut(rest, "@")
	rest, _, _ = strings.Cut(rest, "?")
	group, artifact, ok := strings.Cut(rest, "/")
	if !ok || group == "" || artifact == "" || strings.Contains(artifact, "/") {
		return "", false
	}
	return group + ":" + artifact, true
}

var pep503 = regexp.MustCompile(`[-_.]+`)

// normalizeName makes a package name comparable within its ecosystem:
// PyPI names per PEP 503 (case-insensitive, runs of -_. are one "-");
// others are compared as published (Go module paths and Maven
// coordinates are case-sensitive).
func normalizeName(base, name string) string {
	if base == "PyPI" {
		return pep503.ReplaceAllString(strings.ToLower(name), "-")
	}
	return name
}
