// Package awsbackend opens Berth's AWS storage: the DynamoDB metadata
// driver and the S3 blob driver, configured from one aws.Config and one
// Settings value. The api and cleanup functions and `berth serve --backend
// aws` (its cold-start emulation and edge path included) all open their
// drivers here, so a new driver option is wired once, not per entry point.
package awsbackend

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/berth-registry/berth/pkg/driver/dynamo"
	"github.com/berth-registry/berth/pkg/driver/s3blob"
	"github.com/berth-registry/berth/pkg/storage"
)

// DefaultPresignExpiry is how long a presigned blob URL lives when
// Settings leave it unset: long enough for a slow client to start a large
// download, short enough that a leaked URL soon stops working.
const DefaultPresignExpiry = 20 * time.Minute

// Settings is what the drivers need beyond AWS credentials, region and
// endpoints (those come with the aws.Config).
type Settings struct {
	Bucket string
	Table  string
	// PresignExpiry is the lifetime of presigned blob URLs; 0:
	// DefaultPresignExpiry.
	PresignExpiry time.Duration
	// S3PathStyle addresses the bucket in the path (emulators have no
	// per-bucket host names).
	S3PathStyle bool
	// NoRedirect serves blob bytes instead of redirecting clients to S3.
	NoRedirect bool
	// CloudFront, when its URL is set, signs blob GET redirects as
	// CloudFront URLs instead of presigning S3 URLs.
	CloudFront CloudFront
	// Create makes the bucket and the table when missing (local and
	// emulator use; a deployment creates them with the stack).
	Create bool
}

// CloudFront configures signed CloudFront URLs for blob GETs. URL, key
// pair id and exactly one key source go together.
type CloudFront struct {
	URL       string // the distribution whose origin is the bucket
	KeyPairID string // CloudFront public key id
	// The RSA private key (PEM, PKCS #1 or #8): a Secrets Manager secret
	// (name or ARN; the deployed functions) or a file (berth serve).
	KeySecret string
	KeyFile   string
}

func (c CloudFront) enabled() bool { return c.URL != "" }

// Validate reports settings that cannot work: a missing bucket or table,
// or a partial CloudFront configuration. Callers prefix the error with the
// names their users know (flags, environment variables).
func (s Settings) Validate() error {
	var errs []error
	if s.Bucket == "" {
		errs = append(errs, errors.New("no bucket"))
	}
	if s.Table == "" {
		errs = append(errs, errors.New("no table"))
	}
	return errors.Join(append(errs, s.CloudFront.Validate())...)
}

// Validate reports a partial CloudFront configuration: URL, key pair id and
// exactly one key source, or none of them.
func (c CloudFront) Validate() error {
	keys := countSet(c.KeySecret, c.KeyFile)
	if n := countSet(c.URL, c.KeyPairID) + min(keys, 1); n != 0 && (n != 3 || keys != 1) {
		return errors.New("CloudFront URL, key pair id and one private key source go together")
	}
	return nil
}

func countSet(vs ...string) (n int) {
	for _, v := range vs {
		if v != "" {
			n++
		}
	}
	return n
}

// Backend is an opened pair of AWS drivers.
type Backend struct {
	Items *dynamo.Store
	// Blobs is the S3 driver, wrapped to serve bytes when NoRedirect is set.
	Blobs storage.Blobs
	// Lister lists the bucket's blobs (garbage collection's orphan pass),
	// whatever wraps Blobs.
	Lister storage.BlobLister
	// Objects stores the scanner's layer indexes beside the blobs
	// (storage.Objects, docs/scanning.md), whatever wraps Blobs.
	Objects storage.Objects

	// For Check.
	creds  aws.CredentialsProvider
	s3     *s3.Client
	bucket string
	region string
}

// Open builds the AWS clients and drivers from cfg and s, loading the
// CloudFront signing key when s asks for signed URLs, and creating the
// bucket and table when s.Create is set. It never reads the environment:
// cfg carries what the AWS configuration chain found.
func Open(ctx context.Context, cfg aws.Config, s Settings, log *slog.Logger) (*Backend, error) {
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("aws backend: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("aws backend: no region (set AWS_REGION)")
	}
	if s.PresignExpiry <= 0 {
		s.PresignExpiry = DefaultPresignExpiry
	}
	if cfg.Credentials != nil {
		cfg.Credentials = markedCredentials{cfg.Credentials}
	}
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = s.S3PathStyle }, withS3AccessErrors)
	opts := []s3blob.Option{s3blob.WithPresignExpiry(s.PresignExpiry)}
	if s.CloudFront.enabled() {
		var sm SecretGetter
		if s.CloudFront.KeySecret != "" {
			sm = secretsmanager.NewFromConfig(cfg)
		}
		key, err := LoadCloudFrontKey(ctx, s.CloudFront, sm)
		if err != nil {
			return nil, err
		}
		opts = append(opts, s3blob.WithCloudFront(s.CloudFront.URL, s.CloudFront.KeyPairID, key))
	}
	blobs := s3blob.New(s3c, s3.NewPresignClient(s3c), s.Bucket, opts...)
	items := dynamo.New(dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, accessMiddleware("dynamodb"))
	}), s.Table)
	if s.Create {
		if err := blobs.CreateBucket(ctx); err != nil {
			return nil, err
		}
		if err := items.CreateTable(ctx); err != nil {
			return nil, err
		}
		if log != nil {
			log.InfoContext(ctx, "storage ready", slog.String("bucket", s.Bucket), slog.String("table", s.Table))
		}
	}
	be := &Backend{Items: items, Blobs: blobs, Lister: blobs, Objects: blobs, creds: cfg.Credentials, s3: s3c, bucket: s.Bucket, region: cfg.Region}
	if s.NoRedirect {
		be.Blobs = s3blob.WithoutRedirect(blobs)
	}
	return be, nil
}

