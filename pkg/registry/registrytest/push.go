package registrytest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/berth-registry/berth/pkg/oci"
)

// The push helpers below are how tests outside the suite (retention, the
// cleanup function, berth serve) put content into a registry: through the
// /v2/ API, as a client would, so fixtures obey the same rules as real
// pushes. They take the registry as an http.Handler: registry.New's value
// in process, or Remote for a server on a URL.

// Image is an image manifest and the blobs it references.
type Image struct {
	Config   []byte
	Layers   [][]byte
	Manifest []byte     // exactly the bytes PushImage sends
	Digest   oci.Digest // sha256 of Manifest
}

// NewImage builds the OCI image manifest of config and layers (OCI config
// and gzip layer media types).
func NewImage(config []byte, layers ...[]byte) Image {
	ls := make([]string, len(layers))
	for i, l := range layers {
		ls[i] = fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":%q,"size":%d}`, sha(l), len(l))
	}
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":%d},"layers":[%s]}`,
		oci.MediaTypeImageManifest, oci.MediaTypeImageConfig, sha(config), len(config), strings.Join(ls, ",")))
	return Image{Config: config, Layers: layers, Manifest: m, Digest: sha(m)}
}

// Descriptor describes img's manifest.
func (img Image) Descriptor() oci.Descriptor {
	return oci.Descriptor{MediaType: oci.MediaTypeImageManifest, Digest: img.Digest, Size: int64(len(img.Manifest))}
}

// PushBlob uploads b to repo in one monolithic POST ?digest= and requires
// 201 Created.
func PushBlob(t testing.TB, h http.Handler, repo string, b []byte) oci.Digest {
	t.Helper()
	d := sha(b)
	w := send(h, http.MethodPost, fmt.Sprintf("/v2/%s/blobs/uploads/?digest=%s", repo, d), "application/octet-stream", b)
	if w.Code != http.StatusCreated {
		t.Fatalf("push blob %s to %s: %d %.300s", d, repo, w.Code, w.Body)
	}
	return d
}

// PutManifest PUTs m (of mediaType) to repo under ref, or under its own
// digest when ref is "", and requires 201 Created with the digest of m.
func PutManifest(t testing.TB, h http.Handler, repo, ref, mediaType string, m []byte) oci.Descriptor {
	t.Helper()
	d := sha(m)
	if ref == "" {
		ref = string(d)
	}
	w := send(h, http.MethodPut, "/v2/"+repo+"/manifests/"+ref, mediaType, m)
	if w.Code != http.StatusCreated {
		t.Fatalf("put manifest %s:%s: %d %.300s", repo, ref, w.Code, w.Body)
	}
	if got := w.Header().Get("Docker-Content-Digest"); got != string(d) {
		t.Fatalf("put manifest %s:%s: Docker-Content-Digest %q, want %q", repo, ref, got, d)
	}
	return oci.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(m))}
}

// PushImage pushes img's config, layers and manifest to repo and tags it
// (tag "" pushes by digest only).
func PushImage(t testing.TB, h http.Handler, repo, tag string, img Image) oci.Descriptor {
	t.Helper()
	PushBlob(t, h, repo, img.Config)
	for _, l := range img.Layers {
		PushBlob(t, h, repo, l)
	}
	return PutManifest(t, h, repo, tag, oci.MediaTypeImageManifest, img.Manifest)
}

// send serves one request on h and records the answer.
func send(h http.Handler, method, path, contentType string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// Remote is the registry served at base (scheme://host) as an http.Handler
// for the push helpers: each request is sent there without following
// redirects, and the answer is copied back.
func Remote(base string) http.Handler {
	return remote{base: strings.TrimSuffix(base, "/"), client: &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type remote struct {
	base   string
	client *http.Client
}

func (rm remote) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	out, err := http.NewRequestWithContext(r.Context(), r.Method, rm.base+r.URL.RequestURI(), r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = r.Header.Clone()
	// A known length goes out as Content-Length, as the clients the
	// helpers stand for send it, not as chunked transfer.
	out.ContentLength = r.ContentLength
	if r.ContentLength == 0 {
		out.Body = http.NoBody
	}
	resp, err := rm.client.Do(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}
