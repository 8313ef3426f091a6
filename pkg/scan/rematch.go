package scan

import (
	"context"
	"errors"
	"fmt"

	"github.com/berth-registry/berth/pkg/inventory"
	"github.com/berth-registry/berth/pkg/oci"
)

// RematchStats counts what one Rematch pass did.
type RematchStats struct {
	Records   int // scan records read
	Current   int // already matched with the current data
	Unchanged int // re-matched, same findings: record updated, report kept
	Replaced  int // re-matched, findings changed: new report attached
	Rescanned int // a layer index or the last scan was missing: scanned afresh
	Gone      int // the image was deleted: record removed
	Failed    int
}

// Rematch brings every recorded scan up to the current vulnerability
// data: each image whose record names another data version is matched
// again from its stored layer indexes (no layer is read), and gets a new
// report only when its findings changed; otherwise only its record moves
// to the new version. Images whose last scan failed, or one of whose
// layer indexes is missing, are scanned afresh; records of deleted images
// are removed. Errors of single images are logged, counted and joined
// into the returned error; the pass goes on.
func (s *Scanner) Rematch(ctx context.Context) error {
	_, err := s.RematchStats(ctx)
	return err
}

// RematchStats is Rematch, with what it did.
func (s *Scanner) RematchStats(ctx context.Context) (RematchStats, error) {
	var st RematchStats
	if err := s.check(); err != nil {
		return st, err
	}
	matcher, err := s.cfg.Data(ctx)
	if err != nil {
		return st, fmt.Errorf("rematch: vulnerability data: %w", err)
	}
	version := matcher.Version()
	var errs []error
	err = s.records(ctx, func(r Record) error {
		st.Records++
		if r.Status == StatusComplete && r.DataVersion == version {
			st.Current++
			return nil
		}
		if err := s.rematch(ctx, r, matcher, &st); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			st.Failed++
			s.log.Warn("rematch failed", "repo", r.Repo, "digest", r.Digest, "error", err)
			errs = append(errs, err)
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	s.log.Info("rematch", "data", version, "records", st.Records, "current", st.Current, "unchanged", st.Unchanged,
		"replaced", st.Replaced, "rescanned", st.Rescanned, "gone", st.Gone, "failed", st.Failed)
	return st, errors.Join(errs...)
}

func (s *Scanner) rematch(ctx context.Context, r Record, matcher Matcher, st *RematchStats) error {
	exists, err := s.reg.manifestExists(ctx, r.Repo, r.Digest)
	if err != nil {
		return err
	}
	if !exists {
		st.Gone++
		return s.deleteRecord(ctx, r.Repo, r.Digest)
	}
	idx, ok, err := s.storedIndexes(ctx, r.Layers)
	if err != nil {
		return err
	}
	if !ok || r.Status != StatusComplete {
		st.Rescanned++
		return s.ScanManifest(ctx, r.Repo, r.Digest)
	}
	img := inventory.Merge(idx)
	findings, err := matcher.Match(ctx, img)
	if err != nil {
		return fmt.Errorf("rematch %s@%s: %w", r.Repo, r.Digest, err)
	}
	version, now := matcher.Version(), s.cfg.Now().UTC()
	next := r
	next.DataVersion, next.MatchedAt, next.Error = version, now, ""
	fp := fingerprint(findings)
	if fp == r.Findings {
		st.Unchanged++
		return s.putRecord(ctx, next, &r)
	}
	subject := oci.Descriptor{MediaType: r.MediaType, Digest: r.Digest, Size: r.Size}
	a := attachment{repo: r.Repo, subject: subject, img: img, findings: findings, version: version, created: now}
	report, err := s.attach(ctx, a, artifactReport)
	if err != nil {
		return fmt.Errorf("rematch %s@%s: %w", r.Repo, r.Digest, err)
	}
	next.Report, next.Findings, next.Counts, next.ScannedAt = report, fp, counts(findings), now
	if err := s.putRecord(ctx, next, &r); err != nil {
		return err
	}
	st.Replaced++
	s.log.Info("image re-matched", "repo", r.Repo, "digest", r.Digest, "findings", len(findings), "data", version, "report", report)
	s.emitScan(ctx, next)
	return nil
}

// storedIndexes reads the stored indexes of layers; ok is false when one
// is missing or of another schema.
func (s *Scanner) storedIndexes(ctx context.Context, layers []oci.Digest) ([]*inventory.Layer, bool, error) {
	if s.indexes == nil {
		return nil, false, errNoIndexStore
	}
	out := make([]*inventory.Layer, 0, len(layers))
	for _, d := range layers {
		l, err := s.indexes.LayerIndexGet(ctx, d)
		if err != nil {
			if isNotFound(err) {
				return nil, false, nil
			}
			return nil, false, err
		}
		if l.Schema != inventory.Schema {
			return nil, false, nil
		}
		out = append(out, l)
	}
	return out, true, nil
}
