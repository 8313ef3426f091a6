package cffunc_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/berth-registry/berth/internal/cloudfront"
	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/apigw"
	"github.com/berth-registry/berth/pkg/edge"
	"github.com/berth-registry/berth/pkg/edge/cffunc"
)

func TestSourceConstants(t *testing.T) {
	if len(cffunc.Source) > cffunc.MaxSourceBytes || cffunc.MaxSourceBytes != cloudfront.MaxFunctionBytes {
		t.Fatalf("upload.js is %d bytes; CloudFront takes %d", len(cffunc.Source), cffunc.MaxSourceBytes)
	}
	for _, lit := range []string{
		"'" + cffunc.APIOriginID + "'",
		"= " + strconv.Itoa(apigw.MaxBodyBytes) + ";",
		"= " + strconv.FormatInt(cffunc.S3MaxPutBytes, 10) + ";",
		"'" + edge.PathPrefix + "'",
		"'" + edge.KeyPrefix + "'",
		"import crypto from 'crypto';",
		"import cf from 'cloudfront';",
	} {
		if !strings.Contains(cffunc.Source, lit) {
			t.Errorf("upload.js does not contain %s", lit)
		}
	}
}

const (
	repo     = "team/app"
	uploadID = "u-0123456789abcdef"
)

// recording wraps an origin and keeps the requests that reached it (with
// the headers as the distribution forwarded them, before OAC signing).
type recording struct {
	next http.Handler
	mu   sync.Mutex
	reqs []*http.Request
}

func (o *recording) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.reqs = append(o.reqs, r.Clone(context.Background()))
	o.mu.Unlock()
	o.next.ServeHTTP(w, r)
}

func (o *recording) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.reqs)
}

func (o *recording) last(t *testing.T) *http.Request {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.reqs) == 0 {
		t.Fatal("origin not asked")
	}
	return o.reqs[len(o.reqs)-1]
}

// api stands in for API Gateway: it answers like the registry's upload
// routes (202, Docker-Distribution-API-Version) and echoes the body size.
func api() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		w.Header().Set("Location", r.URL.Path)
		w.Header().Set("X-Body-Bytes", strconv.FormatInt(n, 10))
		w.WriteHeader(http.StatusAccepted)
	})
}

type env struct {
	srv    *httptest.Server
	dist   *cloudfront.Distribution
	store  *edge.MemoryStore
	key    edge.Key
	apiRec *recording
	s3Rec  *recording
	s3c    *s3.Client
	bucket string
}

