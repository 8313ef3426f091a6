package s3blob

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

var (
	_ storage.BlobInspector  = (*Store)(nil)
	_ storage.DirectUploader = (*Store)(nil)
)

// MetaUpload is the object metadata (x-amz-meta-berth-upload) naming the
// upload session an object was written for, by the edge function or a
// presigned direct PUT. A claim requires it.
const MetaUpload = "berth-upload"

// BlobInspect reads the blob object's size, the berth-upload metadata and,
// with checksum mode on, the sha256 checksum S3 verified when the object
// was written. An object written without x-amz-checksum-sha256 has none;
// a multipart object's is a composite ("<base64>-<parts>") and never
// equals a digest.
func (s *Store) BlobInspect(ctx context.Context, d oci.Digest) (storage.BlobInfo, error) {
	if err := d.Validate(); err != nil {
		return storage.BlobInfo{}, fmt.Errorf("s3 inspect: %w", err)
	}
	key := BlobKey(d)
	ctx2, cancel := s.deadline(ctx, 0)
	defer cancel()
	out, err := s.client.HeadObject(ctx2, &s3.HeadObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key), ChecksumMode: types.ChecksumModeEnabled,
	}, s.callOpts)
	if err != nil {
		return storage.BlobInfo{}, mapErr(ctx, "head "+key, err)
	}
	info := storage.BlobInfo{Size: aws.ToInt64(out.ContentLength), Upload: metaValue(out.Metadata, MetaUpload)}
	if d.Algorithm() == oci.SHA256 {
		raw, _ := hex.DecodeString(d.Encoded())
		info.ChecksumMatches = aws.ToString(out.ChecksumSHA256) == base64.StdEncoding.EncodeToString(raw)
	}
	return info, nil
}

// metaValue looks a user metadata key up case-insensitively (S3 returns
// it lowercased, some implementations keep the case it was written in).
func metaValue(m map[string]string, key string) string {
	if v, ok := m[key]; ok {
		return v
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// presignOpts presigns without any checksum the SDK would compute over the
// (absent) body: the only checksum is the one the caller set.
func presignOpts(expires time.Time, now time.Time) func(*s3.PresignOptions) {
	return func(po *s3.PresignOptions) {
		po.Expires = max(expires.Sub(now), time.Second)
		po.ClientOptions = append(po.ClientOptions, func(o *s3.Options) {
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		})
	}
}

// signedHeaders returns the headers a presigned request must be sent with,
// minus those every HTTP client sets itself.
func signedHeaders(h http.Header) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		lk := strings.ToLower(k)
		if lk == "host" || lk == "content-length" || len(v) == 0 {
			continue
		}
		out[lk] = v[0]
	}
	return out
}

// DirectPut presigns a PutObject of blob d to its final key with
// x-amz-checksum-sha256 and x-amz-meta-berth-upload as signed headers:
// S3 refuses other bytes, and a claim ties the object to the session.
func (s *Store) DirectPut(ctx context.Context, upload string, d oci.Digest, size int64, expires time.Time) (storage.DirectPart, error) {
	if err := d.Validate(); err != nil || d.Algorithm() != oci.SHA256 {
		return storage.DirectPart{}, fmt.Errorf("s3 direct put %s: a single PUT needs a valid sha256 digest", d)
	}
	if size < 0 || size > maxSinglePut {
		return storage.DirectPart{}, fmt.Errorf("s3 direct put %s: size %d: %w", d, size, storage.ErrTooLarge)
	}
	if s.presign == nil {
		return storage.DirectPart{}, errors.New("s3 direct put: no presign client configured")
	}
	raw, _ := hex.DecodeString(d.Encoded())
	req, err := s.presign.PresignPutObject(ctx, &s3.PutObjectInput{
		Bucket:         aws.String(s.bucket),
		Key:            aws.String(BlobKey(d)),
		ContentLength:  aws.Int64(size),
		ChecksumSHA256: aws.String(base64.StdEncoding.EncodeToString(raw)),
		Metadata:       map[string]string{MetaUpload: upload},
	}, presignOpts(expires, s.now()))
	if err != nil {
		return storage.DirectPart{}, fmt.Errorf("s3 presign put %s: %w", d, err)
	}
	return storage.DirectPart{Number: 0, Method: req.Method, URL: req.URL, Headers: signedHeaders(req.SignedHeader), Offset: 0, Size: size}, nil
}

// directPartSize is the part size of a direct multipart upload of size
// bytes: at least S3's 5 MiB minimum, and large enough that 10,000 parts
// cover the object, in whole MiB.
func directPartSize(size int64) int64 {
	p := (size + maxParts - 1) / maxParts
	p = (p + mib - 1) / mib * mib
	return max(p, minPartSize)
}

