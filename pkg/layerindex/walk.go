package layerindex

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/berth-registry/berth/pkg/inventory"
	"github.com/google/osv-scalibr/extractor/filesystem"
)

// maxNotes bounds how many problems Layer.Error spells out.
const maxNotes = 5

// maxOSReleaseSize bounds an os-release file read into memory.
const maxOSReleaseSize = 64 << 10

// walker is the state of indexing one layer.
type walker struct {
	ix       *Indexer
	l        *inventory.Layer
	buf      []byte // reused for in-memory files
	peek     []byte // first bytes of the current entry, read by looksExecutable
	spoolDir string // created on first spool
	spooled  int64
	notes    []string
	dropped  int
	// wanted maps a path an extractor wanted to the index of the first
	// package declared from it, so a later entry at the same path in the
	// same layer replaces those packages.
	wanted    map[string]int
	osRelease map[string][]byte // etc/os-release, usr/lib/os-release
}

func newWalker(ix *Indexer, l *inventory.Layer) *walker {
	return &walker{ix: ix, l: l, wanted: map[string]int{}, osRelease: map[string][]byte{}}
}

// note records a problem for Layer.Error.
func (w *walker) note(msg string) {
	if len(w.notes) >= maxNotes {
		w.dropped++
		return
	}
	w.notes = append(w.notes, msg)
}

func (w *walker) close() {
	if w.spoolDir != "" {
		_ = os.RemoveAll(w.spoolDir)
	}
}

// finish fills in what is known only at the end of the layer.
func (w *walker) finish() {
	if b, ok := w.osRelease["etc/os-release"]; ok {
		w.l.OSRelease = parseOSRelease(b)
	} else if b, ok := w.osRelease["usr/lib/os-release"]; ok {
		w.l.OSRelease = parseOSRelease(b)
	}
	for i := range w.l.Packages {
		p := &w.l.Packages[i]
		if eco := inventory.DistroEcosystemFor(p.Extractor, w.l.OSRelease); eco != "" {
			p.Ecosystem = eco
		}
	}
	if len(w.notes) > 0 {
		msg := strings.Join(w.notes, "; ")
		if w.dropped > 0 {
			msg += fmt.Sprintf("; and %d more", w.dropped)
		}
		w.l.Error = msg
	}
}

// walk reads the tar stream to its end, a limit or an error.
func (w *walker) walk(ctx context.Context, r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		if w.l.Entries%64 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return tarError(err, w.l.Entries)
		}
		w.l.Entries++
		if w.l.Entries > w.ix.limits.MaxEntries {
			w.l.Entries--
			return fmt.Errorf("%w: more than %d tar entries", errLimit, w.ix.limits.MaxEntries)
		}
		if err := w.entry(ctx, tr, hdr); err != nil {
			return err
		}
	}
}

// tarError words a failure of the tar stream: a limit of ours, or the
// archive (or its compression) being malformed or cut short.
func tarError(err error, entries int) error {
	if errors.Is(err, errLimit) {
		return err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("truncated layer after %d entries: %w", entries, err)
	}
	return fmt.Errorf("malformed layer after %d entries: %w", entries, err)
}

// cleanName turns a tar entry name into a Layer path: clean, relative,
// no leading "/" or "./". Names that climb out of the root ("../x",
// "/../x") are clamped at the root, as container runtimes do when they
// unpack, so the path recorded is the one the file would have had.
func cleanName(name string) string {
	return strings.TrimLeft(path.Clean("/"+name), "/")
}

