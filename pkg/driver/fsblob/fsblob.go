// Package fsblob is the embedded blob driver: storage.Blobs on a local
// directory, for `berth serve` and tests. It uses the same layout as the S3
// bucket:
//
//	<dir>/blobs/<alg>/<hex>     one file per digest, written once, never partial
//	<dir>/uploads/<id>/part-*   the bytes an upload session has received,
//	                            one file per request, each written once
//	<dir>/tmp/                  BlobPut staging (same filesystem, so rename is atomic)
//
// A blob reaches its final path only by rename after it was fsynced and
// verified, so readers never see a partial or wrong blob, even across a
// crash, and a committed blob is a file no request still writes (see
// UploadWrite). Upload state (the opaque bytes the registry saves between
// requests) records the offset and the part files, so any process with the
// directory can continue an upload.
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
	"strings"
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

// uploadState is what the registry saves between requests: the offset and
// the part files that hold the bytes, in order.
type uploadState struct {
	Offset int64  `json:"off"`
	Parts  []part `json:"parts,omitempty"`
}

// part is one file of an upload, written whole by one request.
type part struct {
	File string `json:"f"`
	Size int64  `json:"n"`
}

// legacyData is the one data file of sessions begun before parts existed
// (every request appended to it). Such a session is committed by copy,
// never by rename, as the file may still have a writer.
const legacyData = "data"

func encodeState(st uploadState) []byte {
	b, _ := json.Marshal(st) // cannot fail
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
	if st.Parts == nil && st.Offset > 0 {
		st.Parts = []part{{File: legacyData, Size: st.Offset}}
	}
	var sum int64
	for _, p := range st.Parts {
		if p.Size <= 0 || !validPartName(p.File) {
			return st, fmt.Errorf("upload state: invalid part %q of %d bytes", p.File, p.Size)
		}
		sum += p.Size
	}
	if sum != st.Offset {
		return st, fmt.Errorf("upload state: parts hold %d bytes, offset is %d", sum, st.Offset)
	}
	return st, nil
}

// validPartName accepts the names UploadWrite creates (and the legacy data
// file): a state is opaque to the registry but still arrives from storage,
// so it must not name a path outside the upload's directory.
func validPartName(name string) bool {
	return name != "" && name != "." && name != ".." && filepath.Base(name) == name && validUploadID(strings.ReplaceAll(name, ".", "_"))
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

// UploadInit implements storage.Blobs: an empty upload directory.
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
	return encodeState(uploadState{}), nil
}

// UploadWrite implements storage.Blobs: the request's bytes go to a part
// file of their own, created for this call alone (O_EXCL, a random name),
// fsynced and closed before the new state naming it is returned.
//
// Why not append to one file: a request whose body stalls past its lease
// keeps its file open and keeps writing. Had it a shared file, its late
// bytes would land in the bytes of whichever request continued the session,
// and, once that file was renamed into blobs/, in a committed blob every
// repository linking the digest reads (issue 11, point 1). A part file is
// named by a saved state only after its one writer closed it, so every
// byte a commit can see is final; a stalled request's file is named by no
// state and goes with the upload's directory.
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
	f, err := os.CreateTemp(dir, fmt.Sprintf("part-%d-*", offset))
	if err != nil {
		// No directory: the upload was committed or aborted.
		return nil, 0, notFound("upload "+id, err)
	}
	name := f.Name()
	n, err := io.Copy(f, ctxReader{ctx, r})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil || n == 0 {
		_ = os.Remove(name)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("upload %s: write at %d: %w", id, offset, err)
	}
	if n > 0 {
		st.Parts = append(st.Parts[:len(st.Parts):len(st.Parts)], part{File: filepath.Base(name), Size: n})
		st.Offset += n
	}
	return encodeState(st), n, nil
}

