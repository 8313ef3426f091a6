package s3blob

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

// partSize is the size of the part that starts at offset start: 5 MiB for
// the first 5 GB, then a thousandth of the offset (rounded up to a MiB),
// so 10,000 parts reach S3's 5 TiB object limit.
func partSize(start int64) int64 {
	p := (start/1000 + mib - 1) / mib * mib
	return min(max(p, minPartSize), maxPartSize)
}

// UploadInit returns the state of a new upload. It touches nothing: the
// multipart upload is created when the first part is complete.
func (s *Store) UploadInit(_ context.Context, id string) ([]byte, error) {
	return uploadState{ID: id}.encode(), nil
}

// UploadWrite appends r to the upload. Bytes from the carry-over object
// and r are cut into parts; full parts go to UploadPart, the remainder to a
// new carry-over object named after this write's offset. Nothing the old
// state refers to is changed, so a failed or lost write can be redone from
// it: a redo re-uploads the same part numbers and rewrites the same carry
// key. The carry this write supersedes is deleted by the next write, whose
// state proves this one was saved.
func (s *Store) UploadWrite(ctx context.Context, id string, state []byte, offset int64, r io.Reader) ([]byte, int64, error) {
	st, err := decodeState(id, state)
	if err != nil {
		return nil, 0, err
	}
	if offset != st.Offset {
		return nil, 0, fmt.Errorf("s3 upload %s: write at %d, upload holds %d bytes: %w", id, offset, st.Offset, storage.ErrInvalidOffset)
	}
	start := st.Offset - st.CarryLen
	size := partSize(start)
	buf := make([]byte, size)
	n, err := readFull(r, buf[st.CarryLen:])
	if err != nil {
		return nil, 0, fmt.Errorf("s3 upload %s: reading chunk: %w", id, err)
	}
	if n == 0 {
		return state, 0, nil
	}
	if st.CarryLen > 0 {
		if err := s.readCarry(ctx, st, buf[:st.CarryLen]); err != nil {
			return nil, 0, err
		}
	}
	next := st.clone()
	next.Prev, next.Carry, next.CarryLen = st.Carry, "", 0
	created := false
	fail := func(err error) ([]byte, int64, error) {
		if created {
			// This write's multipart upload is in no saved state.
			s.abortMPU(ctx, stagingKey(id), next.MPU)
		}
		return nil, 0, err
	}
	total, filled := n, st.CarryLen+n
	for filled == size {
		if next.MPU == "" {
			if next.MPU, err = s.createMPU(ctx, stagingKey(id)); err != nil {
				return fail(err)
			}
			created = true
		}
		etag, err := s.uploadPart(ctx, id, next.MPU, int32(len(next.Parts)+1), buf[:size])
		if err != nil {
			return fail(err)
		}
		next.Parts = append(next.Parts, part{size: size, etag: etag})
		start += size
		if size = partSize(start); int64(len(buf)) < size {
			buf = make([]byte, size)
		}
		m, err := readFull(r, buf[:size])
		if err != nil {
			return fail(fmt.Errorf("s3 upload %s: reading chunk: %w", id, err))
		}
		total, filled = total+m, m
	}
	// The carry key is this write's own (a random suffix): a request that
	// stalled past its lease and writes the same offset later must not
	// replace the carry of the write that was saved, since the carry
	// becomes the blob's last bytes and the registry checked the digest
	// from its running hash, not from the object (issue 11, point 1).
	key := carryKey(id, st.Offset) + "-" + writeNonce()
	if filled > 0 {
		if err := s.putBytes(ctx, key, buf[:filled]); err != nil {
			return fail(err)
		}
		next.Carry, next.CarryLen = key, filled
	}
	// When the chunk ended on a part boundary no carry is written, and none
	// is deleted either: a DeleteObject here would almost always name a key
	// nobody wrote. The rare carry a lost earlier attempt of this write left
	// is in no saved state, and the bucket's lifecycle rule for uploads/
	// removes it.
	next.Offset = st.Offset + total
	if st.Prev != "" {
		_ = s.del(ctx, st.Prev) // best effort: a leftover is removed by the bucket's lifecycle rule
	}
	return next.encode(), total, nil
}

// readFull reads until p is full or r ends; the end of r is not an error.
// writeNonce names one write's objects apart from any other write's.
func writeNonce() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
	return hex.EncodeToString(b[:])
}

