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

// ErrUploadNotStored: nothing is stored under the session id, neither a
// session nor its tombstone. It always comes wrapped together with
// ErrUploadUnknown, which is what it means to every caller but the one
// that may take the id for a session not written yet (the registry's
// self-describing upload ids, docs/architecture.md "Upload sessions").
var ErrUploadNotStored = errors.New("upload not stored")

// ErrUploadExists: a session (or its tombstone) is already stored under
// the id a create names.
var ErrUploadExists = errors.New("upload exists")

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
	// End marks a tombstone: the session ended (committed, claimed,
	// cancelled, swept) and its id may never start a session again. See
	// tombstone.
	End     bool  `json:"end,omitempty"`
	Version int64 `json:"-"` // 0: not stored
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

// tombstone is the item a session leaves when it ends, in the same write
// that ends it (the claim or close transaction, a cancel, the sweep),
// instead of no item at all. Upload ids describe themselves, and an id
// with nothing stored under it stands for a fresh session for a while
// after it was minted (pkg/registry, lazyid.go); the tombstone keeps a
// replayed id from starting over. It lives as long as the session's item
// would have (its expiry + expiryGrace), which outlasts that window: a
// session's expiry is never before its id's window closes. Its lease runs
// until then too, so UploadAcquire's conditional write never takes it and
// a request naming it costs no write. It has no index entry (the write
// that makes it deletes the entry), so the sweep never reads it; the
// driver's TTL, or the embedded store's purge, removes it.
func (s *Store) tombstone(u Upload) storage.Item {
	exp := u.ExpiresAt + int64(expiryGrace/time.Second)
	return storage.Item{
		PK:      uploadPK(u.ID),
		SK:      skMeta,
		Data:    encode(Upload{Repo: u.Repo, Created: u.Created, ExpiresAt: u.ExpiresAt, End: true}),
		Expires: exp,
		Touched: exp,
	}
}

// UploadCreate stores a new session and its index entry in one
// transaction. An id already stored (a session or its tombstone) fails
// with ErrUploadExists and writes nothing.
func (s *Store) UploadCreate(ctx context.Context, u Upload) (Upload, error) {
	err := s.items.Transact(ctx, []storage.Op{
		{Kind: storage.OpPut, Item: s.uploadItem(u), Cond: storage.IfNotExists},
		{Kind: storage.OpPut, Item: storage.Item{PK: uploadIndexPK(u.ID), SK: u.ID, Data: []byte("{}")}},
	})
	if ok, i := isCond(err); ok && i == 0 {
		return Upload{}, fmt.Errorf("%w: %s", ErrUploadExists, u.ID)
	}
	if err != nil {
		return Upload{}, err
	}
	u.Version = 1
	return u, nil
}

// UploadCreateLeased stores a new session already leased for d to the
// caller, with its index entry: the first write to a session whose id was
// handed out without storing anything takes the lease in the same request
// that creates it. ErrUploadExists means the id is stored already (an
// earlier or concurrent write, or the tombstone of an ended session): the
// caller takes the lease the ordinary way (UploadAcquire), which also
// tells which.
func (s *Store) UploadCreateLeased(ctx context.Context, u Upload, d time.Duration) (Upload, error) {
	u.LeaseUntil = s.now().Add(d).Unix()
	return s.UploadCreate(ctx, u)
}

// UploadGet returns a live session. A tombstone or an expired session
// fails with ErrUploadUnknown; an id with nothing stored under it with
// ErrUploadUnknown and ErrUploadNotStored.
func (s *Store) UploadGet(ctx context.Context, id string) (Upload, error) {
	u, err := s.uploadRecord(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return Upload{}, fmt.Errorf("%w: %w: %s", ErrUploadUnknown, ErrUploadNotStored, id)
	}
	if err != nil {
		return Upload{}, err
	}
	if u.End {
		return Upload{}, fmt.Errorf("%w: %s (ended)", ErrUploadUnknown, id)
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
// session another request holds fails with ErrUploadBusy, an absent,
// ended or expired one with ErrUploadUnknown (absent: also
// ErrUploadNotStored). The caller checks the repository and
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
	if u.End {
		// Cannot happen while the tombstone's lease holds (as long as it
		// is visible); kept so that a tombstone is never a session.
		return Upload{}, fmt.Errorf("%w: %s (ended)", ErrUploadUnknown, id)
	}
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

// UploadDelete ends session u (a cancel, a failed close, the sweep): its
// record becomes a tombstone and its index entry goes, in one transaction.
// Unconditional: whoever holds the session, it ends.
func (s *Store) UploadDelete(ctx context.Context, u Upload) error {
	return s.items.Transact(ctx, []storage.Op{
		{Kind: storage.OpPut, Item: s.tombstone(u)},
		{Kind: storage.OpDelete, Item: storage.Item{PK: uploadIndexPK(u.ID), SK: u.ID}},
	})
}

// UploadEndUnwritten ends a session nothing was ever stored for (a DELETE
// of an id whose session was never written): it writes the tombstone
// only, if the id is still unstored. ErrUploadExists means a write stored
// the session (or ended it) meanwhile.
func (s *Store) UploadEndUnwritten(ctx context.Context, u Upload) error {
	err := s.items.ItemPut(ctx, s.tombstone(u), storage.IfNotExists)
	if errors.Is(err, storage.ErrConditionFailed) {
		return fmt.Errorf("%w: %s", ErrUploadExists, u.ID)
	}
	return err
}

// UploadsExpired calls fn for every session past its expiry. It reads the
// session index (a few small partitions), never the whole table, and drops
// index entries whose session is already gone (removed by its TTL) or
// ended (a tombstone never has one; dropping it anyway keeps the index
// true whatever wrote the tombstone).
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
				case errors.Is(err, storage.ErrNotFound), err == nil && u.End:
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
