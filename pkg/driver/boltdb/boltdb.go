// Package boltdb is the embedded metadata driver: storage.Items on one bbolt
// file, for `berth serve` and tests. Every write runs in one bbolt
// read-write transaction, so single-item conditions and Transact are atomic
// and isolated exactly as DynamoDB's conditional writes and transactions are.
//
// All items live in one bucket under the key PK + "\x00" + SK, which keeps a
// partition's items adjacent and ordered byte-wise by SK; keys containing NUL
// are therefore rejected. Expired items are treated as absent by every
// operation, reads and conditions alike, and PurgeExpired removes them
// physically (bbolt has no TTL of its own).
package boltdb

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/berth-registry/berth/pkg/storage"
)

var _ storage.Items = (*Store)(nil)

// bucketName is the one bucket holding every item.
var bucketName = []byte("items")

// sep separates PK from SK in a bbolt key.
const sep = 0

// encodingV1 is the first byte of every stored value.
const encodingV1 = 1

// Store implements storage.Items on a bbolt file. It is safe for concurrent use
// by many goroutines; bbolt's file lock keeps other processes out.
type Store struct {
	db  *bolt.DB
	now func() time.Time
}

// Option configures Open.
type Option func(*options)

type options struct {
	now     func() time.Time
	timeout time.Duration
	noSync  bool
}

// WithClock sets the clock that decides whether an item has expired
// (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithLockTimeout bounds the wait for the file lock held by another process
// (default 1s); Open then fails instead of hanging.
func WithLockTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithNoSync skips fsync on commit: faster, and a crash may lose the last
// writes (or corrupt the file). For throw-away stores in tests only.
func WithNoSync() Option { return func(o *options) { o.noSync = true } }

// Open opens (creating if needed) the bbolt file at path.
func Open(path string, opts ...Option) (*Store, error) {
	o := options{now: time.Now, timeout: time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.timeout, NoSync: o.noSync, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("open %s: locked by another process (is a berth server already running on this data directory?): %w", path, err)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketName)
		return err
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &Store{db: db, now: o.now}, nil
}

// Close closes the file. Calls in flight finish first.
func (s *Store) Close() error { return s.db.Close() }

// ItemGet implements storage.Items.
func (s *Store) ItemGet(ctx context.Context, pk, sk string) (storage.Item, error) {
	if err := ctx.Err(); err != nil {
		return storage.Item{}, err
	}
	k, err := itemKey(pk, sk)
	if err != nil {
		return storage.Item{}, err
	}
	var it storage.Item
	var found bool
	err = s.db.View(func(tx *bolt.Tx) error {
		it, found, err = s.load(tx.Bucket(bucketName), k, pk, sk)
		return err
	})
	if err != nil {
		return storage.Item{}, err
	}
	if !found {
		return storage.Item{}, fmt.Errorf("item %q/%q: %w", pk, sk, storage.ErrNotFound)
	}
	return it, nil
}

// ItemPut implements storage.Items.
func (s *Store) ItemPut(ctx context.Context, it storage.Item, cond storage.Cond) error {
	op := storage.Op{Kind: storage.OpPut, Item: it, Cond: cond}
	return s.update(ctx, op, nil)
}

// ItemAdd implements storage.Items.
func (s *Store) ItemAdd(ctx context.Context, it storage.Item, delta int64, cond storage.Cond) (storage.Item, error) {
	var out storage.Item
	op := storage.Op{Kind: storage.OpAdd, Item: it, Delta: delta, Cond: cond}
	if err := s.update(ctx, op, &out); err != nil {
		return storage.Item{}, err
	}
	return out, nil
}

// ItemDelete implements storage.Items.
func (s *Store) ItemDelete(ctx context.Context, pk, sk string, cond storage.Cond) error {
	op := storage.Op{Kind: storage.OpDelete, Item: storage.Item{PK: pk, SK: sk}, Cond: cond}
	return s.update(ctx, op, nil)
}

