// Package layerindex indexes one image layer (docs/scanning.md): it reads
// the layer blob once as a stream (gzip, zstd or plain tar), walks its tar
// entries without extracting them, hands the files osv-scalibr's
// extractors ask for (dpkg, apk and rpm databases, Go binaries, Python,
// Node, Java and Rust metadata) to those extractors, and returns an
// inventory.Layer: the packages found, the files the extractors wanted,
// the whiteouts and opaque directories, and the os-release.
//
// Layers come from anyone who can push, so everything here is bounded
// (Limits): decompressed bytes, tar entries, the size of a file an
// extractor reads, bytes spooled to disk, packages. A layer that breaches
// a limit, is not a valid tar, or makes an extractor fail keeps what was
// found before and says why in Layer.Error; only a failure of the caller's
// reader or context is an error of Index.
package layerindex

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/berth-registry/berth/pkg/inventory"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/google/osv-scalibr/extractor/filesystem"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// IndexerName is recorded in every Layer this package produces; it
// changes when the indexer finds more, so stored indexes can be redone.
const IndexerName = "berth-layerindex/1"

// Layer media types (OCI image spec and Docker image manifest v2.2).
const (
	MediaTypeOCILayer                 = "application/vnd.oci.image.layer.v1.tar"
	MediaTypeOCILayerGzip             = "application/vnd.oci.image.layer.v1.tar+gzip"
	MediaTypeOCILayerZstd             = "application/vnd.oci.image.layer.v1.tar+zstd"
	MediaTypeOCILayerNonDistributable = "application/vnd.oci.image.layer.nondistributable.v1.tar"
	MediaTypeOCILayerNonDistribGzip   = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
	MediaTypeOCILayerNonDistribZstd   = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
	MediaTypeDockerLayer              = "application/vnd.docker.image.rootfs.diff.tar"
	MediaTypeDockerLayerGzip          = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerForeignLayerGzip   = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	MediaTypeDockerLayerZstd          = "application/vnd.docker.image.rootfs.diff.tar.zstd"
)

// IsLayerMediaType reports whether mt names a layer (tar, possibly
// compressed). An empty media type is unknown, not a layer: Index sniffs
// those.
func IsLayerMediaType(mt string) bool {
	switch mt {
	case MediaTypeOCILayer, MediaTypeOCILayerGzip, MediaTypeOCILayerZstd,
		MediaTypeOCILayerNonDistributable, MediaTypeOCILayerNonDistribGzip, MediaTypeOCILayerNonDistribZstd,
		MediaTypeDockerLayer, MediaTypeDockerLayerGzip, MediaTypeDockerForeignLayerGzip, MediaTypeDockerLayerZstd:
		return true
	}
	return false
}

// Limits bound what indexing one layer may cost. Zero fields take the
// defaults (DefaultLimits); they are sized for a scan function with about
// 1 GiB of memory and a few GiB of ephemeral storage.
type Limits struct {
	// MaxDecompressedBytes caps the bytes of tar read (decompression
	// bombs, gigantic files nobody wants: they are read through, not
	// kept). Default 16 GiB.
	MaxDecompressedBytes int64
	// MaxEntries caps the tar entries read. Default 1,000,000.
	MaxEntries int
	// MaxFileSize caps the size of one file handed to an extractor, and
	// the bytes a Java archive extractor may open inside one jar (nested
	// jars are read into memory: zip bombs). Default 256 MiB.
	MaxFileSize int64
	// MaxSpoolBytes caps the bytes written to temporary files over the
	// whole layer (each file is removed once its extractors are done).
	// Default 2 GiB.
	MaxSpoolBytes int64
	// MaxPackages caps the packages recorded. Default 200,000.
	MaxPackages int
	// MemoryFileSize: a wanted file up to this size is read into memory;
	// a larger one is spooled to a temporary file. Default 4 MiB.
	MemoryFileSize int64
	// MaxZstdWindow caps the window a zstd stream may ask the decoder to
	// allocate. Default 128 MiB (zstd --long=27).
	MaxZstdWindow uint64
	// TempDir is where files are spooled; default os.TempDir().
	TempDir string
}

// DefaultLimits are the limits a zero Limits field takes.
var DefaultLimits = Limits{
	MaxDecompressedBytes: 16 << 30,
	MaxEntries:           1_000_000,
	MaxFileSize:          256 << 20,
	MaxSpoolBytes:        2 << 30,
	MaxPackages:          200_000,
	MemoryFileSize:       4 << 20,
	MaxZstdWindow:        128 << 20,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxDecompressedBytes <= 0 {
		l.MaxDecompressedBytes = d.MaxDecompressedBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = d.MaxEntries
	}
	if l.MaxFileSize <= 0 {
		l.MaxFileSize = d.MaxFileSize
	}
	if l.MaxSpoolBytes <= 0 {
		l.MaxSpoolBytes = d.MaxSpoolBytes
	}
	if l.MaxPackages <= 0 {
		l.MaxPackages = d.MaxPackages
	}
	if l.MemoryFileSize <= 0 {
		l.MemoryFileSize = d.MemoryFileSize
	}
	if l.MemoryFileSize > l.MaxFileSize {
		l.MemoryFileSize = l.MaxFileSize
	}
	if l.MaxZstdWindow == 0 {
		l.MaxZstdWindow = d.MaxZstdWindow
	}
	if l.TempDir == "" {
		l.TempDir = os.TempDir()
	}
	return l
}

