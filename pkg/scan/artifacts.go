package scan

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/berth-registry/berth/pkg/inventory"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/sbom"
)

// artifact is one kind of scan artifact.
type artifact struct {
	artifactType string
	title        string // org.opencontainers.image.title of its one layer (oras pull names the file so)
	write        func(a attachment) ([]byte, error)
}

var (
	artifactSBOM = artifact{sbom.ArtifactTypeSBOM, "sbom.spdx.json", func(a attachment) ([]byte, error) {
		return sbom.SPDX(a.img, a.subject, a.name(), a.created)
	}}
	artifactReport = artifact{sbom.ArtifactTypeReport, "vulnerabilities.cdx.json", func(a attachment) ([]byte, error) {
		return sbom.Report(a.img, a.findings, a.subject, a.name(), a.created)
	}}
)

// attachment is what one scan attaches to one image.
type attachment struct {
	repo     string
	subject  oci.Descriptor
	img      inventory.Image
	findings []inventory.Finding
	version  string
	created  time.Time
}

// name is how the artifacts name the image.
func (a attachment) name() string { return a.repo + "@" + string(a.subject.Digest) }

// emptyConfig is the OCI empty JSON config of artifact manifests.
var emptyConfig = []byte("{}")

// artifactManifest is an OCI 1.1 artifact: an image manifest with an
// artifactType, the empty config, one layer and a subject.
type artifactManifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        oci.Descriptor    `json:"config"`
	Layers        []oci.Descriptor  `json:"layers"`
	Subject       *oci.Descriptor   `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
}

// attach pushes one artifact of kind k about a.subject through the
// registry, then deletes the scanner's older artifacts of that kind.
func (s *Scanner) attach(ctx context.Context, a attachment, k artifact) (oci.Digest, error) {
	content, err := k.write(a)
	if err != nil {
		return "", fmt.Errorf("%s: %w", k.artifactType, err)
	}
	cfg, err := s.reg.pushBlob(ctx, a.repo, emptyConfig)
	if err != nil {
		return "", err
	}
	cfg.MediaType = oci.MediaTypeEmptyJSON
	layer, err := s.reg.pushBlob(ctx, a.repo, content)
	if err != nil {
		return "", err
	}
	layer.MediaType = k.artifactType
	layer.Annotations = map[string]string{"org.opencontainers.image.title": k.title}
	subject := oci.Descriptor{MediaType: a.subject.MediaType, Digest: a.subject.Digest, Size: a.subject.Size}
	body, err := json.Marshal(artifactManifest{
		SchemaVersion: 2,
		MediaType:     oci.MediaTypeImageManifest,
		ArtifactType:  k.artifactType,
		Config:        cfg,
		Layers:        []oci.Descriptor{layer},
		Subject:       &subject,
		Annotations: map[string]string{
			AnnotationCreated:     a.created.Format(time.RFC3339Nano),
			AnnotationDataVersion: a.version,
		},
	})
	if err != nil {
		return "", err
	}
	d, err := s.reg.pushManifest(ctx, a.repo, body)
	if err != nil {
		return "", err
	}
	s.prune(ctx, a.repo, a.subject.Digest, k.artifactType)
	return d, nil
}

// prune deletes every scanner artifact of artifactType about subject but
// the latest (by creation time, then digest). Every scanner agrees on
// which is the latest, so two scans of one image racing each other end
// with one artifact, never none. Failures are logged: an extra report
// costs storage, not correctness (berth scan reads the latest).
func (s *Scanner) prune(ctx context.Context, repo string, subject oci.Digest, artifactType string) {
	refs, err := s.reg.referrers(ctx, repo, subject, artifactType)
	if err != nil {
		s.log.Warn("scan: listing old artifacts", "repo", repo, "digest", subject, "error", err)
		return
	}
	own := OwnArtifacts(refs)
	if len(own) < 2 {
		return
	}
	for _, d := range own[1:] {
		if err := s.reg.deleteManifest(ctx, repo, d.Digest); err != nil {
			s.log.Warn("scan: deleting an old artifact", "repo", repo, "digest", d.Digest, "error", err)
		}
	}
}

// OwnArtifacts returns the referrers the scanner wrote (they carry
// AnnotationDataVersion), latest first: by AnnotationCreated, then by
// digest. berth scan reads the first.
func OwnArtifacts(refs []oci.Descriptor) []oci.Descriptor {
	var own []oci.Descriptor
	for _, r := range refs {
		if _, ok := r.Annotations[AnnotationDataVersion]; ok {
			own = append(own, r)
		}
	}
	created := func(d oci.Descriptor) time.Time {
		t, _ := time.Parse(time.RFC3339Nano, d.Annotations[AnnotationCreated])
		return t
	}
	slices.SortFunc(own, func(a, b oci.Descriptor) int {
		if c := created(b).Compare(created(a)); c != 0 {
			return c
		}
		switch {
		case a.Digest > b.Digest:
			return -1
		case a.Digest < b.Digest:
			return 1
		}
		return 0
	})
	return own
}