// entry handles one tar entry.
func (w *walker) entry(ctx context.Context, tr *tar.Reader, hdr *tar.Header) error {
	w.peek = w.peek[:0]
	name := cleanName(hdr.Name)
	if name == "" {
		return nil
	}
	dir, base := path.Split(name)
	switch {
	case base == ".wh..wh..opq":
		w.l.Opaque = append(w.l.Opaque, cleanDir(dir))
		return nil
	case strings.HasPrefix(base, ".wh."):
		if target := base[len(".wh."):]; target != "" && target != "." && target != ".." {
			w.l.Whiteouts = append(w.l.Whiteouts, dir+target)
		}
		return nil
	}
	switch hdr.Typeflag {
	case tar.TypeReg:
	case tar.TypeSymlink, tar.TypeLink:
		// Links are never followed (no symlink loops to chase); a link
		// where an extractor would look still replaces an earlier
		// layer's file there.
		// Asked as a plain file: a link's 0777 mode would make every
		// link look like an executable to the Go binary extractor.
		if len(w.required(name, memInfo{name: path.Base(name), size: 0})) > 0 {
			w.replace(name)
		}
		return nil
	default:
		return nil
	}
	if name == "etc/os-release" || name == "usr/lib/os-release" {
		if hdr.Size <= maxOSReleaseSize {
			b := make([]byte, hdr.Size)
			if _, err := io.ReadFull(tr, b); err != nil {
				return tarError(err, w.l.Entries)
			}
			w.osRelease[name] = b
		}
		return nil
	}
	info := hdr.FileInfo()
	exs := w.required(name, info)
	if len(exs) == 0 {
		return nil
	}
	w.replace(name)
	if hdr.Size > w.ix.limits.MaxFileSize {
		w.note(fmt.Sprintf("%s skipped: %d bytes, over the %d-byte file limit", name, hdr.Size, w.ix.limits.MaxFileSize))
		return nil
	}
	if onlyGoBinary(exs) && !w.looksExecutable(tr, hdr) {
		return nil
	}
	c, err := w.load(tr, name, hdr.Size, exs)
	if err != nil || c == nil {
		return err
	}
	defer c.release()
	for _, ex := range exs {
		if err := w.extract(ctx, ex, name, info, c); err != nil {
			return err
		}
		if len(w.l.Packages) >= w.ix.limits.MaxPackages {
			return fmt.Errorf("%w: more than %d packages", errLimit, w.ix.limits.MaxPackages)
		}
	}
	return nil
}

func cleanDir(dir string) string {
	d := strings.TrimSuffix(dir, "/")
	if d == "" {
		return "."
	}
	return d
}

// required returns the extractors that want the file.
func (w *walker) required(name string, info fs.FileInfo) []filesystem.Extractor {
	api := fileAPI{path: name, info: info}
	var out []filesystem.Extractor
	for _, ex := range w.ix.extractors {
		if ex.FileRequired(api) {
			out = append(out, ex)
		}
	}
	return out
}

// replace records that an extractor wanted path name, dropping packages
// an earlier entry at the same path in this layer declared.
func (w *walker) replace(name string) {
	if _, ok := w.wanted[name]; ok {
		kept := w.l.Packages[:0]
		for _, p := range w.l.Packages {
			if p.Path != name {
				kept = append(kept, p)
			}
		}
		w.l.Packages = kept
		w.wanted[name] = len(w.l.Packages)
		return
	}
	w.wanted[name] = len(w.l.Packages)
	w.l.Files = append(w.l.Files, name)
}

func onlyGoBinary(exs []filesystem.Extractor) bool {
	for _, ex := range exs {
		if ex.Name() != goBinaryName {
			return false
		}
	}
	return true
}

// executableMagic are the first bytes of the object formats Go builds
// (ELF, PE, Mach-O thin and fat).
var executableMagic = [][]byte{
	[]byte("\x7fELF"), []byte("MZ"),
	{0xfe, 0xed, 0xfa, 0xce}, {0xfe, 0xed, 0xfa, 0xcf}, {0xce, 0xfa, 0xed, 0xfe}, {0xcf, 0xfa, 0xed, 0xfe},
	{0xca, 0xfe, 0xba, 0xbe},
}

