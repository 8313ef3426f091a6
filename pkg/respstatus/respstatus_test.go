package respstatus

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestWriter(t *testing.T) {
	for _, c := range []struct {
		name   string
		handle func(w http.ResponseWriter)
		status int
		bytes  int64
	}{
		{"nothing written", func(http.ResponseWriter) {}, 0, 0},
		{"body only", func(w http.ResponseWriter) { _, _ = w.Write([]byte("abc")) }, http.StatusOK, 3},
		{"status then body", func(w http.ResponseWriter) { w.WriteHeader(http.StatusCreated); _, _ = w.Write([]byte("ab")) }, http.StatusCreated, 2},
		{"1xx is not final", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusContinue)
			w.WriteHeader(http.StatusAccepted)
		}, http.StatusAccepted, 0},
		{"first final status wins", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusNotFound)
			w.WriteHeader(http.StatusOK)
		}, http.StatusNotFound, 0},
	} {
		rec := httptest.NewRecorder()
		w := &Writer{ResponseWriter: rec}
		c.handle(w)
		if w.Status != c.status || w.Bytes != c.bytes {
			t.Errorf("%s: status %d, bytes %d; want %d, %d", c.name, w.Status, w.Bytes, c.status, c.bytes)
		}
		if http.NewResponseController(w) == nil || w.Unwrap() != rec {
			t.Errorf("%s: Unwrap does not reach the recorder", c.name)
		}
	}
}