// UploadCommit implements storage.Blobs. The blob's final file is one no
// request can still be writing: a single part (closed by its writer before
// its state was saved) is renamed into place; several parts, or the legacy
// data file, are copied into a new file in tmp/ first.
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
	if _, err := os.Stat(dir); err != nil {
		// Committed (or aborted) already: the staged data is gone.
		return notFound("upload "+id, err)
	}
	var src string
	if len(st.Parts) == 1 && st.Parts[0].File != legacyData {
		src = filepath.Join(dir, st.Parts[0].File)
		if err := checkPart(src, st.Parts[0].Size); err != nil {
			return fmt.Errorf("upload %s: %w", id, err)
		}
	} else {
		tmp, err := s.concat(ctx, dir, st.Parts)
		if err != nil {
			return fmt.Errorf("upload %s: %w", id, err)
		}
		defer os.Remove(tmp) // a no-op once it was renamed into place
		src = tmp
	}
	if verify != nil {
		if err := verifyFile(ctx, src, size, verify); err != nil {
			return fmt.Errorf("upload %s: verify %s: %w", id, dgst, err)
		}
	}
	if err := s.place(src, final); err != nil {
		return fmt.Errorf("upload %s: commit %s: %w", id, dgst, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("upload %s: committed, cleanup: %w", id, err)
	}
	return nil
}

// checkPart confirms a part file holds what its state says.
func checkPart(path string, size int64) error {
	fi, err := os.Stat(path)
	if err != nil {
		return notFound("part "+filepath.Base(path), err)
	}
	if fi.Size() != size {
		return fmt.Errorf("part %s holds %d bytes, state says %d: %w", filepath.Base(path), fi.Size(), size, storage.ErrInvalidOffset)
	}
	return nil
}

// concat copies the parts, in order, into a new synced file in tmp/ and
// returns its path. Each part contributes exactly its recorded size.
func (s *Store) concat(ctx context.Context, dir string, parts []part) (_ string, err error) {
	out, err := os.CreateTemp(s.tmpDir(), "commit-*")
	if err != nil {
		return "", err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(out.Name())
		}
	}()
	for _, p := range parts {
		in, err := os.Open(filepath.Join(dir, p.File))
		if err != nil {
			return "", notFound("part "+p.File, err)
		}
		n, err := io.Copy(out, io.LimitReader(ctxReader{ctx, in}, p.Size))
		in.Close()
		if err != nil {
			return "", err
		}
		if n != p.Size {
			return "", fmt.Errorf("part %s holds %d bytes, state says %d: %w", p.File, n, p.Size, storage.ErrInvalidOffset)
		}
	}
	if err := out.Sync(); err != nil {
		return "", err
	}
	return out.Name(), nil
}

// verifyFile streams the first size bytes of path through verify.
func verifyFile(ctx context.Context, path string, size int64, verify func(io.Reader) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return verify(io.LimitReader(ctxReader{ctx, f}, size))
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

var _ storage.BlobLister = (*Store)(nil)

// BlobList implements storage.BlobLister: blobs/<alg>/ directories are
// read in name order, which is digest order ("sha256" < "sha512", hex
// within). Each page reads the directory afresh, so a full listing costs
// O(n²/limit) entries read: fine for the embedded store's sizes, and the
// reason S3 lists with a cursor instead.
func (s *Store) BlobList(ctx context.Context, after oci.Digest, limit int) ([]storage.BlobObject, bool, error) {
	var out []storage.BlobObject
	for _, alg := range []string{"sha256", "sha512"} {
		entries, err := os.ReadDir(filepath.Join(s.dir, "blobs", alg))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("list blobs: %w", err)
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return nil, false, err
			}
			d, err := oci.ParseDigest(alg + ":" + e.Name())
			if err != nil || e.IsDir() || d <= after {
				continue
			}
			if len(out) == limit {
				return out, true, nil
			}
			info, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted since the directory was read
			}
			if err != nil {
				return nil, false, fmt.Errorf("list blobs: %w", err)
			}
			out = append(out, storage.BlobObject{Digest: d, Size: info.Size(), Modified: info.ModTime()})
		}
	}
	return out, false, nil
}
