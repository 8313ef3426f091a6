package registrytest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/pkg/edge"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/storage"
)

// EdgeEnv is a backend whose blob storage can be written around the
// registry: the edge path (CloudFront → S3) and direct uploads.
type EdgeEnv struct {
	Env
	// StoreObject writes body as the object of blob d straight into
	// storage, as the CloudFront Function makes S3 do: with metadata as
	// x-amz-meta-*, and with x-amz-checksum-sha256 when checksum is set.
	StoreObject func(t *testing.T, d oci.Digest, body []byte, metadata map[string]string, checksum bool)
}

// Edge settings RunEdge gives every backend.
const (
	// EdgeMultipartThreshold makes direct uploads above 8 MiB multipart,
	// so 12 MiB blobs take 5 MiB parts.
	EdgeMultipartThreshold = 8 << 20
	edgeBlobSize           = 12 << 20
)

// RunEdge runs the edge-path and direct-upload cases. newEnv must build the
// registry with cfg (RunEdge sets EdgeTokens and the direct-upload limits)
// over empty storage.
func RunEdge(t *testing.T, newEnv func(t *testing.T, cfg registry.Config) EdgeEnv) {
	tests := []struct {
		name   string
		inline int64 // DirectVerifyInline
		fn     func(t *testing.T, s *edgeServer)
	}{
		{"EdgeLocation", 0, testEdgeLocation},
		{"ClaimByManifest", 0, testClaimByManifest},
		{"ClaimByHead", 0, testClaimByHead},
		{"ClaimByClose", 0, testClaimByClose},
		{"ClaimRefused", 0, testClaimRefused},
		{"ClaimRace", 0, testClaimRace},
		{"DirectSingle", 0, testDirectSingle},
		{"DirectMultipartInline", 0, testDirectMultipart},
		{"DirectMultipartAsync", 1, testDirectMultipart},
		{"DirectMultipartTampered", 0, testDirectTampered},
		{"DirectMultipartTamperedAsync", 1, testDirectTampered},
		{"DirectInvalid", 0, testDirectInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys := edge.NewMemoryStore()
			if _, err := edge.Rotate(t.Context(), keys, edge.Rotation{}, time.Now()); err != nil {
				t.Fatal(err)
			}
			cfg := registry.Config{
				EdgeTokens:               edge.NewKeyring(keys, 0),
				DirectMultipartThreshold: EdgeMultipartThreshold,
				DirectVerifyInline:       tc.inline,
			}
			env := newEnv(t, cfg)
			s := &edgeServer{server: start(t, env.Env), env: env, keys: keys, async: tc.inline == 1}
			tc.fn(t, s)
		})
	}
}

type edgeServer struct {
	*server
	env  EdgeEnv
	keys *edge.MemoryStore
	// async: multipart direct uploads are verified in the background.
	async bool
}

// edgeUpload starts an upload and returns its Location and session id.
func (s *edgeServer) edgeUpload(repo string) (loc, id string) {
	s.t.Helper()
	r := s.do("POST", "/v2/"+repo+"/blobs/uploads/", nil, nil, false)
	s.expect(r, 202, "", "start edge upload")
	return r.header.Get("Location"), r.header.Get("Docker-Upload-UUID")
}

// edgePut does what a client PUT through the CloudFront Function does: the
// object lands in storage bound to the session, with S3's checksum.
func (s *edgeServer) edgePut(repo, id string, b []byte) oci.Digest {
	s.t.Helper()
	d := sha(b)
	s.env.StoreObject(s.t, d, b, map[string]string{"berth-upload": id, "berth-repo": repo}, true)
	return d
}

