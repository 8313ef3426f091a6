package scanwire

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berth-registry/berth/pkg/vulndb"
)

// OSVClient is the part of the S3 client OSVData uses.
type OSVClient interface {
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// ErrNoOSVData: the bucket holds no OSV exports yet (the osvsync function
// has not run). A scan fails rather than report an image clean against no
// data; the first sync's re-match request scans it.
var ErrNoOSVData = errors.New("no OSV data in the bucket yet (run the osvsync function)")

// fetchTimeout bounds one export's download. fs.FS has no context: the
// download happens inside vulndb's first Match that needs the ecosystem.
const fetchTimeout = 5 * time.Minute

// OSVData serves the OSV exports the osvsync function stored under
// osv/<Ecosystem>/all.zip to vulndb, downloading each export to a local
// directory (Lambda's /tmp) only when a match first needs its ecosystem:
// an image of Go binaries never downloads Debian's export. Downloads are
// kept across warm invocations by S3 ETag, and so is the opened database
// with the ecosystems it loaded, as long as the listing is unchanged.
type OSVData struct {
	client OSVClient
	bucket string
	prefix string // "osv/"
	dir    string
	log    *slog.Logger

	mu      sync.Mutex // guards listing, db
	listing string
	db      *vulndb.DB

	fetchMu sync.Mutex        // serializes downloads
	local   map[string]string // bucket key → local file of its current ETag
}

// NewOSVData returns the exports under prefix in bucket, cached in dir
// (created when missing).
func NewOSVData(client OSVClient, bucket, prefix, dir string, log *slog.Logger) *OSVData {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &OSVData{client: client, bucket: bucket, prefix: prefix, dir: dir, log: log, local: map[string]string{}}
}

// DB lists the exports (one ListObjectsV2 page per 1000 objects) and
// returns the database over them: the same *vulndb.DB as last time when
// nothing changed, so its loaded ecosystems stay in memory; a new one
// (a new Version) when an export was added, removed or replaced.
func (o *OSVData) DB(ctx context.Context) (*vulndb.DB, error) {
	objs, err := o.list(ctx)
	if err != nil {
		return nil, err
	}
	if len(objs) == 0 {
		return nil, ErrNoOSVData
	}
	var b strings.Builder
	for _, obj := range objs {
		fmt.Fprintf(&b, "%s\x00%s\x00%d\n", obj.key, obj.etag, obj.size)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.db != nil && o.listing == b.String() {
		return o.db, nil
	}
	db, err := vulndb.Open(o.snapshot(objs))
	if err != nil {
		return nil, err
	}
	o.db, o.listing = db, b.String()
	o.log.LogAttrs(ctx, slog.LevelInfo, "scan: vulnerability data", slog.String("version", db.Version()), slog.Any("ecosystems", db.Ecosystems()))
	return db, nil
}

// object is one listed export.
type object struct {
	key, name, etag string // name: the path below the prefix, "Debian/all.zip"
	size            int64
	modified        time.Time
}

func (o *OSVData) list(ctx context.Context) ([]object, error) {
	var out []object
	in := &s3.ListObjectsV2Input{Bucket: aws.String(o.bucket), Prefix: aws.String(o.prefix)}
	for {
		page, err := o.client.ListObjectsV2(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list s3://%s/%s: %w", o.bucket, o.prefix, err)
		}
		for _, c := range page.Contents {
			key := aws.ToString(c.Key)
			name := strings.TrimPrefix(key, o.prefix)
			// vulndb reads <Ecosystem>/all.zip and loose *.json below
			// an ecosystem directory; anything else is not data.
			if !fs.ValidPath(name) || !strings.Contains(name, "/") || (path.Ext(name) != ".zip" && path.Ext(name) != ".json") {
				continue
			}
			out = append(out, object{key: key, name: name, etag: aws.ToString(c.ETag), size: aws.ToInt64(c.Size), modified: aws.ToTime(c.LastModified)})
		}
		if !aws.ToBool(page.IsTruncated) {
			break
		}
		in.ContinuationToken = page.NextContinuationToken
	}
	slices.SortFunc(out, func(a, b object) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// fetch returns the local copy of obj, downloading it when the copy of
// its ETag is not there yet, and removing the copy of the ETag it
// replaces. The download asks for exactly the listed ETag (If-Match): a
// replacement in between fails this fetch, and the next DB sees it.
func (o *OSVData) fetch(obj object) (*os.File, error) {
	o.fetchMu.Lock()
	defer o.fetchMu.Unlock()
	id := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:8]) }
	dst := filepath.Join(o.dir, id(obj.key)+"-"+id(obj.etag)+path.Ext(obj.name))
	if fi, err := os.Stat(dst); err == nil && fi.Size() == obj.size {
		o.local[obj.key] = dst
		return os.Open(dst)
	}
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	start := time.Now()
	out, err := o.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(o.bucket), Key: aws.String(obj.key), IfMatch: aws.String(obj.etag)})
	if err != nil {
		return nil, fmt.Errorf("get s3://%s/%s: %w", o.bucket, obj.key, err)
	}
	defer out.Body.Close()
	tmp, err := os.CreateTemp(o.dir, ".download-*")
	if err != nil {
		return nil, err
	}
	n, err := io.Copy(tmp, out.Body)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != obj.size {
		err = fmt.Errorf("got %d bytes, listed %d", n, obj.size)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("download s3://%s/%s: %w", o.bucket, obj.key, err)
	}
	if old := o.local[obj.key]; old != "" && old != dst {
		// The database that read the old copy has been replaced; /tmp
		// holds one copy per export.
		os.Remove(old)
	}
	o.local[obj.key] = dst
	o.log.Info("scan: downloaded OSV export", "key", obj.key, "bytes", n, "took", time.Since(start))
	return os.Open(dst)
}