// newEnv builds the Berth distribution with versitygw as the S3 origin
// (blobs == nil) or blobs.
func newEnv(t *testing.T, seesOriginal bool, blobs http.Handler) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{store: edge.NewMemoryStore()}
	if _, err := edge.Rotate(ctx, e.store, edge.Rotation{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	var err error
	if e.key, err = edge.NewKeyring(e.store, 0).Current(ctx); err != nil {
		t.Fatal(err)
	}
	if blobs == nil {
		ep := testenv.S3Emulator(t)
		e.s3c, _ = testenv.S3Client(ep)
		e.bucket = testenv.FreshBucket(t, e.s3c)
		blobs = &cloudfront.S3Origin{
			Endpoint:    ep.URL,
			Bucket:      e.bucket,
			PathStyle:   true,
			Region:      testenv.Region,
			Credentials: credentials.NewStaticCredentialsProvider(ep.AccessKey, ep.SecretKey, ""),
		}
	}
	e.apiRec, e.s3Rec = &recording{next: api()}, &recording{next: blobs}
	e.dist, err = cloudfront.NewBerth(cloudfront.BerthOptions{
		Blobs:                             e.s3Rec,
		API:                               e.apiRec,
		Keys:                              e.store,
		ViewerResponseSeesOriginalRequest: seesOriginal,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(e.dist)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) token(t *testing.T, c edge.Claims) string {
	t.Helper()
	tok, err := edge.Sign(e.key, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (e *env) validToken(t *testing.T) string {
	return e.token(t, edge.Claims{Repo: repo, Upload: uploadID, Expires: time.Now().Add(time.Hour).Unix()})
}

func (e *env) do(t *testing.T, method, path string, body []byte, hdr map[string]string) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func blob(t *testing.T, n int) ([]byte, string) {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

// ociError decodes an OCI error body and returns its first code and message.
func ociError(t *testing.T, resp *http.Response) (string, string) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error content type %q", ct)
	}
	var body struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.Errors) != 1 {
		t.Fatalf("error body: %v %+v", err, body)
	}
	return body.Errors[0].Code, body.Errors[0].Message
}

func TestEdgePutToS3(t *testing.T) {
	for _, seesOriginal := range []bool{false, true} {
		t.Run(fmt.Sprintf("viewer response sees original request %v", seesOriginal), func(t *testing.T) {
			e := newEnv(t, seesOriginal, nil)
			data, hx := blob(t, 3<<20+17)
			// The digest arrives percent-encoded, as regclient sends it.
			path := edge.PathPrefix + e.validToken(t) + "?digest=sha256%3A" + hx
			resp := e.do(t, "PUT", path, data, map[string]string{
				"Authorization":         "Bearer client-token",
				"Content-Type":          "application/octet-stream",
				"X-Amz-Meta-Evil":       "1",
				"X-Amz-Checksum-Sha256": base64.StdEncoding.EncodeToString(make([]byte, 32)),
				"X-Amz-Acl":             "public-read",
			})
			if resp.StatusCode != http.StatusCreated {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			if loc := resp.Header.Get("Location"); loc != "/v2/"+repo+"/blobs/sha256:"+hx {
				t.Fatalf("Location %q", loc)
			}
			if x := resp.Header.Get("X-Cache"); x != "Miss from cloudfront" {
				t.Fatalf("X-Cache %q", x)
			}
			if d := resp.Header.Get("Docker-Content-Digest"); d != "sha256:"+hx {
				t.Fatalf("Docker-Content-Digest %q", d)
			}
			for n := range resp.Header {
				// CloudFront's own X-Amz-Cf-* come after the function.
				if l := strings.ToLower(n); strings.HasPrefix(l, "x-amz-") && !strings.HasPrefix(l, "x-amz-cf-") {
					t.Fatalf("S3 header %s reached the client", n)
				}
			}
			// What reached S3: the function's headers, none of the client's.
			got := e.s3Rec.last(t)
			sum, _ := hex.DecodeString(hx)
			want := map[string]string{
				"X-Amz-Checksum-Sha256":   base64.StdEncoding.EncodeToString(sum),
				"X-Amz-Meta-Berth-Upload": uploadID,
				"X-Amz-Meta-Berth-Repo":   repo,
				"Content-Type":            "application/octet-stream",
				"X-Amz-Meta-Evil":         "",
				"X-Amz-Acl":               "",
				"Authorization":           "",
			}
			for k, v := range want {
				if got.Header.Get(k) != v {
					t.Errorf("S3 origin got %s=%q, want %q", k, got.Header.Get(k), v)
				}
			}
			if got.URL.Path != "/blobs/sha256/"+hx || got.URL.RawQuery != "" {
				t.Fatalf("S3 origin request %s?%s", got.URL.Path, got.URL.RawQuery)
			}
			if e.apiRec.count() != 0 {
				t.Fatal("the API was asked during an edge PUT")
			}
			head, err := e.s3c.HeadObject(context.Background(), &s3.HeadObjectInput{
				Bucket: aws.String(e.bucket), Key: aws.String("blobs/sha256/" + hx), ChecksumMode: s3types.ChecksumModeEnabled,
			})
			if err != nil {
				t.Fatal(err)
			}
			if aws.ToString(head.ChecksumSHA256) != want["X-Amz-Checksum-Sha256"] || aws.ToInt64(head.ContentLength) != int64(len(data)) ||
				head.Metadata["berth-upload"] != uploadID {
				t.Fatalf("object: checksum %q size %d meta %v", aws.ToString(head.ChecksumSHA256), aws.ToInt64(head.ContentLength), head.Metadata)
			}
		})
	}
}

func TestFunctionTooLarge(t *testing.T) {
	big := cffunc.Source + "\n// " + strings.Repeat("x", 11*1024-len(cffunc.Source)) + "\n"
	_, err := cloudfront.NewBerth(cloudfront.BerthOptions{Source: big, Blobs: api(), API: api(), Keys: edge.NewMemoryStore()})
	if !errors.Is(err, cloudfront.ErrFunctionTooLarge) {
		t.Fatalf("11 KB function: %v", err)
	}
}

// BenchmarkViewerRequest is the emulator's cost per edge request: the
// token check and rewrite in a fresh JavaScript runtime, to an API origin
// that answers at once.
func BenchmarkViewerRequest(b *testing.B) {
	store := edge.NewMemoryStore()
	ctx := context.Background()
	if _, err := edge.Rotate(ctx, store, edge.Rotation{}, time.Now()); err != nil {
		b.Fatal(err)
	}
	tok, err := edge.NewKeyring(store, 0).Token(ctx, repo, uploadID, time.Now().Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	d, err := cloudfront.NewBerth(cloudfront.BerthOptions{Blobs: http.NotFoundHandler(), API: api(), Keys: store})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		d.ServeHTTP(w, httptest.NewRequest("PATCH", edge.PathPrefix+tok, strings.NewReader("chunk")))
		if w.Code != http.StatusAccepted {
			b.Fatalf("status %d", w.Code)
		}
	}
}

func TestEdgeTamperedBody(t *testing.T) {
	e := newEnv(t, false, nil)
	data, hx := blob(t, 1<<20)
	data[0] ^= 0xff // bytes the digest does not describe
	resp := e.do(t, "PUT", edge.PathPrefix+e.validToken(t)+"?digest=sha256:"+hx, data, nil)
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(b, []byte("BadDigest")) {
		t.Fatalf("tampered body: %d %s", resp.StatusCode, b)
	}
	_, err := e.s3c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(e.bucket), Key: aws.String("blobs/sha256/" + hx)})
	var nf *s3types.NotFound
	if !errors.As(err, &nf) {
		t.Fatalf("object after a tampered upload: %v", err)
	}
}

func TestEdgeFailsClosedWithoutChecksum(t *testing.T) {
	// An S3 origin that answers 200 without x-amz-checksum-sha256 (a
	// forwarding misconfiguration): no 201 without proof of the bytes.
	noSum := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("ETag", `"x"`)
		w.WriteHeader(http.StatusOK)
	})
	e := newEnv(t, false, noSum)
	data, hx := blob(t, 1024)
	resp := e.do(t, "PUT", edge.PathPrefix+e.validToken(t)+"?digest=sha256:"+hx, data, nil)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	if code, _ := ociError(t, resp); code != "BLOB_UPLOAD_INVALID" {
		t.Fatalf("code %s", code)
	}
}