func testEdgeLocation(t *testing.T, s *edgeServer) {
	r := s.do("POST", "/v2/edge/loc/blobs/uploads/", nil, nil, false)
	s.expect(r, 202, "", "POST")
	loc, id := r.header.Get("Location"), r.header.Get("Docker-Upload-UUID")
	if !strings.HasPrefix(loc, edge.PathPrefix) || r.header.Get("Range") != "0-0" || id == "" {
		t.Fatalf("edge POST headers %v", r.header)
	}
	tok := strings.TrimPrefix(loc, edge.PathPrefix)
	if strings.ContainsAny(tok, "/%?#") {
		t.Fatalf("token %q is not path-safe", tok)
	}
	c, err := edge.Verify(tok, edge.Lookup(t.Context(), s.keys), time.Now())
	if err != nil {
		t.Fatalf("verify token: %v", err)
	}
	if c.Repo != "edge/loc" || c.Upload != id {
		t.Fatalf("token claims %+v, want repo edge/loc upload %s", c, id)
	}
	if exp := time.Unix(c.Expires, 0); exp.Before(time.Now().Add(50*time.Minute)) || exp.After(time.Now().Add(61*time.Minute)) {
		t.Fatalf("token expires %v, want in about an hour", exp)
	}
	// The session behind the token is the registry's own upload too: the
	// CloudFront Function sends PATCH and body-less PUT there.
	b := randomBytes(t, 3000)
	api := "/v2/edge/loc/blobs/uploads/" + id
	p := s.do("PATCH", api, b, map[string]string{"Content-Type": "application/octet-stream"}, false)
	s.expect(p, 202, "", "PATCH behind the edge")
	s.expect(s.do("PUT", withDigest(p.header.Get("Location"), sha(b)), nil, nil, false), 201, "", "close behind the edge")
	checkBlob(t, s.server, "edge/loc", sha(b), b)
	// A mount that fails also hands out an edge Location.
	m := s.do("POST", "/v2/edge/loc/blobs/uploads/?mount="+string(sha([]byte("absent")))+"&from=nowhere", nil, nil, false)
	s.expect(m, 202, "", "mount miss")
	if !strings.HasPrefix(m.header.Get("Location"), edge.PathPrefix) {
		t.Fatalf("mount miss Location %q", m.header.Get("Location"))
	}
}

func (s *edgeServer) putManifest(repo, ref string, m []byte) resp {
	return s.do("PUT", "/v2/"+repo+"/manifests/"+ref, m, map[string]string{"Content-Type": oci.MediaTypeImageManifest}, false)
}

func testClaimByManifest(t *testing.T, s *edgeServer) {
	const repo = "edge/man"
	cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	s.pushBlob(repo, cfg)
	var layers [][]byte
	var ids []string
	for i := 0; i < 3; i++ {
		l := randomBytes(t, 40_000+i)
		_, id := s.edgeUpload(repo)
		s.edgePut(repo, id, l)
		layers, ids = append(layers, l), append(ids, id)
	}
	m := NewImage(cfg, layers...).Manifest
	s.expect(s.putManifest(repo, "v1", m), 201, "", "manifest referencing edge layers")
	for i, l := range layers {
		checkBlob(t, s.server, repo, sha(l), l)
		// The claim consumed the session.
		s.expect(s.do("GET", "/v2/"+repo+"/blobs/uploads/"+ids[i], nil, nil, false), 404, "BLOB_UPLOAD_UNKNOWN", "session after claim")
	}
	// A layer that never arrived still fails the manifest.
	missing := randomBytes(t, 100)
	s.expect(s.putManifest(repo, "v2", NewImage(cfg, layers[0], missing).Manifest), 400, "MANIFEST_BLOB_UNKNOWN", "manifest with a missing layer")
}

func testClaimByHead(t *testing.T, s *edgeServer) {
	const repo = "edge/head"
	l := randomBytes(t, 20_000)
	_, id := s.edgeUpload(repo)
	d := s.edgePut(repo, id, l)
	h := s.do("HEAD", "/v2/"+repo+"/blobs/"+string(d), nil, nil, false)
	s.expect(h, 200, "", "HEAD claims")
	if h.header.Get("Content-Length") != strconv.Itoa(len(l)) || h.header.Get("Docker-Content-Digest") != string(d) {
		t.Fatalf("HEAD headers %v", h.header)
	}
	checkBlob(t, s.server, repo, d, l)
	// Linked into this repository only.
	s.expect(s.do("HEAD", "/v2/edge/elsewhere/blobs/"+string(d), nil, nil, false), 404, "", "HEAD other repository")
	// GET claims too.
	l2 := randomBytes(t, 1000)
	_, id2 := s.edgeUpload(repo)
	d2 := s.edgePut(repo, id2, l2)
	g := s.do("GET", "/v2/"+repo+"/blobs/"+string(d2), nil, nil, true)
	s.expect(g, 200, "", "GET claims")
	if string(g.body) != string(l2) {
		t.Fatalf("GET after claim: %d bytes", len(g.body))
	}
}

