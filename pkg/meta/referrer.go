package meta

import (
	"context"

	"github.com/berth-registry/berth/pkg/oci"
)

// MaxReferrers bounds one referrers response.
const MaxReferrers = 10000

// Referrers returns the descriptors of manifests in repo whose subject is
// subject, filtered by artifactType when it is not empty.
func (s *Store) Referrers(ctx context.Context, repo string, subject oci.Digest, artifactType string) ([]oci.Descriptor, error) {
	items, _, err := s.queryN(ctx, repoPK(repo), referrerPrefix(subject), "", MaxReferrers)
	if err != nil {
		return nil, err
	}
	out := make([]oci.Descriptor, 0, len(items))
	for _, it := range items {
		d, err := decode[oci.Descriptor](it)
		if err != nil {
			return nil, err
		}
		if artifactType != "" && d.ArtifactType != artifactType {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}