func TestEdgeTokenErrors(t *testing.T) {
	e := newEnv(t, false, http.NotFoundHandler())
	now := time.Now()
	valid := e.validToken(t)
	parts := strings.Split(valid, ".")
	flip := func(s string) string {
		c := "A"
		if s[0] == 'A' {
			c = "B"
		}
		return c + s[1:]
	}
	other := edge.Key{ID: "zz9", Secret: edge.NewSecret()}
	unknownKid, err := edge.Sign(other, edge.Claims{Repo: repo, Upload: uploadID, Expires: now.Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	// Payload changed to another repository, signature kept.
	forged, _ := json.Marshal(edge.Claims{Repo: "other/app", Upload: uploadID, Expires: now.Add(time.Hour).Unix()})
	tests := []struct {
		name   string
		token  string
		status int
		code   string
		goErr  error // what edge.Verify says of the same token
	}{
		{"expired", e.token(t, edge.Claims{Repo: repo, Upload: uploadID, Expires: now.Add(-time.Second).Unix()}), 404, "BLOB_UPLOAD_UNKNOWN", edge.ErrExpired},
		{"expires this second", e.token(t, edge.Claims{Repo: repo, Upload: uploadID, Expires: now.Unix()}), 404, "BLOB_UPLOAD_UNKNOWN", edge.ErrExpired},
		{"bad signature", parts[0] + "." + parts[1] + "." + flip(parts[2]), 403, "DENIED", edge.ErrSignature},
		{"forged payload", parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2], 403, "DENIED", edge.ErrSignature},
		{"unknown kid", unknownKid, 404, "BLOB_UPLOAD_UNKNOWN", edge.ErrKeyNotFound},
		{"two parts", parts[0] + "." + parts[1], 404, "BLOB_UPLOAD_UNKNOWN", edge.ErrMalformed},
		{"padded signature", valid + "=", 403, "DENIED", edge.ErrSignature},
		{"bad kid", "k!d." + parts[1] + "." + parts[2], 404, "BLOB_UPLOAD_UNKNOWN", edge.ErrMalformed},
		{"empty", "", 404, "BLOB_UPLOAD_UNKNOWN", edge.ErrMalformed},
		{"slash", parts[0] + "/" + parts[1] + "." + parts[2], 404, "BLOB_UPLOAD_UNKNOWN", edge.ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := edge.Verify(tc.token, edge.Lookup(context.Background(), e.store), time.Now()); !errors.Is(err, tc.goErr) {
				t.Fatalf("edge.Verify: %v, want %v", err, tc.goErr)
			}
			for _, method := range []string{"PUT", "PATCH", "GET"} {
				_, hx := blob(t, 1)
				resp := e.do(t, method, edge.PathPrefix+tc.token+"?digest=sha256:"+hx, []byte("x"), nil)
				if resp.StatusCode != tc.status {
					t.Fatalf("%s: status %d, want %d", method, resp.StatusCode, tc.status)
				}
				if code, _ := ociError(t, resp); code != tc.code {
					t.Fatalf("%s: code %s, want %s", method, code, tc.code)
				}
			}
			if e.apiRec.count()+e.s3Rec.count() != 0 {
				t.Fatal("a bad token reached an origin")
			}
		})
	}
}

