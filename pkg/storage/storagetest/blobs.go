package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

const mib = 1 << 20

// TestBlobs runs the storage.Blobs conformance suite. newBlobs must return
// an empty, isolated store on every call (see the package documentation).
//
// Uploads are driven the way the registry drives them: the only thing
// carried from one call to the next is the state the previous call returned
// (and the offset the registry tracks beside it), so a driver that keeps
// anything in memory between calls fails. Besides the interface comments,
// the suite requires:
//   - BlobPut rejects a reader with more than size bytes (ErrSizeMismatch),
//     not only one with fewer, and stores nothing for a reader that fails.
//   - UploadWrite checks offset against its state (ErrInvalidOffset), and a
//     write may be replayed from an earlier state: the registry re-sends a
//     chunk with the state it saved last when saving a newer one failed, so
//     whatever a later write staged must not leak into the result.
//   - UploadCommit checks size against its state (ErrSizeMismatch) and leaves
//     the upload intact when it fails; committing an aborted upload fails
//     with storage.ErrNotFound; committing again after a success returns nil
//     or storage.ErrNotFound and leaves the blob intact.
//   - Uploads of zero bytes, and empty writes, work.
//
// Writes straddle 5 MiB so that drivers with a minimum part size (S3) carry
// bytes over between parts.
func TestBlobs(t *testing.T, newBlobs func(t *testing.T) storage.Blobs) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Blobs)
	}{
		{"PutOpen", testBlobPutOpen},
		{"PutSHA512", testBlobPutSHA512},
		{"PutEmpty", testBlobPutEmpty},
		{"PutTwice", testBlobPutTwice},
		{"PutDigestMismatch", testBlobPutDigestMismatch},
		{"PutSizeMismatch", testBlobPutSizeMismatch},
		{"PutReaderFails", testBlobPutReaderFails},
		{"NotFound", testBlobNotFound},
		{"Seek", testBlobSeek},
		{"Delete", testBlobDelete},
		{"ConcurrentPut", testBlobConcurrentPut},
		{"UploadChunks", testUploadChunks},
		{"UploadSmall", testUploadSmall},
		{"UploadEmpty", testUploadEmpty},
		{"UploadRetryFailedWrite", testUploadRetry},
		{"UploadReplayOlderState", testUploadReplay},
		{"UploadInvalidOffset", testUploadInvalidOffset},
		{"UploadCommitSizeMismatch", testUploadCommitSize},
		{"UploadVerifyFails", testUploadVerifyFails},
		{"UploadVerifyDigest", testUploadVerifyDigest},
		{"UploadCommitExisting", testUploadCommitExisting},
		{"UploadCommitTwice", testUploadCommitTwice},
		{"UploadAbort", testUploadAbort},
		{"UploadsInterleaved", testUploadsInterleaved},
		{"UploadLarge", testUploadLarge},
		{"UploadStalledWriteBeforeCommit", func(t *testing.T, s storage.Blobs) { testUploadStalledWrite(t, s, false) }},
		{"UploadStalledWriteAfterCommit", func(t *testing.T, s storage.Blobs) { testUploadStalledWrite(t, s, true) }},
		{"List", testBlobList},
		{"Objects", testObjects},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newBlobs(t)) })
	}
}

