package lambda_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/berth-registry/berth/internal/apigwemu"
	"github.com/berth-registry/berth/internal/cloudfront"
	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/apigw"
	"github.com/berth-registry/berth/pkg/driver/dynamo"
	"github.com/berth-registry/berth/pkg/driver/s3blob"
	"github.com/berth-registry/berth/pkg/edge"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/registry/registrytest"
)

// edgeExclusions are the conformance subtests that cannot pass through a
// Lambda-fronted deployment with the edge upload path, and why. Each is
// skipped by name with its reason; every other subtest must pass. Keep
// the list as short as the facts allow: an entry here is a behaviour a
// client can observe on a deployed Berth.
var edgeExclusions = map[string]string{
	// The suite checks that a session cannot be used from another
	// repository by rewriting "/v2/u/" to "/v2/other/" in the upload
	// Location. An edge Location is /_upload/<token>: it names no
	// repository to rewrite, so the suite PATCHes its own session and every
	// later step sees an offset it did not expect. The property itself
	// holds and is tested by TestUploadErrorsThroughEdge: the repository is
	// inside the signed token (a changed one is 403 DENIED), and the
	// session id under another repository's /v2/ path is 404
	// BLOB_UPLOAD_UNKNOWN. The rest of UploadErrors runs there too.
	"UploadErrors": "the edge Location /_upload/<token> has no /v2/<repo>/ to rewrite; TestUploadErrorsThroughEdge covers the same checks",
}

// edgeDeployment is one Berth deployment as the CDK construct builds it,
// assembled in process: the CloudFront emulation (the real upload.js on
// viewer request and viewer response, a KeyValueStore holding the upload
// token keys) in front of the S3 origin (signed like origin access
// control) and of the API Gateway + Lambda emulation, whose function is
// the registry on the AWS drivers with edge tokens. Every invocation is a
// cold start, as in TestConformanceThroughLambdaAWS.
type edgeDeployment struct {
	keys    *edge.MemoryStore
	newDist func() http.Handler
}

func newEdgeDeployment(t *testing.T, cfg registry.Config, observe func(cloudfront.Exchange), opts ...func(*cloudfront.BerthOptions)) (edgeDeployment, registrytest.Env) {
	t.Helper()
	ddb := testenv.DynamoDB(t)
	ep := testenv.S3Emulator(t)
	s3c, presign := testenv.S3Client(ep)
	table, bucket := testenv.FreshTable(t, ddb), testenv.FreshBucket(t, s3c)

	// The cleanup function's hourly rotation creates the first key; run it
	// once, as a fresh deployment does before its first push.
	keys := edge.NewMemoryStore()
	if _, err := edge.Rotate(t.Context(), keys, edge.Rotation{}, time.Now()); err != nil {
		t.Fatalf("rotate upload keys: %v", err)
	}
	cfg.EdgeTokens = edge.NewKeyring(keys, 0)
	cfg.MaxBodyBytes, cfg.ChunkMinLength = maxBodyBytes, 4<<20
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	cold := apigwemu.Func(func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		reg := registry.New(cfg, dynamo.New(ddb, table), s3blob.New(s3c, presign, bucket))
		return apigw.Handler(reg)(ctx, ev)
	})
	blobs := &cloudfront.S3Origin{
		Endpoint: ep.URL, Bucket: bucket, PathStyle: true, Region: testenv.Region,
		Credentials: credentials.NewStaticCredentialsProvider(ep.AccessKey, ep.SecretKey, ""),
		Logger:      cfg.Logger,
	}
	newDist := func() http.Handler {
		o := cloudfront.BerthOptions{
			Blobs:    blobs,
			API:      apigwemu.NewEmulator(cold, apigwemu.WithRoutes(apiRoutes...)),
			Keys:     keys,
			Observer: observe,
			Logger:   cfg.Logger,
		}
		for _, f := range opts {
			f(&o)
		}
		d, err := cloudfront.NewBerth(o)
		if err != nil {
			t.Fatalf("cloudfront distribution: %v", err)
		}
		return d
	}
	env := registrytest.Env{
		Handler:      newDist(),
		MaxBodyBytes: maxBodyBytes,
		Restart:      func(*testing.T) http.Handler { return newDist() },
		Leftovers:    func(t *testing.T) []string { return testenv.Staged(t, s3c, bucket) },
	}
	return edgeDeployment{keys: keys, newDist: newDist}, env
}

