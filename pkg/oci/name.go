package oci

import (
	"fmt"
	"regexp"
	"strings"
)

// Grammars from the OCI Distribution Spec v1.1 ("Pulling manifests").
var (
	nameRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRE  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

// MaxNameLength bounds a repository name. The spec lets registries limit it;
// 255 characters matches distribution and keeps DynamoDB keys small.
const MaxNameLength = 255

// ValidName reports whether name is a valid repository name.
func ValidName(name string) bool {
	return len(name) > 0 && len(name) <= MaxNameLength && nameRE.MatchString(name)
}

// ValidTag reports whether tag is a valid tag.
func ValidTag(tag string) bool { return tagRE.MatchString(tag) }

// Reference is a manifest reference: a tag or a digest, never both.
type Reference struct {
	Tag    string
	Digest Digest
}

// String returns the tag or the digest.
func (r Reference) String() string {
	if r.Digest != "" {
		return string(r.Digest)
	}
	return r.Tag
}

// IsDigest reports whether the reference names a digest.
func (r Reference) IsDigest() bool { return r.Digest != "" }

// ParseReference parses a manifest reference from a URL path segment. A
// reference containing ':' must be a digest; otherwise it must be a tag.
func ParseReference(s string) (Reference, error) {
	if strings.Contains(s, ":") {
		d, err := ParseDigest(s)
		if err != nil {
			return Reference{}, err
		}
		return Reference{Digest: d}, nil
	}
	if !ValidTag(s) {
		return Reference{}, fmt.Errorf("invalid tag %q", s)
	}
	return Reference{Tag: s}, nil
}
