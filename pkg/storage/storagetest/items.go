package storagetest

import (
	"bytes"
	"errors"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/pkg/storage"
)

// TestItems runs the storage.Items conformance suite. newItems must return an
// empty, isolated store on every call (see the package documentation).
//
// Beyond the interface comments, the suite requires what the metadata logic
// relies on:
//   - ItemQuery pages are full: a page holds min(limit, matching items left)
//     items, even when expired items sit in between (a DynamoDB driver keeps
//     querying while it has fewer than limit items and a LastEvaluatedKey).
//     more is true whenever items are left; it may be true on a last page only
//     if the next call then returns no items and more == false.
//   - Transact rejects more than storage.MaxTransactOps ops and two ops on
//     the same item, applying none of them; an empty Transact succeeds.
//   - Data larger than storage.MaxItemBytes is rejected with an error wrapping
//     storage.ErrTooLarge, on every write path.
//   - A failed single-item condition wraps storage.ErrConditionFailed; a failed
//     transaction condition is a *storage.TxError whose Index names the op.
//
// Conditions on items that are expired but not yet removed are left
// unspecified (the registry never relies on them).
func TestItems(t *testing.T, newItems func(t *testing.T) storage.Items) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Items)
	}{
		{"GetNotFound", testItemGetNotFound},
		{"PutGetRoundTrip", testItemRoundTrip},
		{"BinaryKeysAndData", testItemBinary},
		{"Versions", testItemVersions},
		{"AddCreates", testItemAddCreates},
		{"AddKeepsData", testItemAddKeepsData},
		{"AddTouched", testItemAddTouched},
		{"Expires", testItemExpires},
		{"Query", testItemQuery},
		{"QueryExpiredFillsPage", testItemQueryExpired},
		{"QueryPaging", testItemQueryPaging},
		{"Scan", testItemScan},
		{"TransactApplies", testTransactApplies},
		{"TransactAllOrNothing", testTransactAllOrNothing},
		{"TransactCheck", testTransactCheck},
		{"TransactLimits", testTransactLimits},
		{"ItemSizeLimit", testItemSizeLimit},
		{"ConcurrentAdd", testConcurrentAdd},
		{"ConcurrentCreate", testConcurrentCreate},
		{"ConcurrentOptimistic", testConcurrentOptimistic},
		{"GetBatch", testItemGetBatch},
		{"Lease", testItemLease},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newItems(t)) })
	}
	t.Run("Conditions", func(t *testing.T) { testItemConditions(t, newItems) })
}

func testItemGetNotFound(t *testing.T, s storage.Items) {
	ctx := t.Context()
	_, err := s.ItemGet(ctx, "P", "S")
	errIs(t, "get absent item", err, storage.ErrNotFound)

	noErr(t, "put", s.ItemPut(ctx, storage.Item{PK: "P", SK: "S"}, storage.IfNone))
	for _, k := range [][2]string{{"P", "S2"}, {"P2", "S"}, {"P", "s"}, {"p", "S"}, {"PS", "S"}, {"P", "SS"}} {
		_, err := s.ItemGet(ctx, k[0], k[1])
		errIs(t, sprintf("get %q/%q next to P/S", k[0], k[1]), err, storage.ErrNotFound)
	}
}

func testItemRoundTrip(t *testing.T, s storage.Items) {
	ctx := t.Context()
	exp := time.Now().Add(time.Hour).Unix()
	in := storage.Item{
		PK: "REPO#library/alpine", SK: "TAG#latest",
		Data: []byte(`{"digest":"sha256:00"}`), Count: 42, Touched: 1700000000, Expires: exp,
		Version: 99, // ignored on input
	}
	noErr(t, "put", s.ItemPut(ctx, in, storage.IfNone))
	got, err := s.ItemGet(ctx, in.PK, in.SK)
	noErr(t, "get", err)
	want := in
	want.Version = 1
	checkItem(t, got, want)

	// A put replaces the item whole: fields not given are reset.
	noErr(t, "put again", s.ItemPut(ctx, storage.Item{PK: in.PK, SK: in.SK, Data: []byte("x")}, storage.IfNone))
	got, err = s.ItemGet(ctx, in.PK, in.SK)
	noErr(t, "get", err)
	checkItem(t, got, storage.Item{PK: in.PK, SK: in.SK, Data: []byte("x"), Version: 2})

	// Empty and nil Data both read back as empty.
	noErr(t, "put nil data", s.ItemPut(ctx, storage.Item{PK: "P", SK: "nil"}, storage.IfNone))
	got, err = s.ItemGet(ctx, "P", "nil")
	noErr(t, "get", err)
	checkItem(t, got, storage.Item{PK: "P", SK: "nil", Version: 1})

	// Negative counters are kept.
	noErr(t, "put negative", s.ItemPut(ctx, storage.Item{PK: "P", SK: "neg", Count: -7}, storage.IfNone))
	got, err = s.ItemGet(ctx, "P", "neg")
	noErr(t, "get", err)
	checkItem(t, got, storage.Item{PK: "P", SK: "neg", Count: -7, Version: 1})

	// Delete removes; deleting again with IfNone succeeds.
	noErr(t, "delete", s.ItemDelete(ctx, in.PK, in.SK, storage.IfNone))
	_, err = s.ItemGet(ctx, in.PK, in.SK)
	errIs(t, "get deleted", err, storage.ErrNotFound)
	noErr(t, "delete absent", s.ItemDelete(ctx, in.PK, in.SK, storage.IfNone))
}

