package boltdb_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/pkg/driver/boltdb"
	"github.com/berth-registry/berth/pkg/storage"
	"github.com/berth-registry/berth/pkg/storage/storagetest"
)

func open(t testing.TB, path string, opts ...boltdb.Option) *boltdb.Store {
	t.Helper()
	s, err := boltdb.Open(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestItems(t *testing.T) {
	storagetest.TestItems(t, func(t *testing.T) storage.Items {
		return open(t, filepath.Join(t.TempDir(), "meta.db"))
	})
}

func TestReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "meta.db")
	s, err := boltdb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ItemPut(ctx, storage.Item{PK: "REPO#a", SK: "TAG#v1", Data: []byte("d"), Count: 3, Touched: 5}, storage.IfNone); err != nil {
		t.Fatal(err)
	}
	if err := s.Transact(ctx, []storage.Op{
		{Kind: storage.OpAdd, Item: storage.Item{PK: "BLOB#x", SK: "META"}, Delta: 2},
		{Kind: storage.OpPut, Item: storage.Item{PK: "REPO#a", SK: "TAG#v2"}, Cond: storage.IfNotExists},
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, path)
	it, err := s.ItemGet(ctx, "REPO#a", "TAG#v1")
	if err != nil {
		t.Fatal(err)
	}
	if string(it.Data) != "d" || it.Count != 3 || it.Touched != 5 || it.Version != 1 {
		t.Fatalf("after reopen: %+v", it)
	}
	it, err = s.ItemGet(ctx, "BLOB#x", "META")
	if err != nil || it.Count != 2 {
		t.Fatalf("after reopen: %+v, %v", it, err)
	}
	items, more, err := s.ItemQuery(ctx, "REPO#a", "TAG#", "", 10)
	if err != nil || len(items) != 2 || more {
		t.Fatalf("query after reopen: %d items, more=%v, %v", len(items), more, err)
	}
}

func TestLockedFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	open(t, path)
	start := time.Now()
	s, err := boltdb.Open(path, boltdb.WithLockTimeout(100*time.Millisecond))
	if err == nil {
		_ = s.Close()
		t.Fatal("second open of a locked file succeeded")
	}
	// A second `make run` on the same data directory must say why.
	if !strings.Contains(err.Error(), "locked by another process (is a berth server already running on this data directory?)") {
		t.Errorf("error: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("second open took %v", d)
	}
}

func TestRejectsNUL(t *testing.T) {
	ctx := t.Context()
	s := open(t, filepath.Join(t.TempDir(), "meta.db"))
	for _, k := range [][2]string{{"a\x00b", "c"}, {"a", "b\x00c"}, {"", "c"}} {
		if err := s.ItemPut(ctx, storage.Item{PK: k[0], SK: k[1]}, storage.IfNone); err == nil {
			t.Fatalf("put %q/%q succeeded", k[0], k[1])
		}
		if _, err := s.ItemGet(ctx, k[0], k[1]); err == nil || errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("get %q/%q: %v, want a key error", k[0], k[1], err)
		}
	}
	// "a\x00b"/"c" must not alias "a"/"b\x00c".
	if err := s.Transact(ctx, []storage.Op{{Kind: storage.OpPut, Item: storage.Item{PK: "a", SK: "b\x00c"}}}); err == nil {
		t.Fatal("transaction with a NUL key succeeded")
	}
}

func TestClockAndPurge(t *testing.T) {
	ctx := t.Context()
	now := time.Unix(1_000_000, 0)
	s := open(t, filepath.Join(t.TempDir(), "meta.db"), boltdb.WithClock(func() time.Time { return now }))
	for i, exp := range []int64{0, 999_999, 1_000_000, 1_000_001, 2_000_000} {
		if err := s.ItemPut(ctx, storage.Item{PK: "UPLOAD#u", SK: string(rune('a' + i)), Expires: exp}, storage.IfNone); err != nil {
			t.Fatal(err)
		}
	}
	live := func() int {
		items, _, err := s.ItemQuery(ctx, "UPLOAD#u", "", "", 100)
		if err != nil {
			t.Fatal(err)
		}
		return len(items)
	}
	if n := live(); n != 3 {
		t.Fatalf("live items at t=1e6: %d, want 3 (Expires <= now is dead)", n)
	}
	// An expired item is absent for conditions as well.
	if err := s.ItemPut(ctx, storage.Item{PK: "UPLOAD#u", SK: "b"}, storage.IfNotExists); err != nil {
		t.Fatalf("create over an expired item: %v", err)
	}
	if err := s.ItemPut(ctx, storage.Item{PK: "UPLOAD#u", SK: "c"}, storage.IfExists); !errors.Is(err, storage.ErrConditionFailed) {
		t.Fatalf("IfExists on an expired item: %v", err)
	}
	it, err := s.ItemAdd(ctx, storage.Item{PK: "UPLOAD#u", SK: "c"}, 1, storage.IfNone)
	if err != nil || it.Version != 1 || it.Count != 1 || it.Expires != 0 {
		t.Fatalf("add over an expired item: %+v, %v; want a fresh item", it, err)
	}
	now = time.Unix(1_500_000, 0)
	if n := live(); n != 4 {
		t.Fatalf("live items at t=1.5e6: %d, want 4", n)
	}
	removed, err := s.PurgeExpired(ctx)
	if err != nil || removed != 1 {
		t.Fatalf("purge: %d, %v; want 1", removed, err)
	}
	now = time.Unix(3_000_000, 0)
	removed, err = s.PurgeExpired(ctx)
	if err != nil || removed != 1 {
		t.Fatalf("purge: %d, %v; want 1", removed, err)
	}
	if n := live(); n != 3 {
		t.Fatalf("live items after purge: %d, want 3", n)
	}
}

func TestPurgeMany(t *testing.T) {
	ctx := t.Context()
	s := open(t, filepath.Join(t.TempDir(), "meta.db"), boltdb.WithNoSync())
	const n = 2500
	for i := 0; i < n; i += storage.MaxTransactOps {
		var ops []storage.Op
		for j := i; j < i+storage.MaxTransactOps; j++ {
			exp := int64(1) // long dead
			if j%5 == 0 {
				exp = 0
			}
			ops = append(ops, storage.Op{Kind: storage.OpPut, Item: storage.Item{PK: "P", SK: string(rune(0x100 + j)), Expires: exp}})
		}
		if err := s.Transact(ctx, ops); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := s.PurgeExpired(ctx)
	if err != nil || removed != n*4/5 {
		t.Fatalf("purge: %d, %v; want %d", removed, err, n*4/5)
	}
	items, more, err := s.ItemQuery(ctx, "P", "", "", n)
	if err != nil || len(items) != n/5 || more {
		t.Fatalf("after purge: %d items, more=%v, %v", len(items), more, err)
	}
}
