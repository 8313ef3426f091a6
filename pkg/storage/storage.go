// Package storage holds the two storage seams and the vocabulary they share
// with the registry logic: Items (metadata: the item model, write
// conditions, transaction operations) and Blobs (content-addressed bytes,
// uploads, and the optional redirect, inspect and direct-upload
// capabilities), plus the sentinel errors every driver returns. It imports
// only pkg/oci, so drivers and the contract suites depend on it and never on
// the logic that consumes them (pkg/meta, pkg/registry).
package storage

import (
	"errors"
	"fmt"
)

// Sentinel errors. Drivers wrap them (fmt.Errorf("...: %w", ErrNotFound));
// callers match them with errors.Is. A driver never returns nil for "absent".
var (
	// ErrNotFound: the item, blob or upload does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConditionFailed: a conditional write or transaction condition did not hold.
	ErrConditionFailed = errors.New("condition failed")
	// ErrDigestMismatch: content did not hash to the digest it was stored under.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrSizeMismatch: content length differed from the declared size.
	ErrSizeMismatch = errors.New("size mismatch")
	// ErrInvalidOffset: an upload write did not start where the stored data ends.
	ErrInvalidOffset = errors.New("invalid upload offset")
	// ErrTooLarge: an item or request exceeds a backend limit.
	ErrTooLarge = errors.New("too large")
	// ErrUnavailable: the backend is throttling or temporarily unreachable and
	// retries were exhausted. Maps to 503 with Retry-After.
	ErrUnavailable = errors.New("storage temporarily unavailable")
)

// MaxItemBytes bounds the encoded size of one Item's Data. It is below
// DynamoDB's 400 KB item limit with room for keys and attributes, and every
// driver enforces it so the registry behaves the same on all of them.
const MaxItemBytes = 350 * 1024

// MaxTransactOps is the most operations one Transact call may carry
// (DynamoDB TransactWriteItems allows 100). Every driver enforces it.
const MaxTransactOps = 100

// Item is one metadata record, addressed by a partition key and a sort key.
// Items in one partition are ordered by SK (byte-wise), which is what Query
// pages over.
type Item struct {
	PK string
	SK string
	// Data is an opaque document (the registry stores JSON).
	Data []byte
	// Count is an atomic counter (blob reference counts).
	Count int64
	// Version is maintained by the driver: 1 after the first write and
	// incremented by every write. Callers use it for optimistic concurrency.
	// It is ignored on input except through CondVersion.
	Version int64
	// Touched is a unix time in seconds the caller sets (GC grace periods).
	Touched int64
	// Expires is a unix time in seconds after which the item is dead (TTL);
	// 0 means never. Drivers hide expired items from Get, Query and Scan even
	// before they are physically removed, as DynamoDB's lazy TTL requires.
	Expires int64
}

// CondKind says what must hold for a write to happen.
type CondKind int

const (
	CondNone      CondKind = iota // unconditional
	CondExists                    // the item must exist
	CondNotExists                 // the item must not exist
	CondVersion                   // the item must exist with exactly Cond.Version
	// CondTouchedBy: the item must exist with Touched at most Cond.At (0 and
	// absent count as 0). A lease kept in Touched is taken with one ItemAdd
	// of delta 0 under this condition, which also returns the item: one
	// round trip instead of a read and a versioned write.
	CondTouchedBy
)

// Cond is a write condition.
type Cond struct {
	Kind    CondKind
	Version int64
	At      int64 // CondTouchedBy only
}

// Convenience constructors.
var (
	IfNone      = Cond{Kind: CondNone}
	IfExists    = Cond{Kind: CondExists}
	IfNotExists = Cond{Kind: CondNotExists}
)

// IfVersion returns a condition that holds when the item's version is v.
func IfVersion(v int64) Cond { return Cond{Kind: CondVersion, Version: v} }

// IfTouchedBy returns a condition that holds when the item exists and its
// Touched is at most t.
func IfTouchedBy(t int64) Cond { return Cond{Kind: CondTouchedBy, At: t} }

// OpKind is the kind of one transaction operation.
type OpKind int

const (
	// OpPut writes Item whole (Data, Count, Touched, Expires), replacing any
	// existing item.
	OpPut OpKind = iota
	// OpDelete removes the item at Item.PK/Item.SK. Deleting an absent item
	// with CondNone succeeds.
	OpDelete
	// OpAdd adds Delta to the item's Count. When the item does not exist it is
	// created with Count=Delta and Item's Data and Expires. When Item.Touched
	// is non-zero it is set. Version is incremented either way.
	OpAdd
	// OpCheck only asserts Cond on the item; it writes nothing.
	OpCheck
)

// Op is one operation of an all-or-nothing transaction.
type Op struct {
	Kind  OpKind
	Item  Item
	Delta int64
	Cond  Cond
}

// TxError reports which operation of a transaction failed its condition.
// It wraps ErrConditionFailed.
type TxError struct {
	Index int   // index into the ops slice
	Err   error // wraps ErrConditionFailed
}

func (e *TxError) Error() string { return fmt.Sprintf("transaction op %d: %v", e.Index, e.Err) }
func (e *TxError) Unwrap() error { return e.Err }
