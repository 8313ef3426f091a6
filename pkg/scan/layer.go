package scan

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/berth-registry/berth/pkg/inventory"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

// ObjectIndexStore keeps each layer index as one JSON object at
// scan/layers/<alg>/<hex>.json beside the blobs (on S3, in the same
// bucket; outside the blobs/ prefix the S3 notifications watch, so
// storing an index triggers nothing).
type ObjectIndexStore struct {
	objects storage.Objects
}

var _ IndexStore = (*ObjectIndexStore)(nil)

// NewIndexStore returns the IndexStore on o.
func NewIndexStore(o storage.Objects) *ObjectIndexStore { return &ObjectIndexStore{objects: o} }

// LayerIndexKey is the object key of layer d's index.
func LayerIndexKey(d oci.Digest) string {
	return "scan/layers/" + d.Algorithm().String() + "/" + d.Encoded() + ".json"
}

// LayerIndexGet implements IndexStore.
func (s *ObjectIndexStore) LayerIndexGet(ctx context.Context, d oci.Digest) (*inventory.Layer, error) {
	if err := checkDigest(d); err != nil {
		return nil, err
	}
	b, err := s.objects.ObjectGet(ctx, LayerIndexKey(d))
	if err != nil {
		return nil, fmt.Errorf("layer index %s: %w", d, err)
	}
	var l inventory.Layer
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("layer index %s: %w", d, err)
	}
	return &l, nil
}

// LayerIndexPut implements IndexStore.
func (s *ObjectIndexStore) LayerIndexPut(ctx context.Context, l *inventory.Layer) error {
	if err := checkDigest(l.Digest); err != nil {
		return err
	}
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	if err := s.objects.ObjectPut(ctx, LayerIndexKey(l.Digest), b); err != nil {
		return fmt.Errorf("layer index %s: %w", l.Digest, err)
	}
	return nil
}

// LayerIndexDelete implements IndexStore.
func (s *ObjectIndexStore) LayerIndexDelete(ctx context.Context, d oci.Digest) error {
	if err := checkDigest(d); err != nil {
		return err
	}
	return s.objects.ObjectDelete(ctx, LayerIndexKey(d))
}

// IndexLayer indexes blob d unless an index of the current schema is
// stored already, and stores the index. It reads the blob from storage,
// whatever references it: it runs when a blob arrives (an S3 event, an
// upload in `berth serve`), before any manifest says what the blob is, so
// the media type is guessed from the first bytes (gzip, zstd, tar); a blob
// that is none of them (a config, an artifact) is stored as NotLayer
// without being read further. Concurrent calls for one digest in this
// process read it once.
func (s *Scanner) IndexLayer(ctx context.Context, d oci.Digest) error {
	_, err := s.layer(ctx, oci.Descriptor{Digest: d})
	return err
}

// LayerIndex returns the stored index of d (storage.ErrNotFound if none).
func (s *Scanner) LayerIndex(ctx context.Context, d oci.Digest) (*inventory.Layer, error) {
	if s.indexes == nil {
		return nil, errNoIndexStore
	}
	return s.indexes.LayerIndexGet(ctx, d)
}

// DeleteLayerIndex removes the index of d: garbage collection deleted the
// blob (the "Berth Blob Action" DELETE event, gc.Collector.OnDelete).
func (s *Scanner) DeleteLayerIndex(ctx context.Context, d oci.Digest) error {
	if s.indexes == nil {
		return errNoIndexStore
	}
	return s.indexes.LayerIndexDelete(ctx, d)
}

var errNoIndexStore = errors.New("scan: no index store (the blob driver has no storage.Objects and Config.Indexes is nil)")

// usable reports whether a stored index answers for desc: written by this
// schema, and not a NotLayer guess for what a manifest calls a layer.
func usable(l *inventory.Layer, desc oci.Descriptor) bool {
	if l.Schema != inventory.Schema {
		return false
	}
	return !(l.NotLayer && desc.MediaType != "" && isLayerMediaType(desc.MediaType))
}

