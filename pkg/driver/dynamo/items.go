package dynamo

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/berth-registry/berth/pkg/storage"
)

// raceAttempts bounds the loops that resolve a race with a concurrent
// writer or an expired item in the way; each turn is caused by another
// write landing in between, so a handful is plenty.
const raceAttempts = 8

var errRace = errors.New("dynamodb: item kept changing under a conditional write")

func (s *Store) unix() int64 { return s.now().Unix() }

// ItemGet returns the live item at pk/sk.
func (s *Store) ItemGet(ctx context.Context, pk, sk string) (storage.Item, error) {
	out, err := call(ctx, s, "GetItem", func(ctx context.Context) (*dynamodb.GetItemOutput, error) {
		return s.client.GetItem(ctx, &dynamodb.GetItemInput{
			TableName:      aws.String(s.table),
			Key:            key(pk, sk),
			ConsistentRead: aws.Bool(true),
		}, s.callOpts)
	})
	if err != nil {
		return storage.Item{}, err
	}
	if out.Item == nil {
		return storage.Item{}, fmt.Errorf("item %s/%s: %w", pk, sk, storage.ErrNotFound)
	}
	it, err := decode(out.Item)
	if err != nil {
		return storage.Item{}, err
	}
	if expired(it, s.unix()) {
		return storage.Item{}, fmt.Errorf("item %s/%s (expired): %w", pk, sk, storage.ErrNotFound)
	}
	return it, nil
}

// ItemPut writes it whole if c holds.
func (s *Store) ItemPut(ctx context.Context, it storage.Item, c storage.Cond) error {
	if err := checkSize(it); err != nil {
		return err
	}
	for range raceAttempts {
		w := putWrite(it, c, s.unix())
		_, err := s.exec(ctx, w, types.ReturnValueNone)
		if err == nil || !w.guarded || !errors.Is(err, storage.ErrConditionFailed) {
			return err
		}
		// An expired item holds the key: remove it so the put starts afresh.
		if err := s.purge(ctx, it.PK, it.SK); err != nil {
			return err
		}
	}
	return fmt.Errorf("put %s/%s: %w", it.PK, it.SK, errRace)
}

// ItemAdd adds delta to the item's counter (creating the item if it is
// absent and c allows) and returns the item after the update.
func (s *Store) ItemAdd(ctx context.Context, it storage.Item, delta int64, c storage.Cond) (storage.Item, error) {
	if err := checkSize(it); err != nil {
		return storage.Item{}, err
	}
	for range raceAttempts {
		cc := c
		in := it
		if addNeedsRead(it, c) {
			var err error
			if in, cc, err = s.resolveAdd(ctx, it); err != nil {
				return storage.Item{}, err
			}
		}
		w := addWrite(in, delta, cc, s.unix())
		out, err := s.exec(ctx, w, types.ReturnValueAllNew)
		switch {
		case err == nil && w.put != nil:
			created := in
			created.Count, created.Version = delta, 1
			return created, nil
		case err == nil:
			return decode(out)
		case !errors.Is(err, storage.ErrConditionFailed):
			return storage.Item{}, err
		case w.guarded:
			if err := s.purge(ctx, it.PK, it.SK); err != nil {
				return storage.Item{}, err
			}
		case cc != c:
			// The item changed since resolveAdd read it: read again.
		default:
			return storage.Item{}, err
		}
	}
	return storage.Item{}, fmt.Errorf("add %s/%s: %w", it.PK, it.SK, errRace)
}

// resolveAdd turns a CondNone add that carries an expiry into one whose
// outcome does not depend on whether the item exists: a version-checked
// update of the live item (keeping its expiry), or a create.
func (s *Store) resolveAdd(ctx context.Context, it storage.Item) (storage.Item, storage.Cond, error) {
	cur, err := s.ItemGet(ctx, it.PK, it.SK)
	switch {
	case err == nil:
		it.Expires = 0
		return it, storage.IfVersion(cur.Version), nil
	case errors.Is(err, storage.ErrNotFound):
		return it, storage.IfNotExists, nil
	default:
		return it, storage.Cond{}, err
	}
}

// ItemDelete removes the item if c holds.
func (s *Store) ItemDelete(ctx context.Context, pk, sk string, c storage.Cond) error {
	_, err := s.exec(ctx, deleteWrite(pk, sk, c, s.unix()), types.ReturnValueNone)
	return err
}

// purge removes pk/sk if it is expired (and leaves it alone otherwise).
func (s *Store) purge(ctx context.Context, pk, sk string) error {
	e := newExpr()
	cond := fmt.Sprintf("%s <= %s", e.n(attrExpires), e.num("now", s.unix()))
	_, err := s.exec(ctx, write{key: key(pk, sk), cond: cond, e: e}, types.ReturnValueNone)
	if errors.Is(err, storage.ErrConditionFailed) {
		return nil // gone or alive again: either way, retry the write
	}
	return err
}

