package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/audit"
	"github.com/berth-registry/berth/pkg/auth"
	"github.com/berth-registry/berth/pkg/auth/oidc"
	"github.com/berth-registry/berth/pkg/auth/oidc/oidctest"
	"github.com/berth-registry/berth/pkg/auth/stsproof"
	"github.com/berth-registry/berth/pkg/auth/stsproof/ststest"
	"github.com/berth-registry/berth/pkg/driver/dynamo"
	"github.com/berth-registry/berth/pkg/driver/s3blob"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/storage"
)

const service = "registry.test"

var (
	ciKey = ststest.Key{AccessKeyID: "ASIACIAUDIT", SecretAccessKey: "ci-secret-audit", SessionToken: "ci-session-token-audit",
		ARN: "arn:aws:sts::111122223333:assumed-role/ci-push/job-7", Account: "111122223333", UserID: "AROACI:job-7"}
	readerKey = ststest.Key{AccessKeyID: "AKIAREADERAUDIT", SecretAccessKey: "reader-secret-audit",
		ARN: "arn:aws:iam::111122223333:user/reader", Account: "111122223333", UserID: "AIDAREADER"}
)

const policyYAML = `
version: "1"
rules:
  - repositories: ["team/**"]
    principals: [{iam: "arn:aws:iam::111122223333:role/ci-*"}]
    actions: [pull, push, delete]
  - repositories: ["team/**"]
    principals:
      - iam: "arn:aws:iam::111122223333:user/reader"
      - oidc: {issuer: ISSUER, claims: {repository: "org/team-app"}}
    actions: [pull]
`

// syncBuffer is the audit sink: the registry and token servers write to it
// from their own goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is the registry with token auth, wired as berth serve and the
// Lambda functions wire it: audit middleware around the token guard
// around the registry, and around the token endpoint.
type env struct {
	t     *testing.T
	sts   *ststest.Server
	oidc  *oidctest.Issuer
	srv   *httptest.Server
	audit *syncBuffer
}

