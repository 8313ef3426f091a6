package push

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// refNameAnnotation names a manifest in an OCI layout's index.json.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// Open returns the source at path: an OCI layout directory, an OCI archive
// (a tar holding oci-layout and index.json, as `docker buildx --output
// type=oci` and `podman save --format oci-archive` write; `docker save` of
// Docker ≥ 25 is one too), or a `docker save` tar (manifest.json). A
// trailing ":NAME" picks the manifest an OCI layout names NAME (its
// org.opencontainers.image.ref.name) or the image tagged NAME in a docker
// save tar; it is needed only when the source holds more than one.
func Open(src string) (Source, func() error, error) {
	p, sel := src, ""
	if _, err := os.Stat(src); err != nil {
		if i := strings.LastIndex(src, ":"); i > 0 {
			p, sel = src[:i], src[i+1:]
		}
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, nil, fmt.Errorf("source: %w", err)
	}
	if fi.IsDir() {
		lp, err := layout.FromPath(p)
		if err != nil {
			return nil, nil, fmt.Errorf("OCI layout %s: %w", p, err)
		}
		s, err := newLayoutSource(sel, func() ([]byte, error) { return os.ReadFile(filepath.Join(p, "index.json")) },
			func(d v1.Descriptor) (io.ReadCloser, error) { return lp.Blob(d.Digest) })
		return s, func() error { return nil }, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, fmt.Errorf("source: %w", err)
	}
	entries, err := scanTar(f)
	if err != nil {
		_ = f.Close()
		return nil, nil, fmt.Errorf("%s: %w", p, err)
	}
	if _, ok := entries["oci-layout"]; ok {
		s, err := newLayoutSource(sel, func() ([]byte, error) { return entries.read(f, "index.json") },
			func(d v1.Descriptor) (io.ReadCloser, error) {
				return entries.open(f, path.Join("blobs", d.Digest.Algorithm, d.Digest.Hex))
			})
		if err != nil {
			_ = f.Close()
			return nil, nil, err
		}
		return s, f.Close, nil
	}
	_ = f.Close()
	if _, ok := entries["manifest.json"]; !ok {
		return nil, nil, fmt.Errorf("%s: neither an OCI archive (no oci-layout) nor a docker save tar (no manifest.json)", p)
	}
	s, err := newDockerTarSource(p, sel)
	return s, func() error { return nil }, err
}

// layoutSource reads an OCI image layout, from a directory or a tar.
type layoutSource struct {
	index []v1.Descriptor // index.json's manifests
	root  v1.Descriptor
	blob  func(v1.Descriptor) (io.ReadCloser, error)
}

func newLayoutSource(sel string, readIndex func() ([]byte, error), blob func(v1.Descriptor) (io.ReadCloser, error)) (*layoutSource, error) {
	b, err := readIndex()
	if err != nil {
		return nil, fmt.Errorf("read index.json: %w", err)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("parse index.json: %w", err)
	}
	s := &layoutSource{index: idx.Manifests, blob: blob}
	var named, candidates []v1.Descriptor
	for _, d := range idx.Manifests {
		if sel != "" && (d.Annotations[refNameAnnotation] == sel || d.Digest.String() == sel) {
			named = append(named, d)
		}
		// A manifest with a subject is a referrer of another one, not an
		// image the user means to push on its own.
		if d.Annotations[refNameAnnotation] != "" || !s.hasSubject(d) {
			candidates = append(candidates, d)
		}
	}
	switch {
	case sel != "" && len(named) == 1:
		s.root = named[0]
	case sel != "":
		return nil, fmt.Errorf("index.json names no single manifest %q", sel)
	case len(candidates) == 1:
		s.root = candidates[0]
	default:
		return nil, fmt.Errorf("index.json holds %d manifests; name one as SOURCE:NAME (its %s)", len(candidates), refNameAnnotation)
	}
	return s, nil
}

// hasSubject reports whether the manifest d points at a subject.
func (s *layoutSource) hasSubject(d v1.Descriptor) bool {
	b, err := s.manifest(d)
	if err != nil {
		return false
	}
	m, err := parseManifest(b)
	return err == nil && m.Subject != nil
}

func (s *layoutSource) manifest(d v1.Descriptor) ([]byte, error) {
	rc, err := s.blob(d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, maxManifestBytes+1))
}

func (s *layoutSource) Root(ctx context.Context) (v1.Descriptor, []byte, error) {
	b, err := s.manifest(s.root)
	if err != nil {
		return v1.Descriptor{}, nil, err
	}
	d := s.root
	d.Annotations = nil // index.json's ref name is not part of what is pushed
	return d, b, nil
}

func (s *layoutSource) Manifest(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	return s.manifest(d)
}

