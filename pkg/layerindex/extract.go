package layerindex

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/berth-registry/berth/pkg/inventory"
	scalibrextractor "github.com/google/osv-scalibr/extractor"
	"github.com/google/osv-scalibr/extractor/filesystem"
	"github.com/google/osv-scalibr/extractor/filesystem/language/golang/gobinary"
	"github.com/google/osv-scalibr/extractor/filesystem/language/java/archive"
	"github.com/google/osv-scalibr/extractor/filesystem/language/javascript/packagejson"
	"github.com/google/osv-scalibr/extractor/filesystem/language/javascript/packagelockjson"
	"github.com/google/osv-scalibr/extractor/filesystem/language/python/requirements"
	"github.com/google/osv-scalibr/extractor/filesystem/language/python/wheelegg"
	"github.com/google/osv-scalibr/extractor/filesystem/language/rust/cargolock"
	"github.com/google/osv-scalibr/extractor/filesystem/os/apk"
	apkmeta "github.com/google/osv-scalibr/extractor/filesystem/os/apk/metadata"
	"github.com/google/osv-scalibr/extractor/filesystem/os/dpkg"
	dpkgmeta "github.com/google/osv-scalibr/extractor/filesystem/os/dpkg/metadata"
	"github.com/google/osv-scalibr/extractor/filesystem/os/rpm"
	rpmmeta "github.com/google/osv-scalibr/extractor/filesystem/os/rpm/metadata"

	cpb "github.com/google/osv-scalibr/binary/proto/config_go_proto"
)

const goBinaryName = gobinary.Name

// noSizeLimit is handed to the extractors as their file size limit: the
// indexer applies MaxFileSize itself, so a file skipped for its size is
// noted in Layer.Error instead of being silently unwanted.
const noSizeLimit = 1 << 62

// newExtractors builds the extractors the indexer runs: dpkg, apk, rpm,
// Go binaries, Python (requirements, dist-info/egg-info), Node
// (package-lock.json, package.json), Java archives (pom.properties and
// manifests inside jars) and Rust (Cargo.lock).
func newExtractors(limits Limits) ([]filesystem.Extractor, error) {
	base := &cpb.PluginConfig{MaxFileSizeBytes: noSizeLimit}
	javaCfg := &cpb.PluginConfig{
		MaxFileSizeBytes: noSizeLimit,
		PluginSpecific: []*cpb.PluginSpecificConfig{{Config: &cpb.PluginSpecificConfig_JavaArchive{
			JavaArchive: &cpb.JavaArchiveConfig{
				MaxFileSizeBytes: noSizeLimit,
				// Nested jars are read into memory; bound them (zip bombs).
				MaxOpenedBytes: limits.MaxFileSize,
				MaxZipDepth:    8,
			},
		}}},
	}
	rpmCfg := &cpb.PluginConfig{
		MaxFileSizeBytes: noSizeLimit,
		PluginSpecific: []*cpb.PluginSpecificConfig{{Config: &cpb.PluginSpecificConfig_Rpm{
			// A corrupt Berkeley DB can make the rpm reader loop; its own
			// timeout stops it.
			Rpm: &cpb.RpmConfig{TimeoutSeconds: 60},
		}}},
	}
	ctors := []struct {
		new func(*cpb.PluginConfig) (filesystem.Extractor, error)
		cfg *cpb.PluginConfig
	}{
		{dpkg.New, base},
		{apk.New, base},
		{rpm.New, rpmCfg},
		{gobinary.New, base},
		{requirements.New, base},
		{wheelegg.New, base},
		{packagelockjson.New, base},
		{packagejson.New, base},
		{archive.New, javaCfg},
		{cargolock.New, base},
	}
	var out []filesystem.Extractor
	for _, c := range ctors {
		ex, err := c.new(c.cfg)
		if err != nil {
			return nil, fmt.Errorf("layerindex: building an extractor: %w", err)
		}
		out = append(out, ex)
	}
	return out, nil
}

// needsRealFile reports whether an extractor opens the file by path (the
// rpm database is a SQLite or Berkeley DB file) rather than reading it.
func needsRealFile(exs []filesystem.Extractor) bool {
	return slices.ContainsFunc(exs, func(ex filesystem.Extractor) bool { return ex.Name() == rpm.Name })
}

// isDistroDB reports whether an extractor reads a distro package
// database: its failure leaves the layer's inventory unknown, so it is
// noted in Layer.Error. A language metadata file that does not parse (a
// test fixture shipped inside a package, say) is skipped quietly.
func isDistroDB(name string) bool {
	return name == dpkg.Name || name == apk.Name || name == rpm.Name
}

