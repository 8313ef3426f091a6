// Package prom is the Prometheus backend of package metrics, for
// berth serve --metrics-addr. It is a separate package so that the Lambda
// functions, which record EMF, do not link the Prometheus client.
package prom

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/berth-registry/berth/pkg/metrics"
)

// Recorder records package metrics' figures as Prometheus metrics:
// berth_http_requests_total{route,status_class},
// berth_http_request_duration_seconds{route}, one counter per
// metrics.Counters entry, and berth_upload_sessions_open.
type Recorder struct {
	reg      *prometheus.Registry
	counters map[string]prometheus.Counter // read-only after New
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	open     prometheus.Gauge
}

var _ metrics.Recorder = (*Recorder)(nil)

// New returns a Recorder with its own registry, which also holds the Go
// runtime and process collectors.
func New() *Recorder {
	r := &Recorder{
		reg:      prometheus.NewRegistry(),
		counters: map[string]prometheus.Counter{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_http_requests_total", Help: "HTTP requests by route and status class.",
		}, []string{"route", "status_class"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "berth_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route"}),
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_upload_sessions_open",
			Help: "Upload sessions opened and not yet completed or cancelled since the server started (abandoned ones stay until restart).",
		}),
	}
	r.reg.MustRegister(r.requests, r.latency, r.open,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, d := range metrics.Counters() {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: d.Prom, Help: d.Help})
		r.reg.MustRegister(c)
		r.counters[d.Name] = c
	}
	return r
}

// Add implements metrics.Recorder; names outside metrics.Counters are
// ignored.
func (r *Recorder) Add(name string, v float64) {
	if c, ok := r.counters[name]; ok {
		c.Add(v)
	}
	switch name {
	case metrics.UploadSessionsStarted:
		r.open.Add(v)
	case metrics.UploadSessionsEnded:
		r.open.Sub(v)
	}
}

// Request implements metrics.Recorder.
func (r *Recorder) Request(route string, status int, elapsed time.Duration) {
	r.requests.WithLabelValues(route, metrics.StatusClass(status)).Inc()
	r.latency.WithLabelValues(route).Observe(elapsed.Seconds())
}

// Handler serves the metrics in the Prometheus exposition format.
func (r *Recorder) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{})
}
