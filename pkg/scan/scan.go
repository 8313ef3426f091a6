// Package scan is the vulnerability scanner's orchestration
// (docs/scanning.md): it indexes each layer blob once per digest (the
// index is content-addressed, so a layer shared by a thousand images is
// read once), stacks an image's layer indexes, matches them against
// vulnerability data, and attaches an SBOM and a vulnerability report to
// the image as OCI referrers. The indexer, the matcher and the report
// formats are other packages' (pkg/layerindex, pkg/vulndb, pkg/sbom); this
// one decides when each runs and where the results go.
//
// Artifacts are pushed through the registry's own http.Handler with
// in-process requests, never written to storage behind its back, so the
// registry's rules hold for them as for any client's push: digests
// verified, blobs counted for garbage collection, referrer entries
// written, push events emitted. Those push events come back to the
// scanner, which skips its own artifacts without reading anything else.
//
// The same Scanner runs in `berth serve --scan` (a worker pool fed by the
// registry's events, Pool) and in the scan Lambda function (S3 object
// events → IndexLayer, image push events → ScanManifest, data sync →
// Rematch).
package scan

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/berth-registry/berth/pkg/events"
	"github.com/berth-registry/berth/pkg/inventory"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

// Indexer reads one layer blob and says what it holds
// (layerindex.Indexer). The error is for failures of ctx or r only: bad
// content is a Layer with Error set, and a descriptor whose media type is
// not a layer's is a Layer with NotLayer set, r unread.
type Indexer interface {
	Index(ctx context.Context, d oci.Descriptor, r io.Reader) (*inventory.Layer, error)
}

// Matcher matches an image's packages against vulnerability data
// (vulndb.DB). Version changes whenever the data does; scans record it,
// and Rematch redoes the scans whose version differs.
type Matcher interface {
	Match(ctx context.Context, img inventory.Image) ([]inventory.Finding, error)
	Version() string
}

// IndexStore keeps layer indexes, one per layer digest. NewIndexStore
// builds one on a blob driver's storage.Objects.
type IndexStore interface {
	// LayerIndexGet returns the stored index of d, or an error wrapping
	// storage.ErrNotFound.
	LayerIndexGet(ctx context.Context, d oci.Digest) (*inventory.Layer, error)
	// LayerIndexPut stores l under l.Digest, replacing any earlier index.
	LayerIndexPut(ctx context.Context, l *inventory.Layer) error
	// LayerIndexDelete removes the index of d; absent is fine.
	LayerIndexDelete(ctx context.Context, d oci.Digest) error
}

// Config is what a Scanner works with. Blobs, Items, Indexer, Data and
// Registry are required.
type Config struct {
	// Blobs is the blob driver layers are read from.
	Blobs storage.Blobs
	// Items is the metadata driver: scan records live there, and tags are
	// read from it for events.
	Items storage.Items
	// Indexes stores layer indexes. Default: NewIndexStore on Blobs when
	// the driver offers storage.Objects.
	Indexes IndexStore
	// Indexer indexes one layer (layerindex.New(...)).
	Indexer Indexer
	// Data returns the vulnerability data to match with now. It is asked
	// once per scan or re-match pass, so it may swap in fresh data between
	// calls; it fails when no data is available (the scan then fails).
	Data func(ctx context.Context) (Matcher, error)
	// Registry is the registry's /v2/ handler, without authentication in
	// front: manifests are read and artifacts pushed and deleted through it.
	Registry http.Handler
	// Events receives a "Berth Image Scan" event per finished scan; nil:
	// none.
	Events events.Emitter
	// Metrics counts layers indexed and with errors, images reported and
	// failed scans (docs/audit.md names them); nil: none.
	Metrics Counter
	// Logger receives the scanner's logs. Default: discard.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Counter adds to a named counter (metrics.Recorder satisfies it).
type Counter interface {
	Add(name string, v float64)
}

// Metric names (pkg/metrics declares the same, for the dashboard).
const (
	metricLayersIndexed  = "ScanLayersIndexed"
	metricLayerErrors    = "ScanLayerErrors"
	metricImagesReported = "ScanImagesReported"
	metricFailures       = "ScanFailures"
)

// count adds one to the counter name, if the scanner has metrics.
func (s *Scanner) count(name string) {
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.Add(name, 1)
	}
}

// Scanner runs scans. It is safe for concurrent use; it keeps nothing in
// memory between calls but the de-duplication of calls in flight.
type Scanner struct {
	cfg     Config
	log     *slog.Logger
	meta    *meta.Store
	reg     *client
	layers  flights[*inventory.Layer]
	images  flights[struct{}]
	indexes IndexStore
}

// New returns a Scanner on cfg.
func New(cfg Config) *Scanner {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Indexes == nil {
		if o, ok := cfg.Blobs.(storage.Objects); ok {
			cfg.Indexes = NewIndexStore(o)
		}
	}
	s := &Scanner{cfg: cfg, log: cfg.Logger, indexes: cfg.Indexes}
	if cfg.Items != nil {
		s.meta = meta.New(cfg.Items)
	}
	if cfg.Registry != nil {
		s.reg = &client{h: cfg.Registry}
	}
	return s
}

// Artifact types, annotations and statuses of what the scanner writes.
const (
	// AnnotationDataVersion carries the vulnerability data version on the
	// scanner's SBOM and report manifests; its presence is what marks an
	// artifact as the scanner's own (replaced on rescans).
	AnnotationDataVersion = "io.github.berth-registry.scan.data-version"
	// AnnotationCreated is the OCI annotation with the artifact's creation
	// time (RFC 3339); of two reports of one image the later one wins.
	AnnotationCreated = "org.opencontainers.image.created"

	// StatusComplete and StatusFailed are a scan's outcome, in ECR's
	// words (the "scan-status" of the "Berth Image Scan" event).
	StatusComplete = "COMPLETE"
	StatusFailed   = "FAILED"
)
