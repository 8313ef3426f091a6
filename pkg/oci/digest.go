package oci

import (
	"crypto"
	_ "crypto/sha256" // register SHA-256
	_ "crypto/sha512" // register SHA-512
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"
)

// Digest re-exports go-digest's type so callers need one import.
type Digest = digest.Digest

// Supported digest algorithms. The OCI spec registers exactly these two.
const (
	SHA256 = digest.SHA256
	SHA512 = digest.SHA512
)

// ErrDigestUnsupported is returned for a well-formed digest of an algorithm
// Berth does not accept.
var ErrDigestUnsupported = errors.New("unsupported digest algorithm")

// ParseDigest validates s as a sha256 or sha512 digest in canonical form
// (lowercase hex of the exact length).
func ParseDigest(s string) (Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		if errors.Is(err, digest.ErrDigestUnsupported) {
			return "", fmt.Errorf("%w: %q", ErrDigestUnsupported, s)
		}
		return "", fmt.Errorf("invalid digest %q: %w", s, err)
	}
	switch d.Algorithm() {
	case SHA256, SHA512:
	default:
		return "", fmt.Errorf("%w: %q", ErrDigestUnsupported, s)
	}
	return d, nil
}

// NewHash returns a fresh hash for a supported algorithm.
func NewHash(alg digest.Algorithm) (hash.Hash, error) {
	switch alg {
	case SHA256:
		return crypto.SHA256.New(), nil
	case SHA512:
		return crypto.SHA512.New(), nil
	}
	return nil, fmt.Errorf("%w: %s", ErrDigestUnsupported, alg)
}

// FromBytes digests b with alg.
func FromBytes(alg digest.Algorithm, b []byte) Digest { return alg.FromBytes(b) }

// Compute reads r to the end and returns its digest under alg and its length.
func Compute(alg digest.Algorithm, r io.Reader) (Digest, int64, error) {
	h, err := NewHash(alg)
	if err != nil {
		return "", 0, err
	}
	n, err := io.Copy(h, r)
	if err != nil {
		return "", n, err
	}
	return digest.NewDigest(alg, h), n, nil
}

// DigestOf returns the digest of the hash's current state under alg.
func DigestOf(alg digest.Algorithm, h hash.Hash) Digest { return digest.NewDigest(alg, h) }