// exec performs one single-item write. A write with neither put nor update
// is a delete.
func (s *Store) exec(ctx context.Context, w write, rv types.ReturnValue) (map[string]types.AttributeValue, error) {
	switch {
	case w.put != nil:
		_, err := call(ctx, s, "PutItem", func(ctx context.Context) (*dynamodb.PutItemOutput, error) {
			return s.client.PutItem(ctx, &dynamodb.PutItemInput{
				TableName:                 aws.String(s.table),
				Item:                      w.put,
				ConditionExpression:       w.condPtr(),
				ExpressionAttributeNames:  w.e.attrNames(),
				ExpressionAttributeValues: w.e.attrValues(),
			}, s.callOpts)
		})
		return nil, err
	case w.update != "":
		out, err := call(ctx, s, "UpdateItem", func(ctx context.Context) (*dynamodb.UpdateItemOutput, error) {
			return s.client.UpdateItem(ctx, &dynamodb.UpdateItemInput{
				TableName:                 aws.String(s.table),
				Key:                       w.key,
				UpdateExpression:          aws.String(w.update),
				ConditionExpression:       w.condPtr(),
				ExpressionAttributeNames:  w.e.attrNames(),
				ExpressionAttributeValues: w.e.attrValues(),
				ReturnValues:              rv,
			}, s.callOpts)
		})
		if err != nil {
			return nil, err
		}
		return out.Attributes, nil
	default:
		_, err := call(ctx, s, "DeleteItem", func(ctx context.Context) (*dynamodb.DeleteItemOutput, error) {
			return s.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
				TableName:                 aws.String(s.table),
				Key:                       w.key,
				ConditionExpression:       w.condPtr(),
				ExpressionAttributeNames:  w.e.attrNames(),
				ExpressionAttributeValues: w.e.attrValues(),
			}, s.callOpts)
		})
		return nil, err
	}
}

// ItemQuery pages through partition pk in SK order: items whose SK starts
// with prefix and sorts strictly after after.
func (s *Store) ItemQuery(ctx context.Context, pk, prefix, after string, limit int) ([]storage.Item, bool, error) {
	if limit <= 0 {
		return nil, false, fmt.Errorf("dynamodb query: limit %d: must be positive", limit)
	}
	var start map[string]types.AttributeValue
	if after != "" && after >= prefix {
		if !strings.HasPrefix(after, prefix) {
			// after sorts beyond every key with the prefix.
			return nil, false, nil
		}
		start = key(pk, after)
	}
	now := s.unix()
	e := newExpr()
	kc := fmt.Sprintf("%s = %s", e.n(attrPK), e.v("pk", strAV(pk)))
	if prefix != "" {
		kc += fmt.Sprintf(" AND begins_with(%s, %s)", e.n(attrSK), e.v("prefix", strAV(prefix)))
	}
	filter := e.notExpired(now)
	var items []storage.Item
	for {
		out, err := call(ctx, s, "Query", func(ctx context.Context) (*dynamodb.QueryOutput, error) {
			return s.client.Query(ctx, &dynamodb.QueryInput{
				TableName:                 aws.String(s.table),
				KeyConditionExpression:    aws.String(kc),
				FilterExpression:          aws.String(filter),
				ExpressionAttributeNames:  e.attrNames(),
				ExpressionAttributeValues: e.attrValues(),
				ExclusiveStartKey:         start,
				ConsistentRead:            aws.Bool(true),
				// One more than asked tells whether more follow.
				Limit: aws.Int32(int32(min(limit-len(items)+1, 1<<20))),
			}, s.callOpts)
		})
		if err != nil {
			return nil, false, err
		}
		for _, m := range out.Items {
			it, err := decode(m)
			if err != nil {
				return nil, false, err
			}
			items = append(items, it)
		}
		if len(items) > limit {
			return items[:limit], true, nil
		}
		if out.LastEvaluatedKey == nil {
			return items, false, nil
		}
		start = out.LastEvaluatedKey
	}
}

// scanCursor is ItemScan's opaque cursor: the key to resume after.
type scanCursor struct {
	PK string `json:"p"`
	SK string `json:"s"`
}

// ItemScan pages through the whole table for items whose PK starts with
// pkPrefix (background jobs only).
func (s *Store) ItemScan(ctx context.Context, pkPrefix, cursor string, limit int) ([]storage.Item, string, error) {
	if limit <= 0 {
		return nil, "", fmt.Errorf("dynamodb scan: limit %d: must be positive", limit)
	}
	var start map[string]types.AttributeValue
	if cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(cursor)
		var c scanCursor
		if err == nil {
			err = json.Unmarshal(b, &c)
		}
		if err != nil {
			return nil, "", fmt.Errorf("dynamodb scan: bad cursor: %w", err)
		}
		start = key(c.PK, c.SK)
	}
	now := s.unix()
	e := newExpr()
	filter := e.notExpired(now)
	if pkPrefix != "" {
		filter = fmt.Sprintf("begins_with(%s, %s) AND %s", e.n(attrPK), e.v("pfx", strAV(pkPrefix)), filter)
	}
	var items []storage.Item
	for {
		out, err := call(ctx, s, "Scan", func(ctx context.Context) (*dynamodb.ScanOutput, error) {
			return s.client.Scan(ctx, &dynamodb.ScanInput{
				TableName:                 aws.String(s.table),
				FilterExpression:          aws.String(filter),
				ExpressionAttributeNames:  e.attrNames(),
				ExpressionAttributeValues: e.attrValues(),
				ExclusiveStartKey:         start,
				ConsistentRead:            aws.Bool(true),
				Limit:                     aws.Int32(int32(max(limit, 100))),
			}, s.callOpts)
		})
		if err != nil {
			return nil, "", err
		}
		for i, m := range out.Items {
			it, err := decode(m)
			if err != nil {
				return nil, "", err
			}
			items = append(items, it)
			if len(items) == limit {
				// Resume after the last item returned (a key is a valid
				// scan position whether or not the item still exists).
				b, _ := json.Marshal(scanCursor{PK: it.PK, SK: it.SK})
				if out.LastEvaluatedKey == nil && i == len(out.Items)-1 {
					return items, "", nil
				}
				return items, base64.RawURLEncoding.EncodeToString(b), nil
			}
		}
		if out.LastEvaluatedKey == nil {
			return items, "", nil
		}
		start = out.LastEvaluatedKey
	}
}
