package meta

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/berth-registry/berth/pkg/storage"
)

// ErrUploadUnknown: no such upload session (or it expired).
var ErrUploadUnknown = errors.New("upload unknown")

// ErrUploadBusy: another request is writing to the session.
var ErrUploadBusy = errors.New("upload busy")

// expiryGrace keeps an expired session's item around (hidden from nobody)
// long enough for the sweep to find it and release its storage; the
// item's TTL is the backstop.
const expiryGrace = 24 * time.Hour

// Upload is an upload session. Everything needed to continue it lives here,
// so any process may serve its next request.
type Upload struct {
	ID          string `json:"-"`
	Repo        string `json:"repo"`
	Offset      int64  `json:"off"`
	HashState   []byte `json:"hash"`            // serialized running sha256
	DriverState []byte `json:"drv"`             // the blob driver's opaque state
	Created     int64  `json:"created"`         // unix seconds
	ExpiresAt   int64  `json:"exp"`             // unix seconds; logically dead after
	LeaseUntil  int64  `json:"lease,omitempty"` // unix seconds; a writer holds it
	Version     int64  `json:"-"`
}

// Expired reports whether the session is past its expiry at now.
func (u Upload) Expired(now time.Time) bool { return now.Unix() >= u.ExpiresAt }

func (s *Store) uploadItem(u Upload) storage.Item {
	return storage.Item{
		PK:      uploadPK(u.ID),
		SK:      skMeta,
		Data:    encode(u),
		Expires: u.ExpiresAt + int64(expiryGrace/time.Second),
	}
}

// UploadCreate stores a new session.
func (s *Store) UploadCreate(ctx context.Context, u Upload) (Upload, error) {
	if err := s.items.ItemPut(ctx, s.uploadItem(u), storage.IfNotExists); err != nil {
		return Upload{}, err
	}
	u.Version = 1
	return u, nil
}

// UploadGet returns a live session.
func (s *Store) UploadGet(ctx context.Context, id string) (Upload, error) {
	it, err := s.items.ItemGet(ctx, uploadPK(id), skMeta)
	if errors.Is(err, storage.ErrNotFound) {
		return Upload{}, fmt.Errorf("%w: %s", ErrUploadUnknown, id)
	}
	if err != nil {
		return Upload{}, err
	}
	u, err := decode[Upload](it)
	if err != nil {
		return Upload{}, err
	}
	u.ID, u.Version = id, it.Version
	if u.Expired(s.now()) {
		return Upload{}, fmt.Errorf("%w: %s (expired)", ErrUploadUnknown, id)
	}
	return u, nil
}

// UploadLease marks the session as being written for d, so a concurrent
// request on the same session cannot interleave its bytes. It returns the
// session at its new version.
func (s *Store) UploadLease(ctx context.Context, u Upload, d time.Duration) (Upload, error) {
	now := s.now()
	if u.LeaseUntil > now.Unix() {
		return Upload{}, ErrUploadBusy
	}
	u.LeaseUntil = now.Add(d).Unix()
	return s.UploadSave(ctx, u)
}

// UploadSave writes the session if nobody else changed it since it was
// read (its Version), and returns it at its new version.
func (s *Store) UploadSave(ctx context.Context, u Upload) (Upload, error) {
	err := s.items.ItemPut(ctx, s.uploadItem(u), storage.IfVersion(u.Version))
	if errors.Is(err, storage.ErrConditionFailed) {
		return Upload{}, fmt.Errorf("%w: %s", ErrUploadBusy, u.ID)
	}
	if err != nil {
		return Upload{}, err
	}
	u.Version++
	return u, nil
}

// UploadDelete removes the session record.
func (s *Store) UploadDelete(ctx context.Context, id string) error {
	return s.items.ItemDelete(ctx, uploadPK(id), skMeta, storage.IfNone)
}

// UploadsExpired pages through sessions past their expiry (background
// sweep only: it scans).
func (s *Store) UploadsExpired(ctx context.Context, cursor string, limit int) ([]Upload, string, error) {
	items, next, err := s.items.ItemScan(ctx, pfxUpload, cursor, limit)
	if err != nil {
		return nil, "", err
	}
	now := s.now()
	var out []Upload
	for _, it := range items {
		u, err := decode[Upload](it)
		if err != nil {
			continue // not ours to judge; leave it to its TTL
		}
		u.ID, u.Version = it.PK[len(pfxUpload):], it.Version
		if u.Expired(now) {
			out = append(out, u)
		}
	}
	return out, next, nil
}
