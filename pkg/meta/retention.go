package meta

import (
	"context"
	"encoding/json"
	"sort"
	"strings"

	"github.com/berth-registry/berth/pkg/oci"
)

// ManifestInfo is one manifest of a repository with the tags pointing at
// it: what retention (pkg/retention) decides on.
type ManifestInfo struct {
	Digest    oci.Digest
	MediaType string
	Size      int64
	PushedAt  int64 // unix seconds
	PushedBy  string
	// LastPulled is the last recorded pull (unix seconds), or PushedAt
	// when none was recorded since the push: the later of PushedAt and the
	// Touched of the manifest item and of its tags. PullRecord records the
	// first pull of each UTC day, so the last pull may be up to a day later.
	LastPulled int64
	Subject    oci.Digest // set for referrers
	// ArtifactType is the manifest's artifactType (referrers, artifacts).
	ArtifactType string
	// ContentSize is what pulling the image transfers: the manifest, its
	// config and its layers. It is the manifest's own size for an index
	// and for a body kept outside its item (over InlineLimit), which this
	// listing does not read.
	ContentSize int64
	Children    []oci.Digest // index children
	Tags        []string     // sorted
}

// ManifestList returns every manifest of repo, sorted by digest, with its
// tags: one paged Query over the MANIFEST# items and one over the TAG#
// items of the repository's partition (docs/dynamodb.md). Bodies are not
// decoded beyond the record. A tag whose manifest is gone (a delete that
// stopped halfway) is left out.
func (s *Store) ManifestList(ctx context.Context, repo string) ([]ManifestInfo, error) {
	items, _, err := s.queryN(ctx, repoPK(repo), pfxMan, "", 0)
	if err != nil {
		return nil, err
	}
	out := make([]ManifestInfo, 0, len(items))
	index := make(map[oci.Digest]int, len(items))
	for _, it := range items {
		m, err := decode[Manifest](it)
		if err != nil {
			return nil, err
		}
		d := oci.Digest(strings.TrimPrefix(it.SK, pfxMan))
		index[d] = len(out)
		out = append(out, ManifestInfo{
			Digest: d, MediaType: m.MediaType, Size: m.Size, PushedAt: m.PushedAt, PushedBy: m.PushedBy,
			LastPulled: max(m.PushedAt, it.Touched),
			Subject:    m.Subject, Children: m.Children, ArtifactType: m.ArtifactType,
			ContentSize: contentSize(m),
		})
	}
	tags, pulled, err := s.tagsByDigest(ctx, repo)
	if err != nil {
		return nil, err
	}
	for d, names := range tags {
		if i, ok := index[d]; ok {
			out[i].Tags = names
			// A pull by tag marks the manifest too, so this only matters
			// between writers whose clocks differ.
			out[i].LastPulled = max(out[i].LastPulled, pulled[d])
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out, nil
}

// TagsByDigest returns the tags of repo grouped by the digest they point
// at, each group sorted: one paged Query over the TAG# items.
func (s *Store) TagsByDigest(ctx context.Context, repo string) (map[oci.Digest][]string, error) {
	out, _, err := s.tagsByDigest(ctx, repo)
	return out, err
}

// tagsByDigest is TagsByDigest with, per digest, the latest Touched of
// its tags (their last recorded pull).
func (s *Store) tagsByDigest(ctx context.Context, repo string) (map[oci.Digest][]string, map[oci.Digest]int64, error) {
	items, _, err := s.queryN(ctx, repoPK(repo), pfxTag, "", 0)
	if err != nil {
		return nil, nil, err
	}
	out, pulled := map[oci.Digest][]string{}, map[oci.Digest]int64{}
	for _, it := range items {
		t, err := decode[tagHead](it)
		if err != nil {
			return nil, nil, err
		}
		out[t.Digest] = append(out[t.Digest], strings.TrimPrefix(it.SK, pfxTag))
		pulled[t.Digest] = max(pulled[t.Digest], it.Touched)
	}
	for _, names := range out {
		sort.Strings(names)
	}
	return out, pulled, nil
}

// contentSize is ManifestInfo.ContentSize for m: the sum of the sizes the
// inline body declares. Every referenced blob was checked against its
// declared size when the manifest was pushed, so the body is the truth.
func contentSize(m Manifest) int64 {
	total := m.Size
	if m.Body == nil {
		return total
	}
	var body struct {
		Config *struct {
			Size int64 `json:"size"`
		} `json:"config"`
		Layers []struct {
			Size int64 `json:"size"`
		} `json:"layers"`
	}
	if json.Unmarshal(m.Body, &body) != nil {
		return total
	}
	if body.Config != nil {
		total += body.Config.Size
	}
	for _, l := range body.Layers {
		total += l.Size
	}
	return total
}
