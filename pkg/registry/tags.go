package registry

import (
	"fmt"
	"net/http"

	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/route"
)

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
		// An empty page still says whether the repository exists.
		if ok, err := g.meta.RepoExists(r.Context(), rt.Name); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("tags of %s: %w", rt.Name, meta.ErrNameUnknown)
		}
		return writeJSON(w, http.StatusOK, "application/json", body{Name: rt.Name, Tags: []string{}})
	}
	page := pageSize(n)
	tags, more, err := g.meta.TagList(r.Context(), rt.Name, last, page)
	if err != nil {
		return err
	}
	if more && len(tags) > 0 {
		nextLink(w, "/v2/"+rt.Name+"/tags/list", page, tags[len(tags)-1])
	}
	return writeJSON(w, http.StatusOK, "application/json", body{Name: rt.Name, Tags: tags})
}
