package registry

import (
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/route"
)

// dockerConfigType is the config media type of Docker schema 2 images.
const dockerConfigType = "application/vnd.docker.container.image.v1+json"

// ImagesType is the media type of the image listing (docs/images.md).
const ImagesType = "application/vnd.berth.images.v1+json"

// Images is the body of GET /v2/<name>/_berth/images.
type Images struct {
	Name   string  `json:"name"`
	Images []Image `json:"images"`
}

// Image is one manifest of a repository as the listing shows it: what ECR's
// DescribeImages says of an image, in the registry's words.
type Image struct {
	Digest       string   `json:"digest"`
	MediaType    string   `json:"mediaType"`
	ArtifactType string   `json:"artifactType,omitempty"`
	Tags         []string `json:"tags,omitempty"`
	// Size is what a pull transfers: manifest, config and layers (the
	// manifest alone for an index).
	Size     int64  `json:"size"`
	Subject  string `json:"subject,omitempty"`
	PushedAt string `json:"pushedAt"`
	PushedBy string `json:"pushedBy,omitempty"`
	// LastPulledAt is the last recorded pull: pulls are recorded once per
	// image and UTC day, so it may be up to a day behind. It equals
	// PushedAt until the first pull.
	LastPulledAt string `json:"lastPulledAt"`
}

// imageList serves the listing, in digest order, paged like the tag list
// (n and last, a Link header to the next page). It reads the repository's
// manifest and tag items (two paged Queries) whatever the page, which is
// what a listing of one repository costs in DynamoDB anyway.
func (g *Registry) imageList(w http.ResponseWriter, r *http.Request, rt route.Route) error {
	n, last, err := pageParams(r)
	if err != nil {
		return err
	}
	all, err := g.meta.ManifestList(r.Context(), rt.Name)
	if err != nil {
		return err
	}
	if len(all) == 0 {
		if ok, err := g.meta.RepoExists(r.Context(), rt.Name); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("images of %s: %w", rt.Name, meta.ErrNameUnknown)
		}
	}
	// ManifestList sorts by digest, so last is a position.
	from := sort.Search(len(all), func(i int) bool { return string(all[i].Digest) > last })
	all = all[from:]
	if page := pageSize(n); len(all) > page {
		all = all[:page]
		if page > 0 {
			nextLink(w, "/v2/"+rt.Name+"/_berth/images", page, string(all[page-1].Digest))
		}
	}
	body := Images{Name: rt.Name, Images: make([]Image, 0, len(all))}
	stamp := func(t int64) string { return time.Unix(t, 0).UTC().Format(time.RFC3339) }
	for _, m := range all {
		if m.ArtifactType == oci.MediaTypeImageConfig || m.ArtifactType == dockerConfigType {
			// The referrers API's fallback, not an artifact: a plain image.
			m.ArtifactType = ""
		}
		body.Images = append(body.Images, Image{
			Digest: string(m.Digest), MediaType: m.MediaType, ArtifactType: m.ArtifactType, Tags: m.Tags,
			Size: m.ContentSize, Subject: string(m.Subject),
			PushedAt: stamp(m.PushedAt), PushedBy: m.PushedBy, LastPulledAt: stamp(m.LastPulled),
		})
	}
	return writeJSON(w, http.StatusOK, ImagesType, body)
}