// update runs one single-item write in its own transaction.
func (s *Store) update(ctx context.Context, op storage.Op, out *storage.Item) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	k, err := validate(op)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		res, err := s.apply(tx.Bucket(bucketName), k, op)
		if err != nil {
			return err
		}
		if out != nil {
			*out = res
		}
		return nil
	})
}

// Transact implements storage.Items: all ops in one bbolt transaction, rolled
// back when any condition fails.
func (s *Store) Transact(ctx context.Context, ops []storage.Op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(ops) > storage.MaxTransactOps {
		return fmt.Errorf("transaction of %d ops (at most %d): %w", len(ops), storage.MaxTransactOps, storage.ErrTooLarge)
	}
	if len(ops) == 0 {
		return nil
	}
	keys := make([][]byte, len(ops))
	seen := make(map[string]int, len(ops))
	for i, op := range ops {
		k, err := validate(op)
		if err != nil {
			return fmt.Errorf("transaction op %d: %w", i, err)
		}
		if j, dup := seen[string(k)]; dup {
			return fmt.Errorf("transaction ops %d and %d both address item %q/%q", j, i, op.Item.PK, op.Item.SK)
		}
		seen[string(k)] = i
		keys[i] = k
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName)
		for i, op := range ops {
			if _, err := s.apply(b, keys[i], op); err != nil {
				if errors.Is(err, storage.ErrConditionFailed) {
					return &storage.TxError{Index: i, Err: err}
				}
				return fmt.Errorf("transaction op %d: %w", i, err)
			}
		}
		return nil
	})
}

// validate checks an op's keys and size and returns its bbolt key.
func validate(op storage.Op) ([]byte, error) {
	switch op.Kind {
	case storage.OpPut, storage.OpAdd, storage.OpDelete, storage.OpCheck:
	default:
		return nil, fmt.Errorf("unknown op kind %d", op.Kind)
	}
	switch op.Cond.Kind {
	case storage.CondNone, storage.CondExists, storage.CondNotExists, storage.CondVersion, storage.CondTouchedBy:
	default:
		return nil, fmt.Errorf("unknown condition kind %d", op.Cond.Kind)
	}
	if (op.Kind == storage.OpPut || op.Kind == storage.OpAdd) && len(op.Item.Data) > storage.MaxItemBytes {
		return nil, fmt.Errorf("item %q/%q: %d bytes of data (at most %d): %w",
			op.Item.PK, op.Item.SK, len(op.Item.Data), storage.MaxItemBytes, storage.ErrTooLarge)
	}
	return itemKey(op.Item.PK, op.Item.SK)
}

// apply checks op's condition against the stored item and performs it,
// returning the item as written (for OpAdd).
func (s *Store) apply(b *bolt.Bucket, k []byte, op storage.Op) (storage.Item, error) {
	cur, found, err := s.load(b, k, op.Item.PK, op.Item.SK)
	if err != nil {
		return storage.Item{}, err
	}
	if err := check(op.Cond, cur, found); err != nil {
		return storage.Item{}, fmt.Errorf("item %q/%q: %w", op.Item.PK, op.Item.SK, err)
	}
	var next storage.Item
	switch op.Kind {
	case storage.OpCheck:
		return cur, nil
	case storage.OpDelete:
		if v := b.Get(k); v != nil {
			return storage.Item{}, b.Delete(k)
		}
		return storage.Item{}, nil
	case storage.OpPut:
		next = op.Item
		next.Version = cur.Version + 1 // cur is zero when absent
	case storage.OpAdd:
		if found {
			next = cur
			next.Count += op.Delta
			next.Version++
		} else {
			next = storage.Item{PK: op.Item.PK, SK: op.Item.SK, Data: op.Item.Data, Expires: op.Item.Expires, Count: op.Delta, Version: 1}
		}
		if op.Item.Touched != 0 {
			next.Touched = op.Item.Touched
		}
	}
	if err := b.Put(k, encode(next)); err != nil {
		return storage.Item{}, err
	}
	return next, nil
}