func testItemBinary(t *testing.T, s storage.Items) {
	ctx := t.Context()
	all := make([]byte, 256*4)
	for i := range all {
		all[i] = byte(i)
	}
	keys := []struct{ pk, sk string }{
		{"REPO#a/b/c", "TAG#v1.0"},
		{"REPO#a/b", "c#TAG#v1.0"}, // same concatenation as above with a different split
		{"REPO#a", "b/c#TAG#v1.0"},
		{"BLOB#sha256:0123", "META"},
		{"köln/straße", "ключ:значение"},
		{"日本語#リポジトリ", "タグ/🐳"},
		{"x:y:z", "#/:#/:"},
		{"sp ace", "tab\tnew\nline"},
	}
	for i, k := range keys {
		d := append([]byte{byte(i)}, all...)
		noErr(t, sprintf("put %q/%q", k.pk, k.sk), s.ItemPut(ctx, storage.Item{PK: k.pk, SK: k.sk, Data: d, Count: int64(i)}, storage.IfNotExists))
	}
	for i, k := range keys {
		got, err := s.ItemGet(ctx, k.pk, k.sk)
		noErr(t, sprintf("get %q/%q", k.pk, k.sk), err)
		if got.PK != k.pk || got.SK != k.sk || got.Count != int64(i) {
			t.Fatalf("get %q/%q: got item %q/%q count %d", k.pk, k.sk, got.PK, got.SK, got.Count)
		}
		equalBytes(t, sprintf("data of %q/%q", k.pk, k.sk), got.Data, append([]byte{byte(i)}, all...))

		items, _, err := s.ItemQuery(ctx, k.pk, "", "", 10)
		noErr(t, "query", err)
		if len(items) != 1 || items[0].SK != k.sk || items[0].PK != k.pk {
			t.Fatalf("query %q: got %v, want just %q", k.pk, keysOf(items), k.sk)
		}
	}
	got := scanAll(t, s, "", 3)
	if len(got) != len(keys) {
		t.Fatalf("scan all: got %d items, want %d: %v", len(got), len(keys), keysOf(got))
	}
}

func testItemVersions(t *testing.T, s storage.Items) {
	ctx := t.Context()
	ver := func(want int64) {
		t.Helper()
		it, err := s.ItemGet(ctx, "P", "S")
		noErr(t, "get", err)
		if it.Version != want {
			t.Fatalf("version = %d, want %d", it.Version, want)
		}
	}
	put := storage.Item{PK: "P", SK: "S", Data: []byte("d")}
	noErr(t, "put", s.ItemPut(ctx, put, storage.IfNone))
	ver(1)
	noErr(t, "put", s.ItemPut(ctx, put, storage.IfVersion(1)))
	ver(2)
	it, err := s.ItemAdd(ctx, put, 1, storage.IfNone)
	noErr(t, "add", err)
	if it.Version != 3 {
		t.Fatalf("ItemAdd returned version %d, want 3", it.Version)
	}
	ver(3)
	_, err = s.ItemAdd(ctx, put, 0, storage.IfNone) // a zero delta is still a write
	noErr(t, "add 0", err)
	ver(4)
	noErr(t, "transact put", s.Transact(ctx, []storage.Op{{Kind: storage.OpPut, Item: put, Cond: storage.IfVersion(4)}}))
	ver(5)
	noErr(t, "transact add", s.Transact(ctx, []storage.Op{{Kind: storage.OpAdd, Item: put, Delta: 2}}))
	ver(6)
	noErr(t, "transact check", s.Transact(ctx, []storage.Op{{Kind: storage.OpCheck, Item: put, Cond: storage.IfVersion(6)}}))
	ver(6) // a check writes nothing

	// Failed writes do not move the version.
	errIs(t, "stale put", s.ItemPut(ctx, put, storage.IfVersion(5)), storage.ErrConditionFailed)
	_, err = s.ItemAdd(ctx, put, 1, storage.IfVersion(5))
	errIs(t, "stale add", err, storage.ErrConditionFailed)
	ver(6)

	// Delete and recreate: the version starts over.
	noErr(t, "delete", s.ItemDelete(ctx, "P", "S", storage.IfVersion(6)))
	noErr(t, "recreate", s.ItemPut(ctx, put, storage.IfNotExists))
	ver(1)
	noErr(t, "delete", s.ItemDelete(ctx, "P", "S", storage.IfNone))
	it, err = s.ItemAdd(ctx, put, 5, storage.IfNotExists)
	noErr(t, "add creates", err)
	if it.Version != 1 || it.Count != 5 {
		t.Fatalf("add on absent item returned version %d count %d, want 1 and 5", it.Version, it.Count)
	}
}

func testItemAddCreates(t *testing.T, s storage.Items) {
	ctx := t.Context()
	exp := time.Now().Add(time.Hour).Unix()
	in := storage.Item{PK: "BLOB#sha256:ab", SK: "META", Data: []byte(`{"size":3}`), Expires: exp, Touched: 1234, Count: 1000}
	got, err := s.ItemAdd(ctx, in, 3, storage.IfNone)
	noErr(t, "add", err)
	// Count comes from the delta alone, never from Item.Count.
	want := storage.Item{PK: in.PK, SK: in.SK, Data: in.Data, Count: 3, Version: 1, Touched: 1234, Expires: exp}
	checkItem(t, got, want)
	got, err = s.ItemGet(ctx, in.PK, in.SK)
	noErr(t, "get", err)
	checkItem(t, got, want)

	got, err = s.ItemAdd(ctx, in, -5, storage.IfExists)
	noErr(t, "add", err)
	want.Count, want.Version = -2, 2
	checkItem(t, got, want)
	got, err = s.ItemGet(ctx, in.PK, in.SK)
	noErr(t, "get", err)
	checkItem(t, got, want)

	// Created through a transaction, too.
	noErr(t, "transact add", s.Transact(ctx, []storage.Op{{Kind: storage.OpAdd, Item: storage.Item{PK: "T", SK: "S", Data: []byte("t"), Expires: exp}, Delta: 4, Cond: storage.IfNotExists}}))
	got, err = s.ItemGet(ctx, "T", "S")
	noErr(t, "get", err)
	checkItem(t, got, storage.Item{PK: "T", SK: "S", Data: []byte("t"), Count: 4, Version: 1, Expires: exp})
}

func testItemAddKeepsData(t *testing.T, s storage.Items) {
	ctx := t.Context()
	noErr(t, "put", s.ItemPut(ctx, storage.Item{PK: "P", SK: "S", Data: []byte("original"), Count: 10, Touched: 77}, storage.IfNone))
	got, err := s.ItemAdd(ctx, storage.Item{PK: "P", SK: "S", Data: []byte("ignored")}, 5, storage.IfExists)
	noErr(t, "add", err)
	want := storage.Item{PK: "P", SK: "S", Data: []byte("original"), Count: 15, Version: 2, Touched: 77}
	checkItem(t, got, want)

	noErr(t, "transact add", s.Transact(ctx, []storage.Op{{Kind: storage.OpAdd, Item: storage.Item{PK: "P", SK: "S", Data: []byte("ignored too")}, Delta: -1, Cond: storage.IfVersion(2)}}))
	got, err = s.ItemGet(ctx, "P", "S")
	noErr(t, "get", err)
	want.Count, want.Version = 14, 3
	checkItem(t, got, want)
}

