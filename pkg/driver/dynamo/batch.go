package dynamo

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/berth-registry/berth/pkg/storage"
)

var _ storage.ItemBatchGetter = (*Store)(nil)

// maxBatchGet is BatchGetItem's limit on keys per request.
const maxBatchGet = 100

// ItemGetBatch reads keys with strongly consistent BatchGetItem calls of at
// most 100 keys. DynamoDB may leave keys unprocessed (throttling, the 16 MB
// response limit); they are asked for again after a backoff, so the answer
// is always complete or an error.
func (s *Store) ItemGetBatch(ctx context.Context, keys []storage.Key) ([]storage.Item, error) {
	// BatchGetItem refuses a request that names one key twice.
	seen := make(map[storage.Key]bool, len(keys))
	var pending []map[string]types.AttributeValue
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			pending = append(pending, key(k.PK, k.SK))
		}
	}
	now := s.unix()
	var items []storage.Item
	for attempt := 0; len(pending) > 0; {
		n := min(len(pending), maxBatchGet)
		req := pending[:n:n]
		out, err := call(ctx, s, "BatchGetItem", func(ctx context.Context) (*dynamodb.BatchGetItemOutput, error) {
			return s.client.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{
				RequestItems: map[string]types.KeysAndAttributes{
					s.table: {Keys: req, ConsistentRead: aws.Bool(true)},
				},
			}, s.callOpts)
		})
		if err != nil {
			return nil, err
		}
		for _, m := range out.Responses[s.table] {
			it, err := decode(m)
			if err != nil {
				return nil, err
			}
			if !expired(it, now) {
				items = append(items, it)
			}
		}
		pending = pending[n:]
		left := out.UnprocessedKeys[s.table].Keys
		if len(left) == 0 {
			attempt = 0
			continue
		}
		if attempt >= s.attempts {
			return nil, fmt.Errorf("dynamodb BatchGetItem: %d keys still unprocessed after %d attempts: %w",
				len(left), attempt+1, storage.ErrUnavailable)
		}
		if err := sleepCtx(ctx, s.backoff(attempt)); err != nil {
			return nil, err
		}
		attempt++
		pending = append(left, pending...)
	}
	return items, nil
}
