package testenv

import (
	"path/filepath"
	"testing"

	"github.com/berth-registry/berth/pkg/driver/boltdb"
	"github.com/berth-registry/berth/pkg/driver/fsblob"
)

// Embedded is the single-machine backend (`berth serve --backend embedded`)
// opened for one test: boltdb metadata in Dir/meta.db and fsblob blobs
// under Dir, laid out as cmd/berth lays them out.
type Embedded struct {
	Dir   string
	Items *boltdb.Store
	Blobs *fsblob.Store
}

// NewEmbedded opens an embedded store in a fresh temporary directory. It is
// closed when the test ends.
func NewEmbedded(t testing.TB, opts ...boltdb.Option) Embedded {
	t.Helper()
	return OpenEmbedded(t, t.TempDir(), opts...)
}

// OpenEmbedded opens the embedded store in dir and closes it when the test
// ends. Closing Items and opening dir again is a process restart: what was
// committed is read back.
//
// Commits are not fsynced (boltdb.WithNoSync, prepended to opts): a test's
// temporary directory never has to survive a machine crash, so an fsync
// per metadata write would be time spent for nothing. Bytes still reach the
// file on every commit, so a reopen in the same process sees them.
func OpenEmbedded(t testing.TB, dir string, opts ...boltdb.Option) Embedded {
	t.Helper()
	items, err := boltdb.Open(filepath.Join(dir, "meta.db"), append([]boltdb.Option{boltdb.WithNoSync()}, opts...)...)
	if err != nil {
		t.Fatalf("testenv: embedded metadata store: %v", err)
	}
	// Close is idempotent in bbolt, so a test that closed the store itself
	// (to restart it) does no harm here.
	t.Cleanup(func() { _ = items.Close() })
	blobs, err := fsblob.New(dir)
	if err != nil {
		t.Fatalf("testenv: embedded blob store: %v", err)
	}
	return Embedded{Dir: dir, Items: items, Blobs: blobs}
}
