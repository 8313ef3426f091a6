package storage

import "context"

// Items is the metadata storage seam. Every method is atomic; Transact is
// all-or-nothing across its operations. Drivers return errors wrapping the
// storage sentinels (ErrNotFound, ErrConditionFailed, ...).
type Items interface {
	// ItemGet returns the item or an error wrapping ErrNotFound.
	// Expired items (Expires != 0 && Expires <= now) are not found.
	ItemGet(ctx context.Context, pk, sk string) (Item, error)
	// ItemPut writes it whole if cond holds (ErrConditionFailed if not).
	ItemPut(ctx context.Context, it Item, cond Cond) error
	// ItemAdd adds delta to the counter as OpAdd describes and
	// returns the item after the update.
	ItemAdd(ctx context.Context, it Item, delta int64, cond Cond) (Item, error)
	// ItemDelete removes the item if cond holds. Deleting an absent item with
	// IfNone succeeds.
	ItemDelete(ctx context.Context, pk, sk string, cond Cond) error
	// ItemQuery returns up to limit items of partition pk whose SK starts
	// with prefix and sorts strictly after after (after may be empty), in
	// ascending SK order, and whether more may follow.
	ItemQuery(ctx context.Context, pk, prefix, after string, limit int) ([]Item, bool, error)
	// ItemScan returns up to limit items, across partitions, whose PK starts
	// with pkPrefix, after the opaque cursor (empty to start), and the cursor
	// for the next page ("" when done). For background jobs only (cleanup,
	// GC), never on a request path; order is unspecified.
	ItemScan(ctx context.Context, pkPrefix, cursor string, limit int) ([]Item, string, error)
	// Transact applies ops atomically. At most MaxTransactOps ops, and
	// at most one op per item. A failed condition returns *TxError.
	Transact(ctx context.Context, ops []Op) error
}