// testBlobList: a BlobLister lists every stored blob once, in digest
// order, page by page, with sizes and times; uploads in progress are not
// blobs. Drivers without the capability skip nothing: the case passes
// trivially only for them.
func testBlobList(t *testing.T, s storage.Blobs) {
	l, ok := s.(storage.BlobLister)
	if !ok {
		return
	}
	ctx := context.Background()
	want := map[oci.Digest]int64{}
	for i := range 7 {
		b := bytes.Repeat([]byte{byte(i)}, i*10)
		d := oci.FromBytes(oci.SHA256, b)
		if i == 6 {
			d = oci.FromBytes(oci.SHA512, b)
		}
		if err := s.BlobPut(ctx, d, int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		want[d] = int64(len(b))
	}
	upload(t, s, "listed-upload-in-progress", []byte("not a blob yet"))
	before := time.Now().Add(-time.Minute)
	var after oci.Digest
	got := map[oci.Digest]int64{}
	for pages := 0; ; pages++ {
		objs, more, err := l.BlobList(ctx, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) > 3 || pages > 5 {
			t.Fatalf("page of %d objects (limit 3), page %d", len(objs), pages)
		}
		for _, o := range objs {
			if o.Digest <= after {
				t.Fatalf("%s listed after %s: not in digest order", o.Digest, after)
			}
			if _, dup := got[o.Digest]; dup {
				t.Fatalf("%s listed twice", o.Digest)
			}
			if o.Modified.Before(before) || o.Modified.After(time.Now().Add(time.Minute)) {
				t.Errorf("%s modified %v", o.Digest, o.Modified)
			}
			got[o.Digest] = o.Size
			after = o.Digest
		}
		if !more {
			break
		}
	}
	if len(got) != len(want) {
		t.Fatalf("listed %d blobs, want %d: %v", len(got), len(want), got)
	}
	for d, n := range want {
		if got[d] != n {
			t.Errorf("%s: listed size %d, want %d", d, got[d], n)
		}
	}
	// Deleted blobs are not listed; listing after the last is empty.
	for d := range want {
		if err := s.BlobDelete(ctx, d); err != nil {
			t.Fatal(err)
		}
		break
	}
	if objs, _, err := l.BlobList(ctx, "", 100); err != nil || len(objs) != len(want)-1 {
		t.Fatalf("after a delete: %d listed, %v", len(objs), err)
	}
	if objs, more, err := l.BlobList(ctx, after, 100); err != nil || len(objs) != 0 || more {
		t.Fatalf("after the last: %v %v %v", objs, more, err)
	}
}

// readBlob reads a whole blob and checks its size.
func readBlob(t *testing.T, s storage.Blobs, d oci.Digest) []byte {
	t.Helper()
	rc, err := s.BlobOpen(t.Context(), d)
	noErr(t, "open "+string(d), err)
	defer rc.Close()
	b, err := io.ReadAll(rc)
	noErr(t, "read "+string(d), err)
	// The size a seek to the end reports is what the registry relies on
	// (a retried upload close) without reading the content.
	rs, err := s.BlobOpen(t.Context(), d)
	noErr(t, "reopen "+string(d), err)
	defer rs.Close()
	size, err := rs.Seek(0, io.SeekEnd)
	noErr(t, "seek to the end of "+string(d), err)
	if size != int64(len(b)) {
		t.Fatalf("seek to the end = %d, but %d bytes read", size, len(b))
	}
	return b
}

func checkBlob(t *testing.T, s storage.Blobs, d oci.Digest, want []byte) {
	t.Helper()
	equalBytes(t, "content of "+string(d), readBlob(t, s, d), want)
}

func checkNoBlob(t *testing.T, s storage.Blobs, d oci.Digest) {
	t.Helper()
	rc, err := s.BlobOpen(t.Context(), d)
	if err == nil {
		rc.Close()
	}
	errIs(t, "open absent blob", err, storage.ErrNotFound)
}

func testBlobPutOpen(t *testing.T, s storage.Blobs) {
	b, d := RandomBlob(t, mib+123)
	noErr(t, "put", s.BlobPut(t.Context(), d, int64(len(b)), bytes.NewReader(b)))
	checkBlob(t, s, d, b)
	// A reader that returns data in odd-sized pieces.
	b2, d2 := RandomBlob(t, 70000)
	noErr(t, "put", s.BlobPut(t.Context(), d2, int64(len(b2)), &trickleReader{b: b2, n: 1000}))
	checkBlob(t, s, d2, b2)
}

func testBlobPutSHA512(t *testing.T, s storage.Blobs) {
	b := RandomBytes(t, 300000)
	d := oci.FromBytes(oci.SHA512, b)
	noErr(t, "put", s.BlobPut(t.Context(), d, int64(len(b)), bytes.NewReader(b)))
	checkBlob(t, s, d, b)
	// The same bytes under sha256 are a different blob.
	d256 := oci.FromBytes(oci.SHA256, b)
	checkNoBlob(t, s, d256)
	bad := oci.FromBytes(oci.SHA512, b[1:])
	errIs(t, "sha512 mismatch", s.BlobPut(t.Context(), bad, int64(len(b)), bytes.NewReader(b)), storage.ErrDigestMismatch)
	checkNoBlob(t, s, bad)
}

func testBlobPutEmpty(t *testing.T, s storage.Blobs) {
	d := oci.FromBytes(oci.SHA256, nil)
	noErr(t, "put empty", s.BlobPut(t.Context(), d, 0, bytes.NewReader(nil)))
	checkBlob(t, s, d, nil)
	d512 := oci.FromBytes(oci.SHA512, nil)
	noErr(t, "put empty sha512", s.BlobPut(t.Context(), d512, 0, emptyBody{}))
	checkBlob(t, s, d512, nil)
}

func testBlobPutTwice(t *testing.T, s storage.Blobs) {
	b, d := RandomBlob(t, 4096)
	for i := range 3 {
		noErr(t, sprintf("put %d", i), s.BlobPut(t.Context(), d, int64(len(b)), bytes.NewReader(b)))
	}
	checkBlob(t, s, d, b)
	// A failed put of an existing digest leaves the good blob alone.
	err := s.BlobPut(t.Context(), d, int64(len(b)), bytes.NewReader(RandomBytes(t, len(b))))
	errIs(t, "put of other bytes under an existing digest", err, storage.ErrDigestMismatch)
	checkBlob(t, s, d, b)
}

func testBlobPutDigestMismatch(t *testing.T, s storage.Blobs) {
	b, _ := RandomBlob(t, 10000)
	_, other := RandomBlob(t, 10000)
	errIs(t, "put", s.BlobPut(t.Context(), other, int64(len(b)), bytes.NewReader(b)), storage.ErrDigestMismatch)
	checkNoBlob(t, s, other)
	// Off by one byte at the end.
	d := oci.FromBytes(oci.SHA256, b)
	c := bytes.Clone(b)
	c[len(c)-1]++
	errIs(t, "put", s.BlobPut(t.Context(), d, int64(len(c)), bytes.NewReader(c)), storage.ErrDigestMismatch)
	checkNoBlob(t, s, d)
}

func testBlobPutSizeMismatch(t *testing.T, s storage.Blobs) {
	b, d := RandomBlob(t, 20000)
	errIs(t, "put with short reader", s.BlobPut(t.Context(), d, int64(len(b))+1, bytes.NewReader(b)), storage.ErrSizeMismatch)
	checkNoBlob(t, s, d)
	dHead := oci.FromBytes(oci.SHA256, b[:10000])
	errIs(t, "put with long reader", s.BlobPut(t.Context(), dHead, 10000, bytes.NewReader(b)), storage.ErrSizeMismatch)
	checkNoBlob(t, s, dHead)
	errIs(t, "put with empty reader", s.BlobPut(t.Context(), d, int64(len(b)), bytes.NewReader(nil)), storage.ErrSizeMismatch)
	checkNoBlob(t, s, d)
}

func testBlobPutReaderFails(t *testing.T, s storage.Blobs) {
	for _, n := range []int{0, 1, 3 * mib} {
		b, d := RandomBlob(t, 6*mib)
		err := s.BlobPut(t.Context(), d, int64(len(b)), FailingReader(b, n))
		if err == nil {
			t.Fatalf("put from a reader failing after %d bytes succeeded", n)
		}
		checkNoBlob(t, s, d)
	}
}

func testBlobNotFound(t *testing.T, s storage.Blobs) {
	_, d := RandomBlob(t, 10)
	checkNoBlob(t, s, d)
	checkNoBlob(t, s, oci.FromBytes(oci.SHA512, []byte("absent")))
}

func testBlobSeek(t *testing.T, s storage.Blobs) {
	b, d := RandomBlob(t, 100000)
	noErr(t, "put", s.BlobPut(t.Context(), d, int64(len(b)), bytes.NewReader(b)))
	rc, err := s.BlobOpen(t.Context(), d)
	noErr(t, "open", err)
	defer rc.Close()

	seek := func(off int64, whence int, want int64) {
		t.Helper()
		pos, err := rc.Seek(off, whence)
		noErr(t, sprintf("seek(%d, %d)", off, whence), err)
		if pos != want {
			t.Fatalf("seek(%d, %d) = %d, want %d", off, whence, pos, want)
		}
	}
	read := func(n int, want []byte) {
		t.Helper()
		buf := make([]byte, n)
		got, err := io.ReadFull(rc, buf)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			t.Fatalf("read: %v", err)
		}
		equalBytes(t, "read after seek", buf[:got], want)
	}
	// What http.ServeContent does: size, rewind, then ranges.
	seek(0, io.SeekEnd, int64(len(b)))
	seek(0, io.SeekStart, 0)
	read(10, b[:10])
	seek(0, io.SeekCurrent, 10)
	seek(5000, io.SeekStart, 5000)
	read(1000, b[5000:6000])
	seek(-500, io.SeekCurrent, 5500)
	read(100, b[5500:5600])
	seek(250, io.SeekCurrent, 5850)
	read(10, b[5850:5860])
	seek(-7, io.SeekEnd, int64(len(b)-7))
	read(100, b[len(b)-7:])
	seek(0, io.SeekStart, 0)
	all, err := io.ReadAll(rc)
	noErr(t, "read all", err)
	equalBytes(t, "read all after rewind", all, b)
	// At and past the end: reads return io.EOF.
	seek(0, io.SeekEnd, int64(len(b)))
	if n, err := rc.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("read at end: %d, %v; want 0, io.EOF", n, err)
	}
	seek(10, io.SeekEnd, int64(len(b)+10))
	if n, err := rc.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("read past end: %d, %v; want 0, io.EOF", n, err)
	}
	if _, err := rc.Seek(-1, io.SeekStart); err == nil {
		t.Fatal("seek to a negative offset succeeded")
	}
	// Still usable after the failed seek.
	seek(1, io.SeekStart, 1)
	read(2, b[1:3])

	// Two readers are independent.
	rc2, err := s.BlobOpen(t.Context(), d)
	noErr(t, "open", err)
	defer rc2.Close()
	seek(90000, io.SeekStart, 90000)
	head := make([]byte, 100)
	_, err = io.ReadFull(rc2, head)
	noErr(t, "read second reader", err)
	equalBytes(t, "second reader", head, b[:100])
	read(100, b[90000:90100])
	noErr(t, "close", rc2.Close())
}

