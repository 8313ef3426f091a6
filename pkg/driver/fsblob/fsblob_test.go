package fsblob_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/pkg/driver/fsblob"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
	"github.com/berth-registry/berth/pkg/storage/storagetest"
)

func newStore(t testing.TB, dir string) *fsblob.Store {
	t.Helper()
	s, err := fsblob.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBlobs(t *testing.T) {
	storagetest.TestBlobs(t, func(t *testing.T) storage.Blobs { return newStore(t, t.TempDir()) })
}

// files lists every regular file under dir, relative to it.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestFailedPutsLeaveNothing(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s := newStore(t, dir)
	b, d := storagetest.RandomBlob(t, 3<<20)
	_, other := storagetest.RandomBlob(t, 10)
	attempts := []struct {
		d    oci.Digest
		size int64
		r    io.Reader
	}{
		{other, int64(len(b)), bytes.NewReader(b)},              // digest mismatch
		{d, int64(len(b)) + 1, bytes.NewReader(b)},              // short
		{d, int64(len(b)) - 1, bytes.NewReader(b)},              // long
		{d, int64(len(b)), storagetest.FailingReader(b, 1<<20)}, // reader error
	}
	for i, a := range attempts {
		if err := s.BlobPut(ctx, a.d, a.size, a.r); err == nil {
			t.Fatalf("attempt %d succeeded", i)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.BlobPut(cancelled, d, int64(len(b)), bytes.NewReader(b)); err == nil {
		t.Fatal("put with a cancelled context succeeded")
	}
	if got := files(t, dir); len(got) != 0 {
		t.Fatalf("files left after failed puts: %v", got)
	}
	if err := s.BlobPut(ctx, d, int64(len(b)), bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	want := "blobs/sha256/" + d.Encoded()
	if got := files(t, dir); len(got) != 1 || got[0] != want {
		t.Fatalf("files after one put: %v, want [%s]", got, want)
	}
}

// TestResumeInNewStore continues an upload in a fresh Store on the same
// directory with only the saved state, as after a process crash between
// requests, including after a write that died part way.
func TestResumeInNewStore(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	a, b, c := storagetest.RandomBytes(t, 3<<20), storagetest.RandomBytes(t, 2<<20), storagetest.RandomBytes(t, 1000)
	all := bytes.Join([][]byte{a, b, c}, nil)
	d := oci.FromBytes(oci.SHA256, all)
	id := storagetest.NewUploadID(t)

	s1 := newStore(t, dir)
	state, err := s1.UploadInit(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	state, n, err := s1.UploadWrite(ctx, id, state, 0, bytes.NewReader(a))
	if err != nil || n != int64(len(a)) {
		t.Fatalf("write: %d, %v", n, err)
	}
	saved := bytes.Clone(state)
	// The process dies in the middle of the next write.
	if _, _, err := s1.UploadWrite(ctx, id, state, n, storagetest.FailingReader(b, len(b)/2)); err == nil {
		t.Fatal("failing write succeeded")
	}

	s2 := newStore(t, dir)
	state, n2, err := s2.UploadWrite(ctx, id, saved, int64(len(a)), bytes.NewReader(b))
	if err != nil || n2 != int64(len(b)) {
		t.Fatalf("resumed write: %d, %v", n2, err)
	}
	s3 := newStore(t, dir)
	state, _, err = s3.UploadWrite(ctx, id, state, int64(len(a)+len(b)), bytes.NewReader(c))
	if err != nil {
		t.Fatal(err)
	}
	if err := newStore(t, dir).UploadCommit(ctx, id, state, d, int64(len(all)), nil); err != nil {
		t.Fatal(err)
	}
	rc, err := newStore(t, dir).BlobOpen(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, all) {
		t.Fatalf("content after resumed upload: %d bytes, %v", len(got), err)
	}
	if left := files(t, filepath.Join(dir, "uploads")); len(left) != 0 {
		t.Fatalf("upload files left after commit: %v", left)
	}
}

func TestInvalidUploadIDs(t *testing.T) {
	ctx := t.Context()
	root := t.TempDir()
	dir := filepath.Join(root, "store")
	s := newStore(t, dir)
	bad := []string{"", ".", "..", "../x", "a/b", `a\b`, "../../etc", "a.b", "a b", "é", "a\x00b", strings.Repeat("a", 129)}
	for _, id := range bad {
		if _, err := s.UploadInit(ctx, id); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("init %q: %v, want ErrNotFound", id, err)
		}
		if _, _, err := s.UploadWrite(ctx, id, []byte(`{"off":0}`), 0, strings.NewReader("x")); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("write %q: %v, want ErrNotFound", id, err)
		}
		if err := s.UploadCommit(ctx, id, []byte(`{"off":0}`), oci.FromBytes(oci.SHA256, nil), 0, nil); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("commit %q: %v, want ErrNotFound", id, err)
		}
		if err := s.UploadAbort(ctx, id, nil); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("abort %q: %v, want ErrNotFound", id, err)
		}
	}
	if _, err := s.UploadInit(ctx, strings.Repeat("a", 128)); err != nil {
		t.Fatalf("init of a 128-character id: %v", err)
	}
	// Nothing was created outside the store: the one upload is a directory.
	if got := files(t, root); len(got) != 0 {
		t.Fatalf("files: %v", got)
	}
	if fi, err := os.Stat(filepath.Join(dir, "uploads", strings.Repeat("a", 128))); err != nil || !fi.IsDir() {
		t.Fatalf("upload directory: %v", err)
	}
}

