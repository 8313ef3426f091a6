package vulndb

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
)

// errRecordLimit stops reading a directory at the record-count limit.
var errRecordLimit = errors.New("record limit reached")

// loader reads one ecosystem directory into a dirIndex.
type loader struct {
	db     *DB
	ctx    context.Context
	base   string
	idx    *dirIndex
	stats  Stats
	read   int
	buf    bytes.Buffer
	intern map[string]string
}

func (l *loader) internString(s string) string {
	if v, ok := l.intern[s]; ok {
		return v
	}
	l.intern[s] = s
	return s
}

// readLoose reads one loose *.json record.
func (l *loader) readLoose(f dataFile) error {
	if err := l.next(); err != nil {
		return err
	}
	if f.size > l.db.cfg.maxRecordSize {
		l.stats.Oversized++
		return l.count()
	}
	file, err := l.db.fsys.Open(f.path)
	if err != nil {
		return err
	}
	defer file.Close()
	return l.readRecord(file)
}

// readZip reads an all.zip export entry by entry. An archive that is not
// a zip at all is an error of the data set (the sync wrote something
// else), reported rather than silently matching nothing.
func (l *loader) readZip(f dataFile) error {
	file, err := l.db.fsys.Open(f.path)
	if err != nil {
		return err
	}
	defer file.Close()
	ra, size, cleanup, err := l.readerAt(file, f)
	if err != nil {
		return err
	}
	defer cleanup()
	zr, err := zip.NewReader(ra, size)
	if err != nil {
		return err
	}
	for _, zf := range zr.File {
		if err := l.ctx.Err(); err != nil {
			return err
		}
		if zf.FileInfo().IsDir() || !strings.HasSuffix(zf.Name, ".json") {
			continue
		}
		if err := l.next(); err != nil {
			return err
		}
		// The declared size is checked first (cheap), the bytes actually
		// inflated are bounded again in readRecord because a crafted
		// header can lie.
		if zf.UncompressedSize64 > uint64(l.db.cfg.maxRecordSize) {
			l.stats.Oversized++
			if err := l.count(); err != nil {
				return err
			}
			continue
		}
		rc, err := zf.Open()
		if err != nil {
			// An unsupported compression method or a damaged local
			// header: one bad entry, not a bad archive.
			l.stats.Malformed++
			if err := l.count(); err != nil {
				return err
			}
			continue
		}
		err = l.readRecord(rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// readerAt gives random access to a zip: directly when the fs.File
// offers it (os.DirFS, fstest.MapFS, embed.FS), through Seek when it can
// seek, else by spooling it to a bounded temporary file.
func (l *loader) readerAt(file fs.File, f dataFile) (io.ReaderAt, int64, func(), error) {
	if ra, ok := file.(io.ReaderAt); ok {
		return ra, f.size, func() {}, nil
	}
	if rs, ok := file.(io.ReadSeeker); ok {
		return &seekReaderAt{rs: rs}, f.size, func() {}, nil
	}
	tmp, err := os.CreateTemp(l.db.cfg.tempDir, "berth-osv-*.zip")
	if err != nil {
		return nil, 0, nil, err
	}
	cleanup := func() { tmp.Close(); os.Remove(tmp.Name()) }
	n, err := io.Copy(tmp, io.LimitReader(file, l.db.cfg.maxArchiveSize+1))
	if err != nil {
		cleanup()
		return nil, 0, nil, err
	}
	if n > l.db.cfg.maxArchiveSize {
		cleanup()
		return nil, 0, nil, fmt.Errorf("archive larger than %d bytes", l.db.cfg.maxArchiveSize)
	}
	return tmp, n, cleanup, nil
}

// seekReaderAt adapts an io.ReadSeeker; zip reads sequentially enough
// that the seeks are cheap, and the mutex keeps ReadAt's contract for
// the (single) reader.
type seekReaderAt struct {
	mu sync.Mutex
	rs io.ReadSeeker
}

func (s *seekReaderAt) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.rs.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	return io.ReadFull(s.rs, p)
}

// readRecord reads one record of at most maxRecordSize bytes and indexes
// it. Only I/O errors of r that are not the record's fault are returned:
// a record that does not decode is counted and skipped.
func (l *loader) readRecord(r io.Reader) error {
	l.buf.Reset()
	n, err := l.buf.ReadFrom(io.LimitReader(r, l.db.cfg.maxRecordSize+1))
	if err != nil {
		// A zip entry whose data is corrupt fails here (flate or
		// checksum error): the entry is bad, the archive may be fine.
		l.stats.Malformed++
		return l.count()
	}
	if n > l.db.cfg.maxRecordSize {
		l.stats.Oversized++
		return l.count()
	}
	var rec osvRecord
	if err := json.Unmarshal(l.buf.Bytes(), &rec); err != nil || rec.ID == "" {
		l.stats.Malformed++
		return l.count()
	}
	l.add(&rec)
	return l.count()
}

// count counts a record read (indexed or skipped).
func (l *loader) count() error {
	l.read++
	return nil
}

// next enforces the record-count limit before another record is read.
func (l *loader) next() error {
	if l.read >= l.db.cfg.maxRecords {
		return errRecordLimit
	}
	return nil
}

// add indexes the affected entries of rec that belong to this
// directory's ecosystem; entries for other ecosystems are left to their
// own directory so a record is indexed once per ecosystem.
func (l *loader) add(rec *osvRecord) {
	r, entries := compact(rec, l.internString)
	if r == nil {
		return
	}
	indexed := false
	for _, e := range entries {
		base := baseEcosystem(e.entry.ecosystem)
		if base != l.base {
			continue
		}
		key := base + "\x00" + normalizeName(base, e.name)
		l.idx.entries[key] = append(l.idx.entries[key], e.entry)
		indexed = true
	}
	if indexed {
		l.stats.Records++
	}
}
