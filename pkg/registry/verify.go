package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

// Verifier checks completed multipart direct uploads: it reads the staged
// object through the promised digest and links the blob only if it
// matches. It needs no HTTP handler, so the cleanup function (AWS) or a
// goroutine (berth serve) can run it for as long as a big blob takes.
type Verifier struct {
	meta  *meta.Store
	blobs storage.Blobs
	log   *slog.Logger
	now   func() time.Time
	lease time.Duration
}

// NewVerifier returns a Verifier over the registry's metadata and blob
// drivers. logger may be nil (discard).
func NewVerifier(items storage.Items, blobs storage.Blobs, logger *slog.Logger) *Verifier {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Verifier{meta: meta.New(items, meta.WithStoredCheck(storedCheck(blobs))), blobs: blobs, log: logger, now: time.Now, lease: 15 * time.Minute}
}

// verifyRate is the slowest read rate a verification's lease allows for.
const verifyRate = 16 << 20 // bytes per second

// Verify verifies the direct upload upload of repo and records the outcome
// in its session (verified and linked, or rejected), where the client's
// polls find it. It returns nil when there is nothing (more) to do: the
// session is gone, already decided, or being verified by someone else. An
// error means the verification could not run to the end and may be
// retried.
func (v *Verifier) Verify(ctx context.Context, repo, upload string) error {
	if !validUploadID(upload) {
		return fmt.Errorf("verify: invalid upload id %q", upload)
	}
	u, err := v.meta.UploadGet(ctx, upload)
	if errors.Is(err, meta.ErrUploadUnknown) {
		v.log.WarnContext(ctx, "verify: upload session gone", slog.String("upload", upload))
		return nil
	}
	if err != nil {
		return fmt.Errorf("verify %s: %w", upload, err)
	}
	if u.Repo != repo || u.Direct == nil || !u.Direct.Multipart {
		return fmt.Errorf("verify %s: not a multipart direct upload of %s", upload, repo)
	}
	_, err = v.verify(ctx, u)
	return err
}

// verify runs one verification of u (state DirectVerifying) and returns
// the session as it left it.
func (v *Verifier) verify(ctx context.Context, u meta.Upload) (meta.Upload, error) {
	if u.Direct.State != meta.DirectVerifying {
		return u, nil
	}
	du, ok := v.blobs.(storage.DirectUploader)
	if !ok {
		return u, errors.New("verify: the blob driver has no direct uploads")
	}
	// The lease keeps a second verifier (a restarted one, a retried
	// invoke) off while this one reads.
	lease := v.lease + time.Duration(u.Direct.Size/verifyRate)*time.Second
	u, err := v.meta.UploadLease(ctx, u, lease)
	if errors.Is(err, meta.ErrUploadBusy) {
		return v.current(ctx, u.ID)
	}
	if err != nil {
		return u, err
	}
	d, size := u.Direct.Digest, u.Direct.Size
	start := v.now()
	err = du.DirectVerify(ctx, u.ID, u.DriverState, d, size, func(r io.Reader) error {
		got, n, err := oci.Compute(d.Algorithm(), r)
		if err != nil {
			return err
		}
		if got != d || n != size {
			return fmt.Errorf("%w: computed %s over %d bytes, want %s over %d", storage.ErrDigestMismatch, got, n, d, size)
		}
		return nil
	})
	now := v.now()
	u.LeaseUntil, u.Direct.Since = 0, now.Unix()
	switch {
	case errors.Is(err, storage.ErrDigestMismatch), errors.Is(err, storage.ErrSizeMismatch):
		v.log.WarnContext(ctx, "direct upload rejected", slog.String("repo", u.Repo), slog.String("upload", u.ID),
			slog.String("digest", string(d)), slog.Any("error", err))
		u.Direct.State = meta.DirectRejected
		return v.meta.UploadSave(ctx, u)
	case err != nil:
		// Let a retry (or the client's next poll) run it again.
		if _, serr := v.meta.UploadSave(context.WithoutCancel(ctx), u); serr != nil {
			v.log.WarnContext(ctx, "verify: release lease", slog.String("upload", u.ID), slog.Any("error", serr))
		}
		return u, fmt.Errorf("verify %s: %w", u.ID, err)
	}
	u.Direct.State = meta.DirectVerified
	u, err = v.meta.UploadLinked(ctx, u, d, size)
	if err != nil {
		return u, fmt.Errorf("verify %s: link: %w", u.ID, err)
	}
	v.log.InfoContext(ctx, "direct upload verified", slog.String("repo", u.Repo), slog.String("upload", u.ID),
		slog.String("digest", string(d)), slog.Int64("size", size), slog.Float64("took_ms", float64(now.Sub(start).Microseconds())/1000))
	return u, nil
}

// current re-reads a session another verifier holds.
func (v *Verifier) current(ctx context.Context, id string) (meta.Upload, error) {
	u, err := v.meta.UploadGet(ctx, id)
	if err != nil {
		return u, fmt.Errorf("verify %s: %w", id, err)
	}
	return u, nil
}
