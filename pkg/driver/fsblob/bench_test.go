package fsblob_test

import (
	"bytes"
	"testing"

	"github.com/berth-registry/berth/pkg/storage/storagetest"
)

func BenchmarkFSBlobPut(b *testing.B) {
	s := newStore(b, b.TempDir())
	data, d := storagetest.RandomBlob(b, 64<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := s.BlobPut(b.Context(), d, int64(len(data)), bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFSBlobUpload is a 64 MiB upload in 4 MiB chunks, committed.
func BenchmarkFSBlobUpload(b *testing.B) {
	s := newStore(b, b.TempDir())
	data, d := storagetest.RandomBlob(b, 64<<20)
	const chunk = 4 << 20
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		id := storagetest.NewUploadID(b)
		state, err := s.UploadInit(b.Context(), id)
		if err != nil {
			b.Fatal(err)
		}
		for off := 0; off < len(data); off += chunk {
			if state, _, err = s.UploadWrite(b.Context(), id, state, int64(off), bytes.NewReader(data[off:off+chunk])); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.UploadCommit(b.Context(), id, state, d, int64(len(data)), nil); err != nil {
			b.Fatal(err)
		}
	}
}
