package dynamo_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/driver/dynamo"
	"github.com/berth-registry/berth/pkg/storage"
)

// faultyHTTP answers the first n requests with a canned DynamoDB error (or
// hangs until the request is cancelled when hang is set), then passes
// requests through to the real DynamoDB Local.
type faultyHTTP struct {
	mu     sync.Mutex
	n      int
	status int
	body   string
	hang   bool
	seen   int
}

func (f *faultyHTTP) Do(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	f.seen++
	fail := f.n != 0
	if f.n > 0 {
		f.n--
	}
	f.mu.Unlock()
	if !fail {
		return http.DefaultClient.Do(r)
	}
	if f.hang {
		<-r.Context().Done()
		return nil, r.Context().Err()
	}
	return &http.Response{
		StatusCode: f.status,
		Header:     http.Header{"Content-Type": {"application/x-amz-json-1.0"}},
		Body:       io.NopCloser(strings.NewReader(f.body)),
		Request:    r,
	}, nil
}

func (f *faultyHTTP) requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen
}

const (
	throttling  = `{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}`
	serverError = `{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal server error"}`
	txConflict  = `{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","message":"Transaction cancelled, please refer cancellation reasons for specific reasons [None, TransactionConflict]","CancellationReasons":[{"Code":"None"},{"Code":"TransactionConflict","Message":"Transaction is ongoing for the item"}]}`
)

// faultyStore returns a Store on a fresh table whose requests go through f
// once the table exists. n < 0 fails every request.
func faultyStore(t *testing.T, f *faultyHTTP, opts ...dynamo.Option) *dynamo.Store {
	t.Helper()
	table := testenv.FreshTable(t, testenv.DynamoDB(t))
	client := testenv.DynamoDB(t, func(o *dynamodb.Options) { o.HTTPClient = f })
	opts = append([]dynamo.Option{dynamo.WithBackoff(time.Millisecond, 5*time.Millisecond), dynamo.WithRetries(4, 3)}, opts...)
	return dynamo.New(client, table, opts...)
}

func TestRetriedThenSucceeds(t *testing.T) {
	for name, body := range map[string]struct {
		status int
		body   string
	}{"throttling": {400, throttling}, "5xx": {500, serverError}} {
		t.Run(name, func(t *testing.T) {
			f := &faultyHTTP{n: 3, status: body.status, body: body.body}
			s := faultyStore(t, f)
			err := s.ItemPut(t.Context(), storage.Item{PK: "p", SK: "s", Data: []byte("x")}, storage.IfNone)
			if err != nil {
				t.Fatalf("put after 3 transient errors with 4 attempts: %v", err)
			}
			if got := f.requests(); got != 4 {
				t.Fatalf("%d requests, want 4", got)
			}
			it, err := s.ItemGet(t.Context(), "p", "s")
			if err != nil || string(it.Data) != "x" {
				t.Fatalf("get: %v %q", err, it.Data)
			}
		})
	}
}

func TestRetriesExhausted(t *testing.T) {
	for name, body := range map[string]struct {
		status int
		body   string
	}{"throttling": {400, throttling}, "5xx": {500, serverError}} {
		t.Run(name, func(t *testing.T) {
			f := &faultyHTTP{n: -1, status: body.status, body: body.body}
			s := faultyStore(t, f)
			_, err := s.ItemGet(t.Context(), "p", "s")
			if !errors.Is(err, storage.ErrUnavailable) {
				t.Fatalf("get with every attempt failing: %v, want ErrUnavailable", err)
			}
			if got := f.requests(); got != 4 {
				t.Fatalf("%d requests, want 4", got)
			}
		})
	}
}

func TestTransactionConflictRetried(t *testing.T) {
	ops := []storage.Op{
		{Kind: storage.OpPut, Item: storage.Item{PK: "a", SK: "1"}},
		{Kind: storage.OpAdd, Item: storage.Item{PK: "b", SK: "1"}, Delta: 1},
	}
	f := &faultyHTTP{n: 2, status: 400, body: txConflict}
	s := faultyStore(t, f)
	if err := s.Transact(t.Context(), ops); err != nil {
		t.Fatalf("transaction after 2 conflicts with 3 attempts: %v", err)
	}
	if got := f.requests(); got != 3 {
		t.Fatalf("%d requests, want 3", got)
	}
	it, err := s.ItemGet(t.Context(), "b", "1")
	if err != nil || it.Count != 1 {
		t.Fatalf("add applied once? %v count %d", err, it.Count)
	}

	f = &faultyHTTP{n: -1, status: 400, body: txConflict}
	s = faultyStore(t, f)
	err = s.Transact(t.Context(), ops)
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("transaction conflicting every time: %v, want ErrUnavailable", err)
	}
	var tx *storage.TxError
	if errors.As(err, &tx) || errors.Is(err, storage.ErrConditionFailed) {
		t.Fatalf("a conflict is not a failed condition: %v", err)
	}
	if got := f.requests(); got != 3 {
		t.Fatalf("%d requests, want 3", got)
	}
}

func TestTimeout(t *testing.T) {
	f := &faultyHTTP{n: -1, hang: true}
	s := faultyStore(t, f, dynamo.WithTimeout(200*time.Millisecond))
	start := time.Now()
	_, err := s.ItemGet(t.Context(), "p", "s")
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("get from a hanging backend: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("deadline not applied: took %v", d)
	}
	// A caller that gives up gets its own error, not ErrUnavailable.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.ItemGet(ctx, "p", "s"); !errors.Is(err, context.Canceled) {
		t.Fatalf("get with a cancelled context: %v", err)
	}
}
