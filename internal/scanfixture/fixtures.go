package scanfixture

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/berth-registry/berth/pkg/inventory"
)

// Paths and names the fixtures use, exported so tests assert them without
// repeating string literals.
const (
	DpkgStatusPath = "var/lib/dpkg/status"
	ApkDBPath      = "lib/apk/db/installed"
	GoBinaryPath   = "usr/local/bin/app"
	SitePackages   = "usr/lib/python3.11/site-packages"

	// GoModulePath is the main module of the gobinary fixture's program.
	GoModulePath = "example.com/berthscanapp"
	// GoTextVersion is the golang.org/x/text version the program is built
	// with: GO-2022-1059 (CVE-2022-32149) is fixed in 0.3.8.
	GoTextVersion = "0.3.7"

	// HostDpkgStatus is the dpkg database the debian fixture copies.
	HostDpkgStatus = "/var/lib/dpkg/status"
)

// DebianOSRelease is the debian fixture's etc/os-release.
const DebianOSRelease = `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
`

// AlpineOSRelease is the alpine fixture's etc/os-release.
const AlpineOSRelease = `NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.20.3
PRETTY_NAME="Alpine Linux v3.20"
HOME_URL="https://alpinelinux.org/"
BUG_REPORT_URL="https://gitlab.alpinelinux.org/alpine/aports/-/issues"
`

// AlpineInstalled is the alpine fixture's lib/apk/db/installed: three
// packages, one of them (libcrypto3) built from another origin (openssl).
const AlpineInstalled = `C:Q1ZKj9CmuCnmZD3pUOe4OvjLkY4d8=
P:musl
V:1.2.5-r0
A:x86_64
S:411077
I:634880
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Natanael Copa <ncopa@alpinelinux.org>
t:1712089013
c:ffc9e8b8b3ec0ff50d2bba7d8a7ec4b7da6e4c8c
p:so:libc.musl-x86_64.so.1=1
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1mm0MhB0Cf43z7nFFMqeI5/Rzpyw=
R:libc.musl-x86_64.so.1
a:0:0:777
Z:Q17yJ3JFNypA4mxhJJr0ou6CzsJVI=

C:Q1Zsfar9jbnUmCmA3qGaa+3gm0PyI=
P:busybox
V:1.36.1-r29
A:x86_64
S:509908
I:955392
T:Size optimized toolbox of many common UNIX utilities
U:https://busybox.net/
L:GPL-2.0-only
o:busybox
m:Sören Tempel <soeren+alpine@soeren-tempel.net>
t:1717412356
c:1da6c6d8ac1a47d3f2d4fc34fd5e1e8a5e0d4f1f
D:so:libc.musl-x86_64.so.1
p:cmd:busybox=1.36.1-r29
F:bin
R:busybox
a:0:0:755
Z:Q1WFmdDE9ztuOOeBEk0E7JCpG3wg0=

C:Q1fS7Gh5phLGrrPOh7sZv/N9XjlZY=
P:libcrypto3
V:3.3.1-r0
A:x86_64
S:1739164
I:4571136
T:Crypto library from openssl
U:https://www.openssl.org/
L:Apache-2.0
o:openssl
m:Ariadne Conill <ariadne@dereferenced.org>
t:1717669564
c:7b5b2d1fd4e3a1ab2f0fdd5a0f9d43e8f4ca4a6e
D:so:libc.musl-x86_64.so.1
p:so:libcrypto.so.3=3
F:lib
R:libcrypto.so.3
a:0:0:755
Z:Q1Xl2WGSPrQiKO6LvXqoNRDdUk5Ow=

`

// PythonMetadata returns a dist-info METADATA file as pip writes it.
func PythonMetadata(name, version, summary string) []byte {
	return []byte("Metadata-Version: 2.1\nName: " + name + "\nVersion: " + version +
		"\nSummary: " + summary + "\nHome-page: https://pypi.org/project/" + name +
		"/\nLicense: MIT\nRequires-Python: >=2.7\n\n" + summary + "\n")
}

