package s3blob

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

// BlobPut stores size bytes from r as blob d. A sha256 blob up to 5 GiB is
// one PutObject to its final key with the digest as x-amz-checksum-sha256;
// anything else is staged, hashed on the way, and copied into place.
func (s *Store) BlobPut(ctx context.Context, d oci.Digest, size int64, r io.Reader) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("s3 put: %w", err)
	}
	if size < 0 || size > maxObject {
		return fmt.Errorf("s3 put %s: size %d: %w", d, size, storage.ErrTooLarge)
	}
	h, err := oci.NewHash(d.Algorithm())
	if err != nil {
		return err
	}
	if size == 0 {
		// Nothing will read the body: check now that it is empty.
		var one [1]byte
		if n, err := io.ReadFull(r, one[:]); n > 0 {
			return fmt.Errorf("s3 put %s: %w", d, storage.ErrSizeMismatch)
		} else if err != io.EOF {
			return fmt.Errorf("s3 put %s: reading blob: %w", d, err)
		}
	}
	body := &exactReader{r: r, left: size, h: h}
	if d.Algorithm() == oci.SHA256 && size <= maxSinglePut {
		raw, _ := hex.DecodeString(d.Encoded())
		key := BlobKey(d)
		ctx2, cancel := s.deadline(ctx, size)
		defer cancel()
		_, err := s.client.PutObject(ctx2, &s3.PutObjectInput{
			Bucket:         aws.String(s.bucket),
			Key:            aws.String(key),
			Body:           body,
			ContentLength:  aws.Int64(size),
			ChecksumSHA256: aws.String(base64.StdEncoding.EncodeToString(raw)),
		}, s.streamOpts)
		if verr := body.verdict(d); verr != nil {
			if err == nil {
				// The backend accepted what S3 would have refused.
				_ = s.del(context.WithoutCancel(ctx), key)
			}
			return fmt.Errorf("s3 put %s: %w", d, verr)
		}
		return mapErr(ctx, "put "+string(d), err)
	}
	staging := stagingKey("put-" + randomID())
	defer func() { _ = s.del(context.WithoutCancel(ctx), staging) }()
	if err := s.putStream(ctx, staging, size, body); err != nil {
		if verr := body.verdict(d); verr != nil {
			return fmt.Errorf("s3 put %s: %w", d, verr)
		}
		return err
	}
	if verr := body.verdict(d); verr != nil {
		return fmt.Errorf("s3 put %s: %w", d, verr)
	}
	return s.copyObject(ctx, staging, BlobKey(d), size)
}

// putStream writes size bytes from r to key: one PutObject up to 5 GiB, a
// multipart upload of equal parts above.
func (s *Store) putStream(ctx context.Context, key string, size int64, r io.Reader) error {
	if size <= maxSinglePut {
		ctx2, cancel := s.deadline(ctx, size)
		defer cancel()
		_, err := s.client.PutObject(ctx2, &s3.PutObjectInput{
			Bucket: aws.String(s.bucket), Key: aws.String(key), Body: r, ContentLength: aws.Int64(size),
		}, s.streamOpts)
		return mapErr(ctx, "put "+key, err)
	}
	mpu, err := s.createMPU(ctx, key)
	if err != nil {
		return err
	}
	var parts []part
	psize := max(minPartSize, (size+maxParts-1)/maxParts)
	for off, n := int64(0), int32(1); off < size; off, n = off+psize, n+1 {
		l := min(psize, size-off)
		ctx2, cancel := s.deadline(ctx, l)
		out, err := s.client.UploadPart(ctx2, &s3.UploadPartInput{
			Bucket: aws.String(s.bucket), Key: aws.String(key), UploadId: aws.String(mpu),
			PartNumber: aws.Int32(n), Body: io.LimitReader(r, l), ContentLength: aws.Int64(l),
		}, s.streamOpts)
		cancel()
		if err != nil {
			s.abortMPU(ctx, key, mpu)
			return mapErr(ctx, "upload part", err)
		}
		parts = append(parts, part{size: l, etag: aws.ToString(out.ETag)})
	}
	if err := s.completeMPU(ctx, key, mpu, parts); err != nil {
		s.abortMPU(ctx, key, mpu)
		return err
	}
	return nil
}

// exactReader yields exactly the first left bytes of r, hashing them. It
// holds back the last byte it has read until it knows how r ends: an r
// with fewer bytes, more bytes, or a read error fails the read before the
// server has received the whole declared body, so the request fails and
// nothing is stored, even on a backend that would accept a truncated body.
type exactReader struct {
	r       io.Reader
	left    int64 // bytes still to read from r
	h       hash.Hash
	buf     []byte // read, not yet served
	scratch []byte
	checked bool  // r was found to end right after size bytes
	short   bool  // r ended early
	long    bool  // r had more than size bytes
	err     error // r failed
}

var errLong = errors.New("body longer than its declared size")