// TestConformanceThroughEdge runs the HTTP conformance suite against a
// whole emulated edge deployment: upload Locations are /_upload/<token> on
// the distribution, so POST-then-PUT uploads go to S3 through the
// CloudFront Function and everything else (PATCH, closing PUTs, manifests,
// reads) through the function to API Gateway and Lambda.
func TestConformanceThroughEdge(t *testing.T) {
	// The observer runs on the distribution's request goroutines.
	var edgePuts, toAPI atomic.Int64
	registrytest.Run(t, func(t *testing.T) registrytest.Env {
		name := t.Name()[len("TestConformanceThroughEdge/"):]
		if why, ok := edgeExclusions[name]; ok {
			t.Skipf("excluded on the edge deployment: %s", why)
		}
		_, env := newEdgeDeployment(t, registry.Config{}, func(x cloudfront.Exchange) {
			if x.Behavior == edge.PathPrefix+"*" {
				if x.Origin == cloudfront.BlobsOriginID {
					edgePuts.Add(1)
				} else {
					toAPI.Add(1)
				}
			}
		})
		return env
	})
	// The suite's POST-then-PUT uploads (UploadStreamed) must have used
	// the edge, and its chunked uploads the API behind the same Location:
	// otherwise the run proved nothing about the edge path.
	if edgePuts.Load() == 0 || toAPI.Load() == 0 {
		t.Errorf("upload Locations reached S3 %d times and the API %d times; want both > 0", edgePuts.Load(), toAPI.Load())
	}
}

// edgeServer serves one edge deployment on a loopback listener.
type edgeServer struct {
	t   *testing.T
	url string
}

func startEdge(t *testing.T, opts ...func(*cloudfront.BerthOptions)) *edgeServer {
	t.Helper()
	_, env := newEdgeDeployment(t, registry.Config{}, nil, opts...)
	srv := httptest.NewServer(env.Handler)
	t.Cleanup(srv.Close)
	return &edgeServer{t: t, url: srv.URL}
}

type edgeResp struct {
	status int
	header http.Header
	body   []byte
}

func (s *edgeServer) do(method, path string, body []byte, hdr map[string]string) edgeResp {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(s.t.Context(), method, s.url+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return edgeResp{status: resp.StatusCode, header: resp.Header, body: b}
}

// expect checks the status and, when code is set, the OCI error code.
func (s *edgeServer) expect(r edgeResp, status int, code, what string) {
	s.t.Helper()
	if r.status != status {
		s.t.Fatalf("%s: status %d, want %d: %.300s", what, r.status, status, r.body)
	}
	if code != "" && ociCode(r.body) != code {
		s.t.Fatalf("%s: error code %q, want %q: %.300s", what, ociCode(r.body), code, r.body)
	}
}

// start POSTs an upload and returns the edge Location and the session id.
func (s *edgeServer) start(repo string) (loc, id string) {
	s.t.Helper()
	r := s.do("POST", "/v2/"+repo+"/blobs/uploads/", nil, nil)
	s.expect(r, 202, "", "start upload")
	loc, id = r.header.Get("Location"), r.header.Get("Docker-Upload-UUID")
	if !strings.HasPrefix(loc, edge.PathPrefix) || id == "" {
		s.t.Fatalf("start upload: Location %q, Docker-Upload-UUID %q; want an edge Location", loc, id)
	}
	return loc, id
}

// TestUploadErrorsThroughEdge is the conformance suite's UploadErrors
// against an edge Location (see edgeExclusions), with the cross-repository
// check in the two forms an edge deployment offers.
func TestUploadErrorsThroughEdge(t *testing.T) {
	s := startEdge(t)
	loc, id := s.start("u")

	// Another repository cannot use the session: not through its own
	// /v2/ upload URL, and not by editing the token's repository.
	s.expect(s.do("PATCH", "/v2/other/blobs/uploads/"+id, []byte("a"), nil), 404, "BLOB_UPLOAD_UNKNOWN", "session under another repo")
	tok := strings.TrimPrefix(loc, edge.PathPrefix)
	kid, rest, _ := strings.Cut(tok, ".")
	payload, sig, _ := strings.Cut(rest, ".")
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		t.Fatalf("token payload: %v", err)
	}
	forged := base64.RawURLEncoding.EncodeToString(bytes.Replace(raw, []byte(`"r":"u"`), []byte(`"r":"other"`), 1))
	if forged == payload {
		t.Fatalf("token payload %s names no repository u", raw)
	}
	s.expect(s.do("PATCH", edge.PathPrefix+kid+"."+forged+"."+sig, []byte("a"), nil), 403, "DENIED", "token with another repo")
	s.expect(s.do("PATCH", edge.PathPrefix+"garbage", []byte("a"), nil), 404, "BLOB_UPLOAD_UNKNOWN", "malformed token")

	// The rest of UploadErrors, through the edge Location.
	s.expect(s.do("GET", "/v2/u/blobs/uploads/nosuchupload", nil, nil), 404, "BLOB_UPLOAD_UNKNOWN", "unknown upload")
	s.expect(s.do("PATCH", loc, []byte("abc"), map[string]string{"Content-Range": "1-3"}), 416, "", "range not at offset")
	s.expect(s.do("PATCH", loc, []byte("abc"), map[string]string{"Content-Range": "zz"}), 416, "", "bad range")
	s.expect(s.do("PATCH", loc, []byte("abc"), map[string]string{"Content-Range": "0-9"}), 400, "SIZE_INVALID", "range longer than body")
	s.expect(s.do("PUT", loc, nil, nil), 400, "DIGEST_INVALID", "close without digest")
	s.expect(s.do("PUT", loc+"?digest=sha256:nothex", nil, nil), 400, "DIGEST_INVALID", "close with bad digest")
	b := []byte("hello")
	r := s.do("PATCH", loc, b, map[string]string{"Content-Range": "0-4"})
	s.expect(r, 202, "", "patch after errors")
	// After a PATCH the API hands out its own upload URL: the closing PUT
	// must not go to S3 (docs/architecture.md).
	next := r.header.Get("Location")
	if !strings.HasPrefix(next, "/v2/u/blobs/uploads/") {
		t.Fatalf("Location after PATCH %q, want the API's upload URL", next)
	}
	s.expect(s.do("PUT", next+"?digest="+digest(b), nil, nil), 201, "", "close after errors")
	s.expect(s.do("HEAD", "/v2/u/blobs/"+digest(b), nil, nil), 200, "", "HEAD after close")

	// Cancel through the edge Location.
	loc, _ = s.start("u")
	s.expect(s.do("DELETE", loc, nil, nil), 204, "", "cancel")
	s.expect(s.do("GET", loc, nil, nil), 404, "BLOB_UPLOAD_UNKNOWN", "status after cancel")
	s.expect(s.do("DELETE", loc, nil, nil), 404, "BLOB_UPLOAD_UNKNOWN", "cancel twice")
}

