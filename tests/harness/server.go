package harness

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Backend selects what `berth serve` stores into and how it is reached.
type Backend string

const (
	// Embedded is the single-machine store (bbolt + files) in a temp dir.
	Embedded Backend = "embedded"
	// AWS is the S3 + DynamoDB drivers against the emulators.
	AWS Backend = "aws"
	// Lambda is the AWS backend behind the emulated API Gateway and Lambda
	// (berth serve --via-lambda), with their request limits.
	Lambda Backend = "lambda"
	// Edge is the emulated deployment with the edge upload path: the
	// CloudFront emulation (its Function loaded from pkg/edge/cffunc) in
	// front of the API Gateway and Lambda emulation and of the S3 server
	// (berth serve --via-lambda --edge), so blob PUTs go to S3 directly.
	Edge Backend = "edge"
	// External is a registry the harness did not start (Attach).
	External Backend = "external"
)

// Config says how to start a server. The zero value is an embedded server.
type Config struct {
	Backend Backend
	// Args are extra `berth serve` flags.
	Args []string
	// Env is extra environment for the server process.
	Env []string
}

// Server is a running `berth serve` process.
type Server struct {
	tb   testing.TB
	cfg  Config
	bin  string
	args []string // backend flags, fixed for the server's life
	env  []string

	// Addr is the listen address (127.0.0.1:port); it stays the same across
	// restarts.
	Addr string
	// Data is the embedded backend's data directory.
	Data string
	// Bucket and Table name the AWS backend's storage.
	Bucket, Table string

	logPath string
	mu      sync.Mutex
	logs    bytes.Buffer
	cmd     *exec.Cmd
	exited  chan struct{}
}

// Start starts `berth serve` on a free loopback port and waits until it
// answers /v2/. The server is stopped when the test ends; its log is
// printed if the test failed.
func Start(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	if cfg.Backend == "" {
		cfg.Backend = Embedded
	}
	dir := tb.TempDir()
	s := &Server{tb: tb, cfg: cfg, bin: Binary(tb), logPath: filepath.Join(dir, "server.log"), Addr: "127.0.0.1:0"}
	switch cfg.Backend {
	case Embedded:
		s.Data = filepath.Join(dir, "data")
		s.args = []string{"--data", s.Data}
	case AWS, Lambda, Edge:
		env := awsEmulators(tb)
		suffix := randomName()
		s.Bucket, s.Table = "berth-e2e-"+suffix, "berth-e2e-"+suffix
		s.env = env
		s.args = []string{"--backend", "aws", "--bucket", s.Bucket, "--table", s.Table, "--create", "--s3-path-style"}
		if cfg.Backend == Lambda {
			// Every invocation starts cold, so a chunked upload's chunks
			// are each served by a fresh handler, as Lambda may do.
			s.args = append(s.args, "--via-lambda", "--lambda-cold-starts")
		}
		if cfg.Backend == Edge {
			s.args = append(s.args, "--via-lambda", "--lambda-cold-starts", "--edge")
		}
	default:
		tb.Fatalf("harness: unknown backend %q", cfg.Backend)
	}
	s.env = append(s.env, cfg.Env...)
	s.start()
	tb.Cleanup(func() {
		s.Stop()
		if tb.Failed() {
			// Subtests share the server: the last lines are mostly other
			// tests', so every error and warning it logged comes first.
			tb.Logf("server log (%s backend), errors and warnings:\n%s\nlast lines:\n%s", cfg.Backend, s.problems(), s.tail(60))
		}
	})
	return s
}

// Attach returns a Server for a registry that is already running at addr
// (HOST:PORT, plain HTTP), for running a suite against another registry:
// a reference implementation or a deployment. It cannot be stopped or
// restarted and logs no requests.
func Attach(tb testing.TB, addr string) *Server {
	return &Server{tb: tb, cfg: Config{Backend: External}, Addr: addr}
}

// Attached reports whether the server is an Attach-ed external registry.
func (s *Server) Attached() bool { return s.cfg.Backend == External }