func (e *exactReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		avail := len(e.buf)
		if !e.checked {
			avail-- // the held-back byte
		}
		if avail > 0 {
			n := copy(p, e.buf[:avail])
			e.buf = e.buf[n:]
			return n, nil
		}
		switch {
		case e.err != nil:
			return 0, e.err
		case e.short:
			return 0, io.ErrUnexpectedEOF
		case e.long:
			return 0, errLong
		case e.checked:
			return 0, io.EOF
		case e.left == 0:
			var one [1]byte
			m, err := io.ReadFull(e.r, one[:])
			switch {
			case m > 0:
				e.long = true
			case err != io.EOF:
				e.err = err
			default:
				e.checked = true
			}
			continue
		}
		if e.scratch == nil {
			e.scratch = make([]byte, 32<<10)
		}
		m, err := e.r.Read(e.scratch[:min(int64(len(e.scratch)), e.left)])
		e.h.Write(e.scratch[:m])
		e.buf = append(e.buf, e.scratch[:m]...)
		e.left -= int64(m)
		switch {
		case err == io.EOF && e.left > 0:
			e.short = true
		case err != nil && err != io.EOF:
			e.err = err
		}
	}
}

// verdict says whether what was read is exactly the blob d.
func (e *exactReader) verdict(d oci.Digest) error {
	switch {
	case e.err != nil:
		return fmt.Errorf("reading blob: %w", e.err)
	case e.short || e.long:
		return storage.ErrSizeMismatch
	case e.left > 0:
		return fmt.Errorf("upload stopped with %d bytes unsent", e.left) // the request failed first
	case oci.DigestOf(d.Algorithm(), e.h) != d:
		return storage.ErrDigestMismatch
	}
	return nil
}

func (s *Store) size(ctx context.Context, key string) (int64, error) {
	ctx2, cancel := s.deadline(ctx, 0)
	defer cancel()
	out, err := s.client.HeadObject(ctx2, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)}, s.callOpts)
	if err != nil {
		return 0, mapErr(ctx, "head "+key, err)
	}
	return aws.ToInt64(out.ContentLength), nil
}

// BlobDelete removes the blob (absent is fine: S3 deletes are idempotent).
func (s *Store) BlobDelete(ctx context.Context, d oci.Digest) error {
	return s.del(ctx, BlobKey(d))
}

func (s *Store) del(ctx context.Context, key string) error {
	ctx2, cancel := s.deadline(ctx, 0)
	defer cancel()
	_, err := s.client.DeleteObject(ctx2, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)}, s.callOpts)
	if err != nil && !notFound(err) {
		return mapErr(ctx, "delete "+key, err)
	}
	return nil
}

// BlobOpen returns a reader over the blob that fetches bytes with ranged
// GETs from wherever it was last seeked to.
func (s *Store) BlobOpen(ctx context.Context, d oci.Digest) (io.ReadSeekCloser, error) {
	key := BlobKey(d)
	size, err := s.size(ctx, key)
	if err != nil {
		return nil, err
	}
	return &objectReader{s: s, ctx: ctx, key: key, size: size}, nil
}

// open returns a reader of key from off to the end (tests and verify).
func (s *Store) open(ctx context.Context, key string) (*objectReader, error) {
	size, err := s.size(ctx, key)
	if err != nil {
		return nil, err
	}
	return &objectReader{s: s, ctx: ctx, key: key, size: size}, nil
}

// objectReader is an io.ReadSeekCloser over one object. Seek only moves the
// offset; the next Read opens a GET from there.
type objectReader struct {
	s      *Store
	ctx    context.Context
	key    string
	size   int64
	off    int64
	body   io.ReadCloser
	cancel context.CancelFunc
}

func (o *objectReader) Read(p []byte) (int, error) {
	if o.off >= o.size {
		return 0, io.EOF
	}
	if o.body == nil {
		ctx, cancel := o.s.deadline(o.ctx, o.size-o.off)
		out, err := o.s.client.GetObject(ctx, &s3.GetObjectInput{
			Bucket: aws.String(o.s.bucket), Key: aws.String(o.key),
			Range: aws.String(fmt.Sprintf("bytes=%d-", o.off)),
		}, o.s.callOpts)
		if err != nil {
			cancel()
			return 0, mapErr(o.ctx, "get "+o.key, err)
		}
		o.body, o.cancel = out.Body, cancel
	}
	n, err := o.body.Read(p)
	o.off += int64(n)
	if err == io.EOF && o.off < o.size {
		o.closeBody()
		return n, fmt.Errorf("s3 get %s: object ended at %d of %d bytes: %w", o.key, o.off, o.size, io.ErrUnexpectedEOF)
	}
	return n, err
}

func (o *objectReader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = o.off + offset
	case io.SeekEnd:
		abs = o.size + offset
	default:
		return 0, fmt.Errorf("s3 seek: bad whence %d", whence)
	}
	if abs < 0 {
		return 0, fmt.Errorf("s3 seek: negative position %d", abs)
	}
	if abs != o.off {
		o.closeBody()
		o.off = abs
	}
	return abs, nil
}

func (o *objectReader) closeBody() {
	if o.body != nil {
		_ = o.body.Close()
		o.cancel()
		o.body, o.cancel = nil, nil
	}
}

func (o *objectReader) Close() error {
	o.closeBody()
	return nil
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