// All builds the four fixtures. The gobinary fixture builds a program with
// the go command (workDir holds its module; the module proxy or cache must
// serve golang.org/x/text v0.3.7).
func All(ctx context.Context, workDir string) ([]*Image, error) {
	deb, err := Debian()
	if err != nil {
		return nil, err
	}
	alp, err := Alpine()
	if err != nil {
		return nil, err
	}
	gob, err := GoBinary(ctx, workDir)
	if err != nil {
		return nil, err
	}
	wh, err := Whiteout()
	if err != nil {
		return nil, err
	}
	return []*Image{deb, alp, gob, wh}, nil
}

// Debian is one layer with etc/os-release (Debian 12) and the test
// machine's own dpkg database (HostDpkgStatus).
func Debian() (*Image, error) {
	status, err := os.ReadFile(HostDpkgStatus)
	if err != nil {
		return nil, fmt.Errorf("scanfixture: the debian fixture copies the machine's dpkg database: %w", err)
	}
	return DebianFrom(status)
}

// DebianFrom is Debian with the given dpkg status file.
func DebianFrom(status []byte) (*Image, error) {
	tarBytes, err := NewTar().
		File("etc/os-release", []byte(DebianOSRelease)).
		File(DpkgStatusPath, status).
		Bytes()
	if err != nil {
		return nil, err
	}
	l, err := newLayer(tarBytes, MediaTypeLayerGzip, DpkgInstalled(status))
	if err != nil {
		return nil, err
	}
	return newImage("debian", []Layer{l}, l.Packages)
}

// DpkgInstalled parses a dpkg status file the way the fixtures define
// "installed": every stanza whose Status field's third word is
// "installed" ("install ok installed"), named by Package and Version, its
// source package from "Source: name" or "Source: name (version)" when it
// differs from the binary package. It is written independently of the
// indexer so the indexer's tests compare against something else.
func DpkgInstalled(status []byte) []inventory.Package {
	var out []inventory.Package
	flush := func(f map[string]string) {
		st := strings.Fields(f["Status"])
		if len(st) != 3 || st[2] != "installed" || f["Package"] == "" || f["Version"] == "" {
			return
		}
		p := inventory.Package{
			Name: f["Package"], Version: f["Version"], Ecosystem: "Debian",
			Path: DpkgStatusPath, Extractor: "os/dpkg",
		}
		if src := f["Source"]; src != "" {
			name, ver, _ := strings.Cut(src, " (")
			p.SourceName = name
			p.SourceVersion = strings.TrimSuffix(ver, ")")
		}
		if p.SourceName == p.Name && p.SourceVersion == "" {
			p.SourceName = ""
		}
		out = append(out, p)
	}
	fields := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(status))
	sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			flush(fields)
			fields = map[string]string{}
		case line[0] == ' ' || line[0] == '\t':
			// A continuation line of a multi-line field.
		default:
			k, v, ok := strings.Cut(line, ":")
			if ok {
				fields[k] = strings.TrimSpace(v)
			}
		}
	}
	flush(fields)
	return out
}

// Alpine is one layer with etc/os-release (Alpine 3.20.3) and
// AlpineInstalled: musl, busybox and libcrypto3 (origin openssl).
func Alpine() (*Image, error) {
	tarBytes, err := NewTar().
		File("etc/os-release", []byte(AlpineOSRelease)).
		File(ApkDBPath, []byte(AlpineInstalled)).
		Bytes()
	if err != nil {
		return nil, err
	}
	apk := func(name, version, origin string) inventory.Package {
		p := inventory.Package{Name: name, Version: version, Ecosystem: "Alpine", Path: ApkDBPath, Extractor: "os/apk"}
		if origin != name {
			p.SourceName = origin
		}
		return p
	}
	l, err := newLayer(tarBytes, MediaTypeLayerGzip, []inventory.Package{
		apk("musl", "1.2.5-r0", "musl"),
		apk("busybox", "1.36.1-r29", "busybox"),
		apk("libcrypto3", "3.3.1-r0", "openssl"),
	})
	if err != nil {
		return nil, err
	}
	return newImage("alpine", []Layer{l}, l.Packages)
}

const goProgram = `package main

import (
	"fmt"

	"golang.org/x/text/language"
)

func main() {
	fmt.Println(language.MustParse("en-GB").String())
}
`