// snapshot is an fs.FS over one listing: directories and sizes come from
// the listing (vulndb.Open only lists), file contents from fetch.
func (o *OSVData) snapshot(objs []object) fs.FS {
	s := &snapshotFS{fetch: o.fetch, files: map[string]object{}, dirs: map[string][]fs.DirEntry{}}
	seen := map[string]bool{}
	for _, obj := range objs {
		s.files[obj.name] = obj
		s.dirs[path.Dir(obj.name)] = append(s.dirs[path.Dir(obj.name)], entry{name: path.Base(obj.name), obj: obj})
		// Every ancestor directory, listed in its parent once.
		for d := path.Dir(obj.name); d != "."; d = path.Dir(d) {
			if seen[d] {
				break
			}
			seen[d] = true
			s.dirs[path.Dir(d)] = append(s.dirs[path.Dir(d)], entry{name: path.Base(d), dir: true})
		}
	}
	if _, ok := s.dirs["."]; !ok {
		s.dirs["."] = nil
	}
	for d := range s.dirs {
		slices.SortFunc(s.dirs[d], func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	}
	return s
}

type snapshotFS struct {
	fetch func(object) (*os.File, error)
	files map[string]object
	dirs  map[string][]fs.DirEntry
}

var (
	_ fs.ReadDirFS = (*snapshotFS)(nil)
	_ fs.StatFS    = (*snapshotFS)(nil)
)

func (s *snapshotFS) Open(name string) (fs.File, error) {
	if obj, ok := s.files[name]; ok {
		f, err := s.fetch(obj)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return f, nil
	}
	if entries, ok := s.dirs[name]; ok {
		return &dirFile{info: entry{name: path.Base(name), dir: true}, entries: entries}, nil
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

func (s *snapshotFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if entries, ok := s.dirs[name]; ok {
		return slices.Clone(entries), nil
	}
	return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
}

// Stat answers from the listing: a Stat never downloads.
func (s *snapshotFS) Stat(name string) (fs.FileInfo, error) {
	if obj, ok := s.files[name]; ok {
		return entry{name: path.Base(name), obj: obj}, nil
	}
	if _, ok := s.dirs[name]; ok {
		return entry{name: path.Base(name), dir: true}, nil
	}
	return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
}

// entry is a listed file or directory, as fs.DirEntry and fs.FileInfo.
type entry struct {
	name string
	dir  bool
	obj  object
}

func (e entry) Name() string { return e.name }
func (e entry) IsDir() bool  { return e.dir }
func (e entry) Type() fs.FileMode {
	return e.Mode().Type()
}
func (e entry) Info() (fs.FileInfo, error) { return e, nil }
func (e entry) Size() int64                { return e.obj.size }
func (e entry) Mode() fs.FileMode {
	if e.dir {
		return fs.ModeDir | 0o555
	}
	return 0o444
}
func (e entry) ModTime() time.Time { return e.obj.modified }
func (e entry) Sys() any           { return nil }

// dirFile is an opened directory of the snapshot.
type dirFile struct {
	info    entry
	entries []fs.DirEntry
	off     int
}

func (d *dirFile) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: errors.New("is a directory")}
}
func (d *dirFile) Close() error { return nil }
func (d *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.off:]
	if n <= 0 {
		d.off = len(d.entries)
		return slices.Clone(rest), nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(rest))
	d.off += n
	return slices.Clone(rest[:n]), nil
}