// extract runs one extractor on the current file and records what it
// found. It returns an error only to stop the walk (ctx done).
func (w *walker) extract(ctx context.Context, ex filesystem.Extractor, name string, info fs.FileInfo, c *content) (err error) {
	defer func() {
		if r := recover(); r != nil {
			w.note(fmt.Sprintf("%s: extractor %s panicked: %v", name, ex.Name(), r))
		}
	}()
	in := &filesystem.ScanInput{
		FS:     w.view(name, info, c),
		Path:   name,
		Info:   info,
		Reader: c.reader(),
	}
	if c.file != nil && needsRealFile([]filesystem.Extractor{ex}) {
		// Read by path: point the extractor at the spooled copy.
		in.Root = c.root
		in.Path = c.base
	}
	inv, xerr := ex.Extract(ctx, in)
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	// A distro database that fails to parse, or a jar that hits the
	// archive limits (a zip bomb), leaves the inventory incomplete: say so.
	if xerr != nil && (isDistroDB(ex.Name()) ||
		errors.Is(xerr, filesystem.ErrExtractorMemoryLimitExceeded) ||
		strings.Contains(xerr.Error(), "max zip depth")) {
		w.note(fmt.Sprintf("%s: extractor %s: %v", name, ex.Name(), xerr))
	}
	for _, p := range inv.Packages {
		if len(w.l.Packages) >= w.ix.limits.MaxPackages {
			break
		}
		if pkg, ok := toPackage(ex.Name(), name, p); ok {
			w.l.Packages = append(w.l.Packages, pkg)
		}
	}
	return nil
}

// toPackage maps an osv-scalibr package into the inventory's terms.
func toPackage(extractorName, filePath string, p *scalibrextractor.Package) (inventory.Package, bool) {
	if p == nil || p.Name == "" || p.Version == "" {
		return inventory.Package{}, false
	}
	if extractorName == archive.Name && p.Version == "unknown" {
		// A jar with no Maven metadata and no versioned file name: the
		// archive extractor names it "unknown:unknown" to carry its hash,
		// which no advisory can match.
		return inventory.Package{}, false
	}
	if extractorName == gobinary.Name && p.Name == "go" {
		// The Go toolchain that built the binary: OSV lists standard
		// library advisories under the module "stdlib".
		p.Name = "stdlib"
	}
	out := inventory.Package{
		Name:      p.Name,
		Version:   p.Version,
		Ecosystem: ecosystem(extractorName, p),
		Path:      filePath,
		Extractor: extractorName,
	}
	if u := p.PURL(); u != nil {
		kept := u.Qualifiers[:0]
		for _, q := range u.Qualifiers {
			if q.Key != "distro" {
				kept = append(kept, q)
			}
		}
		u.Qualifiers = kept
		out.PURL = u.String()
	}
	switch m := p.Metadata.(type) {
	case *dpkgmeta.Metadata:
		if m.SourceName != "" && (m.SourceName != p.Name || m.SourceVersion != "") {
			out.SourceName, out.SourceVersion = m.SourceName, m.SourceVersion
		}
	case *apkmeta.Metadata:
		if m.OriginName != "" && m.OriginName != p.Name {
			out.SourceName = m.OriginName
		}
	case *rpmmeta.Metadata:
		if n, v, ok := splitSourceRPM(m.SourceRPM); ok && (n != p.Name || v != p.Version) {
			out.SourceName, out.SourceVersion = n, v
		}
	}
	return out, true
}

// ecosystem is the OSV ecosystem without its release. Distro packages
// default to their family's main distro until the layer's (or, in
// inventory.Merge, the image's) os-release says otherwise.
func ecosystem(extractorName string, p *scalibrextractor.Package) string {
	eco := string(p.Ecosystem().Ecosystem)
	switch extractorName {
	case dpkg.Name:
		if eco != "Debian" && eco != "Ubuntu" {
			eco = "Debian"
		}
	case apk.Name:
		if eco == "" {
			eco = "Alpine"
		}
	}
	return eco
}