func testBlobDelete(t *testing.T, s storage.Blobs) {
	b, d := RandomBlob(t, 1000)
	keep, dk := RandomBlob(t, 1000)
	noErr(t, "put", s.BlobPut(t.Context(), d, int64(len(b)), bytes.NewReader(b)))
	noErr(t, "put", s.BlobPut(t.Context(), dk, int64(len(keep)), bytes.NewReader(keep)))
	noErr(t, "delete", s.BlobDelete(t.Context(), d))
	checkNoBlob(t, s, d)
	noErr(t, "delete again", s.BlobDelete(t.Context(), d))
	noErr(t, "delete never stored", s.BlobDelete(t.Context(), oci.FromBytes(oci.SHA512, []byte("never"))))
	checkBlob(t, s, dk, keep)
	// Stored again after a delete.
	noErr(t, "put after delete", s.BlobPut(t.Context(), d, int64(len(b)), bytes.NewReader(b)))
	checkBlob(t, s, d, b)
}

func testBlobConcurrentPut(t *testing.T, s storage.Blobs) {
	b, d := RandomBlob(t, 3*mib)
	const workers = 8
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			errs[w] = s.BlobPut(t.Context(), d, int64(len(b)), &trickleReader{b: b, n: 64 << 10})
		})
	}
	wg.Wait()
	for w, err := range errs {
		noErr(t, sprintf("concurrent put %d", w), err)
	}
	checkBlob(t, s, d, b)
}

