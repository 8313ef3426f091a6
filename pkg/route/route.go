// Package route parses OCI Distribution /v2/ paths. Repository names contain
// slashes, so paths are matched from the right (as olareg, ggcr and
// distribution do). It validates names and nothing else: references, digests
// and upload IDs are validated by the handler that owns them.
package route

import (
	"errors"
	"strings"

	"github.com/berth-registry/berth/pkg/oci"
)

// Kind is the resource a path addresses.
type Kind int

const (
	Unknown     Kind = iota
	Base             // /v2/
	Catalog          // /v2/_catalog
	Tags             // /v2/<name>/tags/list
	Manifest         // /v2/<name>/manifests/<reference>
	Blob             // /v2/<name>/blobs/<digest>
	UploadStart      // /v2/<name>/blobs/uploads/
	Upload           // /v2/<name>/blobs/uploads/<id>
	Referrers        // /v2/<name>/referrers/<digest>
	// Images is Berth's image listing (docs/images.md): every manifest of the
	// repository with its tags, size, pusher and last pull. "_berth" can
	// never be part of a repository name (components start with [a-z0-9]),
	// which is how OCI extensions are named.
	Images // /v2/<name>/_berth/images
)

var kindNames = [...]string{"unknown", "base", "catalog", "tags", "manifest", "blob", "upload-start", "upload", "referrers", "images"}

func (k Kind) String() string { return kindNames[k] }

// Route is a parsed /v2/ path.
type Route struct {
	Kind Kind
	Name string // repository name (empty for Base and Catalog)
	Arg  string // reference, digest or upload ID, unvalidated
}

// Errors.
var (
	ErrNotV2       = errors.New("path is not under /v2/")
	ErrNoRoute     = errors.New("no such endpoint")
	ErrNameInvalid = errors.New("invalid repository name")
)

// Parse parses an URL path (already unescaped). A path that matches an
// endpoint with an invalid repository name returns ErrNameInvalid with the
// Route's Kind set, so the caller can answer NAME_INVALID.
func Parse(path string) (Route, error) {
	if path == "/v2" || path == "/v2/" {
		return Route{Kind: Base}, nil
	}
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return Route{}, ErrNotV2
	}
	if rest == "_catalog" {
		return Route{Kind: Catalog}, nil
	}
	segs := strings.Split(rest, "/")
	n := len(segs)
	at := func(i int) string { // i counts from the right, 1-based
		if i > n {
			return "\x00"
		}
		return segs[n-i]
	}
	var r Route
	var nameSegs int // how many trailing segments are not the name
	switch {
	case at(2) == "tags" && at(1) == "list":
		r, nameSegs = Route{Kind: Tags}, 2
	case at(2) == "manifests":
		r, nameSegs = Route{Kind: Manifest, Arg: at(1)}, 2
	case at(2) == "_berth" && at(1) == "images":
		r, nameSegs = Route{Kind: Images}, 2
	case at(2) == "referrers":
		r, nameSegs = Route{Kind: Referrers, Arg: at(1)}, 2
	case at(3) == "blobs" && at(2) == "uploads" && at(1) == "":
		r, nameSegs = Route{Kind: UploadStart}, 3
	case at(2) == "blobs" && at(1) == "uploads":
		r, nameSegs = Route{Kind: UploadStart}, 2
	case at(3) == "blobs" && at(2) == "uploads":
		r, nameSegs = Route{Kind: Upload, Arg: at(1)}, 3
	case at(2) == "blobs":
		r, nameSegs = Route{Kind: Blob, Arg: at(1)}, 2
	default:
		return Route{}, ErrNoRoute
	}
	if n <= nameSegs {
		return Route{}, ErrNoRoute
	}
	r.Name = strings.Join(segs[:n-nameSegs], "/")
	if r.Arg == "" && r.Kind != UploadStart && r.Kind != Tags && r.Kind != Images {
		return Route{}, ErrNoRoute
	}
	if !oci.ValidName(r.Name) {
		return r, ErrNameInvalid
	}
	return r, nil
}

// Action is a repository permission.
type Action string

const (
	Pull   Action = "pull"
	Push   Action = "push"
	Delete Action = "delete"
)

// Actions returns the permissions a request with this method needs on the
// route's repository. Cross-repository mounts additionally need pull on the
// source, which the caller adds from the query string.
func (r Route) Actions(method string) []Action {
	switch r.Kind {
	case Base, Catalog, Unknown:
		return nil
	}
	switch method {
	case "GET", "HEAD":
		return []Action{Pull}
	case "DELETE":
		if r.Kind == Upload {
			return []Action{Push}
		}
		return []Action{Delete}
	default: // POST, PUT, PATCH
		return []Action{Pull, Push}
	}
}