// splitSourceRPM splits "glibc-2.34-60.el9.src.rpm" into "glibc" and
// "2.34-60.el9".
func splitSourceRPM(s string) (name, version string, ok bool) {
	s = strings.TrimSuffix(strings.TrimSuffix(s, ".rpm"), ".src")
	s = strings.TrimSuffix(s, ".nosrc")
	rel := strings.LastIndexByte(s, '-')
	if rel <= 0 {
		return "", "", false
	}
	ver := strings.LastIndexByte(s[:rel], '-')
	if ver <= 0 {
		return "", "", false
	}
	return s[:ver], s[ver+1:], true
}

// view is the filesystem an extractor sees: the file itself and the
// layer's os-release (read so far), under their layer paths. Extractors
// look beside their file for context (the os-release for the distro,
// npm-shrinkwrap.json beside a lockfile, requirement files a requirements
// file includes); in a streamed layer only what was kept is there, and
// everything else does not exist.
func (w *walker) view(name string, info fs.FileInfo, c *content) *viewFS {
	v := &viewFS{files: map[string]viewFile{}}
	v.files[name] = viewFile{info: info, open: c.reader}
	for p, b := range w.osRelease {
		b := b
		v.files[p] = viewFile{info: memInfo{name: path.Base(p), size: int64(len(b))}, open: func() io.Reader { return strings.NewReader(string(b)) }}
	}
	return v
}

type viewFile struct {
	info fs.FileInfo
	open func() io.Reader
}

// viewFS implements osv-scalibr's fs.FS (fs.FS, fs.ReadDirFS, fs.StatFS)
// over a handful of files; directories are implied by their paths.
type viewFS struct {
	files map[string]viewFile
}

func (v *viewFS) isDir(name string) bool {
	if name == "." {
		return true
	}
	for p := range v.files {
		if strings.HasPrefix(p, name+"/") {
			return true
		}
	}
	return false
}

func (v *viewFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if f, ok := v.files[name]; ok {
		return &viewOpenFile{info: f.info, r: f.open()}, nil
	}
	if v.isDir(name) {
		entries, _ := v.ReadDir(name)
		return &viewDir{info: memInfo{name: path.Base(name), dir: true}, entries: entries}, nil
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

func (v *viewFS) Stat(name string) (fs.FileInfo, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrInvalid}
	}
	if f, ok := v.files[name]; ok {
		return f.info, nil
	}
	if v.isDir(name) {
		return memInfo{name: path.Base(name), dir: true}, nil
	}
	return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
}

func (v *viewFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrInvalid}
	}
	if !v.isDir(name) {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	prefix := name + "/"
	if name == "." {
		prefix = ""
	}
	seen := map[string]fs.DirEntry{}
	for p, f := range v.files {
		rest, ok := strings.CutPrefix(p, prefix)
		if !ok {
			continue
		}
		child, _, deeper := strings.Cut(rest, "/")
		if deeper {
			seen[child] = fs.FileInfoToDirEntry(memInfo{name: child, dir: true})
		} else {
			seen[child] = fs.FileInfoToDirEntry(f.info)
		}
	}
	out := make([]fs.DirEntry, 0, len(seen))
	for _, e := range seen {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

type viewOpenFile struct {
	info fs.FileInfo
	r    io.Reader
}

func (f *viewOpenFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *viewOpenFile) Read(p []byte) (int, error) { return f.r.Read(p) }
func (f *viewOpenFile) Close() error               { return nil }

// ReadAt and Seek pass through when the underlying reader has them.
func (f *viewOpenFile) ReadAt(p []byte, off int64) (int, error) {
	if ra, ok := f.r.(io.ReaderAt); ok {
		return ra.ReadAt(p, off)
	}
	return 0, fmt.Errorf("layerindex: %s: no ReadAt", f.info.Name())
}

type viewDir struct {
	info    fs.FileInfo
	entries []fs.DirEntry
}

func (d *viewDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *viewDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.Name(), Err: fs.ErrInvalid}
}
func (d *viewDir) Close() error { return nil }
func (d *viewDir) ReadDir(n int) ([]fs.DirEntry, error) {
	if n <= 0 {
		out := d.entries
		d.entries = nil
		return out, nil
	}
	if len(d.entries) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(d.entries))
	out := d.entries[:n]
	d.entries = d.entries[n:]
	return out, nil
}

type memInfo struct {
	name string
	size int64
	dir  bool
}

func (m memInfo) Name() string { return m.name }
func (m memInfo) Size() int64  { return m.size }
func (m memInfo) Mode() fs.FileMode {
	if m.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}
func (m memInfo) ModTime() time.Time { return time.Time{} }
func (m memInfo) IsDir() bool        { return m.dir }
func (m memInfo) Sys() any           { return nil }
