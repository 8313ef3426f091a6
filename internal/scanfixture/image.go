// Package scanfixture builds the scanner's fixture images (docs/scanning.md):
// small, real OCI images whose layers hold a dpkg database, an apk database,
// a Go binary and a Python package deleted by a whiteout, each with the
// packages an indexer must find in it. Every level of the scanner's tests
// (the layer indexer, the matcher, pkg/scan, the e2e suite with real
// clients) pushes or reads the same images and asserts the same expected
// packages, so a disagreement between levels shows up as a failing test
// rather than as two fixtures drifting apart.
//
// The bytes are deterministic (fixed mtimes, owners and gzip headers), so a
// fixture's digests are stable for a given input; the debian fixture copies
// the test machine's own dpkg database and the gobinary fixture builds a
// program, so theirs are stable per machine and toolchain.
package scanfixture

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-registry/berth/pkg/inventory"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/opencontainers/go-digest"
)

// Layer media types the fixtures use.
const (
	MediaTypeLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
	MediaTypeLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd"
	MediaTypeLayerTar  = "application/vnd.oci.image.layer.v1.tar"
)

// epoch is the modification time of every fixture entry and the config's
// creation time, so the bytes do not depend on when a test ran.
var epoch = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// Layer is one fixture layer.
type Layer struct {
	// Tar is the uncompressed layer (its digest is the config's diff_id).
	Tar []byte
	// Blob is the layer as pushed: Tar compressed per MediaType.
	Blob []byte
	// Descriptor describes Blob (media type, digest, size).
	Descriptor oci.Descriptor
	// Packages are the packages indexing this layer alone must find, in
	// the order the indexer reports them, each with Layer set to the
	// layer's digest.
	Packages []inventory.Package
}

// Image is one fixture image.
type Image struct {
	// Name is the fixture's name ("debian", "alpine", "gobinary",
	// "whiteout"); e2e tests push it as repository "scanfixture/<Name>".
	Name   string
	Layers []Layer
	// Config and Manifest are the raw JSON documents pushed.
	Config   []byte
	Manifest []byte
	// ConfigDescriptor and ManifestDescriptor describe them.
	ConfigDescriptor   oci.Descriptor
	ManifestDescriptor oci.Descriptor
	// Expected are the packages still visible once the layers are merged
	// (inventory.Merge), with Layer set; the vulnerability fixtures
	// (osvfixture) are written against these.
	Expected []inventory.Package
}

// Blobs returns every blob of the image (layers and config) by digest, as
// a registry stores them; the manifest is in Manifest.
func (img *Image) Blobs() map[oci.Digest][]byte {
	out := map[oci.Digest][]byte{img.ConfigDescriptor.Digest: img.Config}
	for _, l := range img.Layers {
		out[l.Descriptor.Digest] = l.Blob
	}
	return out
}

// newLayer compresses a tar with the media type's compression and
// describes it; the packages get the layer's digest.
func newLayer(tarBytes []byte, mediaType string, pkgs []inventory.Package) (Layer, error) {
	var blob []byte
	var err error
	switch mediaType {
	case MediaTypeLayerGzip:
		blob, err = Gzip(tarBytes)
	case MediaTypeLayerZstd:
		blob, err = Zstd(tarBytes)
	case MediaTypeLayerTar:
		blob = tarBytes
	default:
		return Layer{}, fmt.Errorf("scanfixture: unsupported layer media type %q", mediaType)
	}
	if err != nil {
		return Layer{}, err
	}
	d := digest.SHA256.FromBytes(blob)
	for i := range pkgs {
		pkgs[i].Layer = d
	}
	return Layer{
		Tar:        tarBytes,
		Blob:       blob,
		Descriptor: oci.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(blob))},
		Packages:   pkgs,
	}, nil
}

// WithMediaType returns a copy of the layer recompressed for another layer
// media type (the zstd and uncompressed variants of the indexer's tests).
func (l Layer) WithMediaType(mediaType string) (Layer, error) {
	pkgs := append([]inventory.Package(nil), l.Packages...)
	return newLayer(l.Tar, mediaType, pkgs)
}

