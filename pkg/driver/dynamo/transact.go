package dynamo

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/berth-registry/berth/pkg/storage"
)

// Transact applies ops atomically with TransactWriteItems. Cancellations
// caused by conflicting transactions or throttling are retried with
// backoff; a failed condition is reported as *storage.TxError.
func (s *Store) Transact(ctx context.Context, ops []storage.Op) error {
	if len(ops) == 0 {
		return nil
	}
	if len(ops) > storage.MaxTransactOps {
		return fmt.Errorf("dynamodb transaction of %d ops (limit %d): %w", len(ops), storage.MaxTransactOps, storage.ErrTooLarge)
	}
	for _, op := range ops {
		if err := checkSize(op.Item); err != nil {
			return err
		}
	}
	conflicts, races := 0, 0
	for {
		writes, resolved, err := s.render(ctx, ops)
		if err != nil {
			return err
		}
		items := make([]types.TransactWriteItem, len(writes))
		for i, w := range writes {
			items[i] = transactItem(s.table, ops[i].Kind, w)
		}
		_, err = call(ctx, s, "TransactWriteItems", func(ctx context.Context) (*dynamodb.TransactWriteItemsOutput, error) {
			return s.client.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items}, s.callOpts)
		})
		if err == nil {
			return nil
		}
		var tce *types.TransactionCanceledException
		if !errors.As(err, &tce) {
			return err
		}
		retry, err := s.cancelled(ctx, tce, ops, writes, resolved)
		switch retry {
		case retryNo:
			return err
		case retryRace:
			if races++; races >= raceAttempts {
				return fmt.Errorf("dynamodb transaction: %w", errRace)
			}
		case retryConflict:
			if conflicts++; conflicts >= s.txAttempts {
				return fmt.Errorf("dynamodb transaction: %d attempts cancelled: %w: %v", conflicts, storage.ErrUnavailable, err)
			}
			if err := s.sleep(ctx, s.backoff(conflicts-1)); err != nil {
				return fmt.Errorf("dynamodb transaction: %w", err)
			}
		}
	}
}

type retryKind int

const (
	retryNo       retryKind = iota // return the error
	retryRace                      // an expired item or a concurrent change: retry at once
	retryConflict                  // another transaction or throttling: back off
)

// cancelled decides what a TransactionCanceledException means.
func (s *Store) cancelled(ctx context.Context, tce *types.TransactionCanceledException, ops []storage.Op, writes []write, resolved []bool) (retryKind, error) {
	reasons := tce.CancellationReasons
	kind := retryNo
	var purge []int
	for i, r := range reasons {
		if i >= len(ops) {
			break
		}
		switch aws.ToString(r.Code) {
		case "ConditionalCheckFailed":
			switch {
			case writes[i].guarded:
				purge = append(purge, i)
			case resolved[i]:
				kind = max(kind, retryRace)
			default:
				// A real condition failure decides the outcome.
				return retryNo, &storage.TxError{Index: i, Err: fmt.Errorf("dynamodb transaction op %d (%s/%s): %w",
					i, ops[i].Item.PK, ops[i].Item.SK, storage.ErrConditionFailed)}
			}
		case "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded":
			kind = retryConflict
		case "ValidationError":
			msg := aws.ToString(r.Message)
			if containsAny(msg, "item size", "maximum allowed size") {
				return retryNo, fmt.Errorf("dynamodb transaction op %d: %w: %s", i, storage.ErrTooLarge, msg)
			}
			return retryNo, fmt.Errorf("dynamodb transaction op %d: %s", i, msg)
		}
	}
	for _, i := range purge {
		if err := s.purge(ctx, ops[i].Item.PK, ops[i].Item.SK); err != nil {
			return retryNo, err
		}
		kind = max(kind, retryRace)
	}
	if kind == retryNo {
		return retryNo, fmt.Errorf("dynamodb transaction: %w", tce)
	}
	return kind, tce
}

// render turns ops into writes; resolved marks adds whose shape depended
// on a read (a failed condition there means: read again).
func (s *Store) render(ctx context.Context, ops []storage.Op) ([]write, []bool, error) {
	now := s.unix()
	writes := make([]write, len(ops))
	resolved := make([]bool, len(ops))
	for i, op := range ops {
		switch op.Kind {
		case storage.OpPut:
			writes[i] = putWrite(op.Item, op.Cond, now)
		case storage.OpAdd:
			it, c := op.Item, op.Cond
			if addNeedsRead(it, c) {
				var err error
				if it, c, err = s.resolveAdd(ctx, it); err != nil {
					return nil, nil, err
				}
				resolved[i] = true
			}
			writes[i] = addWrite(it, op.Delta, c, now)
		case storage.OpDelete:
			writes[i] = deleteWrite(op.Item.PK, op.Item.SK, op.Cond, now)
		case storage.OpCheck:
			writes[i] = checkWrite(op.Item.PK, op.Item.SK, op.Cond, now)
		default:
			return nil, nil, fmt.Errorf("dynamodb transaction op %d: unknown kind %d", i, op.Kind)
		}
	}
	return writes, resolved, nil
}

func transactItem(table string, kind storage.OpKind, w write) types.TransactWriteItem {
	names, values, cond := w.e.attrNames(), w.e.attrValues(), w.condPtr()
	switch {
	case kind == storage.OpCheck:
		return types.TransactWriteItem{ConditionCheck: &types.ConditionCheck{
			TableName: aws.String(table), Key: w.key, ConditionExpression: cond,
			ExpressionAttributeNames: names, ExpressionAttributeValues: values,
		}}
	case w.put != nil:
		return types.TransactWriteItem{Put: &types.Put{
			TableName: aws.String(table), Item: w.put, ConditionExpression: cond,
			ExpressionAttributeNames: names, ExpressionAttributeValues: values,
		}}
	case w.update != "":
		return types.TransactWriteItem{Update: &types.Update{
			TableName: aws.String(table), Key: w.key, UpdateExpression: aws.String(w.update),
			ConditionExpression: cond, ExpressionAttributeNames: names, ExpressionAttributeValues: values,
		}}
	default:
		return types.TransactWriteItem{Delete: &types.Delete{
			TableName: aws.String(table), Key: w.key, ConditionExpression: cond,
			ExpressionAttributeNames: names, ExpressionAttributeValues: values,
		}}
	}
}
