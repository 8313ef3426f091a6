package meta

import (
	"context"
	"errors"
	"strings"

	"github.com/berth-registry/berth/pkg/storage"
)

type catalogRec struct {
	Name string `json:"name"`
}

// RepoExists reports whether repo holds at least one manifest.
func (s *Store) RepoExists(ctx context.Context, repo string) (bool, error) {
	it, err := s.items.ItemGet(ctx, pkCatalog, catalogSK(repo))
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return it.Count > 0, nil
}

// Catalog returns up to n repository names sorted after last, and whether
// more follow. Repositories whose last manifest was deleted are left out.
func (s *Store) Catalog(ctx context.Context, last string, n int) ([]string, bool, error) {
	after := ""
	if last != "" {
		after = catalogSK(last)
	}
	var names []string
	for {
		want := 0
		if n > 0 {
			want = n - len(names)
		}
		items, more, err := s.queryN(ctx, pkCatalog, pfxRepo, after, want)
		if err != nil {
			return nil, false, err
		}
		for _, it := range items {
			if it.Count > 0 {
				names = append(names, strings.TrimPrefix(it.SK, pfxRepo))
			}
		}
		if !more || len(items) == 0 {
			return names, false, nil
		}
		after = items[len(items)-1].SK
		if n > 0 && len(names) >= n {
			return names, true, nil
		}
	}
}