// upload drives a whole upload: init, writes, commit. It returns the state
// after the last write.
func upload(t *testing.T, s storage.Blobs, id string, chunks ...[]byte) ([]byte, int64) {
	t.Helper()
	state, err := s.UploadInit(t.Context(), id)
	noErr(t, "upload init", err)
	return writeChunks(t, s, id, state, 0, chunks...)
}

func writeChunks(t *testing.T, s storage.Blobs, id string, state []byte, off int64, chunks ...[]byte) ([]byte, int64) {
	t.Helper()
	for i, c := range chunks {
		ns, n, err := s.UploadWrite(t.Context(), id, state, off, bytes.NewReader(c))
		noErr(t, sprintf("upload write %d (%d bytes at %d)", i, len(c), off), err)
		if n != int64(len(c)) {
			t.Fatalf("upload write %d: n = %d, want %d", i, n, len(c))
		}
		state, off = ns, off+n
	}
	return state, off
}

func testUploadChunks(t *testing.T, s storage.Blobs) {
	chunks := [][]byte{RandomBytes(t, 3*mib), RandomBytes(t, 3*mib), RandomBytes(t, 1), RandomBytes(t, 6*mib), RandomBytes(t, 5*mib), RandomBytes(t, 5)}
	all := bytes.Join(chunks, nil)
	d := oci.FromBytes(oci.SHA256, all)
	id := NewUploadID(t)
	state, off := upload(t, s, id, chunks...)
	if off != int64(len(all)) {
		t.Fatalf("offset %d, want %d", off, len(all))
	}
	noErr(t, "commit", s.UploadCommit(t.Context(), id, state, d, off, nil))
	checkBlob(t, s, d, all)
}