func TestEdgeToAPI(t *testing.T) {
	e := newEnv(t, false, http.NotFoundHandler())
	tok := e.validToken(t)
	sha512 := "sha512:" + strings.Repeat("ab", 64)
	_, hx := blob(t, 1)
	tests := []struct {
		name, method, query string
		body                []byte
	}{
		{"PATCH chunk", "PATCH", "", []byte("chunk-bytes")},
		{"GET status", "GET", "", nil},
		{"DELETE cancel", "DELETE", "", nil},
		{"PUT without body closes", "PUT", "digest=sha256:" + hx, nil},
		{"PUT sha512", "PUT", "digest=" + sha512, []byte("bytes")},
		{"PUT malformed digest", "PUT", "digest=sha256:XYZ", []byte("bytes")},
		{"PUT without digest", "PUT", "", []byte("bytes")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := edge.PathPrefix + tok
			if tc.query != "" {
				path += "?" + tc.query
			}
			resp := e.do(t, tc.method, path, tc.body, map[string]string{
				"Authorization":   "Bearer client",
				"X-Amz-Meta-Evil": "1",
				"X-Amz-Date":      "20200101T000000Z",
			})
			if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Docker-Distribution-Api-Version") == "" {
				t.Fatalf("status %d %v: the API's answer must pass unchanged", resp.StatusCode, resp.Header)
			}
			got := e.apiRec.last(t)
			if got.Method != tc.method || got.URL.Path != "/v2/"+repo+"/blobs/uploads/"+uploadID || got.URL.RawQuery != tc.query {
				t.Fatalf("API got %s %s?%s", got.Method, got.URL.Path, got.URL.RawQuery)
			}
			if got.Header.Get("Authorization") != "Bearer client" || got.Header.Get("X-Amz-Meta-Evil") != "" || got.Header.Get("X-Amz-Date") != "" {
				t.Fatalf("API headers %v", got.Header)
			}
			if n := resp.Header.Get("X-Body-Bytes"); n != strconv.Itoa(len(tc.body)) {
				t.Fatalf("API got %s body bytes, want %d", n, len(tc.body))
			}
			if e.s3Rec.count() != 0 {
				t.Fatal("S3 asked")
			}
		})
	}
}

// TestSizeLimits sends requests that only declare their size: the function
// answers before any body byte is read.
func TestSizeLimits(t *testing.T) {
	e := newEnv(t, false, http.NotFoundHandler())
	tok := e.validToken(t)
	_, hx := blob(t, 1)
	tests := []struct {
		method, path string
		size         int64
		status       int
	}{
		{"PUT", edge.PathPrefix + tok + "?digest=sha256:" + hx, cffunc.S3MaxPutBytes + 1, 413},
		{"PATCH", edge.PathPrefix + tok, apigw.MaxBodyBytes + 1, 413},
		{"PUT", edge.PathPrefix + tok + "?digest=sha512:" + strings.Repeat("a", 128), apigw.MaxBodyBytes + 1, 413},
		{"PATCH", edge.PathPrefix + tok, apigw.MaxBodyBytes, 202},
		{"PATCH", "/v2/team/app/blobs/uploads/abc", apigw.MaxBodyBytes + 1, 413},
		{"PUT", "/v2/team/app/blobs/uploads/abc?digest=sha256:" + hx, apigw.MaxBodyBytes + 1, 413},
		{"POST", "/v2/team/app/blobs/uploads/", apigw.MaxBodyBytes + 1, 413},
		{"PUT", "/v2/team/app/manifests/v1", apigw.MaxBodyBytes, 202},
		{"PATCH", "/v2/team/app/blobs/uploads/abc", 1024, 202},
	}
	for _, tc := range tests {
		r := httptest.NewRequest(tc.method, tc.path, strings.NewReader(""))
		r.ContentLength = tc.size
		r.Header.Set("Content-Length", strconv.FormatInt(tc.size, 10))
		w := httptest.NewRecorder()
		e.dist.ServeHTTP(w, r)
		if w.Code != tc.status {
			t.Fatalf("%s %s (%d bytes): %d, want %d: %s", tc.method, tc.path, tc.size, w.Code, tc.status, w.Body.String())
		}
		if tc.status != 413 {
			continue
		}
		resp := w.Result()
		code, msg := ociError(t, resp)
		if code != "SIZE_INVALID" || !strings.Contains(msg, "berth push") {
			t.Fatalf("%s %s: %s %q", tc.method, tc.path, code, msg)
		}
	}
	// /v2/ requests within the limits reach the API unchanged, and
	// everything else (/token) goes there without the function.
	for _, p := range []string{"/v2/", "/v2/team/app/tags/list?n=10", "/token?scope=x"} {
		resp := e.do(t, "GET", p, nil, map[string]string{"X-Amz-Security-Token": "kept"})
		got := e.apiRec.last(t)
		if resp.StatusCode != 202 || got.URL.RequestURI() != p || got.Header.Get("X-Amz-Security-Token") != "kept" {
			t.Fatalf("GET %s: %d, API got %s %v", p, resp.StatusCode, got.URL.RequestURI(), got.Header)
		}
	}
}