// check evaluates a condition; found is false for absent and expired items.
func check(c storage.Cond, cur storage.Item, found bool) error {
	switch c.Kind {
	case storage.CondExists:
		if !found {
			return fmt.Errorf("%w: item does not exist", storage.ErrConditionFailed)
		}
	case storage.CondNotExists:
		if found {
			return fmt.Errorf("%w: item exists", storage.ErrConditionFailed)
		}
	case storage.CondVersion:
		if !found {
			return fmt.Errorf("%w: item does not exist (want version %d)", storage.ErrConditionFailed, c.Version)
		}
		if cur.Version != c.Version {
			return fmt.Errorf("%w: version %d, want %d", storage.ErrConditionFailed, cur.Version, c.Version)
		}
	case storage.CondTouchedBy:
		if !found {
			return fmt.Errorf("%w: item does not exist", storage.ErrConditionFailed)
		}
		if cur.Touched > c.At {
			return fmt.Errorf("%w: touched %d, want at most %d", storage.ErrConditionFailed, cur.Touched, c.At)
		}
	}
	return nil
}

// load reads the item at k; found is false when it is absent or expired.
func (s *Store) load(b *bolt.Bucket, k []byte, pk, sk string) (storage.Item, bool, error) {
	v := b.Get(k)
	if v == nil {
		return storage.Item{}, false, nil
	}
	it, err := decode(pk, sk, v)
	if err != nil {
		return storage.Item{}, false, err
	}
	if s.expired(it) {
		return storage.Item{}, false, nil
	}
	return it, true, nil
}

func (s *Store) expired(it storage.Item) bool {
	return it.Expires != 0 && it.Expires <= s.now().Unix()
}

// ItemQuery implements storage.Items.
func (s *Store) ItemQuery(ctx context.Context, pk, prefix, after string, limit int) ([]storage.Item, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if limit <= 0 {
		return nil, false, fmt.Errorf("query limit %d: must be positive", limit)
	}
	if strings.IndexByte(prefix, sep) >= 0 || strings.IndexByte(after, sep) >= 0 {
		return nil, false, fmt.Errorf("query %q: prefix or cursor contains NUL", pk)
	}
	base, err := itemKey(pk, "")
	if err != nil {
		return nil, false, err
	}
	match := append(bytes.Clone(base), prefix...)
	var items []storage.Item
	more := false
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketName).Cursor()
		start := match
		if after > prefix {
			start = append(bytes.Clone(base), after...)
		}
		for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, match); k, v = c.Next() {
			sk := string(k[len(base):])
			if sk <= after && after != "" {
				continue
			}
			it, err := decode(pk, sk, v)
			if err != nil {
				return err
			}
			if s.expired(it) {
				continue
			}
			if len(items) == limit {
				more = true
				return nil
			}
			items = append(items, it)
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return items, more, nil
}

// ItemScan implements storage.Items. The cursor is the last key returned,
// base64url-encoded; items come in key order.
func (s *Store) ItemScan(ctx context.Context, pkPrefix, cursor string, limit int) ([]storage.Item, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	if limit <= 0 {
		return nil, "", fmt.Errorf("scan limit %d: must be positive", limit)
	}
	if strings.IndexByte(pkPrefix, sep) >= 0 {
		return nil, "", fmt.Errorf("scan prefix %q contains NUL", pkPrefix)
	}
	var last []byte
	if cursor != "" {
		var err error
		if last, err = base64.RawURLEncoding.DecodeString(cursor); err != nil || !bytes.HasPrefix(last, []byte(pkPrefix)) {
			return nil, "", fmt.Errorf("scan: invalid cursor %q", cursor)
		}
	}
	var items []storage.Item
	next := ""
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketName).Cursor()
		k, v := c.Seek([]byte(pkPrefix))
		if last != nil {
			k, v = c.Seek(last)
			if bytes.Equal(k, last) {
				k, v = c.Next()
			}
		}
		for ; k != nil && bytes.HasPrefix(k, []byte(pkPrefix)); k, v = c.Next() {
			i := bytes.IndexByte(k, sep)
			if i < 0 {
				return fmt.Errorf("scan: malformed key %q", k)
			}
			it, err := decode(string(k[:i]), string(k[i+1:]), v)
			if err != nil {
				return err
			}
			if s.expired(it) {
				continue
			}
			if len(items) == limit {
				lk := itemKeyUnchecked(items[len(items)-1].PK, items[len(items)-1].SK)
				next = base64.RawURLEncoding.EncodeToString(lk)
				return nil
			}
			items = append(items, it)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return items, next, nil
}

