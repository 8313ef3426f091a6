package scan

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/berth-registry/berth/pkg/inventory"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

// Config media types of the manifests the scanner treats as container
// images; anything else with a config (Helm charts, WASM modules, OCI
// artifacts) is skipped.
const (
	mediaTypeDockerConfig = "application/vnd.docker.container.image.v1+json"
)

// layerJobs bounds how many layers of one image are indexed at once.
const layerJobs = 4

// maxNesting bounds how deep indexes of indexes are followed.
const maxNesting = 2

// ScanManifest scans repo's manifest d. An image manifest gets an SBOM and
// a vulnerability report attached as referrers (every layer not indexed
// yet is indexed first: the blob's own event may not have been handled
// yet); an index has each platform image scanned (attestation manifests
// are not images); anything else (the scanner's own artifacts, signatures,
// Helm charts) is left alone. An image already scanned with the current
// data, whose report is still there, is not scanned again. A manifest that
// is gone is not an error.
//
// A scan that fails for any reason but ctx is recorded as FAILED and
// announced by a FAILED event, and its error returned; the image keeps
// the artifacts of its last good scan.
func (s *Scanner) ScanManifest(ctx context.Context, repo string, d oci.Digest) error {
	if err := s.check(); err != nil {
		return err
	}
	if err := checkDigest(d); err != nil {
		return err
	}
	return s.scanManifest(ctx, repo, d, 0)
}

// check reports a Config without what scans need.
func (s *Scanner) check() error {
	if s.reg == nil || s.cfg.Items == nil || s.cfg.Data == nil {
		return errors.New("scan: Config.Registry, Config.Items and Config.Data are required")
	}
	return nil
}

func (s *Scanner) scanManifest(ctx context.Context, repo string, d oci.Digest, depth int) error {
	body, ct, err := s.reg.manifest(ctx, repo, d)
	if errors.Is(err, errNotFound) {
		s.log.Debug("scan: manifest gone", "repo", repo, "digest", d)
		return nil
	}
	if err != nil {
		return err
	}
	m, err := oci.ParseManifest(ct, body)
	if err != nil {
		return fmt.Errorf("scan %s@%s: %w", repo, d, err)
	}
	if m.IsIndex() {
		if depth >= maxNesting {
			return nil
		}
		var errs []error
		for _, c := range m.Manifests {
			if !PlatformImage(c) {
				continue
			}
			errs = append(errs, s.scanManifest(ctx, repo, c.Digest, depth+1))
		}
		return errors.Join(errs...)
	}
	if !isImage(m) {
		s.log.Debug("scan: not an image", "repo", repo, "digest", d, "artifact_type", m.ArtifactType)
		return nil
	}
	subject := oci.Descriptor{MediaType: m.MediaType, Digest: d, Size: int64(len(body))}
	_, err = s.images.do(ctx, repo+"@"+string(d), func() (struct{}, error) {
		return struct{}{}, s.scanImage(ctx, repo, subject, m.Layers)
	})
	return err
}

// isImage reports whether m is a container image: an image config, at
// least one filesystem layer, and no subject (a manifest with a subject is
// an artifact about something else, whatever its config).
func isImage(m *oci.Manifest) bool {
	if m.Subject != nil || m.Config == nil {
		return false
	}
	if m.Config.MediaType != oci.MediaTypeImageConfig && m.Config.MediaType != mediaTypeDockerConfig {
		return false
	}
	if m.ArtifactType != "" && m.ArtifactType != m.Config.MediaType {
		return false
	}
	for _, l := range m.Layers {
		if isLayerMediaType(l.MediaType) {
			return true
		}
	}
	return false
}

// PlatformImage reports whether an index entry is a platform's image, not
// an attestation manifest (BuildKit marks those with platform
// unknown/unknown and a vnd.docker.reference.type annotation).
func PlatformImage(c oci.Descriptor) bool {
	if _, ok := c.Annotations["vnd.docker.reference.type"]; ok {
		return false
	}
	if c.Platform != nil && c.Platform.OS == "unknown" {
		return false
	}
	return true
}

