// Package sbom writes what a scan found as the two documents berth
// attaches to an image as OCI referrers: an SPDX 2.3 JSON SBOM (the
// packages, with the layer and file each came from) and a CycloneDX 1.6
// JSON vulnerability report (the same packages as components plus the
// findings as vulnerabilities), and reads a report back (berth scan).
//
// Both documents are deterministic: the same image, findings, subject and
// creation time give the same bytes, so a re-match that finds nothing
// new produces an identical referrer.
package sbom

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/berth-registry/berth/pkg/inventory"
	"github.com/berth-registry/berth/pkg/oci"
)

// Artifact types of the two referrers (the media types the formats
// register with IANA).
const (
	ArtifactTypeSBOM   = "application/spdx+json"
	ArtifactTypeReport = "application/vnd.cyclonedx+json"
)

// Tool names the writer in both documents; raise the version when the
// documents' content changes.
const (
	ToolName    = "berth"
	ToolVersion = "1"
)

// timeFormat is RFC 3339 in UTC with second precision, the form both
// formats' schemas show.
const timeFormat = "2006-01-02T15:04:05Z"

// uuidFrom derives an RFC 4122 version 5-style UUID (SHA-based,
// name-based) from parts, so identifiers that must be unique per
// document are stable for the same inputs. SHA-256 is used instead of
// version 5's SHA-1; the version nibble says 5 only for the layout.
func uuidFrom(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	b := h.Sum(nil)[:16]
	b[6] = (b[6] & 0x0f) | 0x50
	b[8] = (b[8] & 0x3f) | 0x80
	x := hex.EncodeToString(b)
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// shortHash is a stable id fragment for a package.
func shortHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func packageKey(p inventory.Package) string {
	return shortHash(p.Ecosystem, p.Name, p.Version, p.Path, string(p.Layer), p.PURL, p.SourceName, p.SourceVersion, p.Extractor)
}

// imagePURL is the image's package URL (purl-spec's oci type):
// pkg:oci/<last name segment>@<digest>?repository_url=<name>[&tag=<tag>].
// name is the repository as the registry knows it, optionally with
// ":tag"; the registry's host is not known here, so repository_url is
// the repository path alone.
func imagePURL(name string, subject oci.Descriptor) string {
	repo, tag := splitName(name)
	last := repo
	if i := strings.LastIndex(repo, "/"); i >= 0 {
		last = repo[i+1:]
	}
	if last == "" {
		last = "image"
	}
	q := map[string]string{}
	if repo != "" {
		q["repository_url"] = repo
	}
	if tag != "" {
		q["tag"] = tag
	}
	if p := subject.Platform; p != nil && p.Architecture != "" {
		q["arch"] = p.Architecture
	}
	s := "pkg:oci/" + purlEscape(strings.ToLower(last)) + "@" + purlEscape(string(subject.Digest))
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i == 0 {
			s += "?"
		} else {
			s += "&"
		}
		s += k + "=" + purlEscape(q[k])
	}
	return s
}

// splitName cuts "repo:tag" (or "repo@digest", whose digest is dropped:
// the subject names it) into repository and tag.
func splitName(name string) (repo, tag string) {
	repo, _, _ = strings.Cut(name, "@")
	slash := strings.LastIndex(repo, "/")
	if i := strings.LastIndex(repo, ":"); i > slash {
		return repo[:i], repo[i+1:]
	}
	return repo, ""
}

// purlEscape percent-encodes what purl-spec requires encoded in a
// version or qualifier value, leaving '/' and ':' readable as its
// examples do.
func purlEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '.', c == '-', c == '_', c == '~', c == '/':
			b.WriteByte(c)
		case c == ':':
			b.WriteString("%3A")
		default:
			b.WriteString(url.QueryEscape(string(c)))
		}
	}
	return b.String()
}
