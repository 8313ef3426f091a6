// Package inventory is the scanner's vocabulary (docs/scanning.md): what
// indexing one layer found (Layer, stored once per layer digest, shared by
// every image that holds the layer), what an image holds once its layers
// are stacked (Image), and what matching that against vulnerability data
// found (Finding). It has no dependencies beyond pkg/oci, so the indexer,
// the matcher, the report writers and the scan orchestration can each be
// built and tested on their own.
package inventory

import "github.com/berth-registry/berth/pkg/oci"

// Schema is the version of the stored Layer JSON. A change that removes or
// renames a field, or changes what the indexer records, raises it; a stored
// index of another schema is re-indexed rather than read.
const Schema = 1

// Layer is what indexing one layer blob found. It is stored as JSON keyed
// by the layer's digest.
type Layer struct {
	Schema    int        `json:"schema"`
	Digest    oci.Digest `json:"digest"`
	MediaType string     `json:"mediaType,omitempty"`
	Size      int64      `json:"size"`
	// Indexer names the indexer and its version ("berth-layerindex/1"), so
	// a later indexer that finds more can tell which layers to redo.
	Indexer string `json:"indexer"`
	// Packages are the packages the extractors found, in the order of the
	// tar entries that declared them.
	Packages []Package `json:"packages,omitempty"`
	// Files are the paths (clean, relative, no leading "/") of every entry
	// in this layer that an extractor wanted, whether or not it declared a
	// package. A later layer's entry at the same path replaces the file,
	// so it hides the packages an earlier layer declared there.
	Files []string `json:"files,omitempty"`
	// Whiteouts are the paths this layer deletes (".wh.<name>" entries,
	// recorded without the prefix): the path and everything under it in
	// earlier layers is gone.
	Whiteouts []string `json:"whiteouts,omitempty"`
	// Opaque are the directories this layer makes opaque (".wh..wh..opq"):
	// everything under them in earlier layers is gone.
	Opaque []string `json:"opaque,omitempty"`
	// OSRelease is the parsed os-release file (etc/os-release, else
	// usr/lib/os-release) if this layer holds one: it names the distro
	// release whose advisories apply to the distro packages.
	OSRelease map[string]string `json:"osRelease,omitempty"`
	// Entries is the number of tar entries read.
	Entries int `json:"entries"`
	// Error is set when indexing stopped early (a malformed tar, a limit
	// reached, an unsupported compression): Packages holds what was found
	// before. A layer with an error is reported, never silently clean.
	Error string `json:"error,omitempty"`
	// NotLayer: the blob is not a layer (a config, an artifact); nothing
	// was read from it.
	NotLayer bool `json:"notLayer,omitempty"`
}

// Package is one installed package.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Ecosystem is the OSV ecosystem without a release: "Debian",
	// "Alpine", "Red Hat", "Rocky Linux", "AlmaLinux", "openSUSE", "Go",
	// "PyPI", "npm", "Maven", "crates.io". The release ("Debian:12",
	// "Alpine:v3.20") is the image's (Image.OSRelease), known only once the
	// layers are stacked.
	Ecosystem string `json:"ecosystem"`
	// PURL is the package URL (https://github.com/package-url/purl-spec),
	// without the distro qualifier for distro packages.
	PURL string `json:"purl,omitempty"`
	// Path is the file in the layer that declared the package: the dpkg
	// status file, the apk database, the Go binary, the METADATA file, the
	// lockfile, the jar.
	Path string `json:"path"`
	// Extractor is the name of the extractor that found it.
	Extractor string `json:"extractor"`
	// SourceName and SourceVersion name the distro source package (dpkg
	// "Source:", apk origin, rpm source rpm) when it differs from the
	// binary package: OSV's Debian and Alpine records are keyed by it.
	SourceName    string `json:"sourceName,omitempty"`
	SourceVersion string `json:"sourceVersion,omitempty"`
	// Layer is the digest of the layer that holds the package; set when
	// layers are merged into an Image.
	Layer oci.Digest `json:"layer,omitempty"`
}

// Image is what an image's layers hold once stacked in order.
type Image struct {
	// Packages are the packages still visible in the image, each with its
	// Layer set, in layer order.
	Packages []Package `json:"packages"`
	// OSRelease is the topmost visible os-release.
	OSRelease map[string]string `json:"osRelease,omitempty"`
	// Layers lists every layer in order; errors stay visible.
	Layers []LayerStatus `json:"layers"`
}

// LayerStatus is one layer of an Image.
type LayerStatus struct {
	Digest   oci.Digest `json:"digest"`
	Packages int        `json:"packages"`
	Error    string     `json:"error,omitempty"`
}

// Severity is a finding's severity, in OSV's and CycloneDX's words.
type Severity string

// Severities from least to most severe; Unknown is below Low.
const (
	SeverityUnknown  Severity = "UNKNOWN"
	SeverityLow      Severity = "LOW"
	SeverityMedium   Severity = "MEDIUM"
	SeverityHigh     Severity = "HIGH"
	SeverityCritical Severity = "CRITICAL"
)

// Rank orders severities: Unknown 0, Low 1 ... Critical 4; anything else
// is -1.
func (s Severity) Rank() int {
	switch s {
	case SeverityUnknown:
		return 0
	case SeverityLow:
		return 1
	case SeverityMedium:
		return 2
	case SeverityHigh:
		return 3
	case SeverityCritical:
		return 4
	}
	return -1
}

// Finding is one vulnerability affecting one visible package.
type Finding struct {
	// ID is the OSV record's id; Aliases its aliases (CVE ids).
	ID       string   `json:"id"`
	Aliases  []string `json:"aliases,omitempty"`
	Summary  string   `json:"summary,omitempty"`
	Severity Severity `json:"severity"`
	// Score is the CVSS vector or score the severity came from, if any.
	Score string `json:"score,omitempty"`
	// Fixed is the lowest version that fixes it in the matched range;
	// empty when no fix is published.
	Fixed string `json:"fixed,omitempty"`
	// Package is the affected package, with Layer and Path.
	Package Package `json:"package"`
	// Ecosystem is the OSV ecosystem the match was made in, with its
	// release ("Debian:12").
	Ecosystem string `json:"ecosystem"`
}
