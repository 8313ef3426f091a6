package storage

import (
	"context"
	"fmt"
	"path"
	"strings"
)

// Objects is an optional capability of a Blobs driver: small documents
// stored beside the blobs under names of the caller's choosing, for data
// derived from blobs that is too big or too many for metadata items (the
// scanner's layer indexes, docs/scanning.md). They are not blobs: nothing
// verifies them against a digest, so their keys never fall under the
// driver's own prefixes (blobs/, uploads/, tmp/) and CheckObjectKey
// refuses any that would.
type Objects interface {
	// ObjectGet returns the object's bytes, or an error wrapping ErrNotFound.
	ObjectGet(ctx context.Context, key string) ([]byte, error)
	// ObjectPut stores data under key, replacing what was there; readers
	// see the old or the new bytes, never a mix.
	ObjectPut(ctx context.Context, key string, data []byte) error
	// ObjectDelete removes the object. Deleting an absent object succeeds.
	ObjectDelete(ctx context.Context, key string) error
}

// MaxObjectBytes bounds one object: ObjectGet reads it whole.
const MaxObjectBytes = 64 << 20

// reservedPrefixes are the drivers' own key spaces.
var reservedPrefixes = []string{"blobs", "uploads", "tmp"}

// CheckObjectKey reports whether key may name an object: a clean,
// relative, slash-separated path of at most 512 bytes with at least two
// segments, outside the drivers' own key spaces.
func CheckObjectKey(key string) error {
	bad := func(why string) error { return fmt.Errorf("object key %q: %s", key, why) }
	switch {
	case key == "" || len(key) > 512:
		return bad("empty or longer than 512 bytes")
	case strings.HasPrefix(key, "/") || path.Clean(key) != key || strings.Contains(key, "\\"):
		return bad("not a clean relative path")
	case !strings.Contains(key, "/"):
		return bad("needs a prefix")
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "." || seg == ".." || strings.HasPrefix(seg, ".") {
			return bad("dot segment")
		}
	}
	first, _, _ := strings.Cut(key, "/")
	for _, p := range reservedPrefixes {
		if first == p {
			return bad("under the driver's own " + p + "/")
		}
	}
	return nil
}
