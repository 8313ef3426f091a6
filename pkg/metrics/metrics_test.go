package metrics_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/pkg/metrics"
)

// fakeRegistry answers like the registry for the routes the middleware
// derives counters from.
func fakeRegistry() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch {
		case r.URL.Path == "/token":
			w.WriteHeader(http.StatusOK)
		case r.Method == "PUT" && strings.Contains(r.URL.Path, "/manifests/"):
			w.WriteHeader(http.StatusCreated)
		case r.Method == "POST":
			w.WriteHeader(http.StatusAccepted)
		case r.Method == "PATCH":
			w.WriteHeader(http.StatusAccepted)
		case r.Method == "PUT":
			w.WriteHeader(http.StatusCreated)
		default:
			_, _ = w.Write([]byte("{}"))
		}
	})
}

// TestEMF records one invocation's request and counters and parses the
// single line it writes.
func TestEMF(t *testing.T) {
	var out bytes.Buffer
	emf := metrics.NewEMF(&out, "berth-api")
	h := metrics.Middleware(emf, fakeRegistry())
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("PATCH", "/v2/team/app/blobs/uploads/abc", strings.NewReader("0123456789")))
	emf.Add(metrics.BytesRedirected, 5)
	if err := emf.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d lines, want one per invocation:\n%s", len(lines), out.String())
	}
	var doc struct {
		AWS struct {
			Timestamp         int64
			CloudWatchMetrics []struct {
				Namespace  string
				Dimensions [][]string
				Metrics    []struct{ Name, Unit string }
			}
		} `json:"_aws"`
		Function, Route, StatusClass, Log string
		Requests                          int
		Latency                           float64
		BytesUploaded, BytesRedirected    float64
	}
	if err := json.Unmarshal([]byte(lines[0]), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.AWS.Timestamp == 0 || len(doc.AWS.CloudWatchMetrics) != 2 {
		t.Fatalf("_aws block: %s", lines[0])
	}
	req, ctr := doc.AWS.CloudWatchMetrics[0], doc.AWS.CloudWatchMetrics[1]
	if req.Namespace != "Berth" || len(req.Dimensions) != 1 || strings.Join(req.Dimensions[0], ",") != "Function,Route,StatusClass" ||
		len(req.Metrics) != 2 || req.Metrics[0].Name != "Requests" || req.Metrics[1].Unit != "Milliseconds" {
		t.Fatalf("request directive: %+v", req)
	}
	if ctr.Namespace != "Berth" || strings.Join(ctr.Dimensions[0], ",") != "Function" || len(ctr.Metrics) != 2 ||
		ctr.Metrics[0].Name != "BytesRedirected" || ctr.Metrics[0].Unit != "Bytes" || ctr.Metrics[1].Name != "BytesUploaded" {
		t.Fatalf("counter directive: %+v", ctr)
	}
	if doc.Function != "berth-api" || doc.Route != "upload" || doc.StatusClass != "2xx" || doc.Requests != 1 ||
		doc.BytesUploaded != 10 || doc.BytesRedirected != 5 || doc.Latency < 0 || doc.Log != "metrics" {
		t.Fatalf("values: %+v", doc)
	}
	// Flushed: the next invocation starts from nothing.
	out.Reset()
	if err := emf.Flush(); err != nil || out.Len() != 0 {
		t.Fatalf("empty flush wrote %q (%v)", out.String(), err)
	}
}

type counts struct {
	add  map[string]float64
	reqs []string
}

func (c *counts) Add(name string, v float64) { c.add[name] += v }
func (c *counts) Request(route string, status int, _ time.Duration) {
	c.reqs = append(c.reqs, route+" "+metrics.StatusClass(status))
}

func TestMiddlewareCounters(t *testing.T) {
	c := &counts{add: map[string]float64{}}
	h := metrics.Middleware(c, fakeRegistry())
	for _, r := range []*http.Request{
		httptest.NewRequest("POST", "/v2/a/blobs/uploads/", nil),
		httptest.NewRequest("PUT", "/v2/a/blobs/uploads/x?digest=sha256:00", strings.NewReader("abc")),
		httptest.NewRequest("PUT", "/v2/a/manifests/v1", strings.NewReader("{}")),
		httptest.NewRequest("GET", "/v2/a/manifests/v1", nil),
		httptest.NewRequest("GET", "/token", nil),
		httptest.NewRequest("GET", "/elsewhere", nil),
	} {
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	want := map[string]float64{metrics.UploadSessionsStarted: 1, metrics.UploadSessionsEnded: 1, metrics.BytesUploaded: 3,
		metrics.ManifestPushes: 1, metrics.ManifestPulls: 1, metrics.TokenGrants: 1}
	for k, v := range want {
		if c.add[k] != v {
			t.Errorf("%s = %v, want %v", k, c.add[k], v)
		}
	}
	if len(c.add) != len(want) {
		t.Errorf("counters %v", c.add)
	}
	if got := strings.Join(c.reqs, ";"); got != "upload-start 2xx;upload 2xx;manifest 2xx;manifest 2xx;token 2xx;other 2xx" {
		t.Errorf("requests %s", got)
	}
}

// BenchmarkMiddleware is the per-request cost of the metrics middleware
// with the EMF recorder on a pull (manifest GET), without and with the
// invocation's flush (one EMF line per request, as in Lambda).
func BenchmarkMiddleware(b *testing.B) {
	emf := metrics.NewEMF(io.Discard, "bench")
	nop := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	h := metrics.Middleware(emf, nop)
	get := httptest.NewRequest("GET", "/v2/team/app/manifests/v1", nil)
	w := httptest.NewRecorder()
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			nop.ServeHTTP(w, get)
		}
	})
	b.Run("middleware", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h.ServeHTTP(w, get)
		}
	})
	b.Run("middleware+flush", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h.ServeHTTP(w, get)
			_ = emf.Flush()
		}
	})
}