// TestEdgeTamperedPut: bytes that do not match the digest of an edge PUT
// are refused by S3 itself and never become part of the registry. It runs
// with both answers to a question CloudFront does not document (whether a
// viewer-response function sees the original or the rewritten request).
func TestEdgeTamperedPut(t *testing.T) {
	for _, original := range []bool{false, true} {
		t.Run(fmt.Sprintf("ViewerResponseSeesOriginalRequest=%v", original), func(t *testing.T) {
			s := startEdge(t, func(o *cloudfront.BerthOptions) { o.ViewerResponseSeesOriginalRequest = original })
			layer, cfg := random(256<<10), []byte(`{"architecture":"amd64","os":"linux"}`)
			d := digest(layer)
			loc, _ := s.start("tamper")
			other := bytes.Clone(layer)
			other[len(other)/2] ^= 0xff
			r := s.do("PUT", loc+"?digest="+d, other, map[string]string{"Content-Type": "application/octet-stream"})
			// S3's own answer: CloudFront runs no viewer-response function
			// for a status of 400 or above, so the body is S3's XML, not an
			// OCI error. Clients report the status and fail the push.
			if r.status != http.StatusBadRequest || !bytes.Contains(r.body, []byte("BadDigest")) {
				t.Fatalf("tampered edge PUT: status %d, body %.300s; want 400 BadDigest from S3", r.status, r.body)
			}
			s.expect(s.do("HEAD", "/v2/tamper/blobs/"+d, nil, nil), 404, "", "HEAD after tampered PUT")
			s.expect(s.do("GET", "/v2/tamper/blobs/"+d, nil, nil), 404, "BLOB_UNKNOWN", "GET after tampered PUT")

			s.expect(s.do("POST", "/v2/tamper/blobs/uploads/?digest="+digest(cfg), cfg, nil), 201, "", "config")
			m := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
				digest(cfg), len(cfg), d, len(layer))
			ct := map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
			s.expect(s.do("PUT", "/v2/tamper/manifests/v1", m, ct), 400, "MANIFEST_BLOB_UNKNOWN", "manifest over the tampered blob")

			// The same Location still takes the right bytes (a client retry).
			r = s.do("PUT", loc+"?digest="+d, layer, map[string]string{"Content-Type": "application/octet-stream"})
			s.expect(r, 201, "", "edge PUT")
			if r.header.Get("Docker-Content-Digest") != d || r.header.Get("Location") != "/v2/tamper/blobs/"+d {
				t.Fatalf("edge PUT headers %v", r.header)
			}
			for n := range r.header {
				if strings.HasPrefix(strings.ToLower(n), "x-amz-") {
					t.Errorf("edge PUT answer leaks S3 header %s", n)
				}
			}
			s.expect(s.do("PUT", "/v2/tamper/manifests/v1", m, ct), 201, "", "manifest after the real PUT")
			s.expect(s.do("HEAD", "/v2/tamper/blobs/"+d, nil, nil), 200, "", "HEAD after the real PUT")
		})
	}
}
