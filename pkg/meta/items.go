// Package meta is the registry's metadata logic, written once against the
// narrow Items interface that every metadata driver implements (bbolt for
// the embedded store, DynamoDB for AWS). It decides what a manifest put
// writes, how reference counts move, how tags, the catalog and referrers page.
package meta

import (
	"context"

	"github.com/berth-registry/berth/pkg/storage"
)

// Items is the metadata storage seam. Every method is atomic; Transact is
// all-or-nothing across its operations. Drivers return errors wrapping the
// storage sentinels (storage.ErrNotFound, storage.ErrConditionFailed, ...).
type Items interface {
	// ItemGet returns the item or an error wrapping storage.ErrNotFound.
	// Expired items (Expires != 0 && Expires <= now) are not found.
	ItemGet(ctx context.Context, pk, sk string) (storage.Item, error)
	// ItemPut writes it whole if cond holds (storage.ErrConditionFailed if not).
	ItemPut(ctx context.Context, it storage.Item, cond storage.Cond) error
	// ItemAdd adds delta to the counter as storage.OpAdd describes and
	// returns the item after the update.
	ItemAdd(ctx context.Context, it storage.Item, delta int64, cond storage.Cond) (storage.Item, error)
	// ItemDelete removes the item if cond holds. Deleting an absent item with
	// storage.IfNone succeeds.
	ItemDelete(ctx context.Context, pk, sk string, cond storage.Cond) error
	// ItemQuery returns up to limit items of partition pk whose SK starts
	// with prefix and sorts strictly after after (after may be empty), in
	// ascending SK order, and whether more may follow.
	ItemQuery(ctx context.Context, pk, prefix, after string, limit int) ([]storage.Item, bool, error)
	// ItemScan returns up to limit items, across partitions, whose PK starts
	// with pkPrefix, after the opaque cursor (empty to start), and the cursor
	// for the next page ("" when done). For background jobs only (cleanup,
	// GC), never on a request path; order is unspecified.
	ItemScan(ctx context.Context, pkPrefix, cursor string, limit int) ([]storage.Item, string, error)
	// Transact applies ops atomically. At most storage.MaxTransactOps ops, and
	// at most one op per item. A failed condition returns *storage.TxError.
	Transact(ctx context.Context, ops []storage.Op) error
}
