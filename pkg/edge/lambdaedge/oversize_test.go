package lambdaedge_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/apigwemu"
	"github.com/berth-registry/berth/internal/cloudfront"
	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/apigw"
	"github.com/berth-registry/berth/pkg/edge"
	"github.com/berth-registry/berth/pkg/edge/lambdaedge"
	"github.com/berth-registry/berth/pkg/registry"
)

func TestSourceConstants(t *testing.T) {
	if len(lambdaedge.Source) > lambdaedge.MaxInlineBytes {
		t.Errorf("oversize.js is %d bytes; inline Lambda code takes %d", len(lambdaedge.Source), lambdaedge.MaxInlineBytes)
	}
	for _, lit := range []string{
		"const LIMIT = " + strconv.Itoa(apigw.MaxBodyBytes) + ";",
		"const DOCS = '" + lambdaedge.DocsURL + "';",
		"exports.handler = async",
		"'use strict';",
	} {
		if !strings.Contains(lambdaedge.Source, lit) {
			t.Errorf("oversize.js does not contain %s", lit)
		}
	}
	// Dependency-free: nothing to bundle, and the emulator provides no
	// modules either.
	if strings.Contains(lambdaedge.Source, "require(") || strings.Contains(lambdaedge.Source, "import ") {
		t.Error("oversize.js loads a module")
	}
	if lambdaedge.EdgeUploadPathPattern != edge.PathPrefix+"*" {
		t.Errorf("EdgeUploadPathPattern %q, edge.PathPrefix %q", lambdaedge.EdgeUploadPathPattern, edge.PathPrefix)
	}
}

const repo = "team/app"

// deployment is the emulated distribution in front of API Gateway and
// Lambda running the real registry (embedded store, edge upload tokens),
// counting the Lambda@Edge invocations.
type deployment struct {
	srv      *httptest.Server
	edgeRuns atomic.Int64
}

