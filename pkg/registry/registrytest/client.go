// Package registrytest is one HTTP-level conformance suite for the /v2/ API,
// run against every backend (embedded, AWS emulators, the Lambda path):
// method, URL, status, headers and body, as ggcr's TestCalls and the OCI
// conformance suite check them.
package registrytest

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/berth-registry/berth/pkg/oci"
)

// Env is one backend under test.
type Env struct {
	// Handler serves /v2/.
	Handler http.Handler
	// Restart, when set, closes the current handler's stores and returns a
	// new handler over the same persisted data (a process restart).
	Restart func(t *testing.T) http.Handler
	// MaxBodyBytes is the request body cap the handler enforces, 0 for none.
	MaxBodyBytes int64
	// Leftovers, when set, lists stray staging data (temp files, upload
	// objects) the backend holds; the concurrency test requires none.
	Leftovers func(t *testing.T) []string
}

// server runs an Env on a real listener so redirects to S3 can be followed.
type server struct {
	t       *testing.T
	env     Env
	h       atomic.Pointer[http.Handler]
	srv     *httptest.Server
	client  *http.Client
	noRedir *http.Client
}

func start(t *testing.T, env Env) *server {
	t.Helper()
	s := &server{t: t, env: env}
	s.h.Store(&env.Handler)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*s.h.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	s.client = s.srv.Client()
	s.noRedir = &http.Client{Transport: s.client.Transport, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	return s
}

func (s *server) restart() {
	s.t.Helper()
	if s.env.Restart == nil {
		s.t.Fatal("backend cannot restart")
	}
	h := s.env.Restart(s.t)
	s.h.Store(&h)
}

type resp struct {
	method string
	status int
	header http.Header
	body   []byte
}

func (r resp) errCode() string {
	var b struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(r.body, &b) != nil || len(b.Errors) == 0 {
		return ""
	}
	return b.Errors[0].Code
}

// do sends a request. Paths are relative to the server; absolute URLs
// (Location headers) are used as they are. follow controls redirects.
func (s *server) do(method, path string, body []byte, hdr map[string]string, follow bool) resp {
	s.t.Helper()
	r, err := s.try(method, path, body, hdr, follow)
	if err != nil {
		s.t.Fatal(err)
	}
	return r
}

// try is do without failing the test, for use from goroutines.
func (s *server) try(method, path string, body []byte, hdr map[string]string, follow bool) (resp, error) {
	u := path
	if strings.HasPrefix(path, "/") {
		u = s.srv.URL + path
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return resp{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := s.noRedir
	if follow {
		c = s.client
	}
	res, err := c.Do(req)
	if err != nil {
		return resp{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return resp{}, fmt.Errorf("%s %s: read: %w", method, path, err)
	}
	return resp{method: method, status: res.StatusCode, header: res.Header, body: b}, nil
}

// expect checks a response's status and, for errors, its OCI code.
func (s *server) expect(r resp, status int, code string, what string) {
	s.t.Helper()
	if r.status != status {
		s.t.Fatalf("%s: status %d, want %d; body %.300s", what, r.status, status, r.body)
	}
	if code != "" && r.errCode() != code {
		s.t.Fatalf("%s: error code %q, want %q; body %.300s", what, r.errCode(), code, r.body)
	}
	if status >= 400 && r.method != http.MethodHead && r.errCode() == "" {
		s.t.Fatalf("%s: error without an OCI body: %.300s", what, r.body)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha(b []byte) oci.Digest { return oci.FromBytes(oci.SHA256, b) }

// handler is the server as the push helpers take it: their requests go
// over the listener like every other request of the suite.
func (s *server) handler() http.Handler { return remote{base: s.srv.URL, client: s.noRedir} }

func (s *server) pushBlob(repo string, b []byte) oci.Digest {
	s.t.Helper()
	return PushBlob(s.t, s.handler(), repo, b)
}

func (s *server) pushImage(repo, tag string, img Image) {
	s.t.Helper()
	PushImage(s.t, s.handler(), repo, tag, img)
}

// newImage is a one-layer image with random layer bytes; extra makes its
// config unique.
func newImage(t *testing.T, extra string) Image {
	cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"x":%q}`, extra))
	return NewImage(cfg, randomBytes(t, 1024))
}
