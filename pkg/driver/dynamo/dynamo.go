// Package dynamo implements the metadata item seam (storage.Items) on one
// DynamoDB table. Items map to attributes PK and SK (the table's keys),
// data (B), cnt (N), ver (N), touched (N) and expires (N, the table's TTL
// attribute). Conditions become condition expressions, transactions become
// TransactWriteItems, and expired items are hidden on every read because
// DynamoDB deletes them lazily. docs/dynamodb.md documents the layout.
package dynamo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/berth-registry/berth/pkg/storage"
)

// Attribute names.
const (
	attrPK      = "PK"
	attrSK      = "SK"
	attrData    = "data"
	attrCount   = "cnt"
	attrVersion = "ver"
	attrTouched = "touched"
	attrExpires = "expires"
)

// Store is a storage.Items on one DynamoDB table.
type Store struct {
	client      *dynamodb.Client
	table       string
	timeout     time.Duration
	attempts    int
	txAttempts  int
	backoffBase time.Duration
	backoffMax  time.Duration
	now         func() time.Time
	sleep       func(ctx context.Context, d time.Duration) error
}

var _ storage.Items = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithTimeout bounds every DynamoDB call (including the SDK's retries of
// it). Default 10 s.
func WithTimeout(d time.Duration) Option { return func(s *Store) { s.timeout = d } }

// WithRetries sets how many attempts the SDK makes per call for throttling,
// 5xx and connection errors (default 8), and how many times a transaction
// cancelled by a conflict with another transaction is retried (default 8).
func WithRetries(attempts, txAttempts int) Option {
	return func(s *Store) { s.attempts, s.txAttempts = attempts, txAttempts }
}

// WithBackoff sets the base and maximum delay between attempts
// (defaults 25 ms and 1 s; jittered exponential).
func WithBackoff(base, max time.Duration) Option {
	return func(s *Store) { s.backoffBase, s.backoffMax = base, max }
}

// WithClock sets the clock that decides which items are expired.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// New returns a Store on table, using client (whose endpoint, region and
// credentials the caller configured).
func New(client *dynamodb.Client, table string, opts ...Option) *Store {
	s := &Store{
		client:      client,
		table:       table,
		timeout:     10 * time.Second,
		attempts:    8,
		txAttempts:  8,
		backoffBase: 25 * time.Millisecond,
		backoffMax:  time.Second,
		now:         time.Now,
		sleep:       sleepCtx,
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Table returns the table name.
func (s *Store) Table() string { return s.table }

// CreateTable creates the table with the production settings (keys PK/SK
// as strings, on-demand billing, TTL on expires) and waits until it is
// active. An existing table is left as it is, apart from enabling TTL.
func (s *Store) CreateTable(ctx context.Context) error {
	_, err := s.client.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String(s.table),
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(attrPK), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(attrSK), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(attrPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(attrSK), KeyType: types.KeyTypeRange},
		},
		BillingMode: types.BillingModePayPerRequest,
	}, s.callOpts)
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("dynamodb: create table %s: %w", s.table, err)
	}
	w := dynamodb.NewTableExistsWaiter(s.client, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 100*time.Millisecond, 2*time.Second
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.table)}, 5*time.Minute); err != nil {
		return fmt.Errorf("dynamodb: wait for table %s: %w", s.table, err)
	}
	ttl, err := s.client.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(s.table)}, s.callOpts)
	if err != nil {
		return fmt.Errorf("dynamodb: describe ttl of %s: %w", s.table, err)
	}
	if d := ttl.TimeToLiveDescription; d != nil && aws.ToString(d.AttributeName) == attrExpires &&
		(d.TimeToLiveStatus == types.TimeToLiveStatusEnabled || d.TimeToLiveStatus == types.TimeToLiveStatusEnabling) {
		return nil
	}
	_, err = s.client.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName: aws.String(s.table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{
			AttributeName: aws.String(attrExpires),
			Enabled:       aws.Bool(true),
		},
	}, s.callOpts)
	if err != nil {
		return fmt.Errorf("dynamodb: enable ttl on %s: %w", s.table, err)
	}
	return nil
}

// DeleteTable removes the table (tests and teardown).
func (s *Store) DeleteTable(ctx context.Context) error {
	_, err := s.client.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(s.table)}, s.callOpts)
	var nf *types.ResourceNotFoundException
	if err != nil && !errors.As(err, &nf) {
		return fmt.Errorf("dynamodb: delete table %s: %w", s.table, err)
	}
	return nil
}

// retryables extends the SDK's defaults with DynamoDB's transient errors
// that are not in them.
var retryables = []string{"TransactionConflictException", "InternalServerError", "ServiceUnavailable"}

// callOpts applies the driver's retry policy to one SDK call.
func (s *Store) callOpts(o *dynamodb.Options) {
	o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
		so.MaxAttempts = s.attempts
		so.MaxBackoff = s.backoffMax
		// Bursts of throttling in one Lambda must not exhaust a shared
		// token bucket and fail calls that would have succeeded.
		so.RateLimiter = ratelimit.None
		so.Retryables = append(so.Retryables, retry.RetryableErrorCode{Codes: codeSet(retryables)})
	})
}

func codeSet(codes []string) map[string]struct{} {
	m := make(map[string]struct{}, len(codes))
	for _, c := range codes {
		m[c] = struct{}{}
	}
	return m
}

// call runs fn with the per-call deadline and maps transport failures.
func call[T any](ctx context.Context, s *Store, what string, fn func(ctx context.Context) (T, error)) (T, error) {
	cctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	out, err := fn(cctx)
	if err != nil {
		return out, s.mapErr(ctx, what, err)
	}
	return out, nil
}

// mapErr turns an SDK error into one wrapping the storage sentinels.
func (s *Store) mapErr(ctx context.Context, what string, err error) error {
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return fmt.Errorf("dynamodb %s: %w", what, storage.ErrConditionFailed)
	}
	if ctx.Err() != nil {
		// The caller gave up; that is not the backend's fault.
		return fmt.Errorf("dynamodb %s: %w", what, ctx.Err())
	}
	if isTooLarge(err) {
		return fmt.Errorf("dynamodb %s: %w: %v", what, storage.ErrTooLarge, err)
	}
	if transient(err) {
		return fmt.Errorf("dynamodb %s: %w: %v", what, storage.ErrUnavailable, err)
	}
	return fmt.Errorf("dynamodb %s: %w", what, err)
}

func isTooLarge(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "ValidationException" {
		return false
	}
	return containsAny(ae.ErrorMessage(), "item size", "maximum allowed size")
}

func containsAny(s string, subs ...string) bool {
	s = strings.ToLower(s)
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// transient reports whether err is the kind a retry could cure: what the
// retryer gave up on, throttling, 5xx, connection errors and timeouts.
func transient(err error) bool {
	var mae *retry.MaxAttemptsError
	if errors.As(err, &mae) {
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var qe ratelimit.QuotaExceededError
	if errors.As(err, &qe) {
		return true
	}
	if retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		if _, ok := codeSet(retryables)[ae.ErrorCode()]; ok {
			return true
		}
		return ae.ErrorFault() == smithy.FaultServer
	}
	return false
}

// backoff returns the jittered delay before retry number attempt (0-based).
func (s *Store) backoff(attempt int) time.Duration {
	d := s.backoffBase << min(attempt, 16)
	if d <= 0 || d > s.backoffMax {
		d = s.backoffMax
	}
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