// gatewayError is what an API origin answers for /v2/<repo>/blobs/uploads/gateway-<status>:
// an error of API Gateway's own (no registry header), which the emulator
// does not otherwise produce on an upload URL.
func gatewayErrors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, s, ok := strings.Cut(r.URL.Path, "/blobs/uploads/gateway-"); ok {
			st, _ := strconv.Atoi(s)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Apigw-Requestid", "gw")
			w.WriteHeader(st)
			_, _ = io.WriteString(w, `{"message":"`+http.StatusText(st)+`"}`)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func newDeployment(t *testing.T, noLambdaEdge bool) *deployment {
	t.Helper()
	keys := edge.NewMemoryStore()
	if _, err := edge.Rotate(t.Context(), keys, edge.Rotation{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	e := testenv.OpenEmbedded(t, t.TempDir())
	reg := registry.New(registry.Config{
		MaxBodyBytes: apigw.MaxBodyBytes,
		EdgeTokens:   edge.NewKeyring(keys, 0),
		Logger:       slog.New(slog.DiscardHandler),
	}, e.Items, e.Blobs)
	d := &deployment{}
	api := apigwemu.Emulate(reg, apigwemu.WithRoutes("ANY /v2/{proxy+}", "ANY /v2"))
	dist, err := cloudfront.NewBerth(cloudfront.BerthOptions{
		// No upload in these tests goes to S3.
		Blobs:        http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }),
		API:          gatewayErrors(api),
		Keys:         keys,
		NoLambdaEdge: noLambdaEdge,
		Observer: func(x cloudfront.Exchange) {
			if x.OriginResponse {
				d.edgeRuns.Add(1)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	d.srv = httptest.NewServer(dist)
	t.Cleanup(d.srv.Close)
	return d
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

// do sends body with Transfer-Encoding: chunked when chunked is set (the
// reader hides its length), as podman, skopeo and classic Docker send a
// layer PATCH; otherwise with its Content-Length.
func (d *deployment) do(t *testing.T, method, path string, body []byte, chunked bool) answer {
	t.Helper()
	var r io.Reader = bytes.NewReader(body)
	if chunked {
		r = io.MultiReader(r)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, d.srv.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := d.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

// start begins an upload and returns its Location.
func (d *deployment) start(t *testing.T) string {
	t.Helper()
	a := d.do(t, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil, false)
	if a.status != http.StatusAccepted {
		t.Fatalf("POST upload: %d %s", a.status, a.body)
	}
	return a.header.Get("Location")
}

// apiUpload is the registry's own upload URL for a new session (an empty
// PATCH through the edge Location answers with it).
func (d *deployment) apiUpload(t *testing.T) string {
	t.Helper()
	a := d.do(t, http.MethodPatch, d.start(t), []byte{}, false)
	if a.status != http.StatusAccepted || !strings.HasPrefix(a.header.Get("Location"), "/v2/"+repo+"/blobs/uploads/") {
		t.Fatalf("empty PATCH: %d %v %s", a.status, a.header, a.body)
	}
	return a.header.Get("Location")
}

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

type ociErr struct {
	Code    string
	Message string
	Detail  map[string]any
}

func ociError(t *testing.T, b []byte) ociErr {
	t.Helper()
	var e struct{ Errors []ociErr }
	if err := json.Unmarshal(b, &e); err != nil || len(e.Errors) != 1 {
		t.Fatalf("not an OCI error body: %s (%v)", b, err)
	}
	return e.Errors[0]
}

// A chunked body over the Lambda event limit: the registry never sees it
// and API Gateway answers its own 413, which the function rewrites.
func TestGatewayTooLargeRewritten(t *testing.T) {
	d := newDeployment(t, false)
	body := random(8 << 20)
	for name, path := range map[string]func() string{
		"edge Location /_upload/<token>":        func() string { return d.start(t) },
		"registry URL /v2/<name>/blobs/uploads": func() string { return d.apiUpload(t) },
	} {
		t.Run(name, func(t *testing.T) {
			p := path()
			before := d.edgeRuns.Load()
			a := d.do(t, http.MethodPatch, p, body, true)
			if a.status != http.StatusRequestEntityTooLarge {
				t.Fatalf("PATCH %s: %d %s", p, a.status, a.body)
			}
			e := ociError(t, a.body)
			if e.Code != "SIZE_INVALID" || !strings.Contains(e.Message, "`berth push`") ||
				!strings.Contains(e.Message, strconv.Itoa(apigw.MaxBodyBytes)) || !strings.Contains(e.Message, lambdaedge.DocsURL) {
				t.Errorf("error %+v", e)
			}
			if e.Detail["limit"] != float64(apigw.MaxBodyBytes) || e.Detail["docs"] != lambdaedge.DocsURL {
				t.Errorf("detail %v", e.Detail)
			}
			if a.header.Get("Content-Type") != "application/json" || a.header.Get("Content-Length") != strconv.Itoa(len(a.body)) {
				t.Errorf("Content-Type %q, Content-Length %q for %d bytes", a.header.Get("Content-Type"), a.header.Get("Content-Length"), len(a.body))
			}
			// API Gateway's other headers stay; the function marks nothing
			// as the registry's.
			if a.header.Get("Apigw-Requestid") == "" || a.header.Get("Docker-Distribution-API-Version") != "" {
				t.Errorf("headers %v", a.header)
			}
			if n := d.edgeRuns.Load() - before; n != 1 {
				t.Errorf("%d Lambda@Edge invocations for the PATCH, want 1", n)
			}
			t.Logf("%s: %d %s", name, a.status, a.body)
		})
	}
}

// Without the function (a stack without a region: the construct skips
// it) the client gets API Gateway's own body.
func TestGatewayTooLargeWithoutFunction(t *testing.T) {
	d := newDeployment(t, true)
	a := d.do(t, http.MethodPatch, d.apiUpload(t), random(8<<20), true)
	if a.status != http.StatusRequestEntityTooLarge || string(a.body) != `{"message":"Request Entity Too Large"}` {
		t.Fatalf("%d %s", a.status, a.body)
	}
}

// The registry's own 413 (a chunked body whose event still fits) carries
// Docker-Distribution-API-Version and passes unchanged, as does every
// other answer on an upload path; paths that are not uploads run no
// Lambda@Edge function at all.
func TestOtherAnswersUntouched(t *testing.T) {
	d := newDeployment(t, false)

	t.Run("the registry's 413", func(t *testing.T) {
		a := d.do(t, http.MethodPatch, d.apiUpload(t), random(apigw.MaxBodyBytes+1), true)
		e := ociError(t, a.body)
		if a.status != http.StatusRequestEntityTooLarge || a.header.Get("Docker-Distribution-API-Version") != "registry/2.0" ||
			e.Code != "SIZE_INVALID" || strings.Contains(e.Message, lambdaedge.DocsURL) {
			t.Fatalf("%d %v %s: want the registry's own 413", a.status, a.header, a.body)
		}
	})
	t.Run("the registry's other statuses", func(t *testing.T) {
		for _, c := range []struct {
			method, path string
			status       int
		}{
			{http.MethodPost, "/v2/" + repo + "/blobs/uploads/", http.StatusAccepted},
			{http.MethodGet, "/v2/" + repo + "/blobs/uploads/nonexistent", http.StatusNotFound},
		} {
			a := d.do(t, c.method, c.path, nil, false)
			if a.status != c.status || a.header.Get("Docker-Distribution-API-Version") == "" {
				t.Errorf("%s %s: %d %v %s", c.method, c.path, a.status, a.header, a.body)
			}
		}
	})
	t.Run("API Gateway's other errors", func(t *testing.T) {
		for _, st := range []int{http.StatusBadRequest, http.StatusInternalServerError, http.StatusServiceUnavailable} {
			a := d.do(t, http.MethodPatch, "/v2/"+repo+"/blobs/uploads/gateway-"+strconv.Itoa(st), []byte("x"), false)
			if want := `{"message":"` + http.StatusText(st) + `"}`; a.status != st || string(a.body) != want {
				t.Errorf("%d: %d %s, want %s", st, a.status, a.body, want)
			}
		}
	})
	t.Run("not an upload path", func(t *testing.T) {
		before := d.edgeRuns.Load()
		// A chunked manifest PUT over the event limit: API Gateway's 413,
		// on the /v2/* behaviour, which has no Lambda@Edge function.
		a := d.do(t, http.MethodPut, "/v2/"+repo+"/manifests/v1", random(8<<20), true)
		if a.status != http.StatusRequestEntityTooLarge || string(a.body) != `{"message":"Request Entity Too Large"}` {
			t.Errorf("manifest PUT: %d %s", a.status, a.body)
		}
		a = d.do(t, http.MethodGet, "/v2/", nil, false)
		if a.status != http.StatusOK {
			t.Errorf("GET /v2/: %d %s", a.status, a.body)
		}
		if n := d.edgeRuns.Load() - before; n != 0 {
			t.Errorf("%d Lambda@Edge invocations outside the upload paths", n)
		}
	})
}