func testItemAddTouched(t *testing.T, s storage.Items) {
	ctx := t.Context()
	it := storage.Item{PK: "P", SK: "S", Touched: 100}
	got, err := s.ItemAdd(ctx, it, 1, storage.IfNone)
	noErr(t, "add", err)
	if got.Touched != 100 {
		t.Fatalf("touched = %d, want 100", got.Touched)
	}
	it.Touched = 0
	got, err = s.ItemAdd(ctx, it, 1, storage.IfNone)
	noErr(t, "add", err)
	if got.Touched != 100 {
		t.Fatalf("add with Touched 0 changed touched to %d, want 100 kept", got.Touched)
	}
	it.Touched = 250
	got, err = s.ItemAdd(ctx, it, 1, storage.IfNone)
	noErr(t, "add", err)
	if got.Touched != 250 {
		t.Fatalf("touched = %d, want 250", got.Touched)
	}
	noErr(t, "transact add", s.Transact(ctx, []storage.Op{
		{Kind: storage.OpAdd, Item: storage.Item{PK: "P", SK: "S"}, Delta: 1},
	}))
	got, err = s.ItemGet(ctx, "P", "S")
	noErr(t, "get", err)
	if got.Touched != 250 || got.Count != 4 {
		t.Fatalf("after transact add with Touched 0: touched %d count %d, want 250 and 4", got.Touched, got.Count)
	}
	noErr(t, "transact add", s.Transact(ctx, []storage.Op{
		{Kind: storage.OpAdd, Item: storage.Item{PK: "P", SK: "S", Touched: 300}, Delta: 1},
	}))
	got, err = s.ItemGet(ctx, "P", "S")
	noErr(t, "get", err)
	if got.Touched != 300 || got.Count != 5 {
		t.Fatalf("after transact add with Touched 300: touched %d count %d, want 300 and 5", got.Touched, got.Count)
	}
	// Created without Touched: zero.
	got, err = s.ItemAdd(ctx, storage.Item{PK: "P", SK: "new"}, 1, storage.IfNone)
	noErr(t, "add", err)
	if got.Touched != 0 {
		t.Fatalf("new item touched = %d, want 0", got.Touched)
	}
}

func testItemExpires(t *testing.T, s storage.Items) {
	ctx := t.Context()
	now := time.Now()
	past, future := now.Add(-time.Hour).Unix(), now.Add(time.Hour).Unix()
	noErr(t, "put live", s.ItemPut(ctx, storage.Item{PK: "UPLOAD#live", SK: "META", Expires: future}, storage.IfNone))
	noErr(t, "put dead", s.ItemPut(ctx, storage.Item{PK: "UPLOAD#dead", SK: "META", Expires: past}, storage.IfNone))
	noErr(t, "put never", s.ItemPut(ctx, storage.Item{PK: "UPLOAD#never", SK: "META"}, storage.IfNone))
	_, err := s.ItemAdd(ctx, storage.Item{PK: "UPLOAD#added", SK: "META", Expires: past}, 1, storage.IfNone)
	noErr(t, "add dead", err)
	noErr(t, "transact put dead", s.Transact(ctx, []storage.Op{{Kind: storage.OpPut, Item: storage.Item{PK: "UPLOAD#tx", SK: "META", Expires: past}}}))
	noErr(t, "put dead in partition", s.ItemPut(ctx, storage.Item{PK: "UPLOAD#live", SK: "OLD", Expires: 1}, storage.IfNone))

	for _, pk := range []string{"UPLOAD#live", "UPLOAD#never"} {
		if _, err := s.ItemGet(ctx, pk, "META"); err != nil {
			t.Fatalf("get %s: %v", pk, err)
		}
	}
	for _, k := range [][2]string{{"UPLOAD#dead", "META"}, {"UPLOAD#added", "META"}, {"UPLOAD#tx", "META"}, {"UPLOAD#live", "OLD"}} {
		_, err := s.ItemGet(ctx, k[0], k[1])
		errIs(t, "get expired "+k[0]+"/"+k[1], err, storage.ErrNotFound)
	}
	items, more, err := s.ItemQuery(ctx, "UPLOAD#live", "", "", 10)
	noErr(t, "query", err)
	if got := keysOf(items); !slices.Equal(got, []string{"UPLOAD#live/META"}) || more {
		t.Fatalf("query: got %v more=%v, want only the live item", got, more)
	}
	items, _, err = s.ItemQuery(ctx, "UPLOAD#dead", "", "", 10)
	noErr(t, "query", err)
	if len(items) != 0 {
		t.Fatalf("query of expired partition: got %v", keysOf(items))
	}
	got := keysOf(scanAll(t, s, "UPLOAD#", 2))
	sort.Strings(got)
	if want := []string{"UPLOAD#live/META", "UPLOAD#never/META"}; !slices.Equal(got, want) {
		t.Fatalf("scan: got %v, want %v", got, want)
	}
}

