package main

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// A request body that trickles is cut off by ReadTimeout, and the upload
// lease outlasts it so a request still reading always holds its session
// (issue 11, point 1).
func TestServeTimeouts(t *testing.T) {
	if serveReadTimeout <= 0 || serveIdleTimeout <= 0 || serveReadHeaderTimeout <= 0 {
		t.Fatalf("timeouts: read %s, idle %s, header %s", serveReadTimeout, serveIdleTimeout, serveReadHeaderTimeout)
	}
	if serveUploadLease <= serveReadTimeout {
		t.Fatalf("upload lease %s does not outlast ReadTimeout %s", serveUploadLease, serveReadTimeout)
	}

	// The server newHTTPServer builds cuts a trickling body (with a short
	// ReadTimeout here, so the test is quick).
	read := make(chan error, 1)
	srv := newHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		read <- err
	}), slog.New(slog.DiscardHandler))
	if srv.ReadTimeout != serveReadTimeout || srv.IdleTimeout != serveIdleTimeout {
		t.Fatalf("server: read %s, idle %s", srv.ReadTimeout, srv.IdleTimeout)
	}
	srv.ReadTimeout = 300 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var req bytes.Buffer
	req.WriteString("PATCH /v2/r/blobs/uploads/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
	if _, err := conn.Write(req.Bytes()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	go func() {
		for range 50 {
			if _, err := conn.Write([]byte{'x'}); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	select {
	case err := <-read:
		var ne net.Error
		if err == nil || !(errors.As(err, &ne) && ne.Timeout()) {
			t.Fatalf("trickling body read ended with %v, want a timeout", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("body cut after %s", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a trickling body was read for 5 s")
	}
}
