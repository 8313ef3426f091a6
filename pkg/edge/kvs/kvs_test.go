package kvs

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudfrontkeyvaluestore/types"

	"github.com/berth-registry/berth/pkg/edge"
)

const (
	testARN     = "arn:aws:cloudfront::123456789012:key-value-store/0a1b2c3d-test"
	wantHost    = "123456789012.cloudfront-kvs.global.api.aws"
	sigv4aAlgor = "AWS4-ECDSA-P256-SHA256"
)

// fakeKVS speaks the KeyValueStore data-plane REST/JSON API over one store:
// DescribeKeyValueStore, GetKey, PutKey, DeleteKey (both with If-Match
// against the store's ETag) and ListKeys (MaxResults/NextToken paging).
// It rejects requests that were not signed with SigV4A for the global
// endpoint the SDK derives from the ARN, which is what AWS requires.
type fakeKVS struct {
	t  *testing.T
	mu sync.Mutex
	m  map[string]string
	// version makes the ETag; beforeWrite runs after a write's If-Match
	// arrived and before it is checked (a concurrent writer).
	version     int
	beforeWrite func()
	calls       map[string]int
}

func newFake(t *testing.T) *fakeKVS {
	return &fakeKVS{t: t, m: map[string]string{}, calls: map[string]int{}}
}

func (f *fakeKVS) etag() string { return "KV" + strconv.Itoa(f.version) }

func (f *fakeKVS) fail(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("X-Amzn-ErrorType", code)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

func (f *fakeKVS) reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("ETag", f.etag())
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeKVS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Host != wantHost {
		f.fail(w, 400, "ValidationException", "host "+r.Host)
		return
	}
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, sigv4aAlgor+" ") || !strings.Contains(auth, "/cloudfront-keyvaluestore/aws4_request") ||
		r.Header.Get("X-Amz-Region-Set") != "*" {
		f.fail(w, 403, "AccessDeniedException", "want SigV4A for region set *: "+auth)
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	if len(parts) < 2 || parts[0] != "key-value-stores" {
		f.fail(w, 404, "ResourceNotFoundException", "no route "+r.URL.Path)
		return
	}
	if arn, _ := url.PathUnescape(parts[1]); arn != testARN {
		f.fail(w, 404, "ResourceNotFoundException", "no store "+arn)
		return
	}
	size := func() int {
		n := 0
		for k, v := range f.m {
			n += len(k) + len(v)
		}
		return n
	}
	switch {
	case len(parts) == 2 && r.Method == http.MethodGet:
		f.calls["describe"]++
		f.reply(w, map[string]any{"KvsARN": testARN, "ItemCount": len(f.m), "TotalSizeInBytes": size(), "Created": 1.7e9, "Status": "READY"})
	case len(parts) == 3 && parts[2] == "keys" && r.Method == http.MethodGet:
		f.calls["list"]++
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range f.m {
				if !yield(k) {
					return
				}
			}
		})
		start, _ := strconv.Atoi(r.URL.Query().Get("NextToken"))
		limit, _ := strconv.Atoi(r.URL.Query().Get("MaxResults"))
		if limit <= 0 || limit > 50 {
			f.fail(w, 400, "ValidationException", "MaxResults "+r.URL.Query().Get("MaxResults"))
			return
		}
		end := min(start+limit, len(keys))
		items := []map[string]string{}
		for _, k := range keys[start:end] {
			items = append(items, map[string]string{"Key": k, "Value": f.m[k]})
		}
		out := map[string]any{"Items": items}
		if end < len(keys) {
			out["NextToken"] = strconv.Itoa(end)
		}
		f.reply(w, out)
	case len(parts) == 4 && parts[2] == "keys":
		key, _ := url.PathUnescape(parts[3])
		if r.Method == http.MethodGet {
			f.calls["get"]++
			v, ok := f.m[key]
			if !ok {
				f.fail(w, 404, "ResourceNotFoundException", "no key "+key)
				return
			}
			f.reply(w, map[string]any{"Key": key, "Value": v, "ItemCount": len(f.m), "TotalSizeInBytes": size()})
			return
		}
		f.calls[strings.ToLower(r.Method)]++
		if f.beforeWrite != nil {
			f.beforeWrite()
		}
		if r.Header.Get("If-Match") != f.etag() {
			f.fail(w, 409, "ConflictException", "If-Match "+r.Header.Get("If-Match")+" is not "+f.etag())
			return
		}
		switch r.Method {
		case http.MethodPut:
			var body struct{ Value string }
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
				f.fail(w, 400, "ValidationException", err.Error())
				return
			}
			f.m[key] = body.Value
		case http.MethodDelete:
			if _, ok := f.m[key]; !ok {
				f.fail(w, 404, "ResourceNotFoundException", "no key "+key)
				return
			}
			delete(f.m, key)
		default:
			f.fail(w, 405, "ValidationException", r.Method)
			return
		}
		f.version++
		f.reply(w, map[string]any{"ItemCount": len(f.m), "TotalSizeInBytes": size()})
	default:
		f.fail(w, 404, "ResourceNotFoundException", "no route "+r.Method+" "+r.URL.Path)
	}
}

