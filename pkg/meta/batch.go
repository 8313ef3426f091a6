package meta

import (
	"context"
	"errors"

	"github.com/berth-registry/berth/pkg/storage"
)

// getMany reads the live items among keys, in one round trip when the
// driver can (storage.ItemBatchGetter), else one read per key. Absent
// items are simply missing from the map.
func (s *Store) getMany(ctx context.Context, keys []storage.Key) (map[storage.Key]storage.Item, error) {
	found := make(map[storage.Key]storage.Item, len(keys))
	if bg, ok := s.items.(storage.ItemBatchGetter); ok {
		items, err := bg.ItemGetBatch(ctx, keys)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			found[storage.Key{PK: it.PK, SK: it.SK}] = it
		}
		return found, nil
	}
	for _, k := range keys {
		if _, done := found[k]; done {
			continue
		}
		it, err := s.items.ItemGet(ctx, k.PK, k.SK)
		switch {
		case errors.Is(err, storage.ErrNotFound):
		case err != nil:
			return nil, err
		default:
			found[k] = it
		}
	}
	return found, nil
}