// Indexer indexes layers. It holds no per-layer state: one Indexer may
// index many layers concurrently.
type Indexer struct {
	limits     Limits
	extractors []filesystem.Extractor
	initErr    error
}

// New returns an Indexer with the given limits (zero fields take
// DefaultLimits).
func New(limits Limits) *Indexer {
	limits = limits.withDefaults()
	exs, err := newExtractors(limits)
	return &Indexer{limits: limits, extractors: exs, initErr: err}
}

// Limits returns the limits in force (defaults applied).
func (ix *Indexer) Limits() Limits { return ix.limits }

// errLimit marks a limit breach, so the walk can say which limit stopped
// it without treating it as a malformed tar.
var errLimit = errors.New("limit reached")

// Index reads one layer blob from r and returns what it holds. d is the
// blob's descriptor: its media type decides whether the blob is a layer
// at all (another type returns a Layer with NotLayer set, r unread; an
// empty media type, as from an S3 event that only knows the digest, is
// sniffed from the first bytes), and Digest, MediaType and Size are
// copied into the Layer. The compression is taken from the magic bytes,
// not the media type, since pushers mislabel it.
//
// Bad content (a malformed tar or compression stream, a limit reached, an
// extractor failing) sets Layer.Error and keeps what was found; the error
// result is only for ctx being done or r failing.
func (ix *Indexer) Index(ctx context.Context, d oci.Descriptor, r io.Reader) (*inventory.Layer, error) {
	if ix.initErr != nil {
		return nil, ix.initErr
	}
	l := &inventory.Layer{
		Schema:    inventory.Schema,
		Digest:    d.Digest,
		MediaType: d.MediaType,
		Size:      d.Size,
		Indexer:   IndexerName,
	}
	if d.MediaType != "" && !IsLayerMediaType(d.MediaType) {
		l.NotLayer = true
		return l, nil
	}
	src := &sourceReader{r: r}
	br := bufio.NewReaderSize(src, 64<<10)
	head, _ := br.Peek(512)
	if src.err != nil {
		return nil, fmt.Errorf("layerindex: reading %s: %w", d.Digest, src.err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(head) == 0 {
		l.Error = "empty blob"
		return l, nil
	}
	comp := sniff(head)
	if comp == compUnknown {
		if d.MediaType == "" {
			l.NotLayer = true
			return l, nil
		}
		// Labelled a layer but neither compressed nor a tar header: let
		// the tar reader say what is wrong with it.
		comp = compNone
	}
	var tarStream io.Reader
	switch comp {
	case compGzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			if src.err != nil {
				return nil, fmt.Errorf("layerindex: reading %s: %w", d.Digest, src.err)
			}
			l.Error = fmt.Sprintf("malformed gzip stream: %v", err)
			return l, nil
		}
		defer zr.Close()
		tarStream = zr
	case compZstd:
		zr, err := zstd.NewReader(br,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(ix.limits.MaxZstdWindow),
			zstd.WithDecoderMaxMemory(uint64(ix.limits.MaxDecompressedBytes)))
		if err != nil {
			l.Error = fmt.Sprintf("malformed zstd stream: %v", err)
			return l, nil
		}
		defer zr.Close()
		tarStream = zr
	default:
		tarStream = br
	}
	counted := &countingReader{r: tarStream, max: ix.limits.MaxDecompressedBytes}
	w := newWalker(ix, l)
	defer w.close()
	werr := w.walk(ctx, counted)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if src.err != nil {
		return nil, fmt.Errorf("layerindex: reading %s: %w", d.Digest, src.err)
	}
	if werr != nil {
		w.note(werr.Error())
	}
	w.finish()
	return l, nil
}

type compression int

const (
	compUnknown compression = iota
	compNone
	compGzip
	compZstd
)

// sniff tells the compression from the first bytes of a blob: gzip and
// zstd by their magic numbers, an uncompressed tar by its first header
// ("ustar" magic, or a valid v7 header checksum, or the all-zero end of
// an empty archive).
func sniff(head []byte) compression {
	switch {
	case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b:
		return compGzip
	case len(head) >= 4 && bytes.Equal(head[:4], []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return compZstd
	case len(head) >= 512 && isTarHeader(head[:512]):
		return compNone
	}
	return compUnknown
}

func isTarHeader(b []byte) bool {
	if bytes.Equal(b[257:262], []byte("ustar")) {
		return true
	}
	if bytes.Count(b, []byte{0}) == len(b) {
		return true
	}
	// v7 header: checksum field (148..156) is the octal sum of the header
	// bytes with the field itself taken as spaces.
	var sum int64
	for i, c := range b {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
	}
	field := bytes.Trim(b[148:156], " \x00")
	var want int64
	for _, c := range field {
		if c < '0' || c > '7' {
			return false
		}
		want = want*8 + int64(c-'0')
	}
	return len(field) > 0 && want == sum
}

// sourceReader remembers a failure of the caller's reader, so Index can
// tell "r failed" (an error result) from "the content is bad" (a Layer
// error). io.EOF is not a failure: a blob cut short is bad content.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && s.err == nil {
		s.err = err
	}
	return n, err
}

// countingReader stops a decompressed stream at max bytes.
type countingReader struct {
	r   io.Reader
	n   int64
	max int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.n >= c.max {
		// At the cap: a stream that ends exactly here is fine.
		var one [1]byte
		if n, err := c.r.Read(one[:]); n == 0 && err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("%w: more than %d decompressed bytes", errLimit, c.max)
	}
	if int64(len(p)) > c.max-c.n {
		p = p[:c.max-c.n]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