func testClaimByClose(t *testing.T, s *edgeServer) {
	const repo = "edge/close"
	l := randomBytes(t, 7000)
	_, id := s.edgeUpload(repo)
	d := s.edgePut(repo, id, l)
	r := s.do("PUT", withDigest("/v2/"+repo+"/blobs/uploads/"+id, d), nil, nil, false)
	s.expect(r, 201, "", "empty close claims")
	if r.header.Get("Docker-Content-Digest") != string(d) || r.header.Get("Location") != "/v2/"+repo+"/blobs/"+string(d) {
		t.Fatalf("close headers %v", r.header)
	}
	checkBlob(t, s.server, repo, d, l)
	// An empty close of a session whose object is absent is an ordinary
	// close: the empty blob.
	_, id = s.edgeUpload(repo)
	empty := sha(nil)
	s.expect(s.do("PUT", withDigest("/v2/"+repo+"/blobs/uploads/"+id, empty), nil, nil, false), 201, "", "empty blob close")
	checkBlob(t, s.server, repo, empty, []byte{})
	// ...and a wrong digest there is still refused.
	_, id = s.edgeUpload(repo)
	s.expect(s.do("PUT", withDigest("/v2/"+repo+"/blobs/uploads/"+id, sha([]byte("never sent"))), nil, nil, false),
		400, "DIGEST_INVALID", "empty close, no object")
}

func testClaimRefused(t *testing.T, s *edgeServer) {
	const repo = "edge/refuse"
	cfg := []byte(`{"architecture":"arm64","os":"linux"}`)
	s.pushBlob(repo, cfg)
	refused := func(what string, d oci.Digest, l []byte) {
		t.Helper()
		s.expect(s.do("HEAD", "/v2/"+repo+"/blobs/"+string(d), nil, nil, false), 404, "", what+": HEAD")
		s.expect(s.do("GET", "/v2/"+repo+"/blobs/"+string(d), nil, nil, false), 404, "BLOB_UNKNOWN", what+": GET")
		s.expect(s.putManifest(repo, "x", NewImage(cfg, l).Manifest), 400, "MANIFEST_BLOB_UNKNOWN", what+": manifest")
	}

	// The object names a session of another repository: knowing the
	// digest grants nothing.
	l := randomBytes(t, 5000)
	_, otherID := s.edgeUpload("edge/other")
	d := sha(l)
	s.env.StoreObject(t, d, l, map[string]string{"berth-upload": otherID, "berth-repo": "edge/other"}, true)
	refused("other repository's session", d, l)
	// That repository can still claim it.
	s.expect(s.do("HEAD", "/v2/edge/other/blobs/"+string(d), nil, nil, false), 200, "", "owner claims")

	// The session is gone (cancelled).
	l = randomBytes(t, 5001)
	_, id := s.edgeUpload(repo)
	s.expect(s.do("DELETE", "/v2/"+repo+"/blobs/uploads/"+id, nil, nil, false), 204, "", "cancel")
	refused("cancelled session", s.edgePut(repo, id, l), l)

	// No x-amz-checksum-sha256: S3 verified nothing.
	l = randomBytes(t, 5002)
	_, id = s.edgeUpload(repo)
	d = sha(l)
	s.env.StoreObject(t, d, l, map[string]string{"berth-upload": id}, false)
	refused("no checksum", d, l)
	// Even the session's own close does not link it.
	s.expect(s.do("PUT", withDigest("/v2/"+repo+"/blobs/uploads/"+id, d), nil, nil, false), 400, "DIGEST_INVALID", "close without checksum")

	// No session named at all.
	l = randomBytes(t, 5003)
	d = sha(l)
	s.env.StoreObject(t, d, l, nil, true)
	refused("no session", d, l)

	// An object of a sha512 digest: S3 has no sha512 checksum.
	l = randomBytes(t, 5004)
	_, id = s.edgeUpload(repo)
	d512 := oci.FromBytes(oci.SHA512, l)
	s.env.StoreObject(t, d512, l, map[string]string{"berth-upload": id}, false)
	s.expect(s.do("HEAD", "/v2/"+repo+"/blobs/"+string(d512), nil, nil, false), 404, "", "sha512: HEAD")
}