// looksExecutable peeks at the first bytes of an executable file so shell
// scripts and the like are not read in full only for the Go binary
// extractor to reject them. The bytes it consumes are kept in w.peek for
// load.
func (w *walker) looksExecutable(tr *tar.Reader, hdr *tar.Header) bool {
	var head [4]byte
	got, _ := io.ReadFull(tr, head[:min(hdr.Size, 4)])
	w.peek = append(w.peek[:0], head[:got]...)
	for _, m := range executableMagic {
		if bytes.HasPrefix(w.peek, m) {
			return true
		}
	}
	return false
}

// content is a wanted file's bytes, in memory or in a spooled file.
type content struct {
	mem  []byte
	file *os.File
	size int64
	root string // the spool directory holding the file, for extractors that need a real path
	base string // the file's name in root
}

// reader returns a fresh reader over the content that also implements
// io.ReaderAt and io.Seeker (Go binaries and jars are read at offsets).
func (c *content) reader() io.Reader {
	if c.file != nil {
		return io.NewSectionReader(c.file, 0, c.size)
	}
	return bytes.NewReader(c.mem)
}

func (c *content) release() {
	if c.file != nil {
		name := c.file.Name()
		_ = c.file.Close()
		_ = os.Remove(name)
	}
}

// load reads the current entry: into memory up to MemoryFileSize (or
// when no extractor needs a real file), else into a spooled file within
// the MaxSpoolBytes budget. A nil content and nil error means the file was
// skipped (and noted).
func (w *walker) load(tr *tar.Reader, name string, size int64, exs []filesystem.Extractor) (*content, error) {
	body := io.MultiReader(bytes.NewReader(w.peek), tr)
	if size <= w.ix.limits.MemoryFileSize && !needsRealFile(exs) {
		if int64(cap(w.buf)) < size {
			w.buf = make([]byte, size)
		}
		b := w.buf[:size]
		if _, err := io.ReadFull(body, b); err != nil {
			return nil, tarError(err, w.l.Entries)
		}
		return &content{mem: b, size: size}, nil
	}
	if w.spooled+size > w.ix.limits.MaxSpoolBytes {
		w.note(fmt.Sprintf("%s skipped: spooling %d more bytes would pass the %d-byte spool limit", name, size, w.ix.limits.MaxSpoolBytes))
		return nil, nil
	}
	if w.spoolDir == "" {
		d, err := os.MkdirTemp(w.ix.limits.TempDir, "berth-layerindex-")
		if err != nil {
			w.note(fmt.Sprintf("%s skipped: no spool directory: %v", name, err))
			return nil, nil
		}
		w.spoolDir = d
	}
	base := path.Base(name)
	if len(base) > 200 {
		base = base[:200]
	}
	f, err := os.OpenFile(filepath.Join(w.spoolDir, base), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		w.note(fmt.Sprintf("%s skipped: spooling: %v", name, err))
		return nil, nil
	}
	w.spooled += size
	n, err := io.Copy(f, body)
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		if errors.Is(err, errLimit) || errors.Is(err, io.ErrUnexpectedEOF) || isStreamError(err) {
			return nil, tarError(err, w.l.Entries)
		}
		// The disk failed us, not the layer.
		w.note(fmt.Sprintf("%s skipped: spooling: %v", name, err))
		return nil, nil
	}
	return &content{file: f, size: size, root: w.spoolDir, base: base}, nil
}

// isStreamError reports whether err came from reading the layer (the tar
// or decompression stream) rather than from writing the spool file.
func isStreamError(err error) bool {
	var pe *fs.PathError
	return !errors.As(err, &pe)
}

// fileAPI is what FileRequired sees: the entry's path and header.
type fileAPI struct {
	path string
	info fs.FileInfo
}

func (f fileAPI) Path() string               { return f.path }
func (f fileAPI) Stat() (fs.FileInfo, error) { return f.info, nil }

// parseOSRelease reads KEY=value lines, unquoting values, as
// os-release(5) describes and osv-scalibr's own parser does.
func parseOSRelease(b []byte) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		m[k] = v
	}
	if len(m) == 0 {
		return nil
	}
	return m
}
