// Package vulndb matches an image's packages against OSV vulnerability
// records (https://ossf.github.io/osv-schema/).
//
// The data is read from an fs.FS laid out as OSV publishes it: one
// directory per ecosystem, holding the ecosystem's export `all.zip` (one
// OSV JSON record per zip entry) and/or loose `*.json` records, at any
// depth:
//
//	Debian/all.zip
//	Go/all.zip
//	PyPI/GHSA-xxxx.json
//	PyPI/nested/PYSEC-2021-1.json
//
// Open only lists the files; an ecosystem's records are read the first
// time an image needs that ecosystem, streamed one record at a time, and
// kept as a compact index keyed by (ecosystem, package name) holding only
// what matching and reporting need. Damaged data never fails the whole
// database: a record that does not parse or is over the size limit is
// skipped and counted (Stats).
package vulndb

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Defaults for the limits; see the With* options.
const (
	DefaultMaxRecordSize  = 16 << 20
	DefaultMaxRecords     = 2_000_000
	DefaultMaxArchiveSize = 4 << 30
)

// Option configures Open.
type Option func(*config)

type config struct {
	maxRecordSize  int64
	maxRecords     int
	maxArchiveSize int64
	hashContents   bool
	tempDir        string
}

// WithMaxRecordSize bounds one record (a zip entry's uncompressed size or
// a loose file's size). Larger records are skipped and counted as
// oversized: this is what keeps a zip bomb from costing more than this
// much memory per entry.
func WithMaxRecordSize(n int64) Option { return func(c *config) { c.maxRecordSize = n } }

// WithMaxRecords bounds the records read from one ecosystem directory;
// the rest are skipped and the directory is counted as truncated.
func WithMaxRecords(n int) Option { return func(c *config) { c.maxRecords = n } }

// WithMaxArchiveSize bounds an all.zip that has to be spooled to a
// temporary file because the fs.FS cannot read it at random (it does not
// implement io.ReaderAt or io.Seeker).
func WithMaxArchiveSize(n int64) Option { return func(c *config) { c.maxArchiveSize = n } }

// WithTempDir names the directory for spooled archives (default
// os.TempDir()).
func WithTempDir(dir string) Option { return func(c *config) { c.tempDir = dir } }

// HashContents makes Version hash the data files' contents instead of
// their names, sizes and modification times. Open then reads every file
// once. Use it when modification times are not meaningful (a copy that
// sets them to the copy time would otherwise change the version on every
// sync).
func HashContents() Option { return func(c *config) { c.hashContents = true } }

// DB is an opened OSV data set. It is safe for concurrent use; each
// ecosystem is loaded once, by the first Match that needs it.
type DB struct {
	fsys    fs.FS
	cfg     config
	version string
	// dirs maps each top-level directory name to its data files, sorted.
	dirs map[string][]dataFile

	// mu guards stats; each directory's loading is guarded by its own
	// dirState, so loading Debian's export does not hold up a match that
	// needs only the (already loaded) Go records.
	mu    sync.Mutex
	state map[string]*dirState // by directory name; fixed at Open
	stats Stats
}

type dirState struct {
	mu  sync.Mutex
	idx *dirIndex // nil until loaded
}

type dataFile struct {
	path string
	zip  bool
	size int64
}

// Stats counts what loading found so far.
type Stats struct {
	// Loaded lists the ecosystem directories read, sorted.
	Loaded []string
	// Files is the number of data files (zips and loose records) read.
	Files int
	// Records is the number of records indexed (withdrawn records and
	// records without a usable affected entry are not).
	Records int
	// Malformed counts records that did not decode or had no id.
	Malformed int
	// Oversized counts records over the record size limit.
	Oversized int
	// Truncated counts directories that hit the record-count limit.
	Truncated int
}

// dirIndex is one loaded ecosystem directory: affected entries keyed by
// base ecosystem + "\x00" + normalized package name.
type dirIndex struct {
	entries map[string][]*entry
}