func readFull(r io.Reader, p []byte) (int64, error) {
	n, err := io.ReadFull(r, p)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = nil
	}
	return int64(n), err
}

func (s *Store) readCarry(ctx context.Context, st uploadState, p []byte) error {
	ctx2, cancel := s.deadline(ctx, int64(len(p)))
	defer cancel()
	out, err := s.client.GetObject(ctx2, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(st.Carry)}, s.callOpts)
	if err != nil {
		return mapErr(ctx, "get carry-over "+st.Carry, err)
	}
	defer out.Body.Close()
	if _, err := io.ReadFull(out.Body, p); err != nil {
		return mapErr(ctx, "read carry-over "+st.Carry, err)
	}
	return nil
}

func (s *Store) putBytes(ctx context.Context, key string, b []byte) error {
	ctx2, cancel := s.deadline(ctx, int64(len(b)))
	defer cancel()
	sum := sha256.Sum256(b)
	_, err := s.client.PutObject(ctx2, &s3.PutObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key), Body: bytes.NewReader(b),
		ContentLength: aws.Int64(int64(len(b))), ChecksumSHA256: aws.String(base64.StdEncoding.EncodeToString(sum[:])),
	}, s.callOpts)
	return mapErr(ctx, "put "+key, err)
}

func (s *Store) uploadPart(ctx context.Context, id, mpu string, n int32, b []byte) (string, error) {
	ctx2, cancel := s.deadline(ctx, int64(len(b)))
	defer cancel()
	sum := sha256.Sum256(b)
	out, err := s.client.UploadPart(ctx2, &s3.UploadPartInput{
		Bucket: aws.String(s.bucket), Key: aws.String(stagingKey(id)), UploadId: aws.String(mpu),
		PartNumber: aws.Int32(n), Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b))),
		ChecksumSHA256: aws.String(base64.StdEncoding.EncodeToString(sum[:])),
	}, s.callOpts)
	if err != nil {
		return "", mapErr(ctx, fmt.Sprintf("upload part %d of %s", n, id), err)
	}
	return aws.ToString(out.ETag), nil
}

func (s *Store) createMPU(ctx context.Context, key string) (string, error) {
	ctx2, cancel := s.deadline(ctx, 0)
	defer cancel()
	out, err := s.client.CreateMultipartUpload(ctx2, &s3.CreateMultipartUploadInput{Bucket: aws.String(s.bucket), Key: aws.String(key)}, s.callOpts)
	if err != nil {
		return "", mapErr(ctx, "create multipart upload "+key, err)
	}
	return aws.ToString(out.UploadId), nil
}

// abortMPU aborts a multipart upload, even when ctx is already cancelled.
func (s *Store) abortMPU(ctx context.Context, key, mpu string) {
	ctx2, cancel := s.deadline(context.WithoutCancel(ctx), 0)
	defer cancel()
	_, _ = s.client.AbortMultipartUpload(ctx2, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key), UploadId: aws.String(mpu),
	}, s.callOpts)
}

func (s *Store) completeMPU(ctx context.Context, key, mpu string, parts []part) error {
	cp := make([]types.CompletedPart, len(parts))
	for i, p := range parts {
		cp[i] = types.CompletedPart{PartNumber: aws.Int32(int32(i + 1)), ETag: aws.String(p.etag)}
	}
	// S3 may take a while to assemble many parts.
	ctx2, cancel := s.deadline(ctx, int64(len(parts))*mib)
	defer cancel()
	_, err := s.client.CompleteMultipartUpload(ctx2, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key), UploadId: aws.String(mpu),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: cp},
	}, s.callOpts)
	return mapErr(ctx, "complete multipart upload "+key, err)
}