// scanImage scans one image manifest (subject) with the given layers.
func (s *Scanner) scanImage(ctx context.Context, repo string, subject oci.Descriptor, layers []oci.Descriptor) error {
	prev, err := s.Record(ctx, repo, subject.Digest)
	var prevp *Record
	switch {
	case err == nil:
		prevp = &prev
	case !errors.Is(err, storage.ErrNotFound):
		return err
	}
	matcher, err := s.cfg.Data(ctx)
	if err != nil {
		return s.failed(ctx, repo, subject, layers, prevp, fmt.Errorf("vulnerability data: %w", err))
	}
	version := matcher.Version()
	if prevp != nil && prev.Status == StatusComplete && prev.DataVersion == version && prev.Report != "" {
		ok, err := s.reg.manifestExists(ctx, repo, prev.Report)
		if err != nil {
			return err
		}
		if ok {
			s.log.Debug("scan: already scanned", "repo", repo, "digest", subject.Digest, "data", version)
			return nil
		}
	}
	idx, err := s.layerIndexes(ctx, layers)
	if err != nil {
		return s.failed(ctx, repo, subject, layers, prevp, err)
	}
	img := inventory.Merge(idx)
	findings, err := matcher.Match(ctx, img)
	if err != nil {
		return s.failed(ctx, repo, subject, layers, prevp, fmt.Errorf("match: %w", err))
	}
	now := s.cfg.Now().UTC()
	a := attachment{repo: repo, subject: subject, img: img, findings: findings, version: version, created: now}
	sbomDigest, err := s.attach(ctx, a, artifactSBOM)
	if err != nil {
		return s.failed(ctx, repo, subject, layers, prevp, err)
	}
	reportDigest, err := s.attach(ctx, a, artifactReport)
	if err != nil {
		return s.failed(ctx, repo, subject, layers, prevp, err)
	}
	rec := Record{
		Repo: repo, Digest: subject.Digest, MediaType: subject.MediaType, Size: subject.Size,
		Layers: digests(layers), Status: StatusComplete, DataVersion: version,
		Counts: counts(findings), Findings: fingerprint(findings),
		SBOM: sbomDigest, Report: reportDigest, ScannedAt: now, MatchedAt: now,
	}
	if err := s.putRecord(ctx, rec, prevp); err != nil {
		return err
	}
	s.count(metricImagesReported)
	s.log.Info("image scanned", "repo", repo, "digest", subject.Digest, "packages", len(img.Packages),
		"findings", len(findings), "data", version, "report", reportDigest)
	s.emitScan(ctx, rec)
	return nil
}

// failed records a failed scan (unless ctx ended: then nothing happened
// worth recording) and returns err.
func (s *Scanner) failed(ctx context.Context, repo string, subject oci.Descriptor, layers []oci.Descriptor, prev *Record, err error) error {
	err = fmt.Errorf("scan %s@%s: %w", repo, subject.Digest, err)
	if ctx.Err() != nil {
		return err
	}
	rec := Record{
		Repo: repo, Digest: subject.Digest, MediaType: subject.MediaType, Size: subject.Size,
		Layers: digests(layers), Status: StatusFailed, Error: err.Error(), ScannedAt: s.cfg.Now().UTC(),
	}
	if prev != nil {
		// The last good scan's artifacts are still attached: keep saying so.
		rec.SBOM, rec.Report, rec.DataVersion = prev.SBOM, prev.Report, prev.DataVersion
		rec.Counts, rec.Findings, rec.MatchedAt = prev.Counts, prev.Findings, prev.MatchedAt
	}
	if perr := s.putRecord(ctx, rec, prev); perr != nil {
		s.log.Warn("scan: recording a failed scan", "repo", repo, "digest", subject.Digest, "error", perr)
	}
	s.count(metricFailures)
	s.log.Warn("scan failed", "repo", repo, "digest", subject.Digest, "error", err)
	s.emitScan(ctx, rec)
	return err
}

// layerIndexes returns the index of every filesystem layer, indexing (a
// few at a time) those not indexed yet. Layers that are not filesystem
// layers are left out; a layer whose bytes are elsewhere (non-distributable,
// with URLs) stands as a layer with an error, so the report says it was
// not looked at.
func (s *Scanner) layerIndexes(ctx context.Context, layers []oci.Descriptor) ([]*inventory.Layer, error) {
	out := make([]*inventory.Layer, len(layers))
	errs := make([]error, len(layers))
	sem := make(chan struct{}, layerJobs)
	var wg sync.WaitGroup
	for i, l := range layers {
		switch {
		case !isLayerMediaType(l.MediaType):
			continue
		case len(l.URLs) > 0:
			out[i] = &inventory.Layer{Schema: inventory.Schema, Digest: l.Digest, MediaType: l.MediaType, Size: l.Size,
				Error: "not indexed: the layer's bytes are not stored in this registry (non-distributable)"}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			out[i], errs[i] = s.layer(ctx, l)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var idx []*inventory.Layer
	for _, l := range out {
		if l != nil {
			idx = append(idx, l)
		}
	}
	return idx, nil
}

func digests(ds []oci.Descriptor) []oci.Digest {
	out := make([]oci.Digest, 0, len(ds))
	for _, d := range ds {
		if isLayerMediaType(d.MediaType) {
			out = append(out, d.Digest)
		}
	}
	return out
}
