package fsblob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/berth-registry/berth/pkg/storage"
)

var _ storage.Objects = (*Store)(nil)

// objectPath returns the file of an object: <dir>/<key>, the key checked
// so it can never reach blobs/, uploads/ or tmp/.
func (s *Store) objectPath(key string) (string, error) {
	if err := storage.CheckObjectKey(key); err != nil {
		return "", err
	}
	return filepath.Join(s.dir, filepath.FromSlash(key)), nil
}

// ObjectGet implements storage.Objects.
func (s *Store) ObjectGet(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := s.objectPath(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, notFound("object "+key, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, storage.MaxObjectBytes+1))
	if err != nil {
		return nil, fmt.Errorf("object %s: %w", key, err)
	}
	if len(b) > storage.MaxObjectBytes {
		return nil, fmt.Errorf("object %s: %w", key, storage.ErrTooLarge)
	}
	return b, nil
}

// ObjectPut implements storage.Objects: staged in tmp/ and renamed into
// place, as blobs are, so a reader never sees a partial object.
func (s *Store) ObjectPut(ctx context.Context, key string, data []byte) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(data) > storage.MaxObjectBytes {
		return fmt.Errorf("object %s: %w", key, storage.ErrTooLarge)
	}
	final, err := s.objectPath(key)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(s.tmpDir(), "obj-*")
	if err != nil {
		return fmt.Errorf("object %s: %w", key, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("object %s: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("object %s: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("object %s: %w", key, err)
	}
	if err := s.place(tmp, final); err != nil {
		return fmt.Errorf("object %s: %w", key, err)
	}
	return nil
}

// ObjectDelete implements storage.Objects.
func (s *Store) ObjectDelete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := s.objectPath(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("object %s: %w", key, err)
	}
	return nil
}
