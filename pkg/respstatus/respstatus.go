// Package respstatus records what a handler answered: the status and the
// body bytes written. The registry's access log, the audit trail and the
// metrics middleware each wrap the ResponseWriter with it.
package respstatus

import "net/http"

// Writer wraps an http.ResponseWriter and records the final status (1xx
// informational answers are not final) and the body bytes written.
type Writer struct {
	http.ResponseWriter
	// Status is the status answered, 0 until the handler wrote anything.
	Status int
	// Bytes is the body length written so far.
	Bytes int64
}

// WriteHeader implements http.ResponseWriter.
func (w *Writer) WriteHeader(code int) {
	if w.Status == 0 && code >= 200 {
		w.Status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (w *Writer) Write(b []byte) (int, error) {
	if w.Status == 0 {
		w.Status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.Bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
