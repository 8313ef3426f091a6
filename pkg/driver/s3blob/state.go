package s3blob

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
)

// uploadState is what the registry keeps for an upload between requests.
// Parts are numbered 1..len(Parts) in order.
type uploadState struct {
	ID       string
	Offset   int64  // bytes written so far
	MPU      string // S3 multipart upload id; "" until the first part
	Parts    []part
	Carry    string // carry-over object key; "" when none
	CarryLen int64
	Prev     string // the carry-over this state superseded, deleted by the next write
}

type part struct {
	size int64
	etag string
}

func (st uploadState) clone() uploadState {
	st.Parts = slices.Clone(st.Parts)
	return st
}

// The state is binary, so that an upload of thousands of parts still fits
// the metadata item: about 20 bytes a part (an MD5 ETag is stored as its 16
// raw bytes).
const stateVersion = 1

func (st uploadState) encode() []byte {
	b := []byte{'S', stateVersion}
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	str(st.ID)
	b = binary.AppendUvarint(b, uint64(st.Offset))
	str(st.MPU)
	str(st.Carry)
	b = binary.AppendUvarint(b, uint64(st.CarryLen))
	str(st.Prev)
	b = binary.AppendUvarint(b, uint64(len(st.Parts)))
	for _, p := range st.Parts {
		b = binary.AppendUvarint(b, uint64(p.size))
		if raw, ok := md5ETag(p.etag); ok {
			b = append(b, 0)
			b = append(b, raw...)
		} else {
			b = append(b, 1)
			str(p.etag)
		}
	}
	return b
}

// md5ETag returns the 16 bytes of an ETag of the form "<32 lowercase hex>".
func md5ETag(etag string) ([]byte, bool) {
	if len(etag) != 34 || etag[0] != '"' || etag[33] != '"' {
		return nil, false
	}
	raw, err := hex.DecodeString(etag[1:33])
	if err != nil || hex.EncodeToString(raw) != etag[1:33] {
		return nil, false
	}
	return raw, true
}

var errBadState = errors.New("s3 upload: malformed state")

// decodeState parses state; an empty state is a fresh upload of id.
func decodeState(id string, state []byte) (uploadState, error) {
	if len(state) == 0 {
		return uploadState{ID: id}, nil
	}
	if len(state) < 2 || state[0] != 'S' || state[1] != stateVersion {
		return uploadState{}, errBadState
	}
	b := state[2:]
	bad := false
	num := func() int64 {
		v, n := binary.Uvarint(b)
		if n <= 0 || v > 1<<62 {
			bad = true
			return 0
		}
		b = b[n:]
		return int64(v)
	}
	str := func() string {
		l := num()
		if bad || l > int64(len(b)) {
			bad = true
			return ""
		}
		s := string(b[:l])
		b = b[l:]
		return s
	}
	var st uploadState
	st.ID = str()
	st.Offset = num()
	st.MPU = str()
	st.Carry = str()
	st.CarryLen = num()
	st.Prev = str()
	n := num()
	if n > maxParts {
		bad = true
	}
	for i := int64(0); i < n && !bad; i++ {
		p := part{size: num()}
		if len(b) == 0 {
			bad = true
			break
		}
		kind := b[0]
		b = b[1:]
		switch {
		case kind == 0 && len(b) >= 16:
			p.etag = `"` + hex.EncodeToString(b[:16]) + `"`
			b = b[16:]
		case kind == 1:
			p.etag = str()
		default:
			bad = true
		}
		st.Parts = append(st.Parts, p)
	}
	if bad || len(b) != 0 {
		return uploadState{}, errBadState
	}
	if st.ID != id {
		return uploadState{}, fmt.Errorf("s3 upload %s: state belongs to upload %s: %w", id, st.ID, errBadState)
	}
	var sum int64
	for _, p := range st.Parts {
		sum += p.size
	}
	if sum+st.CarryLen != st.Offset || (st.CarryLen > 0) != (st.Carry != "") || (st.MPU == "") != (len(st.Parts) == 0) {
		return uploadState{}, fmt.Errorf("s3 upload %s: inconsistent state: %w", id, errBadState)
	}
	return st, nil
}