// PurgeExpired physically removes expired items and returns how many it
// removed. Reads already hide them; run it now and then (as DynamoDB's TTL
// sweeper would) so the file does not keep dead upload records forever.
func (s *Store) PurgeExpired(ctx context.Context) (int, error) {
	removed := 0
	for {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		n, more := 0, false
		// Bounded batches keep each write transaction short.
		err := s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketName)
			now := s.now().Unix()
			var dead [][]byte
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				exp, err := decodeExpires(v)
				if err != nil {
					return fmt.Errorf("purge: key %q: %w", k, err)
				}
				if exp == 0 || exp > now {
					continue
				}
				if len(dead) == 1000 {
					more = true
					break
				}
				dead = append(dead, bytes.Clone(k))
			}
			// Deleting under a live cursor skips keys; delete afterwards.
			for _, k := range dead {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			n = len(dead)
			return nil
		})
		removed += n
		if err != nil || !more {
			return removed, err
		}
	}
}

// itemKey builds the bbolt key, rejecting NUL and empty keys.
func itemKey(pk, sk string) ([]byte, error) {
	if pk == "" {
		return nil, errors.New("item key: empty partition key")
	}
	if strings.IndexByte(pk, sep) >= 0 || strings.IndexByte(sk, sep) >= 0 {
		return nil, fmt.Errorf("item key %q/%q: contains NUL", pk, sk)
	}
	return itemKeyUnchecked(pk, sk), nil
}

func itemKeyUnchecked(pk, sk string) []byte {
	k := make([]byte, 0, len(pk)+1+len(sk))
	k = append(k, pk...)
	k = append(k, sep)
	return append(k, sk...)
}

// encode lays an item out as: format byte, varints Count, Version, Touched,
// Expires, then Data to the end. Keys live in the bbolt key.
func encode(it storage.Item) []byte {
	b := make([]byte, 0, 1+4*binary.MaxVarintLen64+len(it.Data))
	b = append(b, encodingV1)
	b = binary.AppendVarint(b, it.Count)
	b = binary.AppendVarint(b, it.Version)
	b = binary.AppendVarint(b, it.Touched)
	b = binary.AppendVarint(b, it.Expires)
	return append(b, it.Data...)
}

// decode parses a stored value. The Data slice is copied: bbolt's memory is
// only valid inside the transaction.
func decode(pk, sk string, v []byte) (storage.Item, error) {
	it := storage.Item{PK: pk, SK: sk}
	if len(v) == 0 || v[0] != encodingV1 {
		return it, fmt.Errorf("item %q/%q: unknown encoding", pk, sk)
	}
	v = v[1:]
	for _, f := range []*int64{&it.Count, &it.Version, &it.Touched, &it.Expires} {
		x, n := binary.Varint(v)
		if n <= 0 {
			return it, fmt.Errorf("item %q/%q: corrupt value", pk, sk)
		}
		*f, v = x, v[n:]
	}
	if len(v) > 0 {
		it.Data = bytes.Clone(v)
	}
	return it, nil
}

// decodeExpires reads only the Expires field of a stored value.
func decodeExpires(v []byte) (int64, error) {
	if len(v) == 0 || v[0] != encodingV1 {
		return 0, errors.New("unknown encoding")
	}
	v = v[1:]
	var x int64
	for range 4 {
		var n int
		x, n = binary.Varint(v)
		if n <= 0 {
			return 0, errors.New("corrupt value")
		}
		v = v[n:]
	}
	return x, nil
}