func testItemQuery(t *testing.T, s storage.Items) {
	ctx := t.Context()
	// Byte-wise order: uppercase before lowercase, '#' (0x23) before '/'
	// (0x2f) before ':' (0x3a), a prefix before its extensions, multi-byte
	// UTF-8 after ASCII.
	sks := []string{"TAG#b", "TAG#a", "TAG#", "TAG#a/b", "TAG#a:b", "TAG#a#b", "TAG#B", "TAG#ä", "TAG#z", "TAG#aa",
		"MANIFEST#sha256:1", "MANIFEST#sha256:2", "REFERRER#x", "TAG", "TAH#"}
	for i, sk := range sks {
		noErr(t, "put", s.ItemPut(ctx, storage.Item{PK: "REPO#r", SK: sk, Count: int64(i)}, storage.IfNone))
	}
	// Decoys in neighbouring partitions.
	for _, pk := range []string{"REPO#r2", "REPO#", "REPO#q", "REPO#r/x", "REPO"} {
		noErr(t, "put decoy", s.ItemPut(ctx, storage.Item{PK: pk, SK: "TAG#a"}, storage.IfNone))
	}
	all := slices.Clone(sks)
	sort.Strings(all)
	var tags []string
	for _, sk := range all {
		if len(sk) >= 4 && sk[:4] == "TAG#" {
			tags = append(tags, sk)
		}
	}
	cases := []struct {
		prefix, after string
		limit         int
		want          []string
		more          bool
	}{
		{"", "", 100, all, false},
		{"TAG#", "", 100, tags, false},
		{"TAG#", "", 3, tags[:3], true},
		{"TAG#", tags[2], 3, tags[3:6], true},
		{"TAG#", tags[len(tags)-2], 3, tags[len(tags)-1:], false},
		{"TAG#", tags[len(tags)-1], 3, nil, false},
		{"TAG#", "TAG#a0", 2, []string{"TAG#a:b", "TAG#aa"}, true}, // after need not exist
		{"TAG#", "A", 1, tags[:1], true},                           // after sorts before the prefix
		{"TAG#", "Z", 5, nil, false},                               // after sorts past the prefix
		{"TAG#a", "", 100, []string{"TAG#a", "TAG#a#b", "TAG#a/b", "TAG#a:b", "TAG#aa"}, false},
		{"MANIFEST#", "", 100, []string{"MANIFEST#sha256:1", "MANIFEST#sha256:2"}, false},
		{"TAG#ä", "", 100, []string{"TAG#ä"}, false},
		{"NOPE", "", 100, nil, false},
		{"", "TAG#z", 100, []string{"TAG#ä", "TAH#"}, false},
		{"", "", 1, all[:1], true},
	}
	for _, c := range cases {
		items, more, err := s.ItemQuery(ctx, "REPO#r", c.prefix, c.after, c.limit)
		noErr(t, "query", err)
		var got []string
		for _, it := range items {
			if it.PK != "REPO#r" {
				t.Fatalf("query REPO#r returned an item of partition %q", it.PK)
			}
			got = append(got, it.SK)
			if want := int64(slices.Index(sks, it.SK)); it.Count != want || it.Version != 1 {
				t.Fatalf("query returned %q with count %d version %d, want %d and 1", it.SK, it.Count, it.Version, want)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Fatalf("query prefix %q after %q limit %d:\n got  %q\n want %q", c.prefix, c.after, c.limit, got, c.want)
		}
		if c.more && !more {
			t.Fatalf("query prefix %q after %q limit %d: more = false with items left", c.prefix, c.after, c.limit)
		}
		if !c.more && more {
			// Allowed only when the next page is empty and final.
			assertEmptyNext(t, s, "REPO#r", c.prefix, items, c.after)
		}
	}
	// An empty partition.
	items, more, err := s.ItemQuery(ctx, "REPO#none", "", "", 10)
	noErr(t, "query empty", err)
	if len(items) != 0 || more {
		t.Fatalf("query of empty partition: %v more=%v", keysOf(items), more)
	}
}

// assertEmptyNext checks a spurious more flag: the following page must be
// empty and final.
func assertEmptyNext(t *testing.T, s storage.Items, pk, prefix string, page []storage.Item, after string) {
	t.Helper()
	if len(page) > 0 {
		after = page[len(page)-1].SK
	}
	next, more, err := s.ItemQuery(t.Context(), pk, prefix, after, 10)
	noErr(t, "query next page", err)
	if len(next) != 0 || more {
		t.Fatalf("query %q prefix %q after %q: more was false/true inconsistently; next page %v more=%v", pk, prefix, after, keysOf(next), more)
	}
}

func testItemQueryExpired(t *testing.T, s storage.Items) {
	ctx := t.Context()
	past := time.Now().Add(-time.Hour).Unix()
	// 0..29 alternate live and dead, with a long dead run in the middle.
	var live []string
	for i := range 30 {
		sk := sprintf("K#%02d", i)
		it := storage.Item{PK: "P", SK: sk}
		if i%2 == 1 || (i >= 10 && i < 20) {
			it.Expires = past
		} else {
			live = append(live, sk)
		}
		noErr(t, "put", s.ItemPut(ctx, it, storage.IfNone))
	}
	var got []string
	after := ""
	for range 100 {
		items, more, err := s.ItemQuery(ctx, "P", "K#", after, 2)
		noErr(t, "query", err)
		left := len(live) - len(got)
		if len(items) != min(2, left) {
			t.Fatalf("query after %q limit 2: got %d items %v with %d live items left; pages must be full", after, len(items), keysOf(items), left)
		}
		for _, it := range items {
			got = append(got, it.SK)
		}
		if len(items) > 0 {
			after = items[len(items)-1].SK
		}
		if !more {
			break
		}
	}
	if !slices.Equal(got, live) {
		t.Fatalf("paged live items: got %v, want %v", got, live)
	}
	// A limit-1 peek past the last live item before a dead run finds the next live one.
	items, _, err := s.ItemQuery(ctx, "P", "K#", "K#08", 1)
	noErr(t, "peek", err)
	if got := keysOf(items); !slices.Equal(got, []string{"P/K#20"}) {
		t.Fatalf("peek after K#08: got %v, want [P/K#20]", got)
	}
}

func testItemQueryPaging(t *testing.T, s storage.Items) {
	ctx := t.Context()
	const n = 250
	want := make([]string, 0, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := range n {
		sk := sprintf("TAG#%c%d", 'a'+i%26, i) // insertion order differs from sort order
		want = append(want, sk)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs <- s.ItemPut(ctx, storage.Item{PK: "REPO#big", SK: sk, Data: []byte(sk)}, storage.IfNotExists)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		noErr(t, "put", err)
	}
	noErr(t, "put other prefix", s.ItemPut(ctx, storage.Item{PK: "REPO#big", SK: "TAH#", Data: []byte("x")}, storage.IfNone))
	sort.Strings(want)

	var got []string
	after := ""
	pages := 0
	for {
		pages++
		if pages > n {
			t.Fatal("query paging does not terminate")
		}
		items, more, err := s.ItemQuery(ctx, "REPO#big", "TAG#", after, 7)
		noErr(t, "query", err)
		if left := len(want) - len(got); len(items) != min(7, left) {
			t.Fatalf("page %d: %d items with %d left, want %d", pages, len(items), left, min(7, left))
		}
		for _, it := range items {
			if !bytes.Equal(it.Data, []byte(it.SK)) {
				t.Fatalf("item %q has data %q", it.SK, it.Data)
			}
			got = append(got, it.SK)
		}
		if len(items) > 0 {
			after = items[len(items)-1].SK
		}
		if !more {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paging returned %d items (first %v), want %d in order", len(got), got[:min(5, len(got))], len(want))
	}
	if pages > n/7+2 {
		t.Fatalf("paging took %d pages, want at most %d", pages, n/7+2)
	}
}

func testItemScan(t *testing.T, s storage.Items) {
	ctx := t.Context()
	want := map[string]bool{}
	for p := range 12 {
		pk := sprintf("SCAN#%02d", p)
		for i := range p * 3 { // partition sizes 0..33
			sk := sprintf("S#%03d", i)
			noErr(t, "put", s.ItemPut(ctx, storage.Item{PK: pk, SK: sk, Data: []byte(pk + "/" + sk), Count: int64(i)}, storage.IfNone))
			want[pk+"/"+sk] = true
		}
	}
	for _, pk := range []string{"SCAN", "SCAM#1", "SCAN_#1", "OTHER#1", "scan#1"} {
		noErr(t, "put decoy", s.ItemPut(ctx, storage.Item{PK: pk, SK: "S#000"}, storage.IfNone))
	}
	for _, limit := range []int{1, 7, 1000} {
		got := scanAll(t, s, "SCAN#", limit)
		seen := map[string]bool{}
		for _, it := range got {
			k := it.PK + "/" + it.SK
			if seen[k] {
				t.Fatalf("scan limit %d returned %s twice", limit, k)
			}
			seen[k] = true
			if !want[k] {
				t.Fatalf("scan limit %d returned unexpected item %s", limit, k)
			}
			if string(it.Data) != k || it.Version != 1 {
				t.Fatalf("scan item %s: data %q version %d", k, it.Data, it.Version)
			}
		}
		if len(seen) != len(want) {
			t.Fatalf("scan limit %d returned %d items, want %d", limit, len(seen), len(want))
		}
	}
	got := scanAll(t, s, "", 50)
	if len(got) != len(want)+5 {
		t.Fatalf("scan of everything: %d items, want %d", len(got), len(want)+5)
	}
	got = scanAll(t, s, "NOPE", 10)
	if len(got) != 0 {
		t.Fatalf("scan with unmatched prefix: %v", keysOf(got))
	}
}

// scanAll pages through ItemScan, checking page sizes and termination.
func scanAll(t *testing.T, s storage.Items, prefix string, limit int) []storage.Item {
	t.Helper()
	var out []storage.Item
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatalf("scan %q limit %d does not terminate", prefix, limit)
		}
		items, next, err := s.ItemScan(t.Context(), prefix, cursor, limit)
		noErr(t, "scan", err)
		if len(items) > limit {
			t.Fatalf("scan limit %d returned %d items", limit, len(items))
		}
		for _, it := range items {
			if len(it.PK) < len(prefix) || it.PK[:len(prefix)] != prefix {
				t.Fatalf("scan %q returned item of partition %q", prefix, it.PK)
			}
		}
		out = append(out, items...)
		if next == "" {
			return out
		}
		if next == cursor {
			t.Fatalf("scan cursor %q did not advance", cursor)
		}
		cursor = next
	}
}

func testTransactApplies(t *testing.T, s storage.Items) {
	ctx := t.Context()
	noErr(t, "empty transact", s.Transact(ctx, nil))
	noErr(t, "seed", s.ItemPut(ctx, storage.Item{PK: "B", SK: "del", Data: []byte("x")}, storage.IfNone))
	noErr(t, "seed", s.ItemPut(ctx, storage.Item{PK: "B", SK: "cnt", Count: 10, Data: []byte("c")}, storage.IfNone))
	noErr(t, "seed", s.ItemPut(ctx, storage.Item{PK: "B", SK: "chk", Data: []byte("k")}, storage.IfNone))
	ops := []storage.Op{
		{Kind: storage.OpPut, Item: storage.Item{PK: "A", SK: "new", Data: []byte("n"), Count: 3, Touched: 9}, Cond: storage.IfNotExists},
		{Kind: storage.OpDelete, Item: storage.Item{PK: "B", SK: "del"}, Cond: storage.IfVersion(1)},
		{Kind: storage.OpAdd, Item: storage.Item{PK: "B", SK: "cnt"}, Delta: 2, Cond: storage.IfExists},
		{Kind: storage.OpAdd, Item: storage.Item{PK: "B", SK: "fresh", Data: []byte("f")}, Delta: 1, Cond: storage.IfNotExists},
		{Kind: storage.OpCheck, Item: storage.Item{PK: "B", SK: "chk"}, Cond: storage.IfVersion(1)},
		{Kind: storage.OpDelete, Item: storage.Item{PK: "B", SK: "absent"}, Cond: storage.IfNone},
	}
	noErr(t, "transact", s.Transact(ctx, ops))
	get := func(pk, sk string) storage.Item {
		t.Helper()
		it, err := s.ItemGet(ctx, pk, sk)
		noErr(t, "get "+pk+"/"+sk, err)
		return it
	}
	checkItem(t, get("A", "new"), storage.Item{PK: "A", SK: "new", Data: []byte("n"), Count: 3, Touched: 9, Version: 1})
	_, err := s.ItemGet(ctx, "B", "del")
	errIs(t, "deleted in transaction", err, storage.ErrNotFound)
	checkItem(t, get("B", "cnt"), storage.Item{PK: "B", SK: "cnt", Data: []byte("c"), Count: 12, Version: 2})
	checkItem(t, get("B", "fresh"), storage.Item{PK: "B", SK: "fresh", Data: []byte("f"), Count: 1, Version: 1})
	checkItem(t, get("B", "chk"), storage.Item{PK: "B", SK: "chk", Data: []byte("k"), Version: 1})
	_, err = s.ItemGet(ctx, "B", "absent")
	errIs(t, "absent stays absent", err, storage.ErrNotFound)
}

func testTransactAllOrNothing(t *testing.T, s storage.Items) {
	ctx := t.Context()
	noErr(t, "seed", s.ItemPut(ctx, storage.Item{PK: "X", SK: "keep", Data: []byte("keep"), Count: 5}, storage.IfNone))
	noErr(t, "seed", s.ItemPut(ctx, storage.Item{PK: "X", SK: "guard", Data: []byte("g")}, storage.IfNone))
	before := snapshot(t, s)

	failing := []storage.Op{
		{Kind: storage.OpCheck, Item: storage.Item{PK: "X", SK: "guard"}, Cond: storage.IfVersion(2)}, // fails
		{Kind: storage.OpDelete, Item: storage.Item{PK: "X", SK: "guard"}, Cond: storage.IfVersion(2)},
		{Kind: storage.OpPut, Item: storage.Item{PK: "X", SK: "guard"}, Cond: storage.IfNotExists},
		{Kind: storage.OpAdd, Item: storage.Item{PK: "X", SK: "missing"}, Delta: 1, Cond: storage.IfExists},
		{Kind: storage.OpPut, Item: storage.Item{PK: "X", SK: "guard"}, Cond: storage.IfVersion(7)},
		{Kind: storage.OpAdd, Item: storage.Item{PK: "X", SK: "guard"}, Delta: 1, Cond: storage.IfNotExists},
		{Kind: storage.OpDelete, Item: storage.Item{PK: "X", SK: "missing"}, Cond: storage.IfExists},
	}
	for i, bad := range failing {
		prefix := []storage.Op{
			{Kind: storage.OpPut, Item: storage.Item{PK: "X", SK: "keep", Data: []byte("changed")}, Cond: storage.IfVersion(1)},
			{Kind: storage.OpAdd, Item: storage.Item{PK: "X", SK: sprintf("created%d", i), Data: []byte("c")}, Delta: 1},
			{Kind: storage.OpPut, Item: storage.Item{PK: "Y", SK: "new"}, Cond: storage.IfNotExists},
			{Kind: storage.OpDelete, Item: storage.Item{PK: "X", SK: "keep2"}},
		}
		// The failing op last, then in the middle.
		for _, at := range []int{len(prefix), 1} {
			ops := slices.Insert(slices.Clone(prefix), at, bad)
			err := s.Transact(ctx, ops)
			var te *storage.TxError
			if !errors.As(err, &te) {
				t.Fatalf("case %d at %d: got %v (%T), want *storage.TxError", i, at, err, err)
			}
			if te.Index != at {
				t.Fatalf("case %d: TxError.Index = %d, want %d", i, te.Index, at)
			}
			errIs(t, sprintf("case %d", i), err, storage.ErrConditionFailed)
			if after := snapshot(t, s); !equalSnapshots(before, after) {
				t.Fatalf("case %d at %d: failed transaction changed the store:\n before %v\n after  %v", i, at, before, after)
			}
		}
	}

	// A later op's failure also undoes an earlier add that created an item.
	err := s.Transact(ctx, []storage.Op{
		{Kind: storage.OpAdd, Item: storage.Item{PK: "Z", SK: "a"}, Delta: 1, Cond: storage.IfNotExists},
		{Kind: storage.OpCheck, Item: storage.Item{PK: "Z", SK: "b"}, Cond: storage.IfExists},
	})
	errIs(t, "transact", err, storage.ErrConditionFailed)
	_, err = s.ItemGet(ctx, "Z", "a")
	errIs(t, "item created by a failed transaction", err, storage.ErrNotFound)
}

func testTransactCheck(t *testing.T, s storage.Items) {
	ctx := t.Context()
	noErr(t, "seed", s.ItemPut(ctx, storage.Item{PK: "C", SK: "1", Data: []byte("d")}, storage.IfNone))
	ok := []storage.Cond{storage.IfNone, storage.IfExists, storage.IfVersion(1)}
	for _, c := range ok {
		noErr(t, sprintf("check %+v on present", c), s.Transact(ctx, []storage.Op{{Kind: storage.OpCheck, Item: storage.Item{PK: "C", SK: "1"}, Cond: c}}))
	}
	noErr(t, "check not-exists on absent", s.Transact(ctx, []storage.Op{{Kind: storage.OpCheck, Item: storage.Item{PK: "C", SK: "2"}, Cond: storage.IfNotExists}}))
	for i, c := range []struct {
		sk   string
		cond storage.Cond
	}{{"1", storage.IfNotExists}, {"1", storage.IfVersion(2)}, {"2", storage.IfExists}, {"2", storage.IfVersion(1)}} {
		err := s.Transact(ctx, []storage.Op{
			{Kind: storage.OpPut, Item: storage.Item{PK: "C", SK: sprintf("side%d", i)}},
			{Kind: storage.OpCheck, Item: storage.Item{PK: "C", SK: c.sk}, Cond: c.cond},
		})
		var te *storage.TxError
		if !errors.As(err, &te) || te.Index != 1 || !errors.Is(err, storage.ErrConditionFailed) {
			t.Fatalf("check %+v on %s: got %v, want TxError at 1 wrapping ErrConditionFailed", c.cond, c.sk, err)
		}
		_, err = s.ItemGet(ctx, "C", sprintf("side%d", i))
		errIs(t, "put beside a failed check", err, storage.ErrNotFound)
	}
	it, err := s.ItemGet(ctx, "C", "1")
	noErr(t, "get", err)
	checkItem(t, it, storage.Item{PK: "C", SK: "1", Data: []byte("d"), Version: 1})
}

func testTransactLimits(t *testing.T, s storage.Items) {
	ctx := t.Context()
	ops := make([]storage.Op, storage.MaxTransactOps+1)
	for i := range ops {
		ops[i] = storage.Op{Kind: storage.OpPut, Item: storage.Item{PK: "L", SK: sprintf("%03d", i), Data: []byte("x")}}
	}
	if err := s.Transact(ctx, ops); err == nil {
		t.Fatalf("transaction of %d ops succeeded, want rejected", len(ops))
	}
	if got := scanAll(t, s, "", 1000); len(got) != 0 {
		t.Fatalf("rejected oversized transaction wrote %d items", len(got))
	}
	noErr(t, sprintf("transaction of %d ops", storage.MaxTransactOps), s.Transact(ctx, ops[:storage.MaxTransactOps]))
	if got := scanAll(t, s, "L", 1000); len(got) != storage.MaxTransactOps {
		t.Fatalf("transaction of %d puts wrote %d items", storage.MaxTransactOps, len(got))
	}

	// Two ops on one item are rejected whole.
	err := s.Transact(ctx, []storage.Op{
		{Kind: storage.OpPut, Item: storage.Item{PK: "D", SK: "other"}},
		{Kind: storage.OpPut, Item: storage.Item{PK: "D", SK: "same"}},
		{Kind: storage.OpAdd, Item: storage.Item{PK: "D", SK: "same"}, Delta: 1},
	})
	if err == nil {
		t.Fatal("transaction with two ops on one item succeeded, want rejected")
	}
	if got := scanAll(t, s, "D", 10); len(got) != 0 {
		t.Fatalf("rejected transaction wrote %v", keysOf(got))
	}
}

func testItemSizeLimit(t *testing.T, s storage.Items) {
	ctx := t.Context()
	maxData := RandomBytes(t, storage.MaxItemBytes)
	noErr(t, "put max-size item", s.ItemPut(ctx, storage.Item{PK: "REPO#big", SK: "MANIFEST#max", Data: maxData}, storage.IfNone))
	it, err := s.ItemGet(ctx, "REPO#big", "MANIFEST#max")
	noErr(t, "get max-size item", err)
	equalBytes(t, "max-size data", it.Data, maxData)
	items, _, err := s.ItemQuery(ctx, "REPO#big", "", "", 10)
	noErr(t, "query", err)
	if len(items) != 1 {
		t.Fatalf("query: %d items", len(items))
	}
	equalBytes(t, "queried max-size data", items[0].Data, maxData)
	noErr(t, "transact max-size put", s.Transact(ctx, []storage.Op{
		{Kind: storage.OpPut, Item: storage.Item{PK: "REPO#big", SK: "MANIFEST#tx", Data: maxData}},
		{Kind: storage.OpPut, Item: storage.Item{PK: "REPO#big", SK: "MANIFEST#tx2", Data: maxData}},
	}))
	_, err = s.ItemAdd(ctx, storage.Item{PK: "REPO#big", SK: "MANIFEST#add", Data: maxData}, 1, storage.IfNone)
	noErr(t, "add max-size item", err)

	tooBig := append(slices.Clone(maxData), 0)
	errIs(t, "put oversized", s.ItemPut(ctx, storage.Item{PK: "REPO#big", SK: "MANIFEST#over", Data: tooBig}, storage.IfNone), storage.ErrTooLarge)
	_, err = s.ItemAdd(ctx, storage.Item{PK: "REPO#big", SK: "MANIFEST#over", Data: tooBig}, 1, storage.IfNone)
	errIs(t, "add oversized", err, storage.ErrTooLarge)
	err = s.Transact(ctx, []storage.Op{
		{Kind: storage.OpPut, Item: storage.Item{PK: "REPO#big", SK: "MANIFEST#fine"}},
		{Kind: storage.OpPut, Item: storage.Item{PK: "REPO#big", SK: "MANIFEST#over", Data: tooBig}},
	})
	errIs(t, "transact oversized", err, storage.ErrTooLarge)
	for _, sk := range []string{"MANIFEST#over", "MANIFEST#fine"} {
		_, err = s.ItemGet(ctx, "REPO#big", sk)
		errIs(t, "get "+sk+" after rejected write", err, storage.ErrNotFound)
	}
	// The existing max-size item is untouched by a rejected overwrite.
	errIs(t, "overwrite oversized", s.ItemPut(ctx, storage.Item{PK: "REPO#big", SK: "MANIFEST#max", Data: tooBig}, storage.IfNone), storage.ErrTooLarge)
	it, err = s.ItemGet(ctx, "REPO#big", "MANIFEST#max")
	noErr(t, "get", err)
	if it.Version != 1 {
		t.Fatalf("rejected overwrite moved version to %d", it.Version)
	}
}

func testConcurrentAdd(t *testing.T, s storage.Items) {
	ctx := t.Context()
	const workers, each = 16, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range each {
				if _, err := s.ItemAdd(ctx, storage.Item{PK: "BLOB#hot", SK: "META", Data: []byte("d")}, 1, storage.IfNone); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		noErr(t, "concurrent add", err)
	}
	it, err := s.ItemGet(ctx, "BLOB#hot", "META")
	noErr(t, "get", err)
	if it.Count != workers*each || it.Version != workers*each {
		t.Fatalf("after %d adds: count %d version %d", workers*each, it.Count, it.Version)
	}
}

func testConcurrentCreate(t *testing.T, s storage.Items) {
	ctx := t.Context()
	const workers = 16
	for round := range 3 {
		var wg sync.WaitGroup
		errs := make([]error, workers)
		for w := range workers {
			wg.Go(func() {
				it := storage.Item{PK: "REPO#r", SK: sprintf("TAG#%d", round), Data: []byte{byte(w)}}
				if round == 2 {
					errs[w] = s.Transact(ctx, []storage.Op{{Kind: storage.OpPut, Item: it, Cond: storage.IfNotExists}})
				} else {
					errs[w] = s.ItemPut(ctx, it, storage.IfNotExists)
				}
			})
		}
		wg.Wait()
		winner := -1
		for w, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("round %d: workers %d and %d both created the item", round, winner, w)
				}
				winner = w
			case errors.Is(err, storage.ErrConditionFailed):
			default:
				t.Fatalf("round %d worker %d: %v", round, w, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: nobody created the item", round)
		}
		it, err := s.ItemGet(ctx, "REPO#r", sprintf("TAG#%d", round))
		noErr(t, "get", err)
		if !bytes.Equal(it.Data, []byte{byte(winner)}) || it.Version != 1 {
			t.Fatalf("round %d: item data %v version %d, want the winner's [%d] and 1", round, it.Data, it.Version, winner)
		}
	}
}