// Check proves at start-up that the storage can be used: credentials are
// found, the bucket answers HeadBucket and the table answers a GetItem
// (both under permissions the registry needs anyway: s3:ListBucket,
// dynamodb:GetItem, not DescribeTable, which the deployed roles lack). A
// server that skipped it looked healthy (/v2/ answers without storage)
// while every other request failed. The error says what to fix.
func (b *Backend) Check(ctx context.Context) error {
	if b.creds == nil {
		return errors.New("aws backend: no AWS credentials configured (AWS_PROFILE, AWS_ACCESS_KEY_ID, SSO, an instance role)")
	}
	if _, err := b.creds.Retrieve(ctx); err != nil {
		return fmt.Errorf("aws backend: no usable AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, SSO, an instance role): %w", err)
	}
	_, err := b.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(b.bucket)})
	if err != nil {
		err = sdkError(err)
		var re *awshttp.ResponseError
		status := 0
		if errors.As(err, &re) {
			status = re.HTTPStatusCode()
		}
		switch {
		case status == http.StatusNotFound:
			// versitygw answers an unknown access key with 404 too.
			return fmt.Errorf("aws backend: bucket %q not found in %s (or the access key is unknown to the endpoint): %w", b.bucket, b.region, err)
		case status == http.StatusForbidden:
			return fmt.Errorf("aws backend: bucket %q: access denied; the credentials must be valid and allow s3:ListBucket, s3:GetObject and s3:PutObject on it: %w", b.bucket, err)
		case status == http.StatusMovedPermanently:
			return fmt.Errorf("aws backend: bucket %q is not in region %s (set AWS_REGION): %w", b.bucket, b.region, err)
		}
		return fmt.Errorf("aws backend: bucket %q: %w", b.bucket, err)
	}
	// A key the registry never writes: not found is the healthy answer.
	_, err = b.Items.ItemGet(ctx, "berth#startup-check", "-")
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		err = sdkError(err)
		switch p, code := classify(err); p {
		case credentialsRejected:
			return fmt.Errorf("aws backend: table %q: the credentials were rejected (%s): %w", b.Items.Table(), code, err)
		case accessDenied:
			return fmt.Errorf("aws backend: table %q: access denied; the credentials must allow dynamodb:GetItem, PutItem, UpdateItem, DeleteItem, Query and ConditionCheckItem on it: %w", b.Items.Table(), err)
		case storageMissing:
			return fmt.Errorf("aws backend: table %q not found in %s: %w", b.Items.Table(), b.region, err)
		}
		return fmt.Errorf("aws backend: table %q: %w", b.Items.Table(), err)
	}
	return nil
}

// SecretGetter is the part of Secrets Manager LoadCloudFrontKey uses.
type SecretGetter interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// LoadCloudFrontKey reads the CloudFront signing key from c.KeySecret
// (through sm) or c.KeyFile. Errors name the source, so a cold start that
// fails on a placeholder secret says which one.
func LoadCloudFrontKey(ctx context.Context, c CloudFront, sm SecretGetter) (*rsa.PrivateKey, error) {
	var data []byte
	source := c.KeyFile
	switch {
	case c.KeySecret != "":
		source = c.KeySecret
		if sm == nil {
			return nil, fmt.Errorf("cloudfront key %s: no Secrets Manager client", source)
		}
		// A cold start must not hang on Secrets Manager for the whole
		// init phase.
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(source)})
		if err != nil {
			return nil, fmt.Errorf("cloudfront key %s: %w", source, err)
		}
		data = out.SecretBinary
		if out.SecretString != nil {
			data = []byte(*out.SecretString)
		}
	case c.KeyFile != "":
		var err error
		if data, err = os.ReadFile(source); err != nil {
			return nil, fmt.Errorf("cloudfront key: %w", err)
		}
	default:
		return nil, errors.New("cloudfront key: no secret or file given")
	}
	key, err := s3blob.ParseRSAKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return key, nil
}
