package boltdb

import (
	"context"

	bolt "go.etcd.io/bbolt"

	"github.com/berth-registry/berth/pkg/storage"
)

var _ storage.ItemBatchGetter = (*Store)(nil)

// ItemGetBatch reads keys in one bbolt read transaction, so the answer is
// one consistent snapshot (DynamoDB's BatchGetItem promises less: each item
// is read consistently, not all at one instant).
func (s *Store) ItemGetBatch(ctx context.Context, keys []storage.Key) ([]storage.Item, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	seen := make(map[storage.Key]bool, len(keys))
	var items []storage.Item
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName)
		for _, key := range keys {
			if seen[key] {
				continue
			}
			seen[key] = true
			k, err := itemKey(key.PK, key.SK)
			if err != nil {
				return err
			}
			it, found, err := s.load(b, k, key.PK, key.SK)
			if err != nil {
				return err
			}
			if found {
				items = append(items, it)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return items, nil
}
