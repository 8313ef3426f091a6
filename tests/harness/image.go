package harness

import (
	"archive/tar"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// OCI media types the builders write.
const (
	MediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar"
)

// Descriptor is an OCI content descriptor.
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *Platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Platform is an image's os/architecture.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// String is "os/arch".
func (p Platform) String() string { return p.OS + "/" + p.Architecture }

// Image is one single-platform image written by the builders.
type Image struct {
	Manifest Descriptor
	Config   Descriptor
	Layers   []Descriptor
}

// Layout is an OCI image layout directory holding one tagged image or
// index, ready for clients to push.
type Layout struct {
	Dir string
	Tag string
	// Top is the tagged manifest or index.
	Top Descriptor
	// Images are the single-platform images (one, or one per platform).
	Images []Image
}

// Skopeo is the layout as a skopeo/podman source: oci:DIR:TAG.
func (l Layout) Skopeo() string { return "oci:" + l.Dir + ":" + l.Tag }

// Regctl is the layout as a regctl reference: ocidir://DIR:TAG.
func (l Layout) Regctl() string { return "ocidir://" + l.Dir + ":" + l.Tag }

// Oras is the layout for `oras cp --from-oci-layout DIR:TAG`.
func (l Layout) Oras() string { return l.Dir + ":" + l.Tag }

// Digest is the tagged manifest or index digest.
func (l Layout) Digest() string { return l.Top.Digest }

// Blob returns the bytes of a blob in the layout.
func (l Layout) Blob(tb testing.TB, digest string) []byte {
	tb.Helper()
	b, err := os.ReadFile(blobPath(l.Dir, digest))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// WriteImage writes a linux/amd64 image whose layers are tar archives
// holding one random file of each given size, into a new layout dir.
func WriteImage(tb testing.TB, tag string, layerSizes ...int64) Layout {
	tb.Helper()
	w := newLayoutWriter(tb)
	img := w.image(Platform{OS: "linux", Architecture: "amd64"}, layerSizes)
	top := img.Manifest
	w.finish(tag, top)
	return Layout{Dir: w.dir, Tag: tag, Top: top, Images: []Image{img}}
}

// WriteIndex writes a multi-platform image index with one image per
// platform ("linux/amd64", "linux/arm64", ...), each with one random layer
// of layerSize bytes.
func WriteIndex(tb testing.TB, tag string, layerSize int64, platforms ...string) Layout {
	tb.Helper()
	w := newLayoutWriter(tb)
	l := Layout{Dir: w.dir, Tag: tag}
	var children []Descriptor
	for _, p := range platforms {
		goos, arch, ok := strings.Cut(p, "/")
		if !ok {
			tb.Fatalf("platform %q: want os/arch", p)
		}
		plat := Platform{OS: goos, Architecture: arch}
		img := w.image(plat, []int64{layerSize})
		d := img.Manifest
		d.Platform = &plat
		children = append(children, d)
		l.Images = append(l.Images, img)
	}
	idx := map[string]any{"schemaVersion": 2, "mediaType": MediaTypeIndex, "manifests": children}
	l.Top = w.json(MediaTypeIndex, idx)
	w.finish(tag, l.Top)
	return l
}

type layoutWriter struct {
	tb  testing.TB
	dir string
	rng *mrand.ChaCha8
}

func newLayoutWriter(tb testing.TB) *layoutWriter {
	dir := filepath.Join(tb.TempDir(), "layout")
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		tb.Fatal(err)
	}
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	return &layoutWriter{tb: tb, dir: dir, rng: mrand.NewChaCha8(seed)}
}

func blobPath(dir, digest string) string {
	alg, hex, _ := strings.Cut(digest, ":")
	return filepath.Join(dir, "blobs", alg, hex)
}

// image writes the layers, config and manifest of one image.
func (w *layoutWriter) image(p Platform, layerSizes []int64) Image {
	var img Image
	var diffIDs []string
	for i, size := range layerSizes {
		d := w.layer(fmt.Sprintf("layer%d.bin", i), size)
		img.Layers = append(img.Layers, d)
		diffIDs = append(diffIDs, d.Digest) // uncompressed: diff id = digest
	}
	cfg := map[string]any{
		"created":      time.Now().UTC().Format(time.RFC3339),
		"architecture": p.Architecture,
		"os":           p.OS,
		"config":       map[string]any{"Env": []string{"PATH=/usr/bin:/bin"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
	}
	img.Config = w.json(MediaTypeConfig, cfg)
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaTypeManifest,
		"config":        img.Config,
		"layers":        img.Layers,
	}
	img.Manifest = w.json(MediaTypeManifest, m)
	return img
}

// layer writes an uncompressed tar holding one file of size random bytes.
func (w *layoutWriter) layer(name string, size int64) Descriptor {
	return w.stream(MediaTypeLayer, func(out io.Writer) error {
		tw := tar.NewWriter(out)
		hdr := &tar.Header{Name: "data/" + name, Mode: 0o644, Size: size, ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := io.CopyN(tw, w.rng, size); err != nil {
			return err
		}
		return tw.Close()
	})
}

// Random returns n random bytes (for raw blob tests).
func Random(n int) []byte {
	b := make([]byte, n)
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	_, _ = mrand.NewChaCha8(seed).Read(b)
	return b
}

// Digest returns the sha256 digest of b.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func (w *layoutWriter) json(mediaType string, v any) Descriptor {
	b, err := json.Marshal(v)
	if err != nil {
		w.tb.Fatal(err)
	}
	return w.stream(mediaType, func(out io.Writer) error { _, err := out.Write(b); return err })
}

// stream writes a blob through fill, hashing it on the way.
func (w *layoutWriter) stream(mediaType string, fill func(io.Writer) error) Descriptor {
	w.tb.Helper()
	f, err := os.CreateTemp(w.dir, ".blob-")
	if err != nil {
		w.tb.Fatal(err)
	}
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	err = fill(cw)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		w.tb.Fatalf("write blob: %v", err)
	}
	d := Descriptor{MediaType: mediaType, Digest: digestOf(h), Size: cw.n}
	if err := os.Rename(f.Name(), blobPath(w.dir, d.Digest)); err != nil {
		w.tb.Fatal(err)
	}
	return d
}

func digestOf(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// finish writes oci-layout and index.json naming top as tag.
func (w *layoutWriter) finish(tag string, top Descriptor) {
	w.tb.Helper()
	top.Annotations = map[string]string{"org.opencontainers.image.ref.name": tag}
	top.Platform = nil
	idx := map[string]any{"schemaVersion": 2, "mediaType": MediaTypeIndex, "manifests": []Descriptor{top}}
	b, err := json.Marshal(idx)
	if err != nil {
		w.tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.dir, "index.json"), b, 0o644); err != nil {
		w.tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		w.tb.Fatal(err)
	}
}
