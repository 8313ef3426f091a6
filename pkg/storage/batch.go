package storage

import "context"

// Key addresses one item.
type Key struct{ PK, SK string }

// ItemBatchGetter is an optional capability of an Items driver: reading
// many items in one round trip (DynamoDB BatchGetItem). The metadata logic
// uses it where a request must check a set of items that does not depend on
// the answers, such as the links of every blob a manifest references; a
// driver without it is read one item at a time.
type ItemBatchGetter interface {
	// ItemGetBatch returns the live items among keys, in any order, each
	// once; absent and expired items are left out, which is not an error.
	// Reads are as consistent as ItemGet. Any number of keys may be asked
	// for: a driver splits them as its backend requires.
	ItemGetBatch(ctx context.Context, keys []Key) ([]Item, error)
}