func testUploadSmall(t *testing.T, s storage.Blobs) {
	for _, sizes := range [][]int{{1}, {100, 200, 300}, {5*mib - 1, 1}, {5 * mib}, {5*mib + 1}, {1, 5 * mib}, {4 * mib, 0, 4 * mib}} {
		var chunks [][]byte
		for _, n := range sizes {
			chunks = append(chunks, RandomBytes(t, n))
		}
		all := bytes.Join(chunks, nil)
		d := oci.FromBytes(oci.SHA256, all)
		id := NewUploadID(t)
		state, off := upload(t, s, id, chunks...)
		noErr(t, sprintf("commit %v", sizes), s.UploadCommit(t.Context(), id, state, d, off, nil))
		checkBlob(t, s, d, all)
	}
}

func testUploadEmpty(t *testing.T, s storage.Blobs) {
	// No writes at all (POST, then PUT with an empty body).
	d := oci.FromBytes(oci.SHA256, nil)
	id := NewUploadID(t)
	state, err := s.UploadInit(t.Context(), id)
	noErr(t, "init", err)
	noErr(t, "commit empty", s.UploadCommit(t.Context(), id, state, d, 0, nil))
	checkBlob(t, s, d, nil)

	// Only empty writes.
	d512 := oci.FromBytes(oci.SHA512, nil)
	id = NewUploadID(t)
	state, off := upload(t, s, id, nil, nil)
	if off != 0 {
		t.Fatalf("offset after empty writes: %d", off)
	}
	noErr(t, "commit empty", s.UploadCommit(t.Context(), id, state, d512, 0, verifyDigest(d512, 0)))
	checkBlob(t, s, d512, nil)
}

func testUploadRetry(t *testing.T, s storage.Blobs) {
	cases := []struct {
		name   string
		before []int // sizes of writes that succeed first
		fail   int   // size of the write that fails, then is retried whole
		failAt int   // bytes the failing reader yields before its error
		after  []int
	}{
		{"first write", nil, 4 * mib, mib, []int{10}},
		{"first write, nothing read", nil, 100, 0, nil},
		{"across a part boundary", []int{3 * mib}, 6 * mib, 4 * mib, []int{1}},
		{"after a full part", []int{6 * mib}, 2 * mib, 2*mib - 1, []int{4 * mib}},
		{"small after small", []int{1000}, 1000, 500, []int{1000}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before [][]byte
			for _, n := range c.before {
				before = append(before, RandomBytes(t, n))
			}
			id := NewUploadID(t)
			state, off := upload(t, s, id, before...)
			chunk := RandomBytes(t, c.fail)
			// Fail the same write twice, the second time further in.
			for _, at := range []int{c.failAt, (c.failAt + c.fail) / 2} {
				_, _, err := s.UploadWrite(t.Context(), id, state, off, FailingReader(chunk, at))
				if err == nil {
					t.Fatalf("write from a reader failing after %d bytes succeeded", at)
				}
			}
			state, off = writeChunks(t, s, id, state, off, chunk)
			var after [][]byte
			for _, n := range c.after {
				after = append(after, RandomBytes(t, n))
			}
			state, off = writeChunks(t, s, id, state, off, after...)
			all := bytes.Join(append(append(before, chunk), after...), nil)
			d := oci.FromBytes(oci.SHA256, all)
			noErr(t, "commit", s.UploadCommit(t.Context(), id, state, d, off, nil))
			checkBlob(t, s, d, all)
		})
	}
}

func testUploadReplay(t *testing.T, s storage.Blobs) {
	for _, sizes := range [][3]int{
		{4 * mib, 3 * mib, 2 * mib}, // the lost write completed a part; the replay does not
		{4 * mib, 2 * mib, 3 * mib},
		{6 * mib, 6 * mib, 1},
		{100, 6 * mib, 200},
	} {
		a, b, c := RandomBytes(t, sizes[0]), RandomBytes(t, sizes[1]), RandomBytes(t, sizes[2])
		id := NewUploadID(t)
		sa, off := upload(t, s, id, a)
		_, _ = writeChunks(t, s, id, sa, off, b) // its state is "lost"
		sc, end := writeChunks(t, s, id, sa, off, c)
		tail := RandomBytes(t, 1234)
		sc, end = writeChunks(t, s, id, sc, end, tail)
		all := bytes.Join([][]byte{a, c, tail}, nil)
		d := oci.FromBytes(oci.SHA256, all)
		noErr(t, sprintf("commit %v", sizes), s.UploadCommit(t.Context(), id, sc, d, end, nil))
		checkBlob(t, s, d, all)
	}
}

