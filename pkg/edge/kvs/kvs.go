// Package kvs is edge.KeyAdmin on the CloudFront KeyValueStore data-plane
// API: the store the CloudFront Function reads upload token keys from. The
// API function reads through it (edge.Keyring), the cleanup function
// rotates keys through it (edge.Rotate).
//
// The data-plane API signs with SigV4A (region set "*"): the SDK's
// service client does that itself, from ordinary credentials, as long as
// requests go through the endpoint it resolves from the store's ARN
// (https://<account>.cloudfront-kvs.global.api.aws). New therefore takes
// the service client as built by NewFromConfig and passes the ARN on every
// call; it sets no endpoint or region of its own.
package kvs

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	cfkvs "github.com/aws/aws-sdk-go-v2/service/cloudfrontkeyvaluestore"
	"github.com/aws/aws-sdk-go-v2/service/cloudfrontkeyvaluestore/types"

	"github.com/berth-registry/berth/pkg/edge"
)

// API is the part of the KeyValueStore client the store uses
// (*cloudfrontkeyvaluestore.Client satisfies it).
type API interface {
	GetKey(ctx context.Context, in *cfkvs.GetKeyInput, opts ...func(*cfkvs.Options)) (*cfkvs.GetKeyOutput, error)
	PutKey(ctx context.Context, in *cfkvs.PutKeyInput, opts ...func(*cfkvs.Options)) (*cfkvs.PutKeyOutput, error)
	DeleteKey(ctx context.Context, in *cfkvs.DeleteKeyInput, opts ...func(*cfkvs.Options)) (*cfkvs.DeleteKeyOutput, error)
	ListKeys(ctx context.Context, in *cfkvs.ListKeysInput, opts ...func(*cfkvs.Options)) (*cfkvs.ListKeysOutput, error)
	DescribeKeyValueStore(ctx context.Context, in *cfkvs.DescribeKeyValueStoreInput, opts ...func(*cfkvs.Options)) (*cfkvs.DescribeKeyValueStoreOutput, error)
}

// Store is one KeyValueStore, named by its ARN
// (arn:aws:cloudfront::<account>:key-value-store/<id>).
type Store struct {
	api API
	arn string
}

var _ edge.KeyAdmin = (*Store)(nil)

// New returns the store arn through api.
func New(api API, arn string) *Store { return &Store{api: api, arn: arn} }

// NewFromConfig builds the service client from cfg (credentials and
// retries; the endpoint comes from the ARN) and returns the store.
func NewFromConfig(cfg aws.Config, arn string, opts ...func(*cfkvs.Options)) *Store {
	return New(cfkvs.NewFromConfig(cfg, opts...), arn)
}

// listPage is the largest page ListKeys serves.
const listPage = 50

// KeyGet implements edge.KeyStore.
func (s *Store) KeyGet(ctx context.Context, key string) (string, error) {
	out, err := s.api.GetKey(ctx, &cfkvs.GetKeyInput{KvsARN: &s.arn, Key: &key})
	if err != nil {
		if notFound(err) {
			return "", fmt.Errorf("%w: %s", edge.ErrKeyNotFound, key)
		}
		return "", fmt.Errorf("kvs get %s: %w", key, err)
	}
	return aws.ToString(out.Value), nil
}

// KeyPut implements edge.KeyAdmin.
func (s *Store) KeyPut(ctx context.Context, key, value string) error {
	return s.write(ctx, "put "+key, func(etag *string) error {
		_, err := s.api.PutKey(ctx, &cfkvs.PutKeyInput{KvsARN: &s.arn, Key: &key, Value: &value, IfMatch: etag})
		return err
	})
}

// KeyDelete implements edge.KeyAdmin. Deleting an absent key is not an
// error: rotation only wants it gone.
func (s *Store) KeyDelete(ctx context.Context, key string) error {
	err := s.write(ctx, "delete "+key, func(etag *string) error {
		_, err := s.api.DeleteKey(ctx, &cfkvs.DeleteKeyInput{KvsARN: &s.arn, Key: &key, IfMatch: etag})
		return err
	})
	if notFound(err) {
		return nil
	}
	return err
}

// write runs op with the store's current ETag, which every write must name
// (optimistic concurrency over the whole store). When another writer got
// in between (ConflictException, or a precondition failure), it reads the
// ETag again and retries once: the only writer is the hourly rotation, so a
// second conflict means something else is writing and is worth reporting.
func (s *Store) write(ctx context.Context, what string, op func(etag *string) error) error {
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var d *cfkvs.DescribeKeyValueStoreOutput
		d, err = s.api.DescribeKeyValueStore(ctx, &cfkvs.DescribeKeyValueStoreInput{KvsARN: &s.arn})
		if err != nil {
			return fmt.Errorf("kvs %s: describe: %w", what, err)
		}
		if err = op(d.ETag); err == nil || !conflict(err) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("kvs %s: %w", what, err)
	}
	return nil
}

// KeyList implements edge.KeyAdmin. The API has no prefix filter: it pages
// through every key (the store holds a handful) and keeps the matching ones.
func (s *Store) KeyList(ctx context.Context, prefix string) (map[string]string, error) {
	out := map[string]string{}
	p := cfkvs.NewListKeysPaginator(s.api, &cfkvs.ListKeysInput{KvsARN: &s.arn, MaxResults: aws.Int32(listPage)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("kvs list %s: %w", prefix, err)
		}
		for _, it := range page.Items {
			if k := aws.ToString(it.Key); strings.HasPrefix(k, prefix) {
				out[k] = aws.ToString(it.Value)
			}
		}
	}
	return out, nil
}

func notFound(err error) bool {
	var nf *types.ResourceNotFoundException
	return errors.As(err, &nf)
}

// conflict: the ETag named in IfMatch is no longer the store's.
func conflict(err error) bool {
	var c *types.ConflictException
	return errors.As(err, &c)
}
