// Package s3blob implements the blob seam (storage.Blobs) on one S3
// bucket. Blobs live at blobs/<algorithm>/<hex>, one copy per digest, and
// nothing appears there before it was verified: sha256 single PUTs carry
// x-amz-checksum-sha256 (S3 rejects a mismatch), everything else is staged
// under uploads/ and copied server-side once its digest is known good.
//
// Chunked uploads go into an S3 multipart upload. Non-final parts must be at
// least 5 MiB, so the bytes of an incomplete part wait in a carry-over
// object and are merged with the next chunk. The upload id, part list and
// carry-over live in the opaque state the registry stores between
// requests; nothing is kept in memory, and nothing lists the bucket.
package s3blob

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

// S3 limits.
const (
	mib          = 1 << 20
	minPartSize  = 5 * mib       // every part but the last
	maxPartSize  = 5 << 30       // 5 GiB
	maxParts     = 10000         // per multipart upload
	maxSinglePut = 5 << 30       // PutObject and CopyObject
	copyPartSize = 512 * mib     // parts of a multipart copy
	maxObject    = 5 * (1 << 40) // 5 TiB
)

// Store is a storage.Blobs on one S3 bucket.
type Store struct {
	client   *s3.Client
	presign  *s3.PresignClient
	bucket   string
	timeout  time.Duration
	rate     int64 // bytes per second assumed when bounding transfers
	attempts int
	expiry   time.Duration
	cdn      *cdnSigner
	now      func() time.Time
}

var (
	_ storage.Blobs          = (*Store)(nil)
	_ storage.BlobRedirector = (*Store)(nil)
)

// Option configures a Store.
type Option func(*Store)

// WithTimeout bounds every S3 call that moves no bulk data (default 30 s);
// calls that move n bytes get this plus n at the WithMinThroughput rate.
func WithTimeout(d time.Duration) Option { return func(s *Store) { s.timeout = d } }

// WithMinThroughput sets the slowest transfer rate, in bytes per second,
// that deadlines allow for (default 1 MiB/s).
func WithMinThroughput(bytesPerSecond int64) Option {
	return func(s *Store) { s.rate = max(bytesPerSecond, 1) }
}

// WithRetries sets the SDK's attempts per call for throttling, 5xx and
// connection errors (default 6).
func WithRetries(attempts int) Option { return func(s *Store) { s.attempts = attempts } }

// WithPresignExpiry sets how long BlobURL's URLs stay valid (default 20 min).
func WithPresignExpiry(d time.Duration) Option { return func(s *Store) { s.expiry = d } }