type imageConfig struct {
	Created      string       `json:"created"`
	Architecture string       `json:"architecture"`
	OS           string       `json:"os"`
	Config       struct{}     `json:"config"`
	RootFS       rootFS       `json:"rootfs"`
	History      []historyRec `json:"history"`
}

type rootFS struct {
	Type    string       `json:"type"`
	DiffIDs []oci.Digest `json:"diff_ids"`
}

type historyRec struct {
	Created   string `json:"created"`
	CreatedBy string `json:"created_by"`
}

type imageManifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	Config        oci.Descriptor    `json:"config"`
	Layers        []oci.Descriptor  `json:"layers"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// newImage writes the config and manifest for the layers.
func newImage(name string, layers []Layer, expected []inventory.Package) (*Image, error) {
	cfg := imageConfig{Created: epoch.Format(time.RFC3339), Architecture: "amd64", OS: "linux"}
	cfg.RootFS.Type = "layers"
	var descs []oci.Descriptor
	for i, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, digest.SHA256.FromBytes(l.Tar))
		cfg.History = append(cfg.History, historyRec{
			Created:   cfg.Created,
			CreatedBy: fmt.Sprintf("berth scanfixture %s layer %d", name, i+1),
		})
		descs = append(descs, l.Descriptor)
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cfgDesc := oci.Descriptor{MediaType: oci.MediaTypeImageConfig, Digest: digest.SHA256.FromBytes(cfgJSON), Size: int64(len(cfgJSON))}
	man := imageManifest{
		SchemaVersion: 2,
		MediaType:     oci.MediaTypeImageManifest,
		Config:        cfgDesc,
		Layers:        descs,
		Annotations:   map[string]string{"org.opencontainers.image.title": "berth scanfixture " + name},
	}
	manJSON, err := json.Marshal(man)
	if err != nil {
		return nil, err
	}
	return &Image{
		Name:               name,
		Layers:             layers,
		Config:             cfgJSON,
		Manifest:           manJSON,
		ConfigDescriptor:   cfgDesc,
		ManifestDescriptor: oci.Descriptor{MediaType: oci.MediaTypeImageManifest, Digest: digest.SHA256.FromBytes(manJSON), Size: int64(len(manJSON))},
		Expected:           expected,
	}, nil
}

// WriteLayout writes the images as an OCI image layout directory
// (oci-layout, index.json, blobs/sha256/...) at dir, each manifest tagged
// with its image's Name (annotation org.opencontainers.image.ref.name), so
// real clients can push them: `crane push DIR`, `oras cp --from-oci-layout
// DIR:debian`, `regctl image import`, `skopeo copy oci:DIR:debian`.
func WriteLayout(dir string, imgs ...*Image) error {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return err
	}
	index := struct {
		SchemaVersion int              `json:"schemaVersion"`
		MediaType     string           `json:"mediaType"`
		Manifests     []oci.Descriptor `json:"manifests"`
	}{SchemaVersion: 2, MediaType: oci.MediaTypeImageIndex, Manifests: []oci.Descriptor{}}
	for _, img := range imgs {
		blobs := img.Blobs()
		blobs[img.ManifestDescriptor.Digest] = img.Manifest
		for d, b := range blobs {
			if err := writeBlob(dir, d, b); err != nil {
				return err
			}
		}
		desc := img.ManifestDescriptor
		desc.Annotations = map[string]string{"org.opencontainers.image.ref.name": img.Name}
		index.Manifests = append(index.Manifests, desc)
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "index.json"), indexJSON, 0o644)
}

// WriteBlobs writes the image's blobs and manifest as files named by
// digest hex under dir (dir/<hex>), plus dir/manifest.json, for tools that
// push loose files (oras push, curl).
func WriteBlobs(dir string, img *Image) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for d, b := range img.Blobs() {
		if err := os.WriteFile(filepath.Join(dir, d.Encoded()), b, 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "manifest.json"), img.Manifest, 0o644)
}

func writeBlob(dir string, d oci.Digest, b []byte) error {
	if digest.SHA256.FromBytes(b) != d {
		return fmt.Errorf("scanfixture: blob %s does not match its bytes", d)
	}
	return os.WriteFile(filepath.Join(dir, "blobs", "sha256", d.Encoded()), b, 0o644)
}
