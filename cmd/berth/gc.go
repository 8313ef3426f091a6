package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/berth-registry/berth/pkg/gc"
	"github.com/berth-registry/berth/pkg/meta"
)

// collector is the garbage collector of a backend, as berth serve runs it
// on a ticker and berth gc runs it once.
func collector(store *meta.Store, be backend, grace time.Duration, log *slog.Logger) gc.Collector {
	c := gc.Collector{Store: store, Blobs: be.blobs, Grace: grace, Log: log}
	if be.lister != nil {
		c.Orphans = be.lister
	}
	return c
}

// adminSocket is the Unix socket a berth serve on the embedded backend
// listens on in its data directory, so that `berth gc` and `berth
// retention preview` can ask the running server (bbolt lets one process
// open the store, and a read-only open waits for the writer's lock).
// Only the directory's owner can connect (mode 0600).
const adminSocket = "berth.sock"

// serveAdmin listens on dir's admin socket and serves mux there. It
// returns a stop function.
func serveAdmin(dir string, mux *http.ServeMux, log *slog.Logger) (func(), error) {
	path := filepath.Join(dir, adminSocket)
	// The data directory's lock (bbolt) is ours, so a socket file left
	// here belongs to a server that is gone.
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("admin socket", slog.Any("error", err))
		}
	}()
	return func() { _ = srv.Close(); _ = os.Remove(path) }, nil
}

// adminMux is what the admin socket answers: POST /gc (gcAdmin) and
// POST /retention/preview (previewAdmin).
func adminMux(c gc.Collector, store *meta.Store) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /gc", gcAdmin(c))
	mux.HandleFunc("POST /retention/preview", previewAdmin(store))
	return mux
}

// gcAdmin runs a pass of c (query: grace, dry_run) and answers its result.
func gcAdmin(c gc.Collector) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		pass := c
		if g := r.URL.Query().Get("grace"); g != "" {
			d, err := time.ParseDuration(g)
			if err != nil || d < 0 {
				http.Error(w, "bad grace", http.StatusBadRequest)
				return
			}
			pass.Grace = d
		}
		pass.DryRun = r.URL.Query().Get("dry_run") == "true"
		st, err := pass.Pass(r.Context())
		w.Header().Set("Content-Type", "application/json")
		res := gcResult{Stats: st}
		if err != nil {
			res.Error = err.Error()
		}
		_ = json.NewEncoder(w).Encode(res)
	}
}

// adminCall POSTs body to path on the admin socket of the server on data
// directory dir and decodes its JSON answer into out. An error wrapping
// errNoServer means no server answers there.
func adminCall(ctx context.Context, dir, path string, body io.Reader, out any) error {
	sock := filepath.Join(dir, adminSocket)
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://berth"+path, body)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", errNoServer, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("server on %s: %s: %s", dir, resp.Status, bytes.TrimSpace(b))
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("server on %s: %w", dir, err)
	}
	return nil
}

// viaServerOrDirect runs a command against c's store: through the admin
// socket of the berth serve that holds an embedded data directory, or, for
// AWS and a directory no server holds, in this process.
func viaServerOrDirect[T any](c serveConfig, viaServer, direct func() (T, error)) (T, error) {
	if c.Backend == backendEmbedded {
		res, err := viaServer()
		if !errors.Is(err, errNoServer) {
			return res, err
		}
	}
	return direct()
}

type gcResult struct {
	gc.Stats
	Error string `json:"error,omitempty"`
}

// runGC is `berth gc`: one garbage collection pass.
func runGC(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		c      serveConfig
		asJSON bool
		dryRun bool
		grace  time.Duration
	)
	fs := flag.NewFlagSet("berth gc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: berth gc [flags]\n\nRuns one garbage collection pass: deletes blobs no manifest has referenced for the grace period,\nand stored bytes no metadata points at (docs/gc.md). On the embedded backend a running\nberth serve on the same --data runs the pass for it. Flags:\n")
		fs.PrintDefaults()
	}
	c.storeFlags(fs)
	fs.DurationVar(&grace, "grace", gc.DefaultGrace, "how long a blob must have been unreferenced")
	fs.BoolVar(&dryRun, "dry-run", false, "print what the pass would delete and change nothing")
	fs.BoolVar(&asJSON, "json", false, "print the pass's counts as JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 || grace < 0 {
		fmt.Fprintln(stderr, "berth gc: unexpected arguments (see berth gc -h)")
		return errUsage
	}
	c.setDefaults()
	if err := c.validate(); err != nil {
		fmt.Fprintf(stderr, "berth gc: %v\n", err)
		return errUsage
	}
	res, err := viaServerOrDirect(c,
		func() (gcResult, error) { return gcViaServer(ctx, c.Data, grace, dryRun) },
		func() (gcResult, error) { return gcDirect(ctx, c, grace, dryRun) })
	if err != nil {
		return err
	}
	if asJSON {
		if err := json.NewEncoder(stdout).Encode(res.Stats); err != nil {
			return err
		}
	} else {
		printGC(stdout, res.Stats, dryRun)
	}
	if res.Error != "" {
		return errors.New(res.Error)
	}
	return nil
}

var errNoServer = errors.New("no server on the data directory")

// gcViaServer asks the berth serve running on dir for a pass.
func gcViaServer(ctx context.Context, dir string, grace time.Duration, dryRun bool) (gcResult, error) {
	var res gcResult
	err := adminCall(ctx, dir, "/gc?grace="+grace.String()+"&dry_run="+strconv.FormatBool(dryRun), nil, &res)
	return res, err
}

// gcDirect opens the backend and runs the pass in this process.
func gcDirect(ctx context.Context, c serveConfig, grace time.Duration, dryRun bool) (gcResult, error) {
	log := slog.New(slog.DiscardHandler)
	be, err := openBackend(ctx, c, log)
	if err != nil {
		return gcResult{}, err
	}
	defer be.close()
	pass := collector(meta.New(be.items), be, grace, log)
	pass.DryRun = dryRun
	st, err := pass.Pass(ctx)
	res := gcResult{Stats: st}
	if err != nil {
		res.Error = err.Error()
	}
	return res, nil
}

func printGC(w io.Writer, st gc.Stats, dryRun bool) {
	if dryRun {
		for _, d := range st.Would {
			fmt.Fprintf(w, "would delete %s\n", d)
		}
		fmt.Fprintf(w, "dry run: %d blobs (%s) would be deleted; %d candidates read, %d referenced, %d used within the grace period; %d stored objects scanned\n",
			len(st.Would), human(st.Bytes+st.OrphanBytes), st.Candidates, st.Referenced, st.Deferred, st.OrphansScanned)
		return
	}
	fmt.Fprintf(w, "deleted %d blobs (%s) and %d orphaned objects (%s); %d candidates read, %d referenced again, %d used within the grace period, %d changed during the pass; %d stored objects scanned\n",
		st.Deleted, human(st.Bytes), st.Orphans, human(st.OrphanBytes), st.Candidates, st.Referenced, st.Deferred, st.Raced, st.OrphansScanned)
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