// newStore serves fake over TLS and returns a Store built the way the
// functions build it (NewFromConfig, endpoint resolved from the ARN): the
// HTTP client dials the fake whatever host the SDK resolved.
func newStore(t *testing.T, fake *fakeKVS) *Store {
	t.Helper()
	srv := httptest.NewTLSServer(fake)
	t.Cleanup(srv.Close)
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}
	tr.DialTLSContext = nil
	// httptest's certificate names example.com; the SDK asks for the real
	// host, which the fake checks from the Host header instead.
	tr.TLSClientConfig = tr.TLSClientConfig.Clone()
	tr.TLSClientConfig.ServerName = "example.com"
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""),
		HTTPClient:  &http.Client{Transport: tr, Timeout: 10 * time.Second},
	}
	return NewFromConfig(cfg, testARN)
}

func TestGetPutDelete(t *testing.T) {
	ctx := context.Background()
	fake := newFake(t)
	s := newStore(t, fake)

	if _, err := s.KeyGet(ctx, "upload-key-current"); !errors.Is(err, edge.ErrKeyNotFound) {
		t.Fatalf("get of an absent key: %v, want edge.ErrKeyNotFound", err)
	}
	if err := s.KeyPut(ctx, "upload-key-current", "abc"); err != nil {
		t.Fatal(err)
	}
	if err := s.KeyPut(ctx, "upload-key-current", "def"); err != nil {
		t.Fatal(err)
	}
	v, err := s.KeyGet(ctx, "upload-key-current")
	if err != nil || v != "def" {
		t.Fatalf("get: %q %v, want def", v, err)
	}
	if err := s.KeyDelete(ctx, "upload-key-current"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.KeyGet(ctx, "upload-key-current"); !errors.Is(err, edge.ErrKeyNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	// Rotation deletes keys it believes are there; a key already gone is
	// the state it wanted.
	if err := s.KeyDelete(ctx, "upload-key-current"); err != nil {
		t.Errorf("delete of an absent key: %v", err)
	}
	// Every write read the ETag first (two puts, two deletes).
	if fake.calls["describe"] != 4 || fake.calls["put"] != 2 || fake.calls["delete"] != 2 {
		t.Errorf("calls %v", fake.calls)
	}
}

func TestWriteRetriesOnceOnConflict(t *testing.T) {
	ctx := context.Background()
	fake := newFake(t)
	s := newStore(t, fake)

	// Another writer changes the store between our describe and our put,
	// once: the put is retried with the fresh ETag and lands.
	conflicts := 1
	fake.beforeWrite = func() {
		if conflicts > 0 {
			conflicts--
			fake.version++
		}
	}
	if err := s.KeyPut(ctx, "k", "v"); err != nil {
		t.Fatalf("put after one conflict: %v", err)
	}
	if fake.m["k"] != "v" || fake.calls["describe"] != 2 || fake.calls["put"] != 2 {
		t.Errorf("store %v, calls %v", fake.m, fake.calls)
	}

	// Two conflicts in a row: reported, not looped on.
	conflicts = 2
	err := s.KeyDelete(ctx, "k")
	var ce *types.ConflictException
	if !errors.As(err, &ce) {
		t.Fatalf("delete after two conflicts: %v, want a ConflictException", err)
	}
	if fake.m["k"] != "v" || fake.calls["delete"] != 2 {
		t.Errorf("store %v, calls %v", fake.m, fake.calls)
	}
}

func TestListPagesAndFilters(t *testing.T) {
	ctx := context.Background()
	fake := newFake(t)
	s := newStore(t, fake)
	want := map[string]string{}
	for i := range 120 {
		k := "upload-key-" + strconv.Itoa(i)
		fake.m[k] = "secret" + strconv.Itoa(i)
		want[k] = fake.m[k]
	}
	fake.m["other-key"] = "x"
	fake.m["upload-kez"] = "y"

	got, err := s.KeyList(ctx, edge.KeyPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d keys, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	// 122 keys at 50 a page.
	if fake.calls["list"] != 3 {
		t.Errorf("%d ListKeys calls, want 3", fake.calls["list"])
	}
}

// TestRotateAndMint runs the real rotation and keyring over the store: the
// first run creates a key and makes it current; the API side mints a token
// the verifier (same code as the CloudFront Function's contract) accepts.
func TestRotateAndMint(t *testing.T) {
	ctx := context.Background()
	fake := newFake(t)
	s := newStore(t, fake)
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)

	rep, err := edge.Rotate(ctx, s, edge.Rotation{}, now)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Added == "" || rep.Current != rep.Added {
		t.Fatalf("first rotation: %+v", rep)
	}
	if fake.m[edge.KeyCurrent] != rep.Current || fake.m[edge.KeyPrefix+rep.Current] == "" {
		t.Fatalf("store after rotation: %v", fake.m)
	}
	tok, err := edge.NewKeyring(s, 0).Token(ctx, "team/app", "u1", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c, err := edge.Verify(tok, edge.Lookup(ctx, s), now)
	if err != nil || c.Repo != "team/app" || c.Upload != "u1" {
		t.Fatalf("verify: %+v %v", c, err)
	}

	// A month later a second key is added, not yet current.
	later := now.Add(31 * 24 * time.Hour)
	rep, err = edge.Rotate(ctx, s, edge.Rotation{}, later)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Added == "" || rep.Current == rep.Added || fake.m[edge.KeyPrefix+rep.Added] == "" {
		t.Fatalf("second rotation: %+v, store %v", rep, fake.m)
	}
}
