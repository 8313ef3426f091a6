package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/berth-registry/berth/pkg/driver/boltdb"
	"github.com/berth-registry/berth/pkg/driver/fsblob"
)

// openEmbedded opens the single-machine backend: metadata in dir/meta.db,
// blobs as files under dir.
func openEmbedded(dir string) (backend, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return backend{}, fmt.Errorf("data directory: %w", err)
	}
	blobs, err := fsblob.New(dir)
	if err != nil {
		// fsblob's errors already say "blob store".
		return backend{}, err
	}
	items, err := boltdb.Open(filepath.Join(dir, "meta.db"))
	if err != nil {
		return backend{}, fmt.Errorf("metadata store: %w", err)
	}
	return backend{items: items, blobs: blobs, lister: blobs, objects: blobs, close: items.Close}, nil
}
