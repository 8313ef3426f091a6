// Package ebtest is an Amazon EventBridge stand-in for tests: an httptest
// server that speaks the PutEvents JSON protocol (awsJson1_1, target
// AWSEvents.PutEvents), so the real SDK client is what the code under test
// calls. It records every entry it accepted.
package ebtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
)

// Entry is one accepted PutEvents entry, as sent on the wire.
type Entry struct {
	Source       string
	DetailType   string `json:"DetailType"`
	Detail       string
	EventBusName string
	Resources    []string
	Time         json.Number // epoch seconds (awsJson1_1 timestamp)
}

// Server is the fake bus.
type Server struct {
	*httptest.Server
	mu      sync.Mutex
	entries []Entry
	// failures left: the next calls answer with HTTP 500, or accept the
	// request but reject its entries (FailedEntryCount).
	fail5xx, failEntries int
	calls                int
}

// New starts a fake bus, closed when t ends.
func New(t testing.TB) *Server {
	s := &Server{}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// Config is an aws.Config whose EventBridge client reaches this server.
func (s *Server) Config() aws.Config {
	return aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		BaseEndpoint: aws.String(s.URL),
	}
}

// Client is a real SDK client pointed at this server.
func (s *Server) Client() *eventbridge.Client { return eventbridge.NewFromConfig(s.Config()) }

// FailNext makes the next n calls answer 500 InternalException.
func (s *Server) FailNext(n int) { s.mu.Lock(); s.fail5xx = n; s.mu.Unlock() }

// RejectNext makes the next n calls reject every entry.
func (s *Server) RejectNext(n int) { s.mu.Lock(); s.failEntries = n; s.mu.Unlock() }

// Entries returns what was accepted so far.
func (s *Server) Entries() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Entry(nil), s.entries...)
}

// Calls is the number of requests received.
func (s *Server) Calls() int { s.mu.Lock(); defer s.mu.Unlock(); return s.calls }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	if r.Method != http.MethodPost || r.Header.Get("X-Amz-Target") != "AWSEvents.PutEvents" ||
		!strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"__type":"ValidationException","message":"unexpected request %s %s"}`, r.Method, r.Header.Get("X-Amz-Target"))
		return
	}
	var in struct{ Entries []Entry }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || len(in.Entries) == 0 {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"__type":"ValidationException","message":"bad body: %v"}`, err)
		return
	}
	if s.fail5xx > 0 {
		s.fail5xx--
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, `{"__type":"InternalException","message":"injected"}`)
		return
	}
	type result struct {
		EventId      string `json:",omitempty"`
		ErrorCode    string `json:",omitempty"`
		ErrorMessage string `json:",omitempty"`
	}
	out := struct {
		FailedEntryCount int
		Entries          []result
	}{}
	for _, e := range in.Entries {
		if s.failEntries > 0 {
			out.FailedEntryCount++
			out.Entries = append(out.Entries, result{ErrorCode: "InternalFailure", ErrorMessage: "injected"})
			continue
		}
		s.entries = append(s.entries, e)
		out.Entries = append(out.Entries, result{EventId: fmt.Sprintf("fake-%d", len(s.entries))})
	}
	if s.failEntries > 0 {
		s.failEntries--
	}
	_ = json.NewEncoder(w).Encode(out)
}

// DetailOf decodes an entry's detail into a map with event-id removed
// (random per event), for exact comparisons.
func DetailOf(t testing.TB, e Entry) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(e.Detail), &m); err != nil {
		t.Fatalf("detail %q: %v", e.Detail, err)
	}
	if id, _ := m["event-id"].(string); len(id) != 36 {
		t.Errorf("event-id %q: want a UUID", m["event-id"])
	}
	delete(m, "event-id")
	return m
}

// TimeOf is an entry's Time.
func TimeOf(t testing.TB, e Entry) time.Time {
	t.Helper()
	f, err := e.Time.Float64()
	if err != nil {
		t.Fatalf("time %q: %v", e.Time, err)
	}
	return time.Unix(0, int64(f*1e9)).UTC()
}