// UploadCommit assembles the upload and makes it blob d: the carry-over
// becomes the last part (server-side UploadPartCopy), the multipart upload
// completes into the staging key, verify reads it if given, and a
// server-side copy puts it at the blob's key. A commit that failed after
// completing the multipart upload can be retried: it resumes from the
// staging object.
func (s *Store) UploadCommit(ctx context.Context, id string, state []byte, d oci.Digest, size int64, verify func(io.Reader) error) error {
	st, err := decodeState(id, state)
	if err != nil {
		return err
	}
	if err := d.Validate(); err != nil {
		return fmt.Errorf("s3 commit %s: %w", id, err)
	}
	if size != st.Offset {
		return fmt.Errorf("s3 commit %s: %d bytes declared, %d uploaded: %w", id, size, st.Offset, storage.ErrSizeMismatch)
	}
	final := BlobKey(d)
	var src string
	switch {
	case st.MPU != "":
		src = stagingKey(id)
		if err := s.assemble(ctx, st); err != nil {
			return err
		}
	case st.CarryLen > 0:
		src = st.Carry
	default:
		// Zero bytes.
		if verify != nil {
			if err := verify(bytes.NewReader(nil)); err != nil {
				return err
			}
		}
		if err := s.putBytes(ctx, final, nil); err != nil {
			return err
		}
		s.cleanup(ctx, st)
		return nil
	}
	if verify != nil {
		rd, err := s.open(ctx, src)
		if err != nil {
			return err
		}
		err = verify(rd)
		rd.Close()
		if err != nil {
			return err
		}
	}
	if err := s.promote(ctx, src, final, d, size); err != nil {
		return err
	}
	s.cleanup(ctx, st)
	return nil
}

// errExists: a conditional copy found its destination taken.
var errExists = errors.New("destination exists")

// promote puts the verified staged object src at final, unless final
// already holds this blob: a repeated push of a stored image then costs no
// server-side copy. Up to 5 GiB the copy is conditional (If-None-Match),
// so a new blob pays nothing extra; when final exists, it is kept only if
// S3 proves it is this content (its full-object sha256 checksum equals the
// digest, and the size matches). An object that cannot prove it (sha512,
// or written without a checksum) is overwritten with the verified bytes,
// as before. Multipart copies (over 5 GiB) look first: one HeadObject is
// nothing next to hundreds of part copies.
func (s *Store) promote(ctx context.Context, src, final string, d oci.Digest, size int64) error {
	if size > maxSinglePut {
		if s.holds(ctx, final, d, size) {
			return nil
		}
		return s.copyObject(ctx, src, final, size)
	}
	err := s.copyIfAbsent(ctx, src, final, size)
	if !errors.Is(err, errExists) {
		return err
	}
	if s.holds(ctx, final, d, size) {
		return nil
	}
	return s.copyObject(ctx, src, final, size)
}

// holds reports whether key holds blob d of size bytes, proven by the
// sha256 checksum S3 verified or computed when the object was written.
// Errors count as "not proven" (the caller then copies).
func (s *Store) holds(ctx context.Context, key string, d oci.Digest, size int64) bool {
	if d.Algorithm() != oci.SHA256 {
		return false
	}
	info, err := s.BlobInspect(ctx, d)
	return err == nil && key == BlobKey(d) && info.ChecksumMatches && info.Size == size
}

// copyIfAbsent copies src to dst (at most 5 GiB) unless dst exists
// (errExists). The copy asks S3 for a full-object sha256 checksum, so the
// blob can later prove its content to holds and to claims.
func (s *Store) copyIfAbsent(ctx context.Context, src, dst string, size int64) error {
	ctx2, cancel := s.deadline(ctx, size/8)
	defer cancel()
	_, err := s.client.CopyObject(ctx2, &s3.CopyObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(dst), CopySource: s.copySource(src),
		IfNoneMatch: aws.String("*"), ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
	}, s.callOpts)
	if preconditionFailed(err) {
		return fmt.Errorf("copy %s to %s: %w", src, dst, errExists)
	}
	return mapErr(ctx, "copy "+src+" to "+dst, err)
}

// preconditionFailed reports S3's answer to a conditional write whose
// destination exists (412 PreconditionFailed; 409 ConditionalRequestConflict
// when a concurrent conditional write to the key is in progress).
func preconditionFailed(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && (ae.ErrorCode() == "PreconditionFailed" || ae.ErrorCode() == "ConditionalRequestConflict")
}

