package scanfixture

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// TarBuilder writes a layer tar the way image builders do: parent
// directories first, fixed owners and times, so the bytes depend only on
// what was added. Tests of the indexer use it to build their own layers
// (hostile ones included: Raw writes a header exactly as given).
type TarBuilder struct {
	buf  bytes.Buffer
	tw   *tar.Writer
	dirs map[string]bool
	err  error
}

// NewTar starts a layer tar.
func NewTar() *TarBuilder {
	b := &TarBuilder{dirs: map[string]bool{}}
	b.tw = tar.NewWriter(&b.buf)
	return b
}

func (b *TarBuilder) header(h *tar.Header) {
	if b.err != nil {
		return
	}
	b.err = b.tw.WriteHeader(h)
}

func (b *TarBuilder) parents(p string) {
	dir := path.Dir(strings.TrimSuffix(p, "/"))
	if dir == "." || dir == "/" || b.dirs[dir] {
		return
	}
	b.parents(dir)
	b.dirs[dir] = true
	b.header(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: epoch, Uname: "root", Gname: "root", Format: tar.FormatPAX})
}

// Dir adds a directory (and its parents).
func (b *TarBuilder) Dir(p string) *TarBuilder {
	b.parents(p + "/x")
	return b
}

// File adds a regular file with mode 0644 (and its parents).
func (b *TarBuilder) File(p string, content []byte) *TarBuilder {
	return b.FileMode(p, 0o644, content)
}

// FileMode adds a regular file with the given permission bits.
func (b *TarBuilder) FileMode(p string, mode int64, content []byte) *TarBuilder {
	b.parents(p)
	b.header(&tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: int64(len(content)), ModTime: epoch, Uname: "root", Gname: "root", Format: tar.FormatPAX})
	if b.err == nil {
		_, b.err = b.tw.Write(content)
	}
	return b
}

// Symlink adds a symbolic link p → target.
func (b *TarBuilder) Symlink(p, target string) *TarBuilder {
	b.parents(p)
	b.header(&tar.Header{Typeflag: tar.TypeSymlink, Name: p, Linkname: target, Mode: 0o777, ModTime: epoch, Uname: "root", Gname: "root", Format: tar.FormatPAX})
	return b
}

// Whiteout deletes p from earlier layers (an empty ".wh.<name>" file).
func (b *TarBuilder) Whiteout(p string) *TarBuilder {
	dir, name := path.Split(p)
	return b.File(dir+".wh."+name, nil)
}

// Opaque makes dir opaque (an empty ".wh..wh..opq" file in it).
func (b *TarBuilder) Opaque(dir string) *TarBuilder {
	return b.File(path.Join(dir, ".wh..wh..opq"), nil)
}

// Raw writes h as given, followed by content (which may disagree with
// h.Size: the tar writer then fails, and Bytes reports it).
func (b *TarBuilder) Raw(h *tar.Header, content []byte) *TarBuilder {
	b.header(h)
	if b.err == nil && len(content) > 0 {
		_, b.err = b.tw.Write(content)
	}
	return b
}

// Bytes closes the tar and returns it.
func (b *TarBuilder) Bytes() ([]byte, error) {
	if b.err != nil {
		return nil, b.err
	}
	if err := b.tw.Close(); err != nil {
		return nil, err
	}
	return b.buf.Bytes(), nil
}

// Gzip compresses b with a header carrying no name or time, as image
// builders do, so equal input gives equal bytes.
func Gzip(b []byte) ([]byte, error) {
	var out bytes.Buffer
	zw, err := gzip.NewWriterLevel(&out, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// Zstd compresses b with a single-threaded encoder (deterministic output).
func Zstd(b []byte) ([]byte, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil), nil
}
