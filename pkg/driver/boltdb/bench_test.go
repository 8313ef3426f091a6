package boltdb_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/berth-registry/berth/pkg/storage"
	"github.com/berth-registry/berth/pkg/storage/storagetest"
)

// Benchmarks run with fsync on, as `berth serve` does.

func BenchmarkBoltPut(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "meta.db"))
	data := storagetest.RandomBytes(b, 1024)
	b.SetBytes(int64(len(data)))
	i := 0
	for b.Loop() {
		it := storage.Item{PK: "REPO#bench", SK: fmt.Sprintf("TAG#%d", i%1000), Data: data}
		if err := s.ItemPut(b.Context(), it, storage.IfNone); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkBoltGet(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "meta.db"))
	data := storagetest.RandomBytes(b, 1024)
	for i := range 1000 {
		if err := s.ItemPut(b.Context(), storage.Item{PK: "REPO#bench", SK: fmt.Sprintf("TAG#%d", i), Data: data}, storage.IfNone); err != nil {
			b.Fatal(err)
		}
	}
	i := 0
	for b.Loop() {
		if _, err := s.ItemGet(b.Context(), "REPO#bench", fmt.Sprintf("TAG#%d", i%1000)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkBoltTransact is the shape of a manifest put: the manifest, a tag,
// and reference-count increments for eight blobs.
func BenchmarkBoltTransact(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "meta.db"))
	manifest := storagetest.RandomBytes(b, 2048)
	i := 0
	for b.Loop() {
		ops := []storage.Op{
			{Kind: storage.OpPut, Item: storage.Item{PK: "REPO#bench", SK: fmt.Sprintf("MANIFEST#%d", i), Data: manifest}},
			{Kind: storage.OpPut, Item: storage.Item{PK: "REPO#bench", SK: fmt.Sprintf("TAG#%d", i%100), Data: manifest[:64]}},
		}
		for j := range 8 {
			ops = append(ops, storage.Op{Kind: storage.OpAdd, Item: storage.Item{PK: fmt.Sprintf("BLOB#%d", j), SK: "META", Touched: int64(i)}, Delta: 1})
		}
		if err := s.Transact(b.Context(), ops); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkBoltAddParallel measures contention on one hot counter.
func BenchmarkBoltAddParallel(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "meta.db"))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.ItemAdd(b.Context(), storage.Item{PK: "BLOB#hot", SK: "META"}, 1, storage.IfNone); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
