package s3blob

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/cloudfront/sign"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berth-registry/berth/pkg/oci"
)

// cdnSigner signs CloudFront URLs for blob keys.
type cdnSigner struct {
	base   string // https://cdn.example.com (no trailing slash)
	signer *sign.URLSigner
}

// WithCloudFront makes BlobURL return CloudFront signed URLs (canned
// policy) under baseURL, whose origin is the bucket, instead of presigned
// S3 URLs. keyPairID is the CloudFront public key id.
func WithCloudFront(baseURL, keyPairID string, key *rsa.PrivateKey) Option {
	return func(s *Store) {
		s.cdn = &cdnSigner{base: strings.TrimRight(baseURL, "/"), signer: sign.NewURLSigner(keyPairID, key)}
	}
}

// BlobURL returns a URL the client can GET the blob from directly, valid
// for the presign expiry: a CloudFront signed URL when configured, a
// presigned S3 GetObject URL otherwise. It does not check that the blob
// exists (the registry's metadata has).
func (s *Store) BlobURL(ctx context.Context, d oci.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("s3 blob url: %w", err)
	}
	key := BlobKey(d)
	if s.cdn != nil {
		u, err := s.cdn.signer.Sign(s.cdn.base+"/"+key, s.now().Add(s.expiry))
		if err != nil {
			return "", fmt.Errorf("cloudfront sign %s: %w", key, err)
		}
		return u, nil
	}
	if s.presign == nil {
		return "", errors.New("s3 blob url: no presign client configured")
	}
	req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)},
		s3.WithPresignExpires(s.expiry))
	if err != nil {
		return "", fmt.Errorf("s3 presign %s: %w", key, err)
	}
	return req.URL, nil
}

// ParseRSAKey parses a PEM RSA private key (PKCS #1 or PKCS #8); where the
// PEM comes from (a file, Secrets Manager) is pkg/awsbackend's business.
func ParseRSAKey(data []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("cloudfront key: no PEM block")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("cloudfront key: %w", err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("cloudfront key: %T is not an RSA key", k)
	}
	return rk, nil
}
