package storagetest

import (
	"errors"
	"sort"
	"testing"

	"github.com/berth-registry/berth/pkg/storage"
)

// testItemGetBatch: the batch read returns exactly the live items asked
// for, each once, across partitions and beyond one backend request (more
// than DynamoDB's 100 keys).
func testItemGetBatch(t *testing.T, s storage.Items) {
	ctx := t.Context()
	bg, ok := s.(storage.ItemBatchGetter)
	if !ok {
		t.Fatalf("%T does not implement storage.ItemBatchGetter; every metadata driver must", s)
	}
	var keys []storage.Key
	want := map[storage.Key]string{}
	for i := range 130 {
		k := storage.Key{PK: "P" + string(rune('a'+i%3)), SK: "S" + itoa(i)}
		keys = append(keys, k)
		if i%2 == 0 {
			noErr(t, "put", s.ItemPut(ctx, storage.Item{PK: k.PK, SK: k.SK, Data: []byte(k.SK)}, storage.IfNone))
			want[k] = k.SK
		}
	}
	// An expired item is not returned.
	gone := storage.Item{PK: "Pa", SK: "expired", Data: []byte("x"), Expires: 1}
	noErr(t, "put expired", s.ItemPut(ctx, gone, storage.IfNone))
	keys = append(keys, storage.Key{PK: gone.PK, SK: gone.SK}, keys[0], keys[0]) // duplicates too
	got, err := bg.ItemGetBatch(ctx, keys)
	noErr(t, "batch get", err)
	if len(got) != len(want) {
		t.Fatalf("batch get returned %d items, want %d", len(got), len(want))
	}
	sort.Slice(got, func(i, j int) bool { return got[i].PK+got[i].SK < got[j].PK+got[j].SK })
	for _, it := range got {
		d, ok := want[storage.Key{PK: it.PK, SK: it.SK}]
		if !ok || string(it.Data) != d || it.Version != 1 {
			t.Fatalf("batch get returned %s/%s data %q version %d; want data %q version 1", it.PK, it.SK, it.Data, it.Version, d)
		}
		delete(want, storage.Key{PK: it.PK, SK: it.SK})
	}
	none, err := bg.ItemGetBatch(ctx, []storage.Key{{PK: "nope", SK: "nope"}})
	noErr(t, "batch get of absent", err)
	if len(none) != 0 {
		t.Fatalf("batch get of an absent key returned %d items", len(none))
	}
	empty, err := bg.ItemGetBatch(ctx, nil)
	noErr(t, "batch get of nothing", err)
	if len(empty) != 0 {
		t.Fatalf("batch get of no keys returned %d items", len(empty))
	}
}

// testItemLease: an ItemAdd of delta 0 under IfTouchedBy takes a lease kept
// in Touched and returns the whole item; while the lease runs, the same
// add fails; a put that writes Touched 0 releases it; an absent item is
// never created.
func testItemLease(t *testing.T, s storage.Items) {
	ctx := t.Context()
	noErr(t, "put", s.ItemPut(ctx, storage.Item{PK: "U", SK: "M", Data: []byte("state")}, storage.IfNone))
	got, err := s.ItemAdd(ctx, storage.Item{PK: "U", SK: "M", Touched: 200}, 0, storage.IfTouchedBy(100))
	noErr(t, "lease", err)
	if string(got.Data) != "state" || got.Touched != 200 || got.Version != 2 || got.Count != 0 {
		t.Fatalf("lease returned data %q touched %d version %d count %d; want state, 200, 2, 0", got.Data, got.Touched, got.Version, got.Count)
	}
	_, err = s.ItemAdd(ctx, storage.Item{PK: "U", SK: "M", Touched: 300}, 0, storage.IfTouchedBy(150))
	if !errors.Is(err, storage.ErrConditionFailed) {
		t.Fatalf("second lease while the first runs: err %v, want ErrConditionFailed", err)
	}
	// Run out: the lease may be taken again.
	got, err = s.ItemAdd(ctx, storage.Item{PK: "U", SK: "M", Touched: 400}, 0, storage.IfTouchedBy(200))
	noErr(t, "lease after expiry", err)
	if got.Touched != 400 || got.Version != 3 {
		t.Fatalf("lease after expiry: touched %d version %d, want 400 and 3", got.Touched, got.Version)
	}
	// A save releases it.
	noErr(t, "release", s.ItemPut(ctx, storage.Item{PK: "U", SK: "M", Data: []byte("saved")}, storage.IfVersion(3)))
	got, err = s.ItemAdd(ctx, storage.Item{PK: "U", SK: "M", Touched: 500}, 0, storage.IfTouchedBy(10))
	noErr(t, "lease after release", err)
	if string(got.Data) != "saved" || got.Version != 5 {
		t.Fatalf("lease after release: data %q version %d, want saved and 5", got.Data, got.Version)
	}
	_, err = s.ItemAdd(ctx, storage.Item{PK: "U", SK: "absent", Touched: 500}, 0, storage.IfTouchedBy(10))
	if !errors.Is(err, storage.ErrConditionFailed) {
		t.Fatalf("lease of an absent item: err %v, want ErrConditionFailed", err)
	}
	if _, err := s.ItemGet(ctx, "U", "absent"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("lease of an absent item created it (get: %v)", err)
	}
	// In a transaction the condition holds the same way.
	err = s.Transact(ctx, []storage.Op{{Kind: storage.OpCheck, Item: storage.Item{PK: "U", SK: "M"}, Cond: storage.IfTouchedBy(499)}})
	var tx *storage.TxError
	if !errors.As(err, &tx) || tx.Index != 0 {
		t.Fatalf("transaction check of a running lease: err %v, want *TxError at 0", err)
	}
	noErr(t, "transaction check of a lease run out", s.Transact(ctx, []storage.Op{
		{Kind: storage.OpCheck, Item: storage.Item{PK: "U", SK: "M"}, Cond: storage.IfTouchedBy(500)},
	}))
}

func itoa(i int) string {
	b := []byte{byte('0' + i/100), byte('0' + i/10%10), byte('0' + i%10)}
	return string(b)
}