// testClaimRace claims one session from many requests at once: every one
// sees the blob, none fails, and the session is consumed once.
func testClaimRace(t *testing.T, s *edgeServer) {
	const repo = "edge/race"
	cfg := []byte(`{"architecture":"amd64","os":"linux","race":true}`)
	s.pushBlob(repo, cfg)
	for round := 0; round < 3; round++ {
		l := randomBytes(t, 9000+round)
		_, id := s.edgeUpload(repo)
		d := s.edgePut(repo, id, l)
		m := NewImage(cfg, l).Manifest
		const n = 8
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				var r resp
				var err error
				switch i % 3 {
				case 0:
					r, err = s.try("HEAD", "/v2/"+repo+"/blobs/"+string(d), nil, nil, false)
				case 1:
					r, err = s.try("PUT", "/v2/"+repo+"/manifests/"+fmt.Sprintf("r%d-%d", round, i), m, map[string]string{"Content-Type": oci.MediaTypeImageManifest}, false)
				default:
					r, err = s.try("PUT", withDigest("/v2/"+repo+"/blobs/uploads/"+id, d), nil, nil, false)
				}
				switch {
				case err != nil:
					errs <- err
				case i%3 == 2 && (r.status == 404 && r.errCode() == "BLOB_UPLOAD_UNKNOWN"):
					// A close that came after another request consumed the
					// session: the session is gone, as after any close.
				case r.status != 200 && r.status != 201:
					errs <- fmt.Errorf("%s request %d: %d %s", r.method, i, r.status, r.body)
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		checkBlob(t, s.server, repo, d, l)
		s.expect(s.do("GET", "/v2/"+repo+"/blobs/uploads/"+id, nil, nil, false), 404, "BLOB_UPLOAD_UNKNOWN", "session after race")
	}
}

// direct is a direct upload start response.
type direct struct {
	Upload    string               `json:"upload"`
	Expires   string               `json:"expires"`
	Parts     []storage.DirectPart `json:"parts"`
	Multipart bool                 `json:"multipart"`
}

func (s *edgeServer) directStart(repo string, d oci.Digest, size int) (string, direct) {
	s.t.Helper()
	r := s.do("POST", fmt.Sprintf("/v2/%s/blobs/uploads/?berth.direct=%s&berth.size=%d", repo, d, size), nil, nil, false)
	s.expect(r, 202, "", "direct start")
	if r.header.Get("Content-Type") != "application/vnd.berth.direct-upload.v1+json" {
		s.t.Fatalf("direct start Content-Type %q body %.200s", r.header.Get("Content-Type"), r.body)
	}
	var out direct
	if err := json.Unmarshal(r.body, &out); err != nil {
		s.t.Fatalf("direct start body: %v", err)
	}
	loc := r.header.Get("Location")
	if loc != "/v2/"+repo+"/blobs/uploads/"+out.Upload || r.header.Get("Docker-Upload-UUID") != out.Upload {
		s.t.Fatalf("direct start headers %v body %s", r.header, r.body)
	}
	if exp, err := time.Parse(time.RFC3339, out.Expires); err != nil || exp.Before(time.Now()) {
		s.t.Fatalf("expires %q", out.Expires)
	}
	return loc, out
}

// sendPart PUTs b to a presigned part and returns its ETag.
func (s *edgeServer) sendPart(p storage.DirectPart, b []byte) string {
	s.t.Helper()
	r := s.do(p.Method, p.URL, b, p.Headers, false)
	if r.status != http.StatusOK {
		s.t.Fatalf("part %d: %d %s", p.Number, r.status, r.body)
	}
	return r.header.Get("ETag")
}

func testDirectSingle(t *testing.T, s *edgeServer) {
	const repo = "direct/single"
	b := randomBytes(t, 3<<20)
	d := sha(b)
	loc, dr := s.directStart(repo, d, len(b))
	if dr.Multipart || len(dr.Parts) != 1 {
		t.Fatalf("single direct upload: %+v", dr)
	}
	p := dr.Parts[0]
	if p.Method != "PUT" || p.Offset != 0 || p.Size != int64(len(b)) || p.Headers["x-amz-meta-berth-upload"] != dr.Upload || p.Headers["x-amz-checksum-sha256"] == "" {
		t.Fatalf("part %+v", p)
	}
	// Storage refuses other bytes under the signed checksum.
	bad := append([]byte(nil), b...)
	bad[10] ^= 1
	if r := s.do(p.Method, p.URL, bad, p.Headers, false); r.status < 400 {
		t.Fatalf("tampered single PUT accepted: %d", r.status)
	}
	s.expect(s.do("HEAD", "/v2/"+repo+"/blobs/"+string(d), nil, nil, false), 404, "", "HEAD before close")
	st := s.do("GET", loc, nil, nil, false)
	s.expect(st, 204, "", "status while uploading")
	if st.header.Get("Berth-Upload-State") != "uploading" {
		t.Fatalf("state %q", st.header.Get("Berth-Upload-State"))
	}
	s.sendPart(p, b)
	r := s.do("PUT", withDigest(loc, d), nil, nil, false)
	s.expect(r, 201, "", "direct close")
	if r.header.Get("Docker-Content-Digest") != string(d) {
		t.Fatalf("close headers %v", r.header)
	}
	checkBlob(t, s.server, repo, d, b)
	s.expect(s.do("GET", loc, nil, nil, false), 404, "BLOB_UPLOAD_UNKNOWN", "session after close")
}

// directMultipart uploads b as a multipart direct upload, with part i's
// bytes changed when tamper is set, and completes it.
func (s *edgeServer) directMultipart(repo string, b []byte, tamper bool) (string, oci.Digest, resp) {
	s.t.Helper()
	d := sha(b)
	loc, dr := s.directStart(repo, d, len(b))
	if !dr.Multipart || len(dr.Parts) != 3 {
		s.t.Fatalf("multipart direct upload of %d bytes: %d parts, multipart %v", len(b), len(dr.Parts), dr.Multipart)
	}
	var done []storage.CompletedPart
	var next int64
	for i, p := range dr.Parts {
		if p.Offset != next || p.Number != int32(i+1) || (i < len(dr.Parts)-1 && p.Size < 5<<20) {
			s.t.Fatalf("part %d: %+v", i, p)
		}
		next += p.Size
		chunk := b[p.Offset : p.Offset+p.Size]
		if tamper && i == 1 {
			chunk = append([]byte(nil), chunk...)
			chunk[100] ^= 0xff
		}
		done = append(done, storage.CompletedPart{Number: p.Number, ETag: s.sendPart(p, chunk)})
	}
	if next != int64(len(b)) {
		s.t.Fatalf("parts cover %d of %d bytes", next, len(b))
	}
	// The API refuses bytes on this session.
	s.expect(s.do("PATCH", loc, []byte("x"), nil, false), 400, "BLOB_UPLOAD_INVALID", "PATCH on a multipart direct upload")
	body, _ := json.Marshal(map[string]any{"parts": done})
	r := s.do("PUT", withDigest(loc, d), body, map[string]string{"Content-Type": "application/vnd.berth.direct-complete.v1+json"}, false)
	return loc, d, r
}

// poll GETs an upload URL until it leaves the verifying state.
func (s *edgeServer) poll(loc string) resp {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := s.do("GET", loc, nil, nil, false)
		if r.status != http.StatusNoContent {
			return r
		}
		if r.header.Get("Berth-Upload-State") != "verifying" {
			s.t.Fatalf("polling: state %q", r.header.Get("Berth-Upload-State"))
		}
		if time.Now().After(deadline) {
			s.t.Fatal("verification did not finish in 60 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *edgeServer) noLeftovers() {
	s.t.Helper()
	if s.env.Leftovers == nil {
		return
	}
	if left := s.env.Leftovers(s.t); len(left) > 0 {
		s.t.Fatalf("staging left behind: %v", left)
	}
}

func testDirectMultipart(t *testing.T, s *edgeServer) {
	const repo = "direct/multi"
	b := randomBytes(t, edgeBlobSize)
	loc, d, r := s.directMultipart(repo, b, false)
	if s.async != (r.status == http.StatusAccepted) {
		t.Fatalf("completion answered %d; background verification %v", r.status, s.async)
	}
	if r.status == http.StatusAccepted {
		if r.header.Get("Berth-Upload-State") != "verifying" || r.header.Get("Location") != loc {
			t.Fatalf("async complete headers %v", r.header)
		}
		r = s.poll(loc)
	}
	s.expect(r, 201, "", "multipart verified")
	if r.header.Get("Docker-Content-Digest") != string(d) || r.header.Get("Berth-Upload-State") != "verified" {
		t.Fatalf("verified headers %v", r.header)
	}
	checkBlob(t, s.server, repo, d, b)
	// Polling again still says so; a repeated completion too.
	s.expect(s.do("GET", loc, nil, nil, false), 201, "", "poll after verification")
	s.noLeftovers()
}

func testDirectTampered(t *testing.T, s *edgeServer) {
	const repo = "direct/tamper"
	b := randomBytes(t, edgeBlobSize)
	loc, d, r := s.directMultipart(repo, b, true)
	if s.async != (r.status == http.StatusAccepted) {
		t.Fatalf("completion answered %d; background verification %v", r.status, s.async)
	}
	if r.status == http.StatusAccepted {
		r = s.poll(loc)
	}
	s.expect(r, 400, "DIGEST_INVALID", "tampered multipart")
	if r.header.Get("Berth-Upload-State") != "rejected" {
		t.Fatalf("rejected headers %v", r.header)
	}
	s.expect(s.do("HEAD", "/v2/"+repo+"/blobs/"+string(d), nil, nil, false), 404, "", "HEAD after rejection")
	s.expect(s.putManifest(repo, "t", NewImage([]byte("{}"), b).Manifest), 400, "MANIFEST_BLOB_UNKNOWN", "manifest after rejection")
	s.noLeftovers()
}

func testDirectInvalid(t *testing.T, s *edgeServer) {
	const repo = "direct/invalid"
	d := sha([]byte("x"))
	for _, q := range []string{
		"berth.direct=sha256:nothex&berth.size=1",
		"berth.direct=" + string(d) + "&berth.size=-1",
		"berth.direct=" + string(d) + "&berth.size=5497558138881", // 5 TiB + 1
		"berth.direct=" + string(d) + "&berth.size=many",
	} {
		r := s.do("POST", "/v2/"+repo+"/blobs/uploads/?"+q, nil, nil, false)
		if r.status != 400 || (r.errCode() != "DIGEST_INVALID" && r.errCode() != "SIZE_INVALID") {
			t.Fatalf("%s: %d %s", q, r.status, r.body)
		}
	}
	// A completion with another digest, and one with no parts.
	b := randomBytes(t, edgeBlobSize)
	loc, _ := s.directStart(repo, sha(b), len(b))
	ct := map[string]string{"Content-Type": "application/vnd.berth.direct-complete.v1+json"}
	s.expect(s.do("PUT", withDigest(loc, d), []byte(`{"parts":[{"number":1,"etag":"\"x\""}]}`), ct, false), 400, "DIGEST_INVALID", "complete with another digest")
	s.expect(s.do("PUT", withDigest(loc, sha(b)), []byte(`{"parts":[]}`), ct, false), 400, "BLOB_UPLOAD_INVALID", "complete without parts")
	s.expect(s.do("PUT", withDigest(loc, sha(b)), []byte(`{"parts":[{"number":1,"etag":"\"0123\""}]}`), ct, false), 400, "BLOB_UPLOAD_INVALID", "complete with unknown parts")
	// Cancelling releases the multipart upload.
	s.expect(s.do("DELETE", loc, nil, nil, false), 204, "", "cancel direct upload")
	s.noLeftovers()
}
