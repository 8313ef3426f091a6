package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Source is where an image comes from: an OCI layout, an archive or another
// registry. The pusher walks the manifest graph itself from Root, so the
// bytes it pushes are the source's bytes (no re-encoding), and every source
// only has to hand out manifests and blobs by descriptor.
type Source interface {
	// Root returns the manifest or index to push and its bytes.
	Root(ctx context.Context) (v1.Descriptor, []byte, error)
	// Manifest returns the bytes of a manifest named by a descriptor read
	// from another manifest (an index's child, a referrer).
	Manifest(ctx context.Context, d v1.Descriptor) ([]byte, error)
	// Blob opens a blob. Sources that can also read at an offset return a
	// reader that implements io.ReaderAt, which lets multipart uploads and
	// retries avoid reading from the start.
	Blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error)
	// Referrers lists the manifests whose subject is d (signatures, SBOMs).
	Referrers(ctx context.Context, d v1.Descriptor) ([]v1.Descriptor, error)
}

// Mounter is implemented by sources that live in a registry: when the
// destination is the same registry, blobs are mounted instead of copied.
type Mounter interface {
	// MountFrom returns the source's registry host and repository.
	MountFrom() (registry, repo string)
}

// manifestJSON is every field of an OCI or Docker manifest or index that
// names other content.
type manifestJSON struct {
	MediaType types.MediaType `json:"mediaType"`
	Config    *v1.Descriptor  `json:"config"`
	Layers    []v1.Descriptor `json:"layers"`
	Manifests []v1.Descriptor `json:"manifests"`
	Subject   *v1.Descriptor  `json:"subject"`
	Blobs     []v1.Descriptor `json:"blobs"` // OCI artifact manifest (withdrawn draft, still in the wild)
}

func parseManifest(b []byte) (manifestJSON, error) {
	var m manifestJSON
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("parse manifest: %w", err)
	}
	return m, nil
}

// isIndex reports whether a manifest is an index (OCI or Docker list):
// from its media type, or from its shape when the descriptor has none.
func isIndex(mt types.MediaType, m manifestJSON) bool {
	if mt == "" {
		mt = m.MediaType
	}
	switch mt {
	case types.OCIImageIndex, types.DockerManifestList:
		return true
	case "":
		return m.Manifests != nil && m.Config == nil
	}
	return false
}

// mediaTypeOf is the Content-Type a manifest is pushed with.
func mediaTypeOf(d v1.Descriptor, m manifestJSON) types.MediaType {
	switch {
	case d.MediaType != "":
		return d.MediaType
	case m.MediaType != "":
		return m.MediaType
	case isIndex("", m):
		return types.OCIImageIndex
	}
	return types.OCIManifestSchema1
}

// maxManifestBytes bounds a manifest read from a source (the registry's
// own default limit).
const maxManifestBytes = 4 << 20

// ErrNotFound is returned by sources for a reference they do not hold.
var ErrNotFound = errors.New("not found in source")

// descriptorFor builds the descriptor of manifest bytes whose digest the
// caller computed.
func descriptorFor(b []byte, mt types.MediaType) (v1.Descriptor, error) {
	h, _, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		return v1.Descriptor{}, err
	}
	if mt == "" {
		m, err := parseManifest(b)
		if err != nil {
			return v1.Descriptor{}, err
		}
		mt = mediaTypeOf(v1.Descriptor{}, m)
	}
	return v1.Descriptor{MediaType: mt, Digest: h, Size: int64(len(b))}, nil
}
