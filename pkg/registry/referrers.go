package registry

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/berth-registry/berth/pkg/errcode"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/route"
)

// referrers answers one page of a subject's referrers. The spec lets a
// registry paginate this listing with a Link header (rel="next"), as tags
// and the catalog do; a page ends at n entries (meta.DefaultReferrersPage
// when not asked, never more) or at meta.DefaultReferrersPageBytes of
// descriptors, so a subject with any number of referrers, or with heavy
// annotations, never makes a response past Lambda's 6 MB. The cursor
// (last) is opaque to the client: a key position the previous page gave.
func (g *Registry) referrers(w http.ResponseWriter, r *http.Request, rt route.Route) error {
	d, err := parseDigest(rt.Arg)
	if err != nil {
		return err
	}
	n, last, err := pageParams(r)
	if err != nil {
		return err
	}
	if !meta.ValidReferrerCursor(last) {
		return errcode.New(errcode.PaginationNumberInvalid, map[string]string{"last": last}).
			WithMessage("invalid pagination cursor")
	}
	at := r.URL.Query().Get("artifactType")
	if at != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	index := oci.Index{SchemaVersion: 2, MediaType: oci.MediaTypeImageIndex, Manifests: []oci.Descriptor{}}
	if n == 0 {
		return writeJSON(w, http.StatusOK, oci.MediaTypeImageIndex, index)
	}
	limit := meta.DefaultReferrersPage
	if n > 0 && n < limit {
		limit = n
	}
	// The page budget covers the whole body: the descriptors and the index
	// around them.
	envelope, err := json.Marshal(index)
	if err != nil {
		return err
	}
	q := meta.ReferrersQuery{ArtifactType: at, After: last, Limit: limit, MaxBytes: meta.DefaultReferrersPageBytes - len(envelope)}
	page, err := g.meta.Referrers(r.Context(), rt.Name, d, q)
	if err != nil {
		return err
	}
	if page.Descriptors != nil {
		index.Manifests = page.Descriptors
	}
	if page.Next != "" {
		next := url.Values{"last": {page.Next}}
		if n > 0 {
			next.Set("n", strconv.Itoa(limit))
		}
		if at != "" {
			next.Set("artifactType", at)
		}
		w.Header().Set("Link", "</v2/"+rt.Name+"/referrers/"+string(d)+"?"+next.Encode()+`>; rel="next"`)
	}
	return writeJSON(w, http.StatusOK, oci.MediaTypeImageIndex, index)
}