func testConcurrentOptimistic(t *testing.T, s storage.Items) {
	ctx := t.Context()
	const workers, each = 8, 15
	noErr(t, "seed", s.ItemPut(ctx, storage.Item{PK: "P", SK: "S"}, storage.IfNone))
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := 0; i < each; {
				var (
					err error
					it  storage.Item
				)
				it, err = s.ItemGet(ctx, "P", "S")
				if err != nil {
					errs <- err
					return
				}
				next := storage.Item{PK: "P", SK: "S", Count: it.Count + 1, Data: append(it.Data, byte(w))}
				if w%2 == 0 {
					err = s.ItemPut(ctx, next, storage.IfVersion(it.Version))
				} else {
					err = s.Transact(ctx, []storage.Op{{Kind: storage.OpPut, Item: next, Cond: storage.IfVersion(it.Version)}})
				}
				switch {
				case err == nil:
					i++
				case errors.Is(err, storage.ErrConditionFailed):
				default:
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		noErr(t, "optimistic update", err)
	}
	it, err := s.ItemGet(ctx, "P", "S")
	noErr(t, "get", err)
	if it.Count != workers*each || len(it.Data) != workers*each || it.Version != workers*each+1 {
		t.Fatalf("after %d updates: count %d, %d data bytes, version %d (lost updates)", workers*each, it.Count, len(it.Data), it.Version)
	}
}

// testItemConditions runs every condition kind against every write kind, on
// an absent and a present item, alone and inside a transaction.
func testItemConditions(t *testing.T, newItems func(t *testing.T) storage.Items) {
	type condCase struct {
		name    string
		present bool
		cond    func(v int64) storage.Cond
		ok      bool
	}
	none := func(int64) storage.Cond { return storage.IfNone }
	exists := func(int64) storage.Cond { return storage.IfExists }
	notExists := func(int64) storage.Cond { return storage.IfNotExists }
	cases := []condCase{
		{"None/absent", false, none, true},
		{"None/present", true, none, true},
		{"Exists/absent", false, exists, false},
		{"Exists/present", true, exists, true},
		{"NotExists/absent", false, notExists, true},
		{"NotExists/present", true, notExists, false},
		{"Version/match", true, func(v int64) storage.Cond { return storage.IfVersion(v) }, true},
		{"Version/older", true, func(v int64) storage.Cond { return storage.IfVersion(v - 1) }, false},
		{"Version/newer", true, func(v int64) storage.Cond { return storage.IfVersion(v + 1) }, false},
		{"Version/absent", false, func(int64) storage.Cond { return storage.IfVersion(1) }, false},
		{"Version0/absent", false, func(int64) storage.Cond { return storage.IfVersion(0) }, false},
	}
	type opCase struct {
		name string
		kind storage.OpKind
		tx   bool
	}
	ops := []opCase{
		{"Put", storage.OpPut, false}, {"Add", storage.OpAdd, false}, {"Delete", storage.OpDelete, false},
		{"TxPut", storage.OpPut, true}, {"TxAdd", storage.OpAdd, true}, {"TxDelete", storage.OpDelete, true},
		{"TxCheck", storage.OpCheck, true},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			s := newItems(t)
			ctx := t.Context()
			for _, c := range cases {
				pk, sk := "COND#"+c.name, "S"
				var old storage.Item
				if c.present {
					// Version 2, so "older" is a real version number.
					noErr(t, "seed", s.ItemPut(ctx, storage.Item{PK: pk, SK: sk, Data: []byte("old"), Count: 10, Touched: 5}, storage.IfNone))
					noErr(t, "seed", s.ItemPut(ctx, storage.Item{PK: pk, SK: sk, Data: []byte("old"), Count: 10, Touched: 5}, storage.IfNone))
					var err error
					old, err = s.ItemGet(ctx, pk, sk)
					noErr(t, "seed get", err)
				}
				cond := c.cond(old.Version)
				in := storage.Item{PK: pk, SK: sk, Data: []byte("new"), Count: 20}
				var err error
				switch {
				case op.tx:
					err = s.Transact(ctx, []storage.Op{{Kind: op.kind, Item: in, Delta: 3, Cond: cond}})
				case op.kind == storage.OpPut:
					err = s.ItemPut(ctx, in, cond)
				case op.kind == storage.OpAdd:
					var got storage.Item
					got, err = s.ItemAdd(ctx, in, 3, cond)
					if err == nil && (got.Count != old.Count+3 || got.Version != old.Version+1) {
						t.Fatalf("%s: ItemAdd returned count %d version %d, want %d and %d", c.name, got.Count, got.Version, old.Count+3, old.Version+1)
					}
				case op.kind == storage.OpDelete:
					err = s.ItemDelete(ctx, pk, sk, cond)
				}
				if !c.ok {
					errIs(t, c.name, err, storage.ErrConditionFailed)
					if op.tx {
						var te *storage.TxError
						if !errors.As(err, &te) || te.Index != 0 {
							t.Fatalf("%s: got %v, want *storage.TxError with Index 0", c.name, err)
						}
					}
				} else {
					noErr(t, c.name, err)
				}

				got, gerr := s.ItemGet(ctx, pk, sk)
				want, wantPresent := old, c.present
				if c.ok {
					switch op.kind {
					case storage.OpPut:
						want, wantPresent = storage.Item{PK: pk, SK: sk, Data: []byte("new"), Count: 20, Version: old.Version + 1}, true
					case storage.OpAdd:
						wantPresent = true
						want.PK, want.SK, want.Count, want.Version = pk, sk, old.Count+3, old.Version+1
						if !c.present {
							want.Data = []byte("new")
						}
					case storage.OpDelete:
						wantPresent = false
					}
				}
				if !wantPresent {
					errIs(t, c.name+": get", gerr, storage.ErrNotFound)
					continue
				}
				noErr(t, c.name+": get", gerr)
				checkItem(t, got, want)
			}
		})
	}
}

// checkItem compares every field; nil and empty Data are equal.
func checkItem(t *testing.T, got, want storage.Item) {
	t.Helper()
	if got.PK != want.PK || got.SK != want.SK || !bytes.Equal(got.Data, want.Data) || got.Count != want.Count ||
		got.Version != want.Version || got.Touched != want.Touched || got.Expires != want.Expires {
		t.Fatalf("item mismatch:\n got  %s\n want %s", fmtItem(got), fmtItem(want))
	}
}

func fmtItem(it storage.Item) string {
	d := string(it.Data)
	if len(d) > 40 {
		d = d[:40] + sprintf("...(%d bytes)", len(it.Data))
	}
	return sprintf("{PK:%q SK:%q Data:%q Count:%d Version:%d Touched:%d Expires:%d}", it.PK, it.SK, d, it.Count, it.Version, it.Touched, it.Expires)
}

func keysOf(items []storage.Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.PK + "/" + it.SK
	}
	return out
}

// snapshot reads every item of the store through a scan.
func snapshot(t *testing.T, s storage.Items) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, it := range scanAll(t, s, "", 100) {
		out[it.PK+"/"+it.SK] = fmtItem(it)
	}
	return out
}

func equalSnapshots(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
