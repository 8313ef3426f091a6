package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"
)

// EMF aggregates what one Lambda invocation records and writes it as one
// CloudWatch Embedded Metric Format line when Flush is called (Invocation
// and InvocationErr call it after each invocation): a line per invocation
// rather than per metric keeps log volume, and CloudWatch's extraction, to
// one small JSON object per request. Counters carry the dimension
// Function; Requests and Latency also Route and StatusClass. A Lambda
// function serves one request per invocation, so a line holds one route;
// should an invocation serve several, each further route gets a line of
// its own.
type EMF struct {
	w        io.Writer
	function string
	now      func() time.Time

	mu     sync.Mutex
	counts map[string]float64
	reqs   []reqAgg
}

type reqAgg struct {
	route, class string
	n            int
	ms           []float64
}

// maxValues is EMF's limit on the values of one metric in one document.
const maxValues = 100

// NewEMF returns a recorder writing to w (stdout in a function, where the
// Lambda service sends it to the function's log group) for the function
// named function (AWS_LAMBDA_FUNCTION_NAME).
func NewEMF(w io.Writer, function string) *EMF {
	if function == "" {
		function = "berth"
	}
	return &EMF{w: w, function: function, now: time.Now, counts: map[string]float64{}}
}

// Add implements Recorder.
func (e *EMF) Add(name string, v float64) {
	e.mu.Lock()
	e.counts[name] += v
	e.mu.Unlock()
}

// Request implements Recorder.
func (e *EMF) Request(route string, status int, elapsed time.Duration) {
	class := StatusClass(status)
	ms := float64(elapsed.Microseconds()) / 1000
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range e.reqs {
		if a := &e.reqs[i]; a.route == route && a.class == class {
			a.n++
			if len(a.ms) < maxValues {
				a.ms = append(a.ms, ms)
			}
			return
		}
	}
	e.reqs = append(e.reqs, reqAgg{route: route, class: class, n: 1, ms: []float64{ms}})
}

// Flush writes what was recorded since the last Flush and forgets it;
// nothing when nothing was recorded.
func (e *EMF) Flush() error {
	e.mu.Lock()
	counts, reqs := e.counts, e.reqs
	e.counts, e.reqs = map[string]float64{}, nil
	e.mu.Unlock()
	if len(counts) == 0 && len(reqs) == 0 {
		return nil
	}
	ts := e.now().UnixMilli()
	var lines []byte
	for i := 0; i == 0 || i < len(reqs); i++ {
		doc := map[string]any{"Function": e.function, "log": "metrics"}
		var directives []directive
		if i < len(reqs) {
			a := reqs[i]
			doc["Route"], doc["StatusClass"], doc[Requests] = a.route, a.class, a.n
			if len(a.ms) == 1 {
				doc[Latency] = a.ms[0]
			} else {
				doc[Latency] = a.ms
			}
			directives = append(directives, directive{
				Namespace:  Namespace,
				Dimensions: [][]string{{"Function", "Route", "StatusClass"}},
				Metrics:    []metricDef{{Requests, "Count"}, {Latency, "Milliseconds"}},
			})
		}
		if i == 0 && len(counts) > 0 {
			d := directive{Namespace: Namespace, Dimensions: [][]string{{"Function"}}}
			for _, name := range slices.Sorted(maps.Keys(counts)) {
				doc[name] = counts[name]
				d.Metrics = append(d.Metrics, metricDef{name, unitOf(name)})
			}
			directives = append(directives, d)
		}
		doc["_aws"] = awsBlock{Timestamp: ts, CloudWatchMetrics: directives}
		b, err := json.Marshal(doc)
		if err != nil {
			return fmt.Errorf("emf: %w", err)
		}
		lines = append(append(lines, b...), '\n')
	}
	if _, err := e.w.Write(lines); err != nil {
		return fmt.Errorf("emf: %w", err)
	}
	return nil
}

type awsBlock struct {
	Timestamp         int64       `json:"Timestamp"`
	CloudWatchMetrics []directive `json:"CloudWatchMetrics"`
}

type directive struct {
	Namespace  string      `json:"Namespace"`
	Dimensions [][]string  `json:"Dimensions"`
	Metrics    []metricDef `json:"Metrics"`
}

type metricDef struct {
	Name string `json:"Name"`
	Unit string `json:"Unit"`
}

func unitOf(name string) string {
	for _, d := range Counters() {
		if d.Name == name {
			return d.Unit
		}
	}
	return "Count"
}

// Invocation wraps a Lambda handler so that e is flushed after each
// invocation.
func Invocation[E, R any](e *EMF, h func(context.Context, E) (R, error)) func(context.Context, E) (R, error) {
	return func(ctx context.Context, ev E) (R, error) {
		defer func() { _ = e.Flush() }()
		return h(ctx, ev)
	}
}

// InvocationErr is Invocation for handlers that return only an error.
func InvocationErr[E any](e *EMF, h func(context.Context, E) error) func(context.Context, E) error {
	return func(ctx context.Context, ev E) error {
		defer func() { _ = e.Flush() }()
		return h(ctx, ev)
	}
}