// TestTokensAcrossLanguages signs tokens for many claims with pkg/edge and
// checks that the function and edge.Verify agree on each, and that the
// function hands exactly the signed repository and upload to the API.
func TestTokensAcrossLanguages(t *testing.T) {
	e := newEnv(t, false, http.NotFoundHandler())
	repos := []string{"a", "library/ubuntu", "my-org/sub.team/app_1", "x/y/z/w", "a0--b__c.d"}
	for i := 0; i < 40; i++ {
		var rb [9]byte
		_, _ = rand.Read(rb[:])
		c := edge.Claims{Repo: repos[i%len(repos)], Upload: base64.RawURLEncoding.EncodeToString(rb[:]), Expires: time.Now().Add(time.Duration(i+1) * time.Minute).Unix()}
		tok := e.token(t, c)
		got, err := edge.Verify(tok, edge.Lookup(context.Background(), e.store), time.Now())
		if err != nil || got != c {
			t.Fatalf("edge.Verify(%s): %+v %v", tok, got, err)
		}
		resp := e.do(t, "GET", edge.PathPrefix+tok, nil, nil)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("claims %+v: status %d", c, resp.StatusCode)
		}
		if p := e.apiRec.last(t).URL.Path; p != "/v2/"+c.Repo+"/blobs/uploads/"+c.Upload {
			t.Fatalf("claims %+v: API got %s", c, p)
		}
	}
	// After rotation the old key keeps verifying in both until it is
	// removed from the store; then both refuse.
	old := e.validToken(t)
	kid, _ := edge.KeyID(old)
	if err := e.store.KeyDelete(context.Background(), edge.KeyPrefix+kid); err != nil {
		t.Fatal(err)
	}
	if _, err := edge.Verify(old, edge.Lookup(context.Background(), e.store), time.Now()); !errors.Is(err, edge.ErrKeyNotFound) {
		t.Fatalf("edge.Verify after key removal: %v", err)
	}
	if resp := e.do(t, "GET", edge.PathPrefix+old, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("function after key removal: %d", resp.StatusCode)
	}
}

// TestEdgeConcurrentPuts: every invocation runs in its own runtime, so
// parallel uploads of different blobs do not see each other.
func TestEdgeConcurrentPuts(t *testing.T) {
	e := newEnv(t, false, nil)
	const n = 8
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		data, hx := blob(t, 256<<10+i)
		go func() {
			tok, err := edge.Sign(e.key, edge.Claims{Repo: repo, Upload: fmt.Sprintf("u-%d", i), Expires: time.Now().Add(time.Hour).Unix()})
			if err != nil {
				errs <- err
				return
			}
			resp, err := http.Post(e.srv.URL+edge.PathPrefix+tok+"?digest=sha256:"+hx, "application/octet-stream", bytes.NewReader(data))
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			req, _ := http.NewRequest("PUT", e.srv.URL+edge.PathPrefix+tok+"?digest=sha256:"+hx, bytes.NewReader(data))
			resp, err = http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != "sha256:"+hx {
				errs <- fmt.Errorf("upload %d: %d %s", i, resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
				return
			}
			errs <- nil
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	// The POSTs above went to the API (a POST on /_upload/ is not a PUT);
	// the PUTs all went to S3.
	if e.apiRec.count() != n || e.s3Rec.count() != n {
		t.Fatalf("API asked %d times, S3 %d times; want %d each", e.apiRec.count(), e.s3Rec.count(), n)
	}
}