func TestInvalidDigests(t *testing.T) {
	ctx := t.Context()
	s := newStore(t, t.TempDir())
	for _, d := range []oci.Digest{"", "sha256:../../etc/passwd", "sha256:ABC", "md5:d41d8cd98f00b204e9800998ecf8427e",
		oci.Digest("sha256:" + strings.Repeat("0", 63)), oci.Digest("sha256/" + strings.Repeat("0", 64))} {
		if err := s.BlobPut(ctx, d, 0, bytes.NewReader(nil)); err == nil {
			t.Fatalf("put %q succeeded", d)
		}
		if _, err := s.BlobOpen(ctx, d); err == nil {
			t.Fatalf("open %q succeeded", d)
		}
		if err := s.BlobDelete(ctx, d); err == nil {
			t.Fatalf("delete %q succeeded", d)
		}
	}
}

func TestStaleTempsRemoved(t *testing.T) {
	dir := t.TempDir()
	newStore(t, dir)
	stale, fresh := filepath.Join(dir, "tmp", "put-stale"), filepath.Join(dir, "tmp", "put-fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	newStore(t, dir)
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stale temp file survived New: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatalf("fresh temp file (maybe another process's put in flight) removed: %v", err)
	}
}

// Several writes are committed by concatenation, in order, and verify sees
// exactly the assembled bytes.
func TestCommitOfSeveralParts(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s := newStore(t, dir)
	st, err := s.UploadInit(ctx, "u2")
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for _, chunk := range []string{"one,", "", "two,", "three"} {
		var n int64
		if st, n, err = s.UploadWrite(ctx, "u2", st, int64(len(all)), strings.NewReader(chunk)); err != nil || n != int64(len(chunk)) {
			t.Fatalf("write %q: %d, %v", chunk, n, err)
		}
		all = append(all, chunk...)
	}
	d := oci.FromBytes(oci.SHA512, all)
	var verified []byte
	verify := func(r io.Reader) (err error) { verified, err = io.ReadAll(r); return err }
	if err := s.UploadCommit(ctx, "u2", st, d, int64(len(all)), verify); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(verified, all) {
		t.Fatalf("verify read %q", verified)
	}
	rc, err := s.BlobOpen(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got, _ := io.ReadAll(rc); !bytes.Equal(got, all) {
		t.Fatalf("blob %q", got)
	}
	if left := files(t, filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Fatalf("tmp files left: %v", left)
	}
	if err := s.UploadCommit(ctx, "u2", st, d, int64(len(all)), nil); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("second commit: %v, want ErrNotFound", err)
	}
}
