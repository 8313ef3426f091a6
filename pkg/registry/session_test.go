package registry_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/driver/boltdb"
	"github.com/berth-registry/berth/pkg/registry"
)

type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newEmbedded(t *testing.T, cfg registry.Config) (*registry.Registry, string) {
	t.Helper()
	var opts []boltdb.Option
	if cfg.Now != nil {
		opts = append(opts, boltdb.WithClock(cfg.Now))
	}
	e := testenv.NewEmbedded(t, opts...)
	return registry.New(cfg, e.Items, e.Blobs), e.Dir
}

func call(t testing.TB, h http.Handler, method, path string, body []byte, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// slowReader hands out its bytes slowly so two requests overlap.
type slowReader struct {
	b   []byte
	off int
}

func (s *slowReader) Read(p []byte) (int, error) {
	if s.off >= len(s.b) {
		return 0, io.EOF
	}
	time.Sleep(2 * time.Millisecond)
	n := copy(p[:min(len(p), 4096)], s.b[s.off:])
	s.off += n
	return n, nil
}

// Two PATCHes racing on one session: at most one is applied, the stored
// bytes are exactly what the session's hash covers, and the upload
// completes with the right digest.
func TestConcurrentPatchSameSession(t *testing.T) {
	g, _ := newEmbedded(t, registry.Config{})
	srv := httptest.NewServer(g)
	defer srv.Close()
	rec := call(t, g, "POST", "/v2/race/blobs/uploads/", nil)
	loc := rec.Header().Get("Location")
	a, b := bytes.Repeat([]byte{'a'}, 200_000), bytes.Repeat([]byte{'b'}, 200_000)
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i, body := range [][]byte{a, b} {
		wg.Add(1)
		go func(i int, body []byte) {
			defer wg.Done()
			req, _ := http.NewRequest("PATCH", srv.URL+loc, &slowReader{b: body})
			req.Header.Set("Content-Range", fmt.Sprintf("0-%d", len(body)-1))
			req.ContentLength = int64(len(body))
			res, err := srv.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			codes[i] = res.StatusCode
		}(i, body)
	}
	wg.Wait()
	won := -1
	for i, c := range codes {
		if c == 202 {
			if won >= 0 {
				t.Fatalf("both PATCHes applied: %v", codes)
			}
			won = i
		} else if c != 503 && c != 416 {
			t.Fatalf("loser status %d", c)
		}
	}
	if won < 0 {
		t.Fatalf("no PATCH applied: %v", codes)
	}
	body := [][]byte{a, b}[won]
	d := fmt.Sprintf("sha256:%x", sha256.Sum256(body))
	if rec := call(t, g, "PUT", loc+"?digest="+d, nil); rec.Code != 201 {
		t.Fatalf("close %d %s", rec.Code, rec.Body)
	}
	if rec := call(t, g, "GET", "/v2/race/blobs/"+d, nil); rec.Code != 200 || !bytes.Equal(rec.Body.Bytes(), body) {
		t.Fatalf("blob %d", rec.Code)
	}
}

func sha256hex(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }
