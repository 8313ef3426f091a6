package scan

import (
	"context"
	"time"

	"github.com/berth-registry/berth/pkg/events"
	"github.com/berth-registry/berth/pkg/inventory"
	"github.com/berth-registry/berth/pkg/oci"
)

// severities are the finding-severity-counts keys, in ECR's words.
var severities = []inventory.Severity{
	inventory.SeverityCritical, inventory.SeverityHigh, inventory.SeverityMedium,
	inventory.SeverityLow, inventory.SeverityUnknown,
}

// ScanEvent is the "Berth Image Scan" event of a recorded scan, with the
// image's tags (ECR's "ECR Image Scan" detail; docs/events.md).
func ScanEvent(rec Record, tags []string, now func() time.Time) events.Event {
	d := events.Detail{
		ActionType:      events.ActionScan,
		ScanStatus:      rec.Status,
		RepositoryName:  rec.Repo,
		ImageDigest:     string(rec.Digest),
		ImageTags:       tags,
		ScanDataVersion: rec.DataVersion,
		ScanError:       rec.Error,
	}
	if rec.Status == StatusComplete {
		c := events.SeverityCounts{}
		for _, sev := range severities {
			if n := rec.Counts[sev]; n > 0 {
				c[string(sev)] = n
			}
		}
		d.FindingSeverityCounts = &c
	}
	return events.New(events.DetailImageScan, now(), d)
}

// emitScan announces rec, with the tags that point at the image now.
func (s *Scanner) emitScan(ctx context.Context, rec Record) {
	if s.cfg.Events == nil {
		return
	}
	var tags []string
	if s.meta != nil {
		byDigest, err := s.meta.TagsByDigest(ctx, rec.Repo)
		if err != nil {
			s.log.Warn("scan: tags for the scan event", "repo", rec.Repo, "error", err)
		}
		tags = byDigest[rec.Digest]
	}
	s.cfg.Events.Emit(ctx, ScanEvent(rec, tags, s.cfg.Now))
}

// JobKind is what an event asks of the scanner.
type JobKind int

const (
	// JobScan: scan an image (or index) manifest that was pushed.
	JobScan JobKind = iota + 1
	// JobIndex: index a layer blob that was stored.
	JobIndex
	// JobForget: a manifest was deleted; its scan record goes.
	JobForget
	// JobDropIndex: garbage collection deleted a blob; its index goes.
	JobDropIndex
)

// Job is one piece of work for a Scanner (Pool runs them; the scan
// function does the same from its events).
type Job struct {
	Kind   JobKind
	Repo   string
	Digest oci.Digest
}

// JobOf says what a registry event asks of the scanner, if anything.
// Pushes of manifests that are not images or indexes, which include the
// scanner's own artifacts, ask nothing: they are skipped here, before any
// read (otherwise each report pushed would be scanned in turn).
func JobOf(detailType string, d events.Detail) (Job, bool) {
	dg, err := oci.ParseDigest(d.ImageDigest)
	switch {
	case detailType == events.DetailBlobAction && d.ActionType == events.ActionDelete:
		bd, err := oci.ParseDigest(d.BlobDigest)
		return Job{Kind: JobDropIndex, Digest: bd}, err == nil
	case detailType != events.DetailImageAction || err != nil || d.RepositoryName == "":
		return Job{}, false
	case d.ActionType == events.ActionDelete && d.ImageTag == "":
		// A manifest deletion (a tag deletion names its tag and leaves the
		// manifest).
		return Job{Kind: JobForget, Repo: d.RepositoryName, Digest: dg}, true
	case d.ActionType != events.ActionPush:
		return Job{}, false
	case oci.IsIndexMediaType(d.ManifestMediaType):
		return Job{Kind: JobScan, Repo: d.RepositoryName, Digest: dg}, true
	case d.ManifestMediaType != oci.MediaTypeImageManifest && d.ManifestMediaType != oci.MediaTypeDockerManifest:
		return Job{}, false
	case d.ArtifactMediaType == "" || d.ArtifactMediaType == oci.MediaTypeImageConfig || d.ArtifactMediaType == mediaTypeDockerConfig:
		return Job{Kind: JobScan, Repo: d.RepositoryName, Digest: dg}, true
	}
	return Job{}, false
}

// Do runs one job.
func (s *Scanner) Do(ctx context.Context, j Job) error {
	switch j.Kind {
	case JobScan:
		return s.ScanManifest(ctx, j.Repo, j.Digest)
	case JobIndex:
		return s.IndexLayer(ctx, j.Digest)
	case JobForget:
		return s.Forget(ctx, j.Repo, j.Digest)
	case JobDropIndex:
		return s.DeleteLayerIndex(ctx, j.Digest)
	}
	return nil
}

// Forget removes the scan record of repo's manifest d (it was deleted;
// its referrers stay until their own deletion or garbage collection).
func (s *Scanner) Forget(ctx context.Context, repo string, d oci.Digest) error {
	if s.cfg.Items == nil {
		return nil
	}
	return s.deleteRecord(ctx, repo, d)
}
