package registry

import (
	"net/http"

	"github.com/berth-registry/berth/pkg/route"
)

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
	page := pageSize(n)
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