func testUploadInvalidOffset(t *testing.T, s storage.Blobs) {
	a := RandomBytes(t, 1000)
	id := NewUploadID(t)
	state, off := upload(t, s, id, a)
	for _, bad := range []int64{0, off - 1, off + 1, off + 5*mib} {
		_, _, err := s.UploadWrite(t.Context(), id, state, bad, bytes.NewReader([]byte("xyz")))
		errIs(t, sprintf("write at %d with state at %d", bad, off), err, storage.ErrInvalidOffset)
	}
	init, err := s.UploadInit(t.Context(), NewUploadID(t))
	noErr(t, "init", err)
	_, _, err = s.UploadWrite(t.Context(), id, init, off, bytes.NewReader([]byte("xyz")))
	if err == nil {
		t.Fatal("write with another upload's initial state at a non-zero offset succeeded")
	}
	// The upload is intact.
	b := RandomBytes(t, 2000)
	state, off = writeChunks(t, s, id, state, off, b)
	all := append(bytes.Clone(a), b...)
	d := oci.FromBytes(oci.SHA256, all)
	noErr(t, "commit", s.UploadCommit(t.Context(), id, state, d, off, nil))
	checkBlob(t, s, d, all)
}

func testUploadCommitSize(t *testing.T, s storage.Blobs) {
	a := RandomBytes(t, 6*mib+3)
	d := oci.FromBytes(oci.SHA256, a)
	id := NewUploadID(t)
	state, off := upload(t, s, id, a)
	for _, bad := range []int64{off - 1, off + 1, 0} {
		err := s.UploadCommit(t.Context(), id, state, d, bad, nil)
		errIs(t, sprintf("commit %d bytes as %d", off, bad), err, storage.ErrSizeMismatch)
		checkNoBlob(t, s, d)
	}
	noErr(t, "commit", s.UploadCommit(t.Context(), id, state, d, off, nil))
	checkBlob(t, s, d, a)
}

func testUploadVerifyFails(t *testing.T, s storage.Blobs) {
	chunks := [][]byte{RandomBytes(t, 3*mib), RandomBytes(t, 3*mib)}
	all := bytes.Join(chunks, nil)
	d := oci.FromBytes(oci.SHA512, all)
	id := NewUploadID(t)
	state, off := upload(t, s, id, chunks...)
	errVerify := errors.New("verify says no")
	var seen []byte
	err := s.UploadCommit(t.Context(), id, state, d, off, func(r io.Reader) error {
		var err error
		seen, err = io.ReadAll(r)
		if err != nil {
			return err
		}
		return errVerify
	})
	errIs(t, "commit with failing verify", err, errVerify)
	equalBytes(t, "bytes given to verify", seen, all)
	checkNoBlob(t, s, d)
	noErr(t, "abort", s.UploadAbort(t.Context(), id, state))
	checkNoBlob(t, s, d)

	// A verify that gives up part way.
	id = NewUploadID(t)
	state, off = upload(t, s, id, chunks...)
	err = s.UploadCommit(t.Context(), id, state, d, off, func(r io.Reader) error {
		_, _ = io.ReadFull(r, make([]byte, 100))
		return storage.ErrDigestMismatch
	})
	errIs(t, "commit with verify failing early", err, storage.ErrDigestMismatch)
	checkNoBlob(t, s, d)
	noErr(t, "abort", s.UploadAbort(t.Context(), id, state))
}

// verifyDigest is the verify function the registry passes for non-sha256
// digests.
func verifyDigest(d oci.Digest, size int64) func(io.Reader) error {
	return func(r io.Reader) error {
		got, n, err := oci.Compute(d.Algorithm(), r)
		if err != nil {
			return err
		}
		if got != d || n != size {
			return fmt.Errorf("%w: computed %s over %d bytes", storage.ErrDigestMismatch, got, n)
		}
		return nil
	}
}

