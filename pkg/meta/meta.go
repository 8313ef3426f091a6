// Package meta is the registry's metadata logic, written once against the
// narrow storage.Items interface that every metadata driver implements (bbolt
// for the embedded store, DynamoDB for AWS). It decides what a manifest put
// writes, how reference counts move, how tags, the catalog and referrers page.
package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

// Store is the registry's metadata logic over an Items driver.
type Store struct {
	items     storage.Items
	now       func() time.Time
	immutable func(repo, tag string) bool
	stored    func(ctx context.Context, d oci.Digest) (bool, error)
}

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// New returns the metadata logic over items.
func New(items storage.Items, opts ...Option) *Store {
	s := &Store{items: items, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

func (s *Store) unix() int64 { return s.now().Unix() }

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own record types are encoded; they always marshal.
		panic(fmt.Sprintf("meta: encode %T: %v", v, err))
	}
	return b
}

func decode[T any](it storage.Item) (T, error) {
	var v T
	if err := json.Unmarshal(it.Data, &v); err != nil {
		return v, fmt.Errorf("decode %s/%s: %w", it.PK, it.SK, err)
	}
	return v, nil
}

// isCond reports whether err is a condition failure, and at which op index
// for transactions (-1 otherwise).
func isCond(err error) (bool, int) {
	var tx *storage.TxError
	if errors.As(err, &tx) {
		return true, tx.Index
	}
	return errors.Is(err, storage.ErrConditionFailed), -1
}

// queryN pages through a partition until n items (n <= 0: all) are read.
// Tags, the catalog, referrers and retention all list this way.
func (s *Store) queryN(ctx context.Context, pk, prefix, after string, n int) ([]storage.Item, bool, error) {
	var out []storage.Item
	for {
		limit := 1000
		if n > 0 {
			limit = min(limit, n-len(out))
		}
		items, more, err := s.items.ItemQuery(ctx, pk, prefix, after, limit)
		if err != nil {
			return nil, false, err
		}
		out = append(out, items...)
		if !more || len(items) == 0 {
			return out, false, nil
		}
		after = items[len(items)-1].SK
		if n > 0 && len(out) >= n {
			// Tell the caller whether anything is really left.
			peek, _, err := s.items.ItemQuery(ctx, pk, prefix, after, 1)
			if err != nil {
				return nil, false, err
			}
			return out, len(peek) > 0, nil
		}
	}
}