// assemble completes the multipart upload into the staging key, adding the
// carry-over as the last part. If the upload was already completed by an
// earlier attempt, the staging object of the right size is accepted.
func (s *Store) assemble(ctx context.Context, st uploadState) error {
	parts := st.Parts
	err := func() error {
		if st.CarryLen > 0 {
			ctx2, cancel := s.deadline(ctx, st.CarryLen)
			defer cancel()
			out, err := s.client.UploadPartCopy(ctx2, &s3.UploadPartCopyInput{
				Bucket: aws.String(s.bucket), Key: aws.String(stagingKey(st.ID)), UploadId: aws.String(st.MPU),
				PartNumber: aws.Int32(int32(len(parts) + 1)), CopySource: s.copySource(st.Carry),
			}, s.callOpts)
			if err != nil {
				return mapErr(ctx, "copy carry-over into the last part", err)
			}
			parts = append(parts[:len(parts):len(parts)], part{size: st.CarryLen, etag: aws.ToString(out.CopyPartResult.ETag)})
		}
		return s.completeMPU(ctx, stagingKey(st.ID), st.MPU, parts)
	}()
	if err == nil || !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	// No such upload: completed by an earlier attempt, or aborted.
	n, serr := s.size(ctx, stagingKey(st.ID))
	switch {
	case serr != nil:
		return fmt.Errorf("s3 commit %s: %w", st.ID, err)
	case n != st.Offset:
		return fmt.Errorf("s3 commit %s: staged object has %d bytes, want %d: %w", st.ID, n, st.Offset, storage.ErrNotFound)
	}
	return nil
}

// copyObject copies src to dst server-side: CopyObject up to 5 GiB, a
// multipart copy (UploadPartCopy with ranges) above.
func (s *Store) copyObject(ctx context.Context, src, dst string, size int64) error {
	if size <= maxSinglePut {
		ctx2, cancel := s.deadline(ctx, size/8) // server-side: far faster than the client rate
		defer cancel()
		_, err := s.client.CopyObject(ctx2, &s3.CopyObjectInput{
			Bucket: aws.String(s.bucket), Key: aws.String(dst), CopySource: s.copySource(src),
		}, s.callOpts)
		return mapErr(ctx, "copy "+src+" to "+dst, err)
	}
	mpu, err := s.createMPU(ctx, dst)
	if err != nil {
		return err
	}
	psize := max(copyPartSize, (size+maxParts-1)/maxParts)
	var parts []part
	for off, n := int64(0), int32(1); off < size; off, n = off+psize, n+1 {
		end := min(off+psize, size) - 1
		ctx2, cancel := s.deadline(ctx, (end-off)/8)
		out, err := s.client.UploadPartCopy(ctx2, &s3.UploadPartCopyInput{
			Bucket: aws.String(s.bucket), Key: aws.String(dst), UploadId: aws.String(mpu), PartNumber: aws.Int32(n),
			CopySource: s.copySource(src), CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", off, end)),
		}, s.callOpts)
		cancel()
		if err != nil {
			s.abortMPU(ctx, dst, mpu)
			return mapErr(ctx, "copy part", err)
		}
		parts = append(parts, part{size: end - off + 1, etag: aws.ToString(out.CopyPartResult.ETag)})
	}
	if err := s.completeMPU(ctx, dst, mpu, parts); err != nil {
		s.abortMPU(ctx, dst, mpu)
		return err
	}
	return nil
}

// cleanup removes an upload's staged objects after a commit (best effort:
// the bucket's lifecycle rule removes leftovers under uploads/).
func (s *Store) cleanup(ctx context.Context, st uploadState) {
	ctx = context.WithoutCancel(ctx)
	for _, k := range []string{st.Carry, st.Prev} {
		if k != "" {
			_ = s.del(ctx, k)
		}
	}
	if st.MPU != "" {
		_ = s.del(ctx, stagingKey(st.ID))
	}
}

// UploadAbort aborts the multipart upload and deletes staged objects.
// Unknown and finished uploads are fine.
func (s *Store) UploadAbort(ctx context.Context, id string, state []byte) error {
	if isDirectState(state) {
		return s.abortDirect(ctx, id, state)
	}
	st, err := decodeState(id, state)
	if err != nil {
		return err
	}
	if st.MPU != "" {
		ctx2, cancel := s.deadline(ctx, 0)
		_, err := s.client.AbortMultipartUpload(ctx2, &s3.AbortMultipartUploadInput{
			Bucket: aws.String(s.bucket), Key: aws.String(stagingKey(id)), UploadId: aws.String(st.MPU),
		}, s.callOpts)
		cancel()
		if err != nil && !notFound(err) {
			return mapErr(ctx, "abort multipart upload", err)
		}
	}
	keys := []string{st.Carry, st.Prev}
	if st.MPU != "" {
		keys = append(keys, stagingKey(id))
	}
	for _, k := range keys {
		if k == "" {
			continue
		}
		if err := s.del(ctx, k); err != nil {
			return err
		}
	}
	return nil
}