// Open lists the OSV data in fsys and returns a DB over it. Only the
// listing can fail here (an unreadable directory); records are read
// lazily by Match. An empty fsys is a valid, empty database.
func Open(fsys fs.FS, opts ...Option) (*DB, error) {
	cfg := config{
		maxRecordSize:  DefaultMaxRecordSize,
		maxRecords:     DefaultMaxRecords,
		maxArchiveSize: DefaultMaxArchiveSize,
	}
	for _, o := range opts {
		o(&cfg)
	}
	db := &DB{fsys: fsys, cfg: cfg, dirs: map[string][]dataFile{}, state: map[string]*dirState{}}
	top, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("vulndb: list data: %w", err)
	}
	h := sha256.New()
	for _, d := range top {
		if !d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			continue
		}
		var files []dataFile
		err := fs.WalkDir(fsys, d.Name(), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() {
				if p != d.Name() && strings.HasPrefix(e.Name(), ".") {
					return fs.SkipDir
				}
				return nil
			}
			isZip := e.Name() == "all.zip"
			if !isZip && !strings.HasSuffix(e.Name(), ".json") {
				return nil
			}
			info, err := e.Info()
			if err != nil {
				return err
			}
			if !info.Mode().IsRegular() {
				return nil
			}
			files = append(files, dataFile{path: p, zip: isZip, size: info.Size()})
			// The version line: path, size, and either the content's hash
			// or the modification time.
			fmt.Fprintf(h, "%s\x00%d\x00", p, info.Size())
			if cfg.hashContents {
				if err := hashFile(fsys, p, h); err != nil {
					return err
				}
			} else {
				h.Write([]byte(strconv.FormatInt(info.ModTime().UnixNano(), 10)))
			}
			h.Write([]byte{'\n'})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("vulndb: list %s: %w", d.Name(), err)
		}
		if len(files) > 0 {
			db.dirs[d.Name()] = files
			db.state[d.Name()] = &dirState{}
		}
	}
	// fs.ReadDir and fs.WalkDir visit in lexical order, so the hash input
	// is already canonical.
	db.version = "osv-" + hex.EncodeToString(h.Sum(nil))[:32]
	return db, nil
}

func hashFile(fsys fs.FS, p string, w io.Writer) error {
	f, err := fsys.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return err
	}
	_, err = w.Write(sum.Sum(nil))
	return err
}

// Version identifies the data set: a hash over every data file's path
// and size plus its modification time (or, with HashContents, its
// contents). It changes when a file is added, removed, resized or
// rewritten, so a caller that stored it next to a report knows the report
// must be re-matched. It is computed by Open: data changed after Open is
// seen by opening again.
func (db *DB) Version() string { return db.version }

// Stats reports what loading has found so far.
func (db *DB) Stats() Stats {
	db.mu.Lock()
	defer db.mu.Unlock()
	s := db.stats
	s.Loaded = append([]string(nil), s.Loaded...)
	return s
}

// Ecosystems lists the ecosystem directories in the data, sorted.
func (db *DB) Ecosystems() []string {
	out := make([]string, 0, len(db.dirs))
	for d := range db.dirs {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// lookup returns the entries for a package in a base ecosystem, loading
// the directories that hold that ecosystem on first use.
func (db *DB) lookup(ctx context.Context, base, name string) ([]*entry, error) {
	var out []*entry
	key := base + "\x00" + normalizeName(base, name)
	for _, dir := range db.dirsFor(base) {
		idx, err := db.load(ctx, dir)
		if err != nil {
			return nil, err
		}
		out = append(out, idx.entries[key]...)
	}
	return out, nil
}

// dirsFor names the directories holding a base ecosystem's records: the
// one named after it, and any named after one of its releases
// ("Debian:12"), which some mirrors split out.
func (db *DB) dirsFor(base string) []string {
	var out []string
	for d := range db.dirs {
		if d == base || strings.HasPrefix(d, base+":") {
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

// load reads one ecosystem directory, once. The directory's lock is
// held while loading: concurrent matches that need the same data wait
// for it rather than read it twice. A failed load (an I/O error, a
// cancelled context) is not kept, so the next Match tries again.
func (db *DB) load(ctx context.Context, dir string) (*dirIndex, error) {
	st := db.state[dir]
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.idx != nil {
		return st.idx, nil
	}
	l := &loader{
		db:     db,
		ctx:    ctx,
		base:   baseEcosystem(dir),
		idx:    &dirIndex{entries: map[string][]*entry{}},
		intern: map[string]string{},
	}
	for _, f := range db.dirs[dir] {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var err error
		if f.zip {
			err = l.readZip(f)
		} else {
			err = l.readLoose(f)
		}
		if errors.Is(err, errRecordLimit) {
			l.stats.Truncated++
			break
		}
		if err != nil {
			return nil, fmt.Errorf("vulndb: load %s: %w", f.path, err)
		}
		l.stats.Files++
	}
	st.idx = l.idx
	db.mu.Lock()
	defer db.mu.Unlock()
	db.stats.Loaded = append(db.stats.Loaded, dir)
	sort.Strings(db.stats.Loaded)
	db.stats.Files += l.stats.Files
	db.stats.Records += l.stats.Records
	db.stats.Malformed += l.stats.Malformed
	db.stats.Oversized += l.stats.Oversized
	db.stats.Truncated += l.stats.Truncated
	return l.idx, nil
}

// baseEcosystem cuts the release off an ecosystem name: "Debian:12" →
// "Debian", "Red Hat:enterprise_linux:9::baseos" → "Red Hat".
func baseEcosystem(eco string) string {
	base, _, _ := strings.Cut(eco, ":")
	return base
}
