package meta

import (
	"context"
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
	PushedAt  int64        // unix seconds
	Subject   oci.Digest   // set for referrers
	Children  []oci.Digest // index children
	Tags      []string     // sorted
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
			Digest: d, MediaType: m.MediaType, Size: m.Size, PushedAt: m.PushedAt,
			Subject: m.Subject, Children: m.Children,
		})
	}
	tags, err := s.TagsByDigest(ctx, repo)
	if err != nil {
		return nil, err
	}
	for d, names := range tags {
		if i, ok := index[d]; ok {
			out[i].Tags = names
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out, nil
}

// TagsByDigest returns the tags of repo grouped by the digest they point
// at, each group sorted: one paged Query over the TAG# items.
func (s *Store) TagsByDigest(ctx context.Context, repo string) (map[oci.Digest][]string, error) {
	items, _, err := s.queryN(ctx, repoPK(repo), pfxTag, "", 0)
	if err != nil {
		return nil, err
	}
	out := map[oci.Digest][]string{}
	for _, it := range items {
		t, err := decode[tagHead](it)
		if err != nil {
			return nil, err
		}
		out[t.Digest] = append(out[t.Digest], strings.TrimPrefix(it.SK, pfxTag))
	}
	for _, names := range out {
		sort.Strings(names)
	}
	return out, nil
}
