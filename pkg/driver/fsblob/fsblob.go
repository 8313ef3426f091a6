// Package fsblob is the embedded blob driver: storage.Blobs on a local
// directory, for `berth serve` and tests. It uses the same layout as the S3
// bucket:
//
//	<dir>/blobs/<alg>/<hex>     one file per digest, written once, never partial
//	<dir>/uploads/<id>/data     the bytes an upload session has received
//	<dir>/tmp/                  BlobPut staging (same filesystem, so rename is atomic)
//
// A blob reaches its final path only by rename after it was fsynced and
// verified, so readers never see a partial or wrong blob, even across a
// crash. Upload state (the opaque bytes the registry saves between requests)
// records the offset only: the data file is the rest, so any process with
// the directory can continue an upload.
package fsblob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

var _ storage.Blobs = (*Store)(nil)

// maxUploadIDLen bounds upload ids (the registry's are 24 characters).
const maxUploadIDLen = 128

// staleTempAge is how old a staging file must be before New removes it as
// left behind by a crash.
const staleTempAge = time.Hour

// Store implements storage.Blobs under one directory. It keeps no state in
// memory: several Stores (or processes) may share a directory.
type Store struct {
	dir string
}

// New prepares dir (creating it if needed) and removes staging files that a
// crashed process left more than an hour ago.
func New(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("blob store %s: %w", dir, err)
	}
	s := &Store{dir: abs}
	for _, d := range []string{s.dir, filepath.Join(s.dir, "blobs"), filepath.Join(s.dir, "uploads"), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("blob store: %w", err)
		}
	}
	if err := s.removeStaleTemps(time.Now().Add(-staleTempAge)); err != nil {
		return nil, fmt.Errorf("blob store: %w", err)
	}
	return s, nil
}

func (s *Store) tmpDir() string { return filepath.Join(s.dir, "tmp") }

func (s *Store) removeStaleTemps(before time.Time) error {
	entries, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return err
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || info.ModTime().After(before) {
			continue
		}
		if err := os.Remove(filepath.Join(s.tmpDir(), e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// blobPath returns the final path of a blob; only canonical sha256/sha512
// digests have one.
func (s *Store) blobPath(d oci.Digest) (string, error) {
	v, err := oci.ParseDigest(string(d))
	if err != nil {
		return "", fmt.Errorf("blob path: %w", err)
	}
	return filepath.Join(s.dir, "blobs", v.Algorithm().String(), v.Encoded()), nil
}

// BlobPut implements storage.Blobs: stage in tmp/, hash while writing,
// fsync, verify, then rename into place.
func (s *Store) BlobPut(ctx context.Context, dgst oci.Digest, size int64, r io.Reader) (err error) {
	final, err := s.blobPath(dgst)
	if err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("put %s: negative size %d: %w", dgst, size, storage.ErrSizeMismatch)
	}
	h, err := oci.NewHash(dgst.Algorithm())
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(s.tmpDir(), "put-*")
	if err != nil {
		return fmt.Errorf("put %s: %w", dgst, err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			_ = f.Close()
		}
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	// Read one byte past size to notice a reader that has too much.
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(ctxReader{ctx, r}, size+1))
	if err != nil {
		return fmt.Errorf("put %s: %w", dgst, err)
	}
	if n != size {
		return fmt.Errorf("put %s: got %d bytes, want %d: %w", dgst, n, size, storage.ErrSizeMismatch)
	}
	if got := oci.DigestOf(dgst.Algorithm(), h); got != dgst {
		return fmt.Errorf("put %s: content digests to %s: %w", dgst, got, storage.ErrDigestMismatch)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("put %s: %w", dgst, err)
	}
	cerr := f.Close()
	f = nil
	if cerr != nil {
		return fmt.Errorf("put %s: %w", dgst, cerr)
	}
	if err := s.place(tmp, final); err != nil {
		return fmt.Errorf("put %s: %w", dgst, err)
	}
	return nil
}

// place renames a complete, synced file to its final path and syncs the
// directory so the rename survives a crash. Renaming over an existing blob
// is harmless: same digest, same bytes.
func (s *Store) place(from, final string) error {
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Rename(from, final); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// BlobOpen implements storage.Blobs. The *os.File seeks and reads as
// http.ServeContent expects.
func (s *Store) BlobOpen(ctx context.Context, dgst oci.Digest) (io.ReadSeekCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := s.blobPath(dgst)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, notFound("blob "+string(dgst), err)
	}
	return f, nil
}

// BlobDelete implements storage.Blobs.
func (s *Store) BlobDelete(ctx context.Context, dgst oci.Digest) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := s.blobPath(dgst)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", dgst, err)
	}
	return nil
}

// uploadState is what the registry saves between requests.
type uploadState struct {
	Offset int64 `json:"off"`
}

