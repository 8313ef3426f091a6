package registry

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"time"
)

// Upload ids describe themselves, so that an upload POST writes nothing
// (issue 10): the session is stored by its first write (createLeased in
// upload.go), and until then the id alone tells a request which session it
// stands for. An id is the unpadded base64url encoding of
//
//	15 random bytes ‖ 5-byte big-endian unix seconds (minted) ‖
//	the first 8 bytes of sha256(random ‖ minted ‖ repository)
//
// 28 bytes, 38 characters. The first bit of the random part says whether
// the session was stored when the id was minted (the edge path, direct
// uploads, a monolithic POST of unknown length): such an id never stands
// for a session not stored, so a request naming it goes straight to the
// stored one instead of first trying to store it (acquire). The other 119
// random bits are what makes an id unguessable, more than a version 4
// UUID's 122 bits need for it. The check is no secret MAC, and needs none:
//
//   - Anyone may mint an id for a repository, but minting one is what a
//     POST does for anyone allowed to push there (the auth middleware
//     checks the path's repository, not the id), so it grants nothing.
//   - What must not be forgeable is another pusher's session, and that is
//     the random part: an id minted afresh collides with a live one with
//     negligible probability, whoever computed its check.
//   - The check binds the id to its repository (an id of repository A is
//     unknown in repository B, as a stored session of A is) and turns
//     typos and ids of other registries into BLOB_UPLOAD_UNKNOWN instead
//     of sessions.
//
// The time bounds how long an id can stand for a session nothing was
// stored for: UploadTTL after it was minted. An id dated more than
// lazyIDFutureSkew ahead of this clock is refused, so a forged date cannot
// stretch that window. A session that ended before the window closed
// leaves a tombstone (meta.Upload.End) that outlives the window, so a
// replayed id never starts over (docs/architecture.md, "Upload sessions").
const (
	lazyIDRandom = 15
	lazyIDTime   = 5
	lazyIDCheck  = 8
	lazyIDBytes  = lazyIDRandom + lazyIDTime + lazyIDCheck
	// lazyIDStored is the bit of the first byte that marks an id whose
	// session was stored when it was minted.
	lazyIDStored = 0x80
	// lazyIDFutureSkew is how far ahead of this instance's clock an id
	// may be dated: the clocks of the instance that minted it and of this
	// one may differ a little, never by minutes.
	lazyIDFutureSkew = 5 * time.Minute
)

// newUploadID mints the id of a new session of repo at now; stored says
// the caller stores the session before it hands the id out.
func newUploadID(repo string, now time.Time, stored bool) string {
	var b [lazyIDBytes]byte
	_, _ = rand.Read(b[:lazyIDRandom]) // crypto/rand never fails on supported platforms
	b[0] &^= lazyIDStored
	if stored {
		b[0] |= lazyIDStored
	}
	putUint40(b[lazyIDRandom:lazyIDRandom+lazyIDTime], uint64(now.Unix()))
	sum := lazyIDSum(b[:lazyIDRandom+lazyIDTime], repo)
	copy(b[lazyIDRandom+lazyIDTime:], sum[:lazyIDCheck])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// parseUploadID returns when id was minted and whether its session was
// stored then, if it is an id minted for repo. Ids of other forms (those
// of Berth before issue 10 among them) are not refused by this: they may
// still name stored sessions.
func parseUploadID(id, repo string) (minted time.Time, stored, ok bool) {
	if base64.RawURLEncoding.DecodedLen(len(id)) != lazyIDBytes {
		return time.Time{}, false, false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(id)
	if err != nil || len(b) != lazyIDBytes {
		return time.Time{}, false, false
	}
	sum := lazyIDSum(b[:lazyIDRandom+lazyIDTime], repo)
	// Constant time out of habit: nothing here is secret.
	if subtle.ConstantTimeCompare(sum[:lazyIDCheck], b[lazyIDRandom+lazyIDTime:]) != 1 {
		return time.Time{}, false, false
	}
	return time.Unix(int64(uint40(b[lazyIDRandom:lazyIDRandom+lazyIDTime])), 0), b[0]&lazyIDStored != 0, true
}

// lazyIDSum is sha256(head ‖ repo); head (random ‖ time) has a fixed
// length, so the concatenation is unambiguous.
func lazyIDSum(head []byte, repo string) [sha256.Size]byte {
	h := sha256.New()
	h.Write(head)
	h.Write([]byte(repo))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

func putUint40(b []byte, v uint64) {
	var full [8]byte
	binary.BigEndian.PutUint64(full[:], v)
	copy(b, full[3:])
}

func uint40(b []byte) uint64 {
	var full [8]byte
	copy(full[3:], b)
	return binary.BigEndian.Uint64(full[:])
}