func newEnv(t *testing.T, items storage.Items, blobs storage.Blobs) *env {
	t.Helper()
	e := &env{t: t, sts: ststest.New(ciKey, readerKey), oidc: oidctest.New(), audit: &syncBuffer{}}
	t.Cleanup(e.sts.Close)
	t.Cleanup(e.oidc.Close)
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(strings.ReplaceAll(policyYAML, "ISSUER", e.oidc.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	setup, err := auth.NewLocal(context.Background(), auth.LocalConfig{
		PolicyFile: policyFile, KeyFile: filepath.Join(dir, "token.pem"), Service: service,
		OIDCIssuers: []oidc.IssuerConfig{{Issuer: e.oidc.URL, Audience: service}},
		STSOptions:  []stsproof.Option{stsproof.WithTestEndpoint(e.sts.Host(), e.sts.Roots())},
		OIDCOptions: []oidc.Option{oidc.WithHTTPClient(e.oidc.Client())},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/token", setup.TokenHandler)
	mux.Handle("/", setup.Middleware(registry.New(registry.Config{}, items, blobs)))
	e.srv = httptest.NewServer(audit.Middleware(audit.Config{Log: audit.NewLogger(e.audit)}, mux))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) proof(k ststest.Key) string {
	e.t.Helper()
	p, err := stsproof.Presign(context.Background(), e.sts.AWSConfig(k), service)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

type answer struct {
	status    int
	header    http.Header
	body      []byte
	requestID string
}

// do sends a request; every request carries the same user agent.
func (e *env) do(method, path string, body []byte, hdr map[string]string) answer {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("User-Agent", "audit-test/1.0")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, b, resp.Header.Get(audit.RequestIDHeader)}
}

// token asks for scope with password as the Basic password.
func (e *env) token(password, scope string) (answer, string) {
	e.t.Helper()
	q := url.Values{"service": {service}, "scope": {scope}}
	a := e.do("GET", "/token?"+q.Encode(), nil, map[string]string{"Authorization": basic(password)})
	var tr struct {
		Token string `json:"token"`
	}
	_ = json.Unmarshal(a.body, &tr)
	return a, tr.Token
}

func basic(password string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth("berth", password)
	return req.Header.Get("Authorization")
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// records returns the audit records written so far, by request id.
func (e *env) records() map[string]map[string]any {
	e.t.Helper()
	out := map[string]map[string]any{}
	sc := bufio.NewScanner(strings.NewReader(e.audit.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			e.t.Fatalf("audit line is not JSON: %q", sc.Text())
		}
		id, _ := m["requestId"].(string)
		if _, dup := out[id]; dup || id == "" {
			e.t.Fatalf("request id %q missing or repeated", id)
		}
		out[id] = m
	}
	return out
}

// expect checks the record of a: the fields given, and that the fields
// every record has are there. The time, duration and source port vary.
func (e *env) expect(a answer, want map[string]any) {
	e.t.Helper()
	got, ok := e.records()[a.requestID]
	if !ok {
		e.t.Fatalf("no audit record for request %q", a.requestID)
	}
	for _, k := range []string{"time", "durationMs"} {
		if _, ok := got[k]; !ok {
			e.t.Errorf("record lacks %s: %v", k, got)
		}
		delete(got, k)
	}
	full := map[string]any{
		"level": "INFO", "msg": "audit", "log": "audit", "requestId": a.requestID,
		"sourceIp": "127.0.0.1", "userAgent": "audit-test/1.0",
		"repository": "", "reference": "", "digest": "", "status": float64(a.status),
	}
	for k, v := range want {
		full[k] = v
	}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(full)
	if !bytes.Equal(gj, wj) {
		e.t.Errorf("audit record\n got %s\nwant %s", gj, wj)
	}
}

type image struct {
	config, layer, manifest []byte
	digest                  oci.Digest
}

func newImage(t *testing.T, label string) image {
	img := image{config: []byte(`{"architecture":"amd64","os":"linux","label":"` + label + `"}`),
		layer: []byte("layer bytes of " + label)}
	desc := func(mt string, b []byte) string {
		return fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d}`, mt, oci.FromBytes(oci.SHA256, b), len(b))
	}
	img.manifest = []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":` +
		desc("application/vnd.oci.image.config.v1+json", img.config) + `,"layers":[` +
		desc("application/vnd.oci.image.layer.v1.tar+gzip", img.layer) + `]}`)
	img.digest = oci.FromBytes(oci.SHA256, img.manifest)
	return img
}

// pushBlob uploads b in a POST and a PUT, checking both answered.
func (e *env) pushBlob(repo, tok string, b []byte) {
	e.t.Helper()
	a := e.do("POST", "/v2/"+repo+"/blobs/uploads/", nil, bearer(tok))
	if a.status != http.StatusAccepted {
		e.t.Fatalf("POST upload: %d %s", a.status, a.body)
	}
	loc := a.header.Get("Location")
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	if a := e.do("PUT", loc+sep+"digest="+string(oci.FromBytes(oci.SHA256, b)), b, bearer(tok)); a.status != http.StatusCreated {
		e.t.Fatalf("PUT upload: %d %s", a.status, a.body)
	}
}

const manifestType = "application/vnd.oci.image.manifest.v1+json"

// testAudit drives every audited operation and checks each record.
func testAudit(t *testing.T, items storage.Items, blobs storage.Blobs) {
	e := newEnv(t, items, blobs)
	ciProof := e.proof(ciKey)
	oidcToken := e.oidc.Sign(e.oidc.GitHubClaims(service, "org/team-app", "refs/heads/main"), false)
	img := newImage(t, "one")
	ts := "repository:team/app:pull,push,delete"

	// Token grant to an IAM role; a refused credential.
	a, ciTok := e.token(ciProof, ts)
	if a.status != 200 || ciTok == "" {
		t.Fatalf("CI token: %d %s", a.status, a.body)
	}
	e.expect(a, map[string]any{"principal": ciKey.ARN, "action": "token-grant", "resource": "token", "method": "GET",
		"result": "SUCCESS", "scopes": []any{"repository:team/app:pull,push,delete"}})
	a, _ = e.token("hunter2", ts)
	e.expect(a, map[string]any{"principal": "anonymous", "action": "token-grant", "resource": "token", "method": "GET",
		"result": "DENIED", "reason": "credential not verified"})
	// An OIDC identity's grant names issuer#subject; it may only pull.
	a, readTok := e.token(oidcToken, ts)
	if a.status != 200 {
		t.Fatalf("OIDC token: %d %s", a.status, a.body)
	}
	e.expect(a, map[string]any{"principal": e.oidc.URL + "#repo:org/team-app:ref:refs/heads/main", "action": "token-grant",
		"resource": "token", "method": "GET", "result": "SUCCESS", "scopes": []any{"repository:team/app:pull"}})

	// Push: blobs, then the manifest by tag.
	e.pushBlob("team/app", ciTok, img.config)
	e.pushBlob("team/app", ciTok, img.layer)
	a = e.do("PUT", "/v2/team/app/manifests/v1", img.manifest, map[string]string{"Authorization": "Bearer " + ciTok, "Content-Type": manifestType})
	if a.status != 201 {
		t.Fatalf("manifest PUT: %d %s", a.status, a.body)
	}
	e.expect(a, map[string]any{"principal": ciKey.ARN, "action": "push", "resource": "manifest", "repository": "team/app",
		"reference": "v1", "digest": string(img.digest), "method": "PUT", "result": "SUCCESS"})

	// A failed push: the manifest names a blob nobody uploaded.
	bad := newImage(t, "missing")
	a = e.do("PUT", "/v2/team/app/manifests/broken", bad.manifest, map[string]string{"Authorization": "Bearer " + ciTok, "Content-Type": manifestType})
	if a.status != 400 {
		t.Fatalf("manifest PUT with a missing blob: %d %s", a.status, a.body)
	}
	e.expect(a, map[string]any{"principal": ciKey.ARN, "action": "push", "resource": "manifest", "repository": "team/app",
		"reference": "broken", "method": "PUT", "result": "FAILURE"})

	// A denied push: the OIDC identity may only pull.
	a = e.do("PUT", "/v2/team/app/manifests/v2", img.manifest, map[string]string{"Authorization": "Bearer " + readTok, "Content-Type": manifestType})
	if a.status != 401 {
		t.Fatalf("denied push: %d", a.status)
	}
	e.expect(a, map[string]any{"principal": e.oidc.URL + "#repo:org/team-app:ref:refs/heads/main", "action": "push",
		"resource": "manifest", "repository": "team/app", "reference": "v2", "method": "PUT", "result": "DENIED",
		"reason": "insufficient scope"})
	// No token at all.
	a = e.do("GET", "/v2/team/app/manifests/v1", nil, nil)
	e.expect(a, map[string]any{"principal": "anonymous", "action": "pull", "resource": "manifest", "repository": "team/app",
		"reference": "v1", "method": "GET", "result": "DENIED", "reason": "no token"})

	// Pull: manifest by tag, then a blob.
	a = e.do("GET", "/v2/team/app/manifests/v1", nil, map[string]string{"Authorization": "Bearer " + readTok, "Accept": manifestType})
	if a.status != 200 {
		t.Fatalf("pull: %d", a.status)
	}
	e.expect(a, map[string]any{"principal": e.oidc.URL + "#repo:org/team-app:ref:refs/heads/main", "action": "pull",
		"resource": "manifest", "repository": "team/app", "reference": "v1", "digest": string(img.digest), "method": "GET", "result": "SUCCESS"})
	layer := oci.FromBytes(oci.SHA256, img.layer)
	a = e.do("GET", "/v2/team/app/blobs/"+string(layer), nil, bearer(readTok))
	if a.status != 200 && a.status != 307 {
		t.Fatalf("blob pull: %d", a.status)
	}
	e.expect(a, map[string]any{"principal": e.oidc.URL + "#repo:org/team-app:ref:refs/heads/main", "action": "pull",
		"resource": "blob", "repository": "team/app", "digest": string(layer), "method": "GET", "result": "SUCCESS"})
	presigned := a.header.Get("Location") // on S3: a presigned URL

	// Tag delete, then manifest delete.
	a = e.do("DELETE", "/v2/team/app/manifests/v1", nil, bearer(ciTok))
	if a.status != 202 {
		t.Fatalf("tag delete: %d %s", a.status, a.body)
	}
	e.expect(a, map[string]any{"principal": ciKey.ARN, "action": "delete", "resource": "manifest", "repository": "team/app",
		"reference": "v1", "method": "DELETE", "result": "SUCCESS"})
	a = e.do("DELETE", "/v2/team/app/manifests/"+string(img.digest), nil, bearer(ciTok))
	if a.status != 202 {
		t.Fatalf("manifest delete: %d %s", a.status, a.body)
	}
	e.expect(a, map[string]any{"principal": ciKey.ARN, "action": "delete", "resource": "manifest", "repository": "team/app",
		"reference": string(img.digest), "digest": string(img.digest), "method": "DELETE", "result": "SUCCESS"})

	// A request carrying every kind of secret at once: the records hold none.
	sigQuery := "X-Amz-Signature=" + strings.Repeat("5e", 32) + "&X-Amz-Security-Token=sessiontokensecret&token=edgeuploadsecret"
	a = e.do("GET", "/v2/team/app/blobs/"+string(layer)+"?"+sigQuery, nil, map[string]string{
		"Authorization": "Bearer " + ciTok, "Cookie": "session=cookiesecret", "X-Amz-Security-Token": "headersessionsecret"})
	e.do("POST", "/token", []byte(url.Values{"grant_type": {"password"}, "password": {ciProof}, "service": {service}}.Encode()),
		map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	e.do("POST", "/token", []byte(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {oidcToken}, "service": {service}}.Encode()),
		map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	logs := e.audit.String()
	secrets := []string{ciTok, readTok, ciProof, ciProof[len(stsproof.Prefix):][:40], oidcToken, "hunter2", basic("hunter2"),
		ciKey.SecretAccessKey, ciKey.SessionToken, strings.Repeat("5e", 32), "sessiontokensecret", "edgeuploadsecret",
		"cookiesecret", "headersessionsecret", "X-Amz-Signature"}
	if presigned != "" {
		u, _ := url.Parse(presigned)
		secrets = append(secrets, u.RawQuery, u.Query().Get("X-Amz-Signature"))
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("the audit trail contains a secret: %.24q…", s)
		}
	}
	if n := len(e.records()); n != 18 {
		t.Errorf("%d records, want 18: one per request", n)
	}
}

func TestAuditEmbedded(t *testing.T) {
	st := testenv.NewEmbedded(t)
	testAudit(t, st.Items, st.Blobs)
}

// TestAuditAWS runs the same operations on DynamoDB Local and versitygw,
// with blob GETs redirected to presigned S3 URLs (which must not reach the
// records).
func TestAuditAWS(t *testing.T) {
	ddb := testenv.DynamoDB(t)
	s3c, presign := testenv.S3(t)
	table := testenv.FreshTable(t, ddb)
	bucket := testenv.FreshBucket(t, s3c)
	testAudit(t, dynamo.New(ddb, table), s3blob.New(s3c, presign, bucket))
}

func TestTrustedHeader(t *testing.T) {
	ip := audit.TrustedHeader("X-Forwarded-For")
	r := httptest.NewRequest("GET", "/v2/", nil)
	r.RemoteAddr = "10.0.0.9:5555"
	if got := ip(r); got != "10.0.0.9" {
		t.Errorf("no header: %q", got)
	}
	// The proxy appended the last entry; earlier ones came from the client.
	r.Header.Set("X-Forwarded-For", "6.6.6.6, 203.0.113.7")
	if got := ip(r); got != "203.0.113.7" {
		t.Errorf("header: %q", got)
	}
}

// A handler that never writes is a 200, and the record still appears.
func TestRecordWithoutBody(t *testing.T) {
	var buf bytes.Buffer
	h := audit.Middleware(audit.Config{Log: audit.NewLogger(&buf), RequestID: func(*http.Request) string { return "apigw-id-1" }},
		http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/v2/_catalog", nil))
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m["requestId"] != "apigw-id-1" || m["action"] != "list" || m["status"] != float64(200) || m["result"] != "SUCCESS" ||
		w.Header().Get(audit.RequestIDHeader) != "apigw-id-1" {
		t.Fatalf("record %v, header %q", m, w.Header().Get(audit.RequestIDHeader))
	}
}

// BenchmarkMiddleware is the per-request cost of an audit record (JSON
// encoding included) on a manifest GET, against the bare handler.
func BenchmarkMiddleware(b *testing.B) {
	nop := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		audit.SetPrincipal(r.Context(), "arn:aws:sts::111122223333:assumed-role/ci-push/job-7")
		w.WriteHeader(http.StatusOK)
	})
	req := httptest.NewRequest("GET", "/v2/team/app/manifests/v1", nil)
	req.Header.Set("User-Agent", "docker/29.0.1")
	w := httptest.NewRecorder()
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			nop.ServeHTTP(w, req)
		}
	})
	h := audit.Middleware(audit.Config{Log: audit.NewLogger(io.Discard), RequestID: func(*http.Request) string { return "Vx3eJgXxoAMEb5w=" }}, nop)
	b.Run("audited", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h.ServeHTTP(w, req)
		}
	})
}
