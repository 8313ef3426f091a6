// Package storagetest holds the conformance suites every storage driver
// runs: TestItems for storage.Items (bbolt, DynamoDB) and TestBlobs for
// storage.Blobs (filesystem, S3). The registry logic is written once
// against those seams and is only as correct as the weakest driver, so the
// suites pin down the contract the interface comments state, plus the
// behaviour the logic above relies on (full query pages, exact counters,
// all-or-nothing transactions, resumable uploads).
//
// # The factory contract
//
// Each suite takes a factory that is called many times, once per subtest
// (and sometimes more). Every call must return a store that is EMPTY and
// ISOLATED: it sees none of the items or blobs written through any other
// store the factory returned. A driver backed by a shared emulator meets this
// with a fresh table or bucket per call, or with a random key prefix that
// the driver applies to every key (and strips from every key it returns,
// including in scans). The factory registers its own cleanup with t.Cleanup
// and fails the test with t.Fatal when it cannot build the store.
//
// The suites use t.Context(), do not call t.Parallel, and assume the store's
// clock is within a few minutes of time.Now (they test expiry with times an
// hour away from now).
package storagetest

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/berth-registry/berth/pkg/oci"
)

// RandomBytes returns n pseudo-random bytes (fast; not for secrets). Each
// call returns different bytes.
func RandomBytes(t testing.TB, n int) []byte {
	t.Helper()
	var seed [32]byte
	for i := range 4 {
		v := rand.Uint64()
		for j := range 8 {
			seed[i*8+j] = byte(v >> (8 * j))
		}
	}
	b := make([]byte, n)
	if _, err := rand.NewChaCha8(seed).Read(b); err != nil {
		t.Fatalf("random bytes: %v", err)
	}
	return b
}

// RandomBlob returns n random bytes and their sha256 digest.
func RandomBlob(t testing.TB, n int) ([]byte, oci.Digest) {
	t.Helper()
	b := RandomBytes(t, n)
	return b, oci.FromBytes(oci.SHA256, b)
}

// NewUploadID returns a random upload id in the registry's alphabet
// ([A-Za-z0-9_-], 24 characters).
func NewUploadID(t testing.TB) string {
	t.Helper()
	return base64.RawURLEncoding.EncodeToString(RandomBytes(t, 18))
}

// errInjected is what FailingReader returns once its budget is spent.
var errInjected = errors.New("storagetest: injected read failure")

// FailingReader returns a reader that yields the first n bytes of b and then
// fails with an error (never io.EOF), like a client connection that drops
// part way through a request body.
func FailingReader(b []byte, n int) io.Reader {
	return io.MultiReader(bytes.NewReader(b[:n]), errReader{})
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errInjected }

// equalBytes reports a readable mismatch for large byte slices.
func equalBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	if len(got) != len(want) {
		t.Fatalf("%s: got %d bytes, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: %d bytes, first difference at offset %d", what, len(got), i)
		}
	}
}

// errIs fails the test unless errors.Is(err, target).
func errIs(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want one wrapping %q", what, err, target)
	}
}

func noErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
