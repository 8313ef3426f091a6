package registry

import (
	"net/http"

	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/route"
)

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
