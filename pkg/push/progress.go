package push

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// Progress receives what a push does, for display. Methods are called from
// the upload goroutines concurrently.
type Progress interface {
	// Blob is called when work on a blob starts.
	Blob(d v1.Descriptor) BlobProgress
	// Manifest is called after a manifest was pushed (or found present).
	Manifest(d v1.Descriptor, ref string, existed bool)
	// Wait flushes the display; called once at the end.
	Wait()
}

// BlobProgress follows one blob.
type BlobProgress interface {
	// Add counts bytes sent (negative: a retried request's bytes).
	Add(n int64)
	// Done reports the blob's end.
	Done(r BlobResult, err error)
}

// Quiet displays nothing.
type Quiet struct{}

func (Quiet) Blob(v1.Descriptor) BlobProgress      { return quietBlob{} }
func (Quiet) Manifest(v1.Descriptor, string, bool) {}
func (Quiet) Wait()                                {}

type quietBlob struct{}

func (quietBlob) Add(int64)              {}
func (quietBlob) Done(BlobResult, error) {}

// NewProgress picks the display for w: bars per layer on a terminal, one
// line per event otherwise (CI logs, pipes) or when ci is true.
func NewProgress(w io.Writer, ci bool) Progress {
	if f, ok := w.(*os.File); ok && !ci && isTerminal(f) {
		return NewBars(w)
	}
	return NewLines(w)
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func short(d v1.Hash) string {
	if len(d.Hex) > 12 {
		return d.Algorithm + ":" + d.Hex[:12]
	}
	return d.String()
}

// Lines prints one line per finished blob and manifest.
type Lines struct {
	mu sync.Mutex
	w  io.Writer
}

// NewLines returns the plain-line display.
func NewLines(w io.Writer) *Lines { return &Lines{w: w} }

func (l *Lines) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format, args...)
}

func (l *Lines) Blob(d v1.Descriptor) BlobProgress { return &lineBlob{l: l, d: d} }

func (l *Lines) Manifest(d v1.Descriptor, ref string, existed bool) {
	verb := "pushed"
	if existed {
		verb = "exists"
	}
	if ref != d.Digest.String() {
		verb += " as " + ref
	}
	l.printf("manifest %s %s\n", short(d.Digest), verb)
}

func (l *Lines) Wait() {}

type lineBlob struct {
	l *Lines
	d v1.Descriptor
}

func (b *lineBlob) Add(int64) {}

func (b *lineBlob) Done(r BlobResult, err error) {
	switch {
	case err != nil:
		b.l.printf("blob %s failed: %v\n", short(b.d.Digest), err)
	case r.Outcome == Uploaded:
		b.l.printf("blob %s uploaded %s in %s (%s, %s)\n", short(b.d.Digest), Bytes(b.d.Size),
			r.Took.Round(time.Millisecond), Rate(b.d.Size, r.Took), r.Path)
	default:
		b.l.printf("blob %s %s (%s)\n", short(b.d.Digest), r.Outcome, Bytes(b.d.Size))
	}
}

// Bars draws one progress bar per blob (github.com/vbauerster/mpb).
type Bars struct {
	p *mpb.Progress
}

// NewBars returns the terminal display.
func NewBars(w io.Writer) *Bars {
	return &Bars{p: mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithAutoRefresh())}
}

func (b *Bars) Blob(d v1.Descriptor) BlobProgress {
	st := &barBlob{size: d.Size}
	st.state.Store("")
	// Total 0 at first: mpb then does not complete the bar by itself when
	// the bytes are all sent, so its last frame shows the outcome Done sets.
	bar := b.p.AddBar(0,
		mpb.PrependDecorators(decor.Name(short(d.Digest), decor.WC{C: decor.DindentRight | decor.DextraSpace})),
		mpb.AppendDecorators(
			decor.CountersKibiByte("% .1f / % .1f", decor.WC{W: 22}),
			decor.Any(func(decor.Statistics) string { return " " + st.state.Load().(string) }),
		),
	)
	bar.SetTotal(d.Size, false)
	st.bar = bar
	return st
}

func (b *Bars) Manifest(v1.Descriptor, string, bool) {}

func (b *Bars) Wait() { b.p.Wait() }

type barBlob struct {
	bar   *mpb.Bar
	size  int64
	sent  atomic.Int64
	state atomic.Value // string shown after the counters
}

func (b *barBlob) Add(n int64) {
	b.bar.SetCurrent(b.sent.Add(n))
}

func (b *barBlob) Done(r BlobResult, err error) {
	switch {
	case err != nil:
		b.state.Store("failed")
		b.bar.Abort(false)
		return
	case r.Outcome == Uploaded:
		b.state.Store(r.Path)
	default:
		b.state.Store(r.Outcome.String())
		b.bar.SetCurrent(b.size)
	}
	b.bar.SetTotal(-1, true)
}

// Bytes formats a byte count in binary units.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Rate formats n bytes over d as MB/s (10^6 bytes per second).
func Rate(n int64, d time.Duration) string {
	if d <= 0 {
		return "- MB/s"
	}
	return fmt.Sprintf("%.1f MB/s", float64(n)/1e6/d.Seconds())
}
