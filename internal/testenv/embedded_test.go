package testenv_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

// What one embedded store commits, a second one opened on the same
// directory reads back (the restart the registry suite relies on), and the
// layout is cmd/berth's: meta.db and blobs/ in one directory.
func TestEmbeddedRestart(t *testing.T) {
	ctx := t.Context()
	e := testenv.NewEmbedded(t)
	if err := e.Items.ItemPut(ctx, storage.Item{PK: "p", SK: "s", Data: []byte("kept")}, storage.Cond{}); err != nil {
		t.Fatal(err)
	}
	blob := []byte("layer bytes")
	d := oci.FromBytes(oci.SHA256, blob)
	if err := e.Blobs.BlobPut(ctx, d, int64(len(blob)), bytes.NewReader(blob)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.Dir, "meta.db")); err != nil {
		t.Errorf("metadata not in Dir/meta.db: %v", err)
	}
	if err := e.Items.Close(); err != nil {
		t.Fatal(err)
	}

	again := testenv.OpenEmbedded(t, e.Dir)
	it, err := again.Items.ItemGet(ctx, "p", "s")
	if err != nil || string(it.Data) != "kept" {
		t.Fatalf("item after reopen: %q, %v", it.Data, err)
	}
	rc, err := again.Blobs.BlobOpen(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("blob after reopen: %q, %v", got, err)
	}
}