func testUploadVerifyDigest(t *testing.T, s storage.Blobs) {
	chunks := [][]byte{RandomBytes(t, 2*mib), RandomBytes(t, 4*mib), RandomBytes(t, 77)}
	all := bytes.Join(chunks, nil)
	d := oci.FromBytes(oci.SHA512, all)
	id := NewUploadID(t)
	state, off := upload(t, s, id, chunks...)
	noErr(t, "commit", s.UploadCommit(t.Context(), id, state, d, off, verifyDigest(d, off)))
	checkBlob(t, s, d, all)

	// The same verify rejects content that does not match.
	wrong := oci.FromBytes(oci.SHA512, all[1:])
	id = NewUploadID(t)
	state, off = upload(t, s, id, chunks...)
	err := s.UploadCommit(t.Context(), id, state, wrong, off, verifyDigest(wrong, off))
	errIs(t, "commit with mismatching digest", err, storage.ErrDigestMismatch)
	checkNoBlob(t, s, wrong)
	noErr(t, "abort", s.UploadAbort(t.Context(), id, state))
}

func testUploadCommitExisting(t *testing.T, s storage.Blobs) {
	b, d := RandomBlob(t, 5*mib+10)
	noErr(t, "put", s.BlobPut(t.Context(), d, int64(len(b)), bytes.NewReader(b)))
	id := NewUploadID(t)
	state, off := upload(t, s, id, b[:mib], b[mib:])
	noErr(t, "commit over an existing blob", s.UploadCommit(t.Context(), id, state, d, off, nil))
	checkBlob(t, s, d, b)
	// And with verify.
	id = NewUploadID(t)
	state, off = upload(t, s, id, b)
	noErr(t, "commit over an existing blob with verify", s.UploadCommit(t.Context(), id, state, d, off, verifyDigest(d, off)))
	checkBlob(t, s, d, b)
}

func testUploadCommitTwice(t *testing.T, s storage.Blobs) {
	a := RandomBytes(t, 5*mib+5)
	d := oci.FromBytes(oci.SHA256, a)
	id := NewUploadID(t)
	state, off := upload(t, s, id, a)
	noErr(t, "commit", s.UploadCommit(t.Context(), id, state, d, off, nil))
	err := s.UploadCommit(t.Context(), id, state, d, off, nil)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("second commit: %v, want nil or storage.ErrNotFound", err)
	}
	checkBlob(t, s, d, a)
	noErr(t, "abort after commit", s.UploadAbort(t.Context(), id, state))
	checkBlob(t, s, d, a)
}

func testUploadAbort(t *testing.T, s storage.Blobs) {
	for _, size := range []int{1000, 6 * mib} {
		a := RandomBytes(t, size)
		d := oci.FromBytes(oci.SHA256, a)
		id := NewUploadID(t)
		state, off := upload(t, s, id, a)
		noErr(t, "abort", s.UploadAbort(t.Context(), id, state))
		noErr(t, "abort again", s.UploadAbort(t.Context(), id, state))
		err := s.UploadCommit(t.Context(), id, state, d, off, nil)
		errIs(t, "commit after abort", err, storage.ErrNotFound)
		checkNoBlob(t, s, d)
	}
	// Aborting right after init, and aborting an upload never seen.
	id := NewUploadID(t)
	state, err := s.UploadInit(t.Context(), id)
	noErr(t, "init", err)
	noErr(t, "abort fresh", s.UploadAbort(t.Context(), id, state))
	noErr(t, "abort unknown", s.UploadAbort(t.Context(), NewUploadID(t), nil))
}

func testUploadsInterleaved(t *testing.T, s storage.Blobs) {
	const n = 3
	ids := make([]string, n)
	states := make([][]byte, n)
	offs := make([]int64, n)
	parts := make([][][]byte, n)
	for i := range n {
		ids[i] = NewUploadID(t)
		var err error
		states[i], err = s.UploadInit(t.Context(), ids[i])
		noErr(t, "init", err)
	}
	for round := range 3 {
		for i := range n {
			c := RandomBytes(t, (i+1)*mib+round*mib+i)
			parts[i] = append(parts[i], c)
			states[i], offs[i] = writeChunks(t, s, ids[i], states[i], offs[i], c)
		}
	}
	for i := range n {
		all := bytes.Join(parts[i], nil)
		d := oci.FromBytes(oci.SHA256, all)
		noErr(t, "commit", s.UploadCommit(t.Context(), ids[i], states[i], d, offs[i], nil))
		checkBlob(t, s, d, all)
	}
}

