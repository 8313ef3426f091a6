package storagetest

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/berth-registry/berth/pkg/storage"
)

// Direct is a blob driver with the optional capabilities of the edge path
// and direct uploads.
type Direct interface {
	storage.Blobs
	storage.BlobInspector
	storage.DirectUploader
}

// TestDirect runs the conformance cases of BlobInspector and
// DirectUploader: presigned requests are sent with a plain HTTP client, as
// berth push sends them. The backend must enforce S3's rules (checksums,
// the 5 MiB part minimum) for the refusals to be meaningful.
func TestDirect(t *testing.T, newBlobs func(t *testing.T) Direct) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Direct)
	}{
		{"Inspect", testInspect},
		{"DirectPut", testDirectPut},
		{"DirectMultipart", testDirectMultipart},
		{"DirectMultipartRejected", testDirectMultipartRejected},
		{"DirectCompleteInvalid", testDirectCompleteInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newBlobs(t)) })
	}
}

func send(t *testing.T, p storage.DirectPart, b []byte) *http.Response {
	t.Helper()
	res, err := trySend(t, p, b)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// trySend is send that returns the transport's error.
func trySend(t *testing.T, p storage.DirectPart, b []byte) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), p.Method, p.URL, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range p.Headers {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res, nil
}

func testInspect(t *testing.T, s Direct) {
	b, d := RandomBlob(t, 1000)
	if _, err := s.BlobInspect(t.Context(), d); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("inspect absent: %v", err)
	}
	if err := s.BlobPut(t.Context(), d, int64(len(b)), bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	info, err := s.BlobInspect(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	// The registry's own puts carry the checksum, but name no session.
	if info.Size != 1000 || !info.ChecksumMatches || info.Upload != "" {
		t.Fatalf("inspect %+v", info)
	}
}

func testDirectPut(t *testing.T, s Direct) {
	b, d := RandomBlob(t, 2<<20)
	id := NewUploadID(t)
	p, err := s.DirectPut(t.Context(), id, d, int64(len(b)), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(b)
	bad[0] ^= 1
	if res := send(t, p, bad); res.StatusCode < 400 {
		t.Fatalf("other bytes under the signed checksum: %d", res.StatusCode)
	}
	if _, err := s.BlobInspect(t.Context(), d); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("inspect after the refused PUT: %v", err)
	}
	if res := send(t, p, b); res.StatusCode != 200 {
		t.Fatalf("direct PUT: %d", res.StatusCode)
	}
	info, err := s.BlobInspect(t.Context(), d)
	if err != nil || info.Size != int64(len(b)) || !info.ChecksumMatches || info.Upload != id {
		t.Fatalf("inspect %+v, %v", info, err)
	}
	checkBlob(t, s, d, b)
	// Expired URLs are refused. A URL is signed for at least a second,
	// so this one expires during the sleep. The server may refuse it
	// before reading the body and close the connection, which the client
	// can see as a reset while it still sends (a loaded CI run did, with
	// a 2 MiB body): a small blob of its own keeps that unlikely, and
	// storage proves the refusal whichever way it reached the client.
	small, sd := RandomBlob(t, 1000)
	p, err = s.DirectPut(t.Context(), id, sd, int64(len(small)), time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if res, err := trySend(t, p, small); err == nil && res.StatusCode < 400 {
		t.Fatalf("expired URL accepted: %d", res.StatusCode)
	}
	if _, err := s.BlobInspect(t.Context(), sd); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("inspect after the expired URL: %v", err)
	}
}

// multipart uploads b through presigned parts (part 2 tampered when asked)
// and completes it.
func multipart(t *testing.T, s Direct, id string, b []byte, tamper bool) []byte {
	t.Helper()
	state, parts, err := s.DirectMultipart(t.Context(), id, int64(len(b)), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) < 2 {
		t.Fatalf("%d bytes in %d parts", len(b), len(parts))
	}
	var done []storage.CompletedPart
	for _, p := range parts {
		chunk := b[p.Offset : p.Offset+p.Size]
		if tamper && p.Number == 2 {
			chunk = bytes.Clone(chunk)
			chunk[1] ^= 1
		}
		res := send(t, p, chunk)
		if res.StatusCode != 200 {
			t.Fatalf("part %d: %d", p.Number, res.StatusCode)
		}
		done = append(done, storage.CompletedPart{Number: p.Number, ETag: res.Header.Get("ETag")})
	}
	if err := s.DirectComplete(t.Context(), id, state, int64(len(b)), done); err != nil {
		t.Fatal(err)
	}
	// A repeated completion (a retried request) succeeds.
	if err := s.DirectComplete(t.Context(), id, state, int64(len(b)), done); err != nil {
		t.Fatalf("second completion: %v", err)
	}
	return state
}

func testDirectMultipart(t *testing.T, s Direct) {
	b, d := RandomBlob(t, 11<<20)
	id := NewUploadID(t)
	state := multipart(t, s, id, b, false)
	checkNoBlob(t, s, d)
	if err := s.DirectVerify(t.Context(), id, state, d, int64(len(b)), verifyDigest(d, int64(len(b)))); err != nil {
		t.Fatal(err)
	}
	checkBlob(t, s, d, b)
	// A retried verification after the copy succeeds; abort is harmless.
	if err := s.DirectVerify(t.Context(), id, state, d, int64(len(b)), verifyDigest(d, int64(len(b)))); err != nil {
		t.Fatalf("retried verify: %v", err)
	}
	if err := s.UploadAbort(t.Context(), id, state); err != nil {
		t.Fatal(err)
	}
	// The multipart object's checksum is no digest: it is never claimable.
	if info, err := s.BlobInspect(t.Context(), d); err != nil || info.Upload != "" {
		t.Fatalf("inspect %+v, %v", info, err)
	}
}

func testDirectMultipartRejected(t *testing.T, s Direct) {
	b, d := RandomBlob(t, 11<<20)
	id := NewUploadID(t)
	state := multipart(t, s, id, b, true)
	err := s.DirectVerify(t.Context(), id, state, d, int64(len(b)), verifyDigest(d, int64(len(b))))
	if !errors.Is(err, storage.ErrDigestMismatch) {
		t.Fatalf("verify of tampered content: %v", err)
	}
	checkNoBlob(t, s, d)
	if err := s.UploadAbort(t.Context(), id, state); err != nil {
		t.Fatal(err)
	}
}

func testDirectCompleteInvalid(t *testing.T, s Direct) {
	b, _ := RandomBlob(t, 11<<20)
	id := NewUploadID(t)
	state, parts, err := s.DirectMultipart(t.Context(), id, int64(len(b)), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	res := send(t, parts[0], b[:parts[0].Size])
	err = s.DirectComplete(t.Context(), id, state, int64(len(b)), []storage.CompletedPart{
		{Number: 1, ETag: res.Header.Get("ETag")}, {Number: 2, ETag: `"00000000000000000000000000000000"`},
	})
	if !errors.Is(err, storage.ErrPartsInvalid) {
		t.Fatalf("complete with an unknown part: %v", err)
	}
	if err := s.UploadAbort(t.Context(), id, state); err != nil {
		t.Fatal(err)
	}
	if err := s.UploadAbort(t.Context(), id, state); err != nil {
		t.Fatalf("second abort: %v", err)
	}
}