func encodeState(off int64) []byte {
	b, _ := json.Marshal(uploadState{Offset: off}) // cannot fail
	return b
}

func decodeState(b []byte) (uploadState, error) {
	var st uploadState
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("upload state: %w", err)
	}
	if st.Offset < 0 {
		return st, fmt.Errorf("upload state: negative offset %d", st.Offset)
	}
	return st, nil
}

// uploadDir validates id and returns its directory. An id outside the
// registry's alphabet names no upload, so it is reported as not found.
func (s *Store) uploadDir(id string) (string, error) {
	if !validUploadID(id) {
		return "", fmt.Errorf("upload %q: invalid id: %w", id, storage.ErrNotFound)
	}
	return filepath.Join(s.dir, "uploads", id), nil
}

func validUploadID(id string) bool {
	if id == "" || len(id) > maxUploadIDLen {
		return false
	}
	for _, c := range []byte(id) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// UploadInit implements storage.Blobs: an empty data file.
func (s *Store) UploadInit(ctx context.Context, id string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir, err := s.uploadDir(id)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("upload %s: %w", id, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "data"), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("upload %s: %w", id, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("upload %s: %w", id, err)
	}
	return encodeState(0), nil
}

// UploadWrite implements storage.Blobs: truncate the data file to offset
// (dropping whatever a failed or superseded write left), append, fsync.
func (s *Store) UploadWrite(ctx context.Context, id string, state []byte, offset int64, r io.Reader) ([]byte, int64, error) {
	dir, err := s.uploadDir(id)
	if err != nil {
		return nil, 0, err
	}
	st, err := decodeState(state)
	if err != nil {
		return nil, 0, err
	}
	if st.Offset != offset {
		return nil, 0, fmt.Errorf("upload %s: write at %d, upload holds %d bytes: %w", id, offset, st.Offset, storage.ErrInvalidOffset)
	}
	f, err := os.OpenFile(filepath.Join(dir, "data"), os.O_WRONLY, 0)
	if err != nil {
		return nil, 0, notFound("upload "+id, err)
	}
	defer f.Close()
	if err := prepareAt(f, offset); err != nil {
		return nil, 0, fmt.Errorf("upload %s: %w", id, err)
	}
	n, err := io.Copy(f, ctxReader{ctx, r})
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		return nil, 0, fmt.Errorf("upload %s: write at %d: %w", id, offset, err)
	}
	if err := f.Close(); err != nil {
		return nil, 0, fmt.Errorf("upload %s: %w", id, err)
	}
	return encodeState(offset + n), n, nil
}

// prepareAt truncates f to off and positions it there; the file must hold
// at least off bytes.
func prepareAt(f *os.File, off int64) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() < off {
		return fmt.Errorf("staged data holds %d bytes, state says %d: %w", fi.Size(), off, storage.ErrInvalidOffset)
	}
	if fi.Size() > off {
		if err := f.Truncate(off); err != nil {
			return err
		}
	}
	_, err = f.Seek(off, io.SeekStart)
	return err
}

// UploadCommit implements storage.Blobs: the data file, cut to the state's
// offset, is renamed to the blob's final path.
func (s *Store) UploadCommit(ctx context.Context, id string, state []byte, dgst oci.Digest, size int64, verify func(io.Reader) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir, err := s.uploadDir(id)
	if err != nil {
		return err
	}
	final, err := s.blobPath(dgst)
	if err != nil {
		return err
	}
	st, err := decodeState(state)
	if err != nil {
		return err
	}
	if st.Offset != size {
		return fmt.Errorf("upload %s: commit of %d bytes, upload holds %d: %w", id, size, st.Offset, storage.ErrSizeMismatch)
	}
	data := filepath.Join(dir, "data")
	f, err := os.OpenFile(data, os.O_RDWR, 0)
	if err != nil {
		return notFound("upload "+id, err)
	}
	defer f.Close()
	// A write whose state was never saved may have left bytes past size.
	if err := prepareAt(f, size); err != nil {
		return fmt.Errorf("upload %s: %w", id, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("upload %s: %w", id, err)
	}
	if verify != nil {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("upload %s: %w", id, err)
		}
		if err := verify(io.LimitReader(ctxReader{ctx, f}, size)); err != nil {
			return fmt.Errorf("upload %s: verify %s: %w", id, dgst, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("upload %s: %w", id, err)
	}
	if err := s.place(data, final); err != nil {
		return fmt.Errorf("upload %s: commit %s: %w", id, dgst, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("upload %s: committed, cleanup: %w", id, err)
	}
	return nil
}

// UploadAbort implements storage.Blobs.
func (s *Store) UploadAbort(ctx context.Context, id string, state []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir, err := s.uploadDir(id)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("upload %s: abort: %w", id, err)
	}
	return nil
}

// notFound maps a missing file to storage.ErrNotFound.
func notFound(what string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", what, storage.ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// ctxReader stops a long copy when the request is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