func testUploadLarge(t *testing.T, s storage.Blobs) {
	const total, chunk = 64 * mib, 4 * mib
	h := sha256.New()
	id := NewUploadID(t)
	state, err := s.UploadInit(t.Context(), id)
	noErr(t, "init", err)
	var off int64
	for off < total {
		buf := RandomBytes(t, chunk)
		h.Write(buf)
		state, off = writeChunks(t, s, id, state, off, buf)
	}
	d := oci.DigestOf(oci.SHA256, h)
	noErr(t, "commit", s.UploadCommit(t.Context(), id, state, d, off, nil))
	rc, err := s.BlobOpen(t.Context(), d)
	noErr(t, "open", err)
	defer rc.Close()
	got, n, err := oci.Compute(oci.SHA256, rc)
	noErr(t, "read back", err)
	if got != d || n != total {
		t.Fatalf("read back %d bytes digesting to %s, want %d and %s", n, got, total, d)
	}
}

// testUploadStalledWrite: a write whose request stalled past its lease,
// while another write of the same offset was saved and (afterCommit) the
// upload committed, finishes late. Its bytes must never reach the blob: the
// registry verified the blob from its running hash over the saved write, not
// from the stored object. On the filesystem the late bytes once landed in
// the file commit renamed into place; on S3 they replaced the saved write's
// carry-over object, named by offset alone (issue 11, point 1).
func testUploadStalledWrite(t *testing.T, s storage.Blobs, afterCommit bool) {
	ctx := t.Context()
	st0, err := s.UploadInit(ctx, "stall")
	if err != nil {
		t.Fatal(err)
	}
	late := NewStallReader(bytes.Repeat([]byte{'Z'}, 50), bytes.Repeat([]byte{'Z'}, 50))
	stalled := make(chan error, 1)
	go func() {
		_, _, err := s.UploadWrite(ctx, "stall", st0, 0, late)
		stalled <- err
	}()
	<-late.Stalled

	content := bytes.Repeat([]byte("the bytes the session saved "), 4)
	st, n, err := s.UploadWrite(ctx, "stall", st0, 0, bytes.NewReader(content))
	if err != nil || n != int64(len(content)) {
		t.Fatalf("write: %d, %v", n, err)
	}
	d := oci.FromBytes(oci.SHA256, content)
	finishLate := func() {
		late.Release()
		if err := <-stalled; err != nil {
			t.Logf("stalled write: %v", err) // failing is fine; changing the blob is not
		}
	}
	if !afterCommit {
		finishLate()
	}
	if err := s.UploadCommit(ctx, "stall", st, d, n, nil); err != nil {
		t.Fatal(err)
	}
	if afterCommit {
		finishLate()
	}
	checkBlob(t, s, d, content)
}

// StallReader is a request body that stalls: it hands out first, blocks
// until Release, then hands out rest. Stalled is closed once it blocks.
// Tests of requests that outlive their lease use it (here and in
// pkg/registry).
type StallReader struct {
	first, rest []byte
	Stalled     chan struct{}
	release     chan struct{}
	waited      bool
}

// NewStallReader returns a StallReader of first then rest.
func NewStallReader(first, rest []byte) *StallReader {
	return &StallReader{first: first, rest: rest, Stalled: make(chan struct{}), release: make(chan struct{})}
}

// Release lets a stalled Read go on.
func (b *StallReader) Release() { close(b.release) }

func (b *StallReader) Read(p []byte) (int, error) {
	if len(b.first) > 0 {
		n := copy(p, b.first)
		b.first = b.first[n:]
		return n, nil
	}
	if !b.waited {
		b.waited = true
		close(b.Stalled)
		<-b.release
	}
	if len(b.rest) == 0 {
		return 0, io.EOF
	}
	n := copy(p, b.rest)
	b.rest = b.rest[n:]
	return n, nil
}

// trickleReader returns at most n bytes per Read.
type trickleReader struct {
	b []byte
	n int
}

func (r *trickleReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), r.n)], r.b)
	r.b = r.b[k:]
	return k, nil
}

// emptyBody is an empty body that is not a *bytes.Reader (no Len method).
type emptyBody struct{}

func (emptyBody) Read([]byte) (int, error) { return 0, io.EOF }