// URL is the server's base URL, http://127.0.0.1:port.
func (s *Server) URL() string { return "http://" + s.Addr }

// Backend is the backend the server runs on.
func (s *Server) Backend() Backend { return s.cfg.Backend }

func (s *Server) start() {
	s.tb.Helper()
	args := append([]string{"serve", "--addr", s.Addr, "--log-level", "debug"}, s.args...)
	args = append(args, s.cfg.Args...)
	cmd := exec.Command(s.bin, args...)
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		s.tb.Fatal(err)
	}
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		s.tb.Fatalf("start berth serve: %v", err)
	}
	s.cmd = cmd
	s.exited = make(chan struct{})
	addr := make(chan string, 1)
	go func() {
		defer close(s.exited)
		defer logFile.Close()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			s.mu.Lock()
			s.logs.Write(line)
			s.logs.WriteByte('\n')
			s.mu.Unlock()
			_, _ = logFile.Write(append(line, '\n'))
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "listening" && rec.Addr != "" {
				select {
				case addr <- rec.Addr:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		_ = cmd.Wait()
	}()
	select {
	case a := <-addr:
		s.Addr = a
	case <-s.exited:
		s.tb.Fatalf("berth serve exited before listening (%v):\n%s", cmd.ProcessState, s.tail(40))
	case <-time.After(60 * time.Second):
		s.Stop()
		s.tb.Fatalf("berth serve did not report its address within 60s:\n%s", s.tail(40))
	}
	s.waitReady()
}

// waitReady polls /v2/ until the server answers (any status below 500:
// a server with auth answers 401).
func (s *Server) waitReady() {
	s.tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.URL() + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return
			}
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("berth serve not ready at %s: %v\n%s", s.URL(), err, s.tail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the server with SIGTERM (graceful shutdown) and waits for it,
// killing it after 20 s. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		s.tb.Errorf("berth serve ignored SIGTERM for 20s")
	}
	s.cmd = nil
}

// Restart stops the server and starts it again on the same address and
// storage (data directory, or bucket and table).
func (s *Server) Restart() {
	s.tb.Helper()
	if s.Attached() {
		s.tb.Fatal("harness: cannot restart an attached registry")
	}
	s.Stop()
	s.start()
}

// Logs returns everything the server has logged so far (JSON lines).
func (s *Server) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

// problems returns the lines the server logged at WARN or ERROR.
func (s *Server) problems() string {
	var out []string
	for _, l := range strings.Split(s.Logs(), "\n") {
		if strings.Contains(l, `"level":"ERROR"`) || strings.Contains(l, `"level":"WARN"`) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func (s *Server) tail(n int) string {
	lines := strings.Split(strings.TrimRight(s.Logs(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Request is one request as the registry logged it.
type Request struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Route  string `json:"route"`
	Repo   string `json:"repo"`
	Status int    `json:"status"`
	// BytesIn is the request's Content-Length (-1: unknown).
	BytesIn int64 `json:"bytes_in"`
}

// Requests returns the requests the registry has logged so far, in order.
func (s *Server) Requests() []Request {
	var out []Request
	for _, line := range strings.Split(s.Logs(), "\n") {
		var rec struct {
			Msg string `json:"msg"`
			Request
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "request" {
			out = append(out, rec.Request)
		}
	}
	return out
}

// Mark returns the number of requests logged so far, for RequestsSince.
func (s *Server) Mark() int { return len(s.Requests()) }

// RequestsSince returns the requests logged after mark.
func (s *Server) RequestsSince(mark int) []Request {
	all := s.Requests()
	if mark > len(all) {
		return nil
	}
	return all[mark:]
}

// Do sends one raw HTTP request to the server (path relative to the base
// URL, or absolute) without following redirects.
func (s *Server) Do(ctx context.Context, method, path string, body []byte, hdr map[string]string) (*http.Response, []byte, error) {
	u := path
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		u = s.URL() + path
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, nil, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	return resp, b, nil
}

func randomName() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