// layer returns the index of desc: the stored one if usable, else a fresh
// one, stored.
func (s *Scanner) layer(ctx context.Context, desc oci.Descriptor) (*inventory.Layer, error) {
	if err := checkDigest(desc.Digest); err != nil {
		return nil, err
	}
	if s.indexes == nil {
		return nil, errNoIndexStore
	}
	if l, err := s.indexes.LayerIndexGet(ctx, desc.Digest); err == nil && usable(l, desc) {
		return l, nil
	} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	return s.layers.do(ctx, string(desc.Digest), func() (*inventory.Layer, error) {
		// Again inside the flight: a call that just finished stored it.
		if l, err := s.indexes.LayerIndexGet(ctx, desc.Digest); err == nil && usable(l, desc) {
			return l, nil
		}
		l, err := s.index(ctx, desc)
		if err != nil {
			return nil, err
		}
		if err := s.indexes.LayerIndexPut(ctx, l); err != nil {
			return nil, err
		}
		level := slog.LevelInfo
		if !l.NotLayer {
			s.count(metricLayersIndexed)
		}
		if l.Error != "" {
			level = slog.LevelWarn
			s.count(metricLayerErrors)
		}
		s.log.LogAttrs(ctx, level, "layer indexed",
			slog.String("digest", string(desc.Digest)), slog.Int("packages", len(l.Packages)), slog.Int("entries", l.Entries),
			slog.String("error", l.Error), slog.Bool("not_layer", l.NotLayer))
		return l, nil
	})
}

// index reads blob desc.Digest through the indexer.
func (s *Scanner) index(ctx context.Context, desc oci.Descriptor) (*inventory.Layer, error) {
	if s.cfg.Blobs == nil || s.cfg.Indexer == nil {
		return nil, errors.New("scan: Config.Blobs and Config.Indexer are required")
	}
	f, err := s.cfg.Blobs.BlobOpen(ctx, desc.Digest)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", desc.Digest, err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", desc.Digest, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("layer %s: %w", desc.Digest, err)
	}
	desc.Size = size
	r := bufio.NewReaderSize(f, 64<<10)
	if desc.MediaType == "" {
		head, err := r.Peek(sniffLen)
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("layer %s: %w", desc.Digest, err)
		}
		desc.MediaType = sniff(head)
		if desc.MediaType == "" {
			return &inventory.Layer{Schema: inventory.Schema, Digest: desc.Digest, Size: size, Indexer: sniffer, NotLayer: true}, nil
		}
	}
	l, err := s.cfg.Indexer.Index(ctx, desc, r)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", desc.Digest, err)
	}
	// The index is stored under the blob's digest whatever the indexer
	// wrote there.
	l.Digest, l.Size = desc.Digest, size
	if l.Schema == 0 {
		l.Schema = inventory.Schema
	}
	return l, nil
}

// sniffer names the "indexer" of blobs whose first bytes showed they are
// no layer.
const sniffer = "berth-scan/sniff"

// sniffLen covers a tar header's "ustar" magic at offset 257.
const sniffLen = 512

// Layer media types, by what the bytes are.
const (
	mediaTypeLayerTar  = "application/vnd.oci.image.layer.v1.tar"
	mediaTypeLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
	mediaTypeLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd"
)

// sniff names the layer media type the first bytes of a blob show, or ""
// when they are not a gzip or zstd stream or a tar archive.
func sniff(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return mediaTypeLayerGzip
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return mediaTypeLayerZstd
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return mediaTypeLayerTar
	}
	return ""
}

// isLayerMediaType reports whether a manifest's layer descriptor names a
// filesystem layer (OCI or Docker, any compression, distributable or not).
func isLayerMediaType(mt string) bool {
	return strings.HasPrefix(mt, "application/vnd.oci.image.layer.") ||
		strings.HasPrefix(mt, "application/vnd.docker.image.rootfs.")
}

// checkDigest accepts the digests the registry stores (sha256, sha512).
func checkDigest(d oci.Digest) error {
	_, err := oci.ParseDigest(string(d))
	return err
}
