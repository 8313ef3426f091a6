package storagetest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/berth-registry/berth/pkg/storage"
)

// testObjects: a driver with storage.Objects stores, replaces, reads and
// deletes objects; absent objects are ErrNotFound; keys that could reach
// the driver's own key spaces are refused; concurrent puts of one key
// leave one whole value. Drivers without the capability pass trivially.
func testObjects(t *testing.T, s storage.Blobs) {
	o, ok := s.(storage.Objects)
	if !ok {
		return
	}
	ctx := context.Background()
	const key = "scan/layers/sha256/0123abcd.json"
	if _, err := o.ObjectGet(ctx, key); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("get absent object: %v, want ErrNotFound", err)
	}
	if err := o.ObjectDelete(ctx, key); err != nil {
		t.Fatalf("delete absent object: %v", err)
	}
	for _, v := range [][]byte{[]byte(`{"v":1}`), RandomBytes(t, 300<<10), {}} {
		if err := o.ObjectPut(ctx, key, v); err != nil {
			t.Fatalf("put: %v", err)
		}
		got, err := o.ObjectGet(ctx, key)
		if err != nil || !bytes.Equal(got, v) {
			t.Fatalf("get after put: %d bytes, err %v; want %d bytes", len(got), err, len(v))
		}
	}
	if err := o.ObjectDelete(ctx, key); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := o.ObjectGet(ctx, key); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("get deleted object: %v, want ErrNotFound", err)
	}

	for _, bad := range []string{"", "x", "/scan/a", "scan/../blobs/sha256/x", "blobs/sha256/abc", "uploads/id/blob", "tmp/x", "scan//a", "scan/./a", "scan/.hidden"} {
		if err := o.ObjectPut(ctx, bad, []byte("x")); err == nil {
			t.Errorf("put %q accepted", bad)
		}
		if _, err := o.ObjectGet(ctx, bad); err == nil || errors.Is(err, storage.ErrNotFound) {
			t.Errorf("get %q: %v, want a key error", bad, err)
		}
	}

	// Racing writers of one key: the survivor is one of the values, whole.
	vals := [][]byte{RandomBytes(t, 64<<10), RandomBytes(t, 64<<10), RandomBytes(t, 64<<10)}
	var wg sync.WaitGroup
	for _, v := range vals {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := o.ObjectPut(ctx, key, v); err != nil {
				t.Errorf("concurrent put: %v", err)
			}
		}()
	}
	wg.Wait()
	got, err := o.ObjectGet(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, vals[0]) && !bytes.Equal(got, vals[1]) && !bytes.Equal(got, vals[2]) {
		t.Fatalf("after racing puts the object is none of the values (%d bytes)", len(got))
	}
}