// DirectMultipart creates a multipart upload on the upload's staging key
// and presigns an UploadPart URL for each part.
func (s *Store) DirectMultipart(ctx context.Context, upload string, size int64, expires time.Time) ([]byte, []storage.DirectPart, error) {
	if size < 0 || size > maxObject {
		return nil, nil, fmt.Errorf("s3 direct multipart: size %d: %w", size, storage.ErrTooLarge)
	}
	if s.presign == nil {
		return nil, nil, errors.New("s3 direct multipart: no presign client configured")
	}
	key := stagingKey(upload)
	mpu, err := s.createMPU(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	st := directState{ID: upload, MPU: mpu}
	psize := directPartSize(size)
	var parts []storage.DirectPart
	for off, n := int64(0), int32(1); off < size || n == 1; off, n = off+psize, n+1 {
		l := min(psize, size-off)
		req, err := s.presign.PresignUploadPart(ctx, &s3.UploadPartInput{
			Bucket: aws.String(s.bucket), Key: aws.String(key), UploadId: aws.String(mpu),
			PartNumber: aws.Int32(n), ContentLength: aws.Int64(l),
		}, presignOpts(expires, s.now()))
		if err != nil {
			s.abortMPU(ctx, key, mpu)
			return nil, nil, fmt.Errorf("s3 presign part %d: %w", n, err)
		}
		parts = append(parts, storage.DirectPart{Number: n, Method: req.Method, URL: req.URL, Headers: signedHeaders(req.SignedHeader), Offset: off, Size: l})
	}
	return st.encode(), parts, nil
}

// DirectComplete completes the multipart upload with the client's parts.
func (s *Store) DirectComplete(ctx context.Context, upload string, state []byte, size int64, parts []storage.CompletedPart) error {
	st, err := decodeDirectState(upload, state)
	if err != nil {
		return err
	}
	sorted := append([]storage.CompletedPart(nil), parts...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Number < sorted[j].Number })
	cp := make([]types.CompletedPart, len(sorted))
	for i, p := range sorted {
		if p.Number < 1 || p.Number > maxParts || (i > 0 && p.Number == sorted[i-1].Number) || p.ETag == "" {
			return fmt.Errorf("s3 complete %s: part %d: %w", upload, p.Number, storage.ErrPartsInvalid)
		}
		cp[i] = types.CompletedPart{PartNumber: aws.Int32(p.Number), ETag: aws.String(p.ETag)}
	}
	key := stagingKey(upload)
	ctx2, cancel := s.deadline(ctx, int64(len(cp))*mib)
	defer cancel()
	_, err = s.client.CompleteMultipartUpload(ctx2, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key), UploadId: aws.String(st.MPU),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: cp},
	}, s.callOpts)
	var ae smithy.APIError
	switch {
	case err == nil:
	case notFound(err):
		// Completed by an earlier attempt (or aborted): the staged object
		// decides.
		if n, serr := s.size(ctx, key); serr != nil || n != size {
			return fmt.Errorf("s3 complete %s: %w", upload, mapErr(ctx, "complete multipart upload", err))
		}
		return nil
	case errors.As(err, &ae) && (ae.ErrorCode() == "InvalidPart" || ae.ErrorCode() == "InvalidPartOrder" || ae.ErrorCode() == "EntityTooSmall"):
		return fmt.Errorf("s3 complete %s: %s: %w", upload, ae.ErrorMessage(), storage.ErrPartsInvalid)
	default:
		return mapErr(ctx, "complete multipart upload "+key, err)
	}
	if n, err := s.size(ctx, key); err != nil {
		return err
	} else if n != size {
		_ = s.del(context.WithoutCancel(ctx), key)
		return fmt.Errorf("s3 complete %s: %d bytes assembled, %d announced: %w", upload, n, size, storage.ErrSizeMismatch)
	}
	return nil
}

// DirectVerify streams the staged object through verify and copies it to
// the blob's key only if verify accepts it. The staged object is deleted
// either way. A retry after a successful copy (staging gone, blob there
// with the right size) succeeds: only verified content reaches blobs/.
func (s *Store) DirectVerify(ctx context.Context, upload string, state []byte, d oci.Digest, size int64, verify func(io.Reader) error) error {
	if _, err := decodeDirectState(upload, state); err != nil {
		return err
	}
	if err := d.Validate(); err != nil {
		return fmt.Errorf("s3 verify %s: %w", upload, err)
	}
	src, final := stagingKey(upload), BlobKey(d)
	rd, err := s.open(ctx, src)
	if errors.Is(err, storage.ErrNotFound) {
		if n, serr := s.size(ctx, final); serr == nil && n == size {
			return nil
		}
		return err
	}
	if err != nil {
		return err
	}
	err = verify(rd)
	rd.Close()
	if err == nil {
		err = s.copyObject(ctx, src, final, size)
		if err != nil {
			return err // keep the staged object for a retry
		}
	}
	// Best effort: the bucket's lifecycle rule removes a leftover.
	_ = s.del(context.WithoutCancel(ctx), src)
	return err
}

// directState is the driver state of a multipart direct upload: the
// multipart upload on the staging key. It has its own tag ('D') so that
// UploadAbort, which the sweep calls with any session's state, knows it.
type directState struct {
	ID  string
	MPU string
}

const directTag = 'D'

func (st directState) encode() []byte {
	b := []byte{directTag, stateVersion}
	for _, s := range []string{st.ID, st.MPU} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

func isDirectState(state []byte) bool { return len(state) >= 2 && state[0] == directTag }

func decodeDirectState(id string, state []byte) (directState, error) {
	if !isDirectState(state) || state[1] != stateVersion {
		return directState{}, fmt.Errorf("s3 upload %s: not a direct upload: %w", id, errBadState)
	}
	b := state[2:]
	var out [2]string
	for i := range out {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return directState{}, errBadState
		}
		out[i] = string(b[n : n+int(l)])
		b = b[n+int(l):]
	}
	if len(b) != 0 || out[0] != id || out[1] == "" {
		return directState{}, fmt.Errorf("s3 upload %s: %w", id, errBadState)
	}
	return directState{ID: out[0], MPU: out[1]}, nil
}

// abortDirect aborts a direct upload's multipart upload and removes its
// staged object (absent ones are fine).
func (s *Store) abortDirect(ctx context.Context, id string, state []byte) error {
	st, err := decodeDirectState(id, state)
	if err != nil {
		return err
	}
	key := stagingKey(id)
	ctx2, cancel := s.deadline(ctx, 0)
	_, err = s.client.AbortMultipartUpload(ctx2, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key), UploadId: aws.String(st.MPU),
	}, s.callOpts)
	cancel()
	if err != nil && !notFound(err) {
		return mapErr(ctx, "abort multipart upload", err)
	}
	return s.del(ctx, key)
}
