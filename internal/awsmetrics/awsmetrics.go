// Package awsmetrics counts the requests the AWS SDK sends, per service
// and operation, so tests and benchmarks can state what an operation costs
// (every retry attempt is a request and is counted).
//
//	c := awsmetrics.New()
//	client := s3.NewFromConfig(cfg, func(o *s3.Options) { o.APIOptions = append(o.APIOptions, c.AddTo) })
package awsmetrics

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go/middleware"

	"github.com/berth-registry/berth/pkg/metrics"
)

// Counter counts requests. The zero value is not usable; use New.
type Counter struct {
	mu sync.Mutex
	n  map[string]int
}

// New returns an empty Counter.
func New() *Counter { return &Counter{n: map[string]int{}} }

// AddTo installs the counting middleware on an SDK operation stack; pass it
// in a client's APIOptions. It sits after the retry middleware, so each
// attempt on the wire counts once.
func (c *Counter) AddTo(stack *middleware.Stack) error {
	return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("berth/awsmetrics",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			c.inc(awsmiddleware.GetServiceID(ctx) + "." + awsmiddleware.GetOperationName(ctx))
			return next.HandleFinalize(ctx, in)
		}), middleware.After)
}

func (c *Counter) inc(k string) {
	c.mu.Lock()
	c.n[k]++
	c.mu.Unlock()
}

// Snapshot returns the counts so far, keyed "Service.Operation"
// (for example "S3.UploadPart", "DynamoDB.TransactWriteItems").
func (c *Counter) Snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

// Get returns the count of one "Service.Operation".
func (c *Counter) Get(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[op]
}

// Total returns the number of requests to service ("S3", "DynamoDB"), or
// to all services when service is empty.
func (c *Counter) Total(service string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := 0
	for k, v := range c.n {
		if service == "" || strings.HasPrefix(k, service+".") {
			t += v
		}
	}
	return t
}

// Reset zeroes every count.
func (c *Counter) Reset() {
	c.mu.Lock()
	clear(c.n)
	c.mu.Unlock()
}

// String lists the counts in a stable order: "S3.PutObject=2 S3.UploadPart=13".
func (c *Counter) String() string {
	snap := c.Snapshot()
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(snap)) {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, snap[k])
	}
	return b.String()
}

// counter adds to a named counter (metrics.EMF, prom.Recorder).
type counter interface {
	Add(name string, v float64)
}

// Retries returns an SDK APIOption (append it to aws.Config.APIOptions)
// that counts, per operation call to DynamoDB or S3, the retry attempts
// (metrics.DynamoDBRetries, S3Retries: every attempt after the first) and
// the attempts that failed with a throttling error code
// (DynamoDBThrottles, S3Throttles; the SDK's own list of codes:
// ThrottlingException, ProvisionedThroughputExceededException, SlowDown…).
// Calls to other services are not counted. It sits at the start of the
// stack, outside the retry middleware, and reads the attempts that
// middleware reports.
func Retries(rec counter) func(*middleware.Stack) error {
	throttle := retry.IsErrorThrottles(retry.DefaultThrottles)
	return func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("berth/awsmetrics/retries",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				out, md, err := next.HandleInitialize(ctx, in)
				var retries, throttles string
				switch awsmiddleware.GetServiceID(ctx) {
				case "DynamoDB":
					retries, throttles = metrics.DynamoDBRetries, metrics.DynamoDBThrottles
				case "S3":
					retries, throttles = metrics.S3Retries, metrics.S3Throttles
				default:
					return out, md, err
				}
				if res, ok := retry.GetAttemptResults(md); ok && len(res.Results) > 0 {
					if n := len(res.Results) - 1; n > 0 {
						rec.Add(retries, float64(n))
					}
					t := 0
					for _, a := range res.Results {
						if a.Err != nil && throttle.IsErrorThrottle(a.Err) == aws.TrueTernary {
							t++
						}
					}
					if t > 0 {
						rec.Add(throttles, float64(t))
					}
				}
				return out, md, err
			}), middleware.Before)
	}
}
