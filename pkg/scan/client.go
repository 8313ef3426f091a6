package scan

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/berth-registry/berth/pkg/oci"
)

// client talks to the registry's http.Handler in process: the scanner's
// reads and pushes are ordinary /v2/ requests, so the registry verifies,
// counts, indexes referrers and emits events for them as for any client.
type client struct {
	h http.Handler
}

// errNotFound: the registry answered 404.
var errNotFound = errors.New("not found in the registry")

// response is what the handler wrote.
type response struct {
	status int
	header http.Header
	body   bytes.Buffer
}

func (r *response) Header() http.Header         { return r.header }
func (r *response) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *response) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

// do serves one request and returns the response; a status other than
// want is an error (wrapping errNotFound for 404).
func (c *client) do(ctx context.Context, method, target string, body []byte, hdr map[string]string, want ...int) (*response, error) {
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://registry.internal"+target, rd)
	if err != nil {
		return nil, err
	}
	req.RemoteAddr = "127.0.0.1:0"
	req.ContentLength = int64(len(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp := &response{header: http.Header{}}
	c.h.ServeHTTP(resp, req)
	if resp.status == 0 {
		resp.status = http.StatusOK
	}
	for _, w := range want {
		if resp.status == w {
			return resp, nil
		}
	}
	err = fmt.Errorf("registry: %s %s: %d %s", method, target, resp.status, strings.TrimSpace(resp.body.String()))
	if resp.status == http.StatusNotFound {
		err = fmt.Errorf("%w: %w", errNotFound, err)
	}
	return resp, err
}

// manifestAccept is every manifest media type the scanner reads.
var manifestAccept = strings.Join([]string{
	oci.MediaTypeImageManifest, oci.MediaTypeImageIndex,
	oci.MediaTypeDockerManifest, oci.MediaTypeDockerManifestList,
}, ", ")

// manifest reads repo's manifest d: its bytes and media type.
func (c *client) manifest(ctx context.Context, repo string, d oci.Digest) ([]byte, string, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v2/"+repo+"/manifests/"+string(d), nil,
		map[string]string{"Accept": manifestAccept}, http.StatusOK)
	if err != nil {
		return nil, "", err
	}
	return resp.body.Bytes(), resp.header.Get("Content-Type"), nil
}

// manifestExists reports whether repo holds manifest d.
func (c *client) manifestExists(ctx context.Context, repo string, d oci.Digest) (bool, error) {
	_, err := c.do(ctx, http.MethodHead, "/v2/"+repo+"/manifests/"+string(d), nil,
		map[string]string{"Accept": manifestAccept}, http.StatusOK)
	if errors.Is(err, errNotFound) {
		return false, nil
	}
	return err == nil, err
}

// pushBlob stores b in repo unless it is linked there already: one
// monolithic POST ?digest=, which the registry verifies.
func (c *client) pushBlob(ctx context.Context, repo string, b []byte) (oci.Descriptor, error) {
	d := oci.FromBytes(oci.SHA256, b)
	desc := oci.Descriptor{Digest: d, Size: int64(len(b))}
	if _, err := c.do(ctx, http.MethodHead, "/v2/"+repo+"/blobs/"+string(d), nil, nil, http.StatusOK); err == nil {
		return desc, nil
	}
	_, err := c.do(ctx, http.MethodPost, "/v2/"+repo+"/blobs/uploads/?digest="+url.QueryEscape(string(d)), b,
		map[string]string{"Content-Type": "application/octet-stream", "Content-Length": strconv.Itoa(len(b))},
		http.StatusCreated)
	return desc, err
}

// pushManifest stores an image manifest by digest.
func (c *client) pushManifest(ctx context.Context, repo string, body []byte) (oci.Digest, error) {
	d := oci.FromBytes(oci.SHA256, body)
	_, err := c.do(ctx, http.MethodPut, "/v2/"+repo+"/manifests/"+string(d), body,
		map[string]string{"Content-Type": oci.MediaTypeImageManifest}, http.StatusCreated)
	return d, err
}

// deleteManifest deletes repo's manifest d; absent is fine.
func (c *client) deleteManifest(ctx context.Context, repo string, d oci.Digest) error {
	_, err := c.do(ctx, http.MethodDelete, "/v2/"+repo+"/manifests/"+string(d), nil, nil, http.StatusAccepted)
	if errors.Is(err, errNotFound) {
		return nil
	}
	return err
}

// referrers lists the referrers of subject of one artifact type, every
// page.
func (c *client) referrers(ctx context.Context, repo string, subject oci.Digest, artifactType string) ([]oci.Descriptor, error) {
	var out []oci.Descriptor
	target := "/v2/" + repo + "/referrers/" + string(subject) + "?artifactType=" + url.QueryEscape(artifactType)
	for target != "" {
		resp, err := c.do(ctx, http.MethodGet, target, nil, nil, http.StatusOK)
		if err != nil {
			return nil, err
		}
		var idx oci.Index
		if err := json.Unmarshal(resp.body.Bytes(), &idx); err != nil {
			return nil, fmt.Errorf("registry: referrers of %s: %w", subject, err)
		}
		for _, m := range idx.Manifests {
			if m.ArtifactType == artifactType {
				out = append(out, m)
			}
		}
		target = nextLink(resp.header.Get("Link"))
	}
	return out, nil
}

// nextLink returns the target of a Link header's rel="next", or "".
func nextLink(h string) string {
	for _, part := range strings.Split(h, ",") {
		u, params, ok := strings.Cut(strings.TrimSpace(part), ";")
		if ok && strings.Contains(params, `rel="next"`) {
			return strings.Trim(strings.TrimSpace(u), "<>")
		}
	}
	return ""
}