func (s *layoutSource) Blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	return s.blob(d)
}

// Referrers of a layout are the manifests in index.json whose subject is d
// (what `oras attach --oci-layout` and `cosign save` write).
func (s *layoutSource) Referrers(ctx context.Context, d v1.Descriptor) ([]v1.Descriptor, error) {
	var out []v1.Descriptor
	for _, c := range s.index {
		if c.Digest == d.Digest {
			continue
		}
		b, err := s.manifest(c)
		if err != nil {
			return nil, err
		}
		m, err := parseManifest(b)
		if err != nil {
			continue // not a manifest we understand: not a referrer either
		}
		if m.Subject != nil && m.Subject.Digest == d.Digest {
			c.Annotations = nil
			out = append(out, c)
		}
	}
	return out, nil
}

// tarEntries maps a tar member's cleaned name to where its bytes are.
type tarEntries map[string]tarEntry

type tarEntry struct {
	offset, size int64
	link         string // hard or symbolic link: the member it names
}

// scanTar reads a tar's headers once and records where each regular
// file's data starts, so blobs are later read in place (and in parallel)
// without unpacking the archive.
func scanTar(f *os.File) (tarEntries, error) {
	var magic [2]byte
	if _, err := f.ReadAt(magic[:], 0); err == nil && magic == [2]byte{0x1f, 0x8b} {
		return nil, errors.New("compressed archive: decompress it first (gunzip)")
	}
	entries := tarEntries{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read tar: %w", err)
		}
		if h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeSymlink && h.Typeflag != tar.TypeLink {
			continue
		}
		// archive/tar reads headers straight from the file, so the file
		// position after Next is where this member's data begins.
		off, err := f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, err
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		switch h.Typeflag {
		case tar.TypeReg:
			entries[name] = tarEntry{offset: off, size: h.Size}
		case tar.TypeLink:
			entries[name] = tarEntry{link: path.Clean(strings.TrimPrefix(h.Linkname, "./"))}
		case tar.TypeSymlink:
			entries[name] = tarEntry{link: path.Join(path.Dir(name), h.Linkname)}
		}
	}
	return entries, nil
}

func (e tarEntries) open(f *os.File, name string) (io.ReadCloser, error) {
	t, ok := e[name]
	// Follow links a few hops; archives that chain more are not layouts.
	for hops := 0; ok && t.link != "" && hops < 8; hops++ {
		t, ok = e[t.link]
	}
	if !ok || t.link != "" {
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	return sectionReadCloser{io.NewSectionReader(f, t.offset, t.size)}, nil
}

func (e tarEntries) read(f *os.File, name string) ([]byte, error) {
	rc, err := e.open(f, name)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(rc)
}

// sectionReadCloser is a blob inside an archive: it reads at any offset
// (io.ReaderAt), so multipart uploads and retries start where they need to.
type sectionReadCloser struct{ *io.SectionReader }

func (sectionReadCloser) Close() error { return nil }

// dockerTarSource reads a `docker save` tar through ggcr's tarball
// package, which builds the registry manifest docker save does not store
// (and compresses uncompressed layers, as crane push does).
type dockerTarSource struct {
	img v1.Image
}

func newDockerTarSource(p, sel string) (*dockerTarSource, error) {
	var tag *name.Tag
	if sel != "" {
		t, err := name.NewTag(sel)
		if err != nil {
			return nil, fmt.Errorf("docker save tag %q: %w", sel, err)
		}
		tag = &t
	}
	img, err := tarball.ImageFromPath(p, tag)
	if err != nil {
		return nil, fmt.Errorf("docker save tar %s: %w", p, err)
	}
	return &dockerTarSource{img: img}, nil
}

func (s *dockerTarSource) Root(ctx context.Context) (v1.Descriptor, []byte, error) {
	b, err := s.img.RawManifest()
	if err != nil {
		return v1.Descriptor{}, nil, err
	}
	mt, err := s.img.MediaType()
	if err != nil {
		return v1.Descriptor{}, nil, err
	}
	d, err := descriptorFor(b, mt)
	return d, b, err
}

func (s *dockerTarSource) Manifest(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	return nil, fmt.Errorf("manifest %s: %w", d.Digest, ErrNotFound)
}

func (s *dockerTarSource) Blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	if cfg, err := s.img.ConfigName(); err == nil && cfg == d.Digest {
		b, err := s.img.RawConfigFile()
		if err != nil {
			return nil, err
		}
		return bytesReader(b), nil
	}
	l, err := s.img.LayerByDigest(d.Digest)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", d.Digest, err)
	}
	return l.Compressed()
}

func (s *dockerTarSource) Referrers(ctx context.Context, d v1.Descriptor) ([]v1.Descriptor, error) {
	return nil, nil
}