// GoBinary builds a Go program requiring golang.org/x/text v0.3.7 (its
// language package is linked in, so the module is in the build info) in
// workDir and puts it at usr/local/bin/app in one layer. The expected
// packages are what the binary's build info names: the main module (as
// "(devel)"), golang.org/x/text 0.3.7 and the standard library ("stdlib",
// at the go command's version).
func GoBinary(ctx context.Context, workDir string) (*Image, error) {
	bin, goVersion, err := BuildGoProgram(ctx, workDir)
	if err != nil {
		return nil, err
	}
	tarBytes, err := NewTar().FileMode(GoBinaryPath, 0o755, bin).Bytes()
	if err != nil {
		return nil, err
	}
	gop := func(name, version string) inventory.Package {
		return inventory.Package{Name: name, Version: version, Ecosystem: "Go", Path: GoBinaryPath, Extractor: "go/binary"}
	}
	l, err := newLayer(tarBytes, MediaTypeLayerGzip, []inventory.Package{
		gop("stdlib", goVersion),
		gop("golang.org/x/text", GoTextVersion),
		gop(GoModulePath, "(devel)"),
	})
	if err != nil {
		return nil, err
	}
	return newImage("gobinary", []Layer{l}, l.Packages)
}

// BuildGoProgram builds the gobinary fixture's program in workDir and
// returns the binary and the Go version it was built with ("1.26.8").
func BuildGoProgram(ctx context.Context, workDir string) ([]byte, string, error) {
	mod := "module " + GoModulePath + "\n\ngo 1.21\n\nrequire golang.org/x/text v" + GoTextVersion + "\n"
	if err := os.WriteFile(filepath.Join(workDir, "go.mod"), []byte(mod), 0o644); err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(filepath.Join(workDir, "main.go"), []byte(goProgram), 0o644); err != nil {
		return nil, "", err
	}
	out := filepath.Join(workDir, "app")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, ".")
	cmd.Dir = workDir
	// -mod=mod lets the build write go.sum from the module proxy or cache;
	// the program must not pick up the caller's workspace or toolchain.
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off", "GOTOOLCHAIN=local", "CGO_ENABLED=0", "GOOS=linux")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, "", fmt.Errorf("scanfixture: go build: %w: %s", err, msg)
	}
	ver := exec.CommandContext(ctx, "go", "env", "GOVERSION")
	ver.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	v, err := ver.Output()
	if err != nil {
		return nil, "", fmt.Errorf("scanfixture: go env GOVERSION: %w", err)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		return nil, "", err
	}
	goVersion, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(string(v)), "go"), " ")
	return bin, goVersion, nil
}

// Whiteout is two layers: the first installs urllib3 1.26.4 and requests
// 2.19.0 (dist-info METADATA), the second deletes requests' dist-info
// directory with a whiteout. Merged, only urllib3 is left.
func Whiteout() (*Image, error) {
	urllib3 := SitePackages + "/urllib3-1.26.4.dist-info/METADATA"
	requests := SitePackages + "/requests-2.19.0.dist-info/METADATA"
	t1, err := NewTar().
		File(urllib3, PythonMetadata("urllib3", "1.26.4", "HTTP library with thread-safe connection pooling, file post, and more.")).
		File(requests, PythonMetadata("requests", "2.19.0", "Python HTTP for Humans.")).
		Bytes()
	if err != nil {
		return nil, err
	}
	t2, err := NewTar().Whiteout(SitePackages + "/requests-2.19.0.dist-info").Bytes()
	if err != nil {
		return nil, err
	}
	py := func(name, version, p string) inventory.Package {
		return inventory.Package{Name: name, Version: version, Ecosystem: "PyPI", Path: p, Extractor: "python/wheelegg"}
	}
	l1, err := newLayer(t1, MediaTypeLayerGzip, []inventory.Package{
		py("urllib3", "1.26.4", urllib3),
		py("requests", "2.19.0", requests),
	})
	if err != nil {
		return nil, err
	}
	l2, err := newLayer(t2, MediaTypeLayerGzip, nil)
	if err != nil {
		return nil, err
	}
	return newImage("whiteout", []Layer{l1, l2}, []inventory.Package{l1.Packages[0]})
}
