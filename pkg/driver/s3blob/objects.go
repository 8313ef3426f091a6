package s3blob

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berth-registry/berth/pkg/storage"
)

var _ storage.Objects = (*Store)(nil)

// ObjectGet implements storage.Objects: one GetObject of <key>.
func (s *Store) ObjectGet(ctx context.Context, key string) ([]byte, error) {
	if err := storage.CheckObjectKey(key); err != nil {
		return nil, err
	}
	ctx2, cancel := s.deadline(ctx, storage.MaxObjectBytes)
	defer cancel()
	out, err := s.client.GetObject(ctx2, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)}, s.callOpts)
	if err != nil {
		return nil, mapErr(ctx, "get "+key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, storage.MaxObjectBytes+1))
	if err != nil {
		return nil, mapErr(ctx, "get "+key, err)
	}
	if len(b) > storage.MaxObjectBytes {
		return nil, fmt.Errorf("s3 get %s: %w", key, storage.ErrTooLarge)
	}
	return b, nil
}

// ObjectPut implements storage.Objects: one PutObject (S3 replaces whole
// objects atomically).
func (s *Store) ObjectPut(ctx context.Context, key string, data []byte) error {
	if err := storage.CheckObjectKey(key); err != nil {
		return err
	}
	if len(data) > storage.MaxObjectBytes {
		return fmt.Errorf("s3 put %s: %w", key, storage.ErrTooLarge)
	}
	ctx2, cancel := s.deadline(ctx, int64(len(data)))
	defer cancel()
	_, err := s.client.PutObject(ctx2, &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(key),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
	}, s.callOpts)
	return mapErr(ctx, "put "+key, err)
}

// ObjectDelete implements storage.Objects.
func (s *Store) ObjectDelete(ctx context.Context, key string) error {
	if err := storage.CheckObjectKey(key); err != nil {
		return err
	}
	return s.del(ctx, key)
}
