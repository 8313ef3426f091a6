package registry

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/berth-registry/berth/pkg/errcode"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/route"
)

// maxPage bounds one tags or catalog page, asked for or not; a longer
// listing continues through the Link header.
const maxPage = 10000

// pageParams reads n and last. n < 0 means "not given".
func pageParams(r *http.Request) (n int, last string, err error) {
	q := r.URL.Query()
	n = -1
	if s := q.Get("n"); s != "" {
		v, perr := strconv.Atoi(s)
		if perr != nil || v < 0 {
			return 0, "", errcode.New("PAGINATION_NUMBER_INVALID", map[string]string{"n": s}).
				WithStatus(http.StatusBadRequest).WithMessage("invalid number of results requested")
		}
		n = v
	}
	return n, q.Get("last"), nil
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", contentType)
	setInt(w.Header(), "Content-Length", int64(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
	return nil
}

func nextLink(w http.ResponseWriter, path string, n int, last string) {
	q := url.Values{"n": {strconv.Itoa(n)}, "last": {last}}
	w.Header().Set("Link", "<"+path+"?"+q.Encode()+`>; rel="next"`)
}

func (g *Registry) tagList(w http.ResponseWriter, r *http.Request, rt route.Route) error {
	n, last, err := pageParams(r)
	if err != nil {
		return err
	}
	type body struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	if n == 0 {
		if ok, err := g.meta.RepoExists(r.Context(), rt.Name); err != nil {
			return err
		} else if !ok {
			return errcode.New(errcode.NameUnknown, map[string]string{"name": rt.Name})
		}
		return writeJSON(w, http.StatusOK, "application/json", body{Name: rt.Name, Tags: []string{}})
	}
	page := n
	if page < 0 || page > maxPage {
		page = maxPage
	}
	tags, more, err := g.meta.TagList(r.Context(), rt.Name, last, page)
	if errors.Is(err, meta.ErrNameUnknown) {
		return errcode.Wrap(errcode.NameUnknown, err).WithDetailString(rt.Name)
	}
	if err != nil {
		return err
	}
	if more && len(tags) > 0 {
		nextLink(w, "/v2/"+rt.Name+"/tags/list", page, tags[len(tags)-1])
	}
	return writeJSON(w, http.StatusOK, "application/json", body{Name: rt.Name, Tags: tags})
}

func (g *Registry) catalog(w http.ResponseWriter, r *http.Request, _ route.Route) error {
	n, last, err := pageParams(r)
	if err != nil {
		return err
	}
	type body struct {
		Repositories []string `json:"repositories"`
	}
	if n == 0 {
		return writeJSON(w, http.StatusOK, "application/json", body{Repositories: []string{}})
	}
	page := n
	if page < 0 || page > maxPage {
		page = maxPage
	}
	repos, more, err := g.meta.Catalog(r.Context(), last, page)
	if err != nil {
		return err
	}
	if repos == nil {
		repos = []string{}
	}
	if more && len(repos) > 0 {
		nextLink(w, "/v2/_catalog", page, repos[len(repos)-1])
	}
	return writeJSON(w, http.StatusOK, "application/json", body{Repositories: repos})
}

func (g *Registry) referrers(w http.ResponseWriter, r *http.Request, rt route.Route) error {
	d, err := parseDigest(rt.Arg)
	if err != nil {
		return err
	}
	at := r.URL.Query().Get("artifactType")
	descs, err := g.meta.Referrers(r.Context(), rt.Name, d, at)
	if err != nil {
		return err
	}
	if at != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	return writeJSON(w, http.StatusOK, oci.MediaTypeImageIndex, oci.Index{
		SchemaVersion: 2, MediaType: oci.MediaTypeImageIndex, Manifests: descs,
	})
}