// WithClock sets the clock used for URL expiry.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// New returns a Store on bucket. presign may be nil when BlobURL is not
// used or CloudFront signs the URLs.
func New(client *s3.Client, presign *s3.PresignClient, bucket string, opts ...Option) *Store {
	s := &Store{
		client:   client,
		presign:  presign,
		bucket:   bucket,
		timeout:  30 * time.Second,
		rate:     mib,
		attempts: 6,
		expiry:   20 * time.Minute,
		now:      time.Now,
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Bucket returns the bucket name.
func (s *Store) Bucket() string { return s.bucket }

// WithoutRedirect returns b with only the storage.Blobs methods, so the
// registry serves blob bytes itself instead of redirecting to S3 (for
// setups whose clients cannot reach the bucket or CDN).
func WithoutRedirect(b storage.Blobs) storage.Blobs {
	return struct{ storage.Blobs }{b}
}

// CreateBucket creates the bucket if it does not exist, and asks S3 to
// abort multipart uploads and delete staged objects that an interrupted
// upload left behind (lifecycle rules; a backend without lifecycle
// support is accepted, the registry's own sweep cleans up too).
func (s *Store) CreateBucket(ctx context.Context) error {
	_, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.bucket)}, s.callOpts)
	var owned *types.BucketAlreadyOwnedByYou
	var exists *types.BucketAlreadyExists
	switch {
	case err == nil, errors.As(err, &owned):
	case errors.As(err, &exists):
		// Some S3 implementations say this for the caller's own bucket:
		// fine if we can use it.
		if _, herr := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)}, s.callOpts); herr != nil {
			return fmt.Errorf("s3: create bucket %s: %w", s.bucket, err)
		}
	default:
		return fmt.Errorf("s3: create bucket %s: %w", s.bucket, err)
	}
	_, err = s.client.PutBucketLifecycleConfiguration(ctx, &s3.PutBucketLifecycleConfigurationInput{
		Bucket: aws.String(s.bucket),
		LifecycleConfiguration: &types.BucketLifecycleConfiguration{Rules: []types.LifecycleRule{{
			ID:                             aws.String("berth-uploads"),
			Status:                         types.ExpirationStatusEnabled,
			Filter:                         &types.LifecycleRuleFilter{Prefix: aws.String(uploadsPrefix)},
			AbortIncompleteMultipartUpload: &types.AbortIncompleteMultipartUpload{DaysAfterInitiation: aws.Int32(1)},
			Expiration:                     &types.LifecycleExpiration{Days: aws.Int32(2)},
		}}},
	}, s.callOpts)
	var ae smithy.APIError
	if err != nil && !(errors.As(err, &ae) && (ae.ErrorCode() == "NotImplemented" || ae.ErrorCode() == "NotSupported")) {
		return fmt.Errorf("s3: lifecycle of %s: %w", s.bucket, err)
	}
	return nil
}

// Key layout.
const (
	blobsPrefix   = "blobs/"
	uploadsPrefix = "uploads/"
)

// BlobKey returns the object key of blob d.
func BlobKey(d oci.Digest) string { return blobsPrefix + d.Algorithm().String() + "/" + d.Encoded() }

func stagingKey(id string) string { return uploadsPrefix + id + "/blob" }
func carryKey(id string, off int64) string {
	return fmt.Sprintf("%s%s/carry-%d", uploadsPrefix, id, off)
}
func (s *Store) copySource(key string) *string { return aws.String(s.bucket + "/" + key) }

// callOpts applies the retry policy to one SDK call.
func (s *Store) callOpts(o *s3.Options) {
	o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
		so.MaxAttempts = s.attempts
		so.MaxBackoff = 2 * time.Second
		so.RateLimiter = ratelimit.None
	})
}

// streamOpts is callOpts for uploads whose body is a one-pass stream: the
// payload is sent unsigned (the driver verifies content itself, and S3
// verifies an explicit x-amz-checksum-sha256), and the SDK computes no
// checksum it would need to rewind the stream for.
func (s *Store) streamOpts(o *s3.Options) {
	s.callOpts(o)
	o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
}

// deadline returns the deadline for a call moving n bytes.
func (s *Store) deadline(ctx context.Context, n int64) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout+time.Duration(n/s.rate)*time.Second)
}

// mapErr turns an SDK error into one wrapping the storage sentinels.
func mapErr(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	if notFound(err) {
		return fmt.Errorf("s3 %s: %w", what, storage.ErrNotFound)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("s3 %s: %w", what, ctx.Err())
	}
	if transient(err) {
		return fmt.Errorf("s3 %s: %w: %v", what, storage.ErrUnavailable, err)
	}
	return fmt.Errorf("s3 %s: %w", what, err)
}

func notFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	var nsu *types.NoSuchUpload
	if errors.As(err, &nsk) || errors.As(err, &nf) || errors.As(err, &nsu) {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && (ae.ErrorCode() == "NoSuchKey" || ae.ErrorCode() == "NoSuchUpload" || ae.ErrorCode() == "NotFound")
}

func transient(err error) bool {
	var mae *retry.MaxAttemptsError
	if errors.As(err, &mae) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorFault() == smithy.FaultServer
}
