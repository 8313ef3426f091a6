package meta

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/berth-registry/berth/pkg/oci"
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
	// Direct is set for a direct upload (berth push): the client sends the
	// bytes to presigned storage URLs, not through the API.
	Direct *Direct `json:"direct,omitempty"`
	// Committed is set by a closing PUT once the driver verified this
	// session's own bytes against a digest the running sha256 cannot check
	// (sha512) and made them that blob. A retried close whose staged bytes
	// are gone may link the blob only if it names this digest: "the staged
	// data is gone" alone does not prove the bytes were ever this blob (a
	// DELETE may have removed them), and for sha256 the hash state is the
	// proof instead. See docs/architecture.md, "Upload sessions".
	Committed oci.Digest `json:"committed,omitempty"`
	Version   int64      `json:"-"`
}

// States of a direct upload.
const (
	DirectUploading = ""          // the client is sending bytes
	DirectVerifying = "verifying" // multipart complete, the digest is being checked
	DirectVerified  = "verified"  // the blob is linked; kept so polls see 201
	DirectRejected  = "rejected"  // the content did not match; nothing linked
)

// Direct is what a direct upload promised and how far it got.
type Direct struct {
	Digest    oci.Digest `json:"d"`
	Size      int64      `json:"n"`
	Multipart bool       `json:"mp,omitempty"`
	State     string     `json:"st,omitempty"`
	// Since is when State last changed (unix seconds): a verification that
	// has not taken its lease a while after this is started again.
	Since int64 `json:"since,omitempty"`
}

// Expired reports whether the session is past its expiry at now.
func (u Upload) Expired(now time.Time) bool { return now.Unix() >= u.ExpiresAt }

func (s *Store) uploadItem(u Upload) storage.Item {
	return storage.Item{
		PK:      uploadPK(u.ID),
		SK:      skMeta,
		Data:    encode(u),
		Expires: u.ExpiresAt + int64(expiryGrace/time.Second),
		// The lease is also the item's Touched, where a driver condition
		// can see it: UploadAcquire takes it with one conditional write.
		// Every save writes both, so they never disagree.
		Touched: u.LeaseUntil,
	}
}

// UploadCreate stores a new session and its index entry.
func (s *Store) UploadCreate(ctx context.Context, u Upload) (Upload, error) {
	err := s.items.Transact(ctx, []storage.Op{
		{Kind: storage.OpPut, Item: s.uploadItem(u), Cond: storage.IfNotExists},
		{Kind: storage.OpPut, Item: storage.Item{PK: uploadIndexPK(u.ID), SK: u.ID, Data: []byte("{}")}},
	})
	if err != nil {
		return Upload{}, err
	}
	u.Version = 1
	return u, nil
}

// UploadGet returns a live session.
func (s *Store) UploadGet(ctx context.Context, id string) (Upload, error) {
	u, err := s.uploadRecord(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return Upload{}, fmt.Errorf("%w: %s", ErrUploadUnknown, id)
	}
	if err != nil {
		return Upload{}, err
	}
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

// UploadAcquire takes the lease on session id for d and returns the
// session, in one conditional write (an ItemAdd of nothing under
// IfTouchedBy, which returns the item): the read and the versioned lease
// write of UploadGet + UploadLease cost one round trip instead of two. A
// session another request holds fails with ErrUploadBusy, an absent or
// expired one with ErrUploadUnknown. The caller checks the repository and
// releases the lease (UploadSave with LeaseUntil 0) when it will not write.
func (s *Store) UploadAcquire(ctx context.Context, id string, d time.Duration) (Upload, error) {
	now := s.now()
	until := now.Add(d).Unix()
	it, err := s.items.ItemAdd(ctx, storage.Item{PK: uploadPK(id), SK: skMeta, Touched: until}, 0, storage.IfTouchedBy(now.Unix()))
	if ok, _ := isCond(err); ok {
		// Absent, or leased by another request: one read tells which
		// (only on this rare path).
		if _, gerr := s.UploadGet(ctx, id); gerr != nil {
			return Upload{}, gerr
		}
		return Upload{}, fmt.Errorf("%w: %s", ErrUploadBusy, id)
	}
	if err != nil {
		return Upload{}, err
	}
	u, err := decode[Upload](it)
	if err != nil {
		return Upload{}, err
	}
	u.ID, u.Version, u.LeaseUntil = id, it.Version, until
	if u.Expired(now) {
		// Leased but dead: nobody may continue it, and the sweep removes
		// it whether or not the lease has run out.
		return Upload{}, fmt.Errorf("%w: %s (expired)", ErrUploadUnknown, id)
	}
	return u, nil
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

// UploadDelete removes the session record and its index entry.
func (s *Store) UploadDelete(ctx context.Context, id string) error {
	return s.items.Transact(ctx, []storage.Op{
		{Kind: storage.OpDelete, Item: storage.Item{PK: uploadPK(id), SK: skMeta}},
		{Kind: storage.OpDelete, Item: storage.Item{PK: uploadIndexPK(id), SK: id}},
	})
}

// UploadsExpired calls fn for every session past its expiry. It reads the
// session index (a few small partitions), never the whole table, and drops
// index entries whose session is already gone (removed by its TTL).
func (s *Store) UploadsExpired(ctx context.Context, fn func(Upload) error) error {
	now := s.now()
	for shard := 0; shard < uploadShards; shard++ {
		pk := uploadShardPK(shard)
		after := ""
		for {
			entries, more, err := s.items.ItemQuery(ctx, pk, "", after, 500)
			if err != nil {
				return err
			}
			for _, e := range entries {
				u, err := s.uploadRecord(ctx, e.SK)
				switch {
				case errors.Is(err, storage.ErrNotFound):
					if err := s.items.ItemDelete(ctx, pk, e.SK, storage.IfNone); err != nil {
						return err
					}
				case err != nil:
					return err
				case u.Expired(now):
					if err := fn(u); err != nil {
						return err
					}
				}
			}
			if !more || len(entries) == 0 {
				break
			}
			after = entries[len(entries)-1].SK
		}
	}
	return nil
}

// uploadRecord reads a session whether or not it has expired.
func (s *Store) uploadRecord(ctx context.Context, id string) (Upload, error) {
	it, err := s.items.ItemGet(ctx, uploadPK(id), skMeta)
	if err != nil {
		return Upload{}, err
	}
	u, err := decode[Upload](it)
	if err != nil {
		return Upload{}, err
	}
	u.ID, u.Version = id, it.Version
	return u, nil
}
