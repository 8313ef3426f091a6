package stsproof_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/berth-registry/berth/pkg/auth/stsproof"
	"github.com/berth-registry/berth/pkg/auth/stsproof/ststest"
)

var ciKey = ststest.Key{
	AccessKeyID: "ASIAFAKECI", SecretAccessKey: "ci-secret", SessionToken: "ci-session",
	ARN: "arn:aws:sts::111122223333:assumed-role/ci-push/run-42", Account: "111122223333", UserID: "AROAFAKE:run-42",
}

func setup(t *testing.T, opts ...stsproof.Option) (*ststest.Server, *stsproof.Verifier) {
	t.Helper()
	srv := ststest.New(ciKey)
	t.Cleanup(srv.Close)
	v, err := stsproof.NewVerifier("registry.example", append([]stsproof.Option{stsproof.WithTestEndpoint(srv.Host(), srv.Roots())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return srv, v
}

func presign(t *testing.T, srv *ststest.Server, audience string) string {
	t.Helper()
	p, err := stsproof.Presign(context.Background(), srv.AWSConfig(ciKey), audience)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVerifyValid(t *testing.T) {
	srv, v := setup(t)
	proof := presign(t, srv, "registry.example")
	if !strings.HasPrefix(proof, stsproof.Prefix) {
		t.Fatalf("proof %q lacks prefix", proof[:20])
	}
	id, err := v.Verify(context.Background(), proof)
	if err != nil {
		t.Fatal(err)
	}
	if id.CanonicalARN != "arn:aws:iam::111122223333:role/ci-push" || id.ARN != ciKey.ARN || id.Account != "111122223333" || id.AccessKeyID != "ASIAFAKECI" {
		t.Fatalf("identity %+v", id)
	}
}

// mutate decodes a proof, lets fn rewrite the URL and re-encodes it.
func mutate(t *testing.T, proof string, fn func(u *url.URL, q url.Values) string) string {
	t.Helper()
	raw, err := stsproof.Decode(proof)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(raw)
	return stsproof.Encode(fn(u, u.Query()))
}

func TestVerifyRejects(t *testing.T) {
	srv, v := setup(t)
	good := presign(t, srv, "registry.example")
	unsigned := func() string { // presigned without the audience header
		c := sts.NewPresignClient(sts.NewFromConfig(srv.AWSConfig(ciKey)))
		r, err := c.PresignGetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
		if err != nil {
			t.Fatal(err)
		}
		return stsproof.Encode(r.URL + "&X-Amz-Expires=900")
	}()
	cases := []struct {
		name  string
		proof string
		want  error
	}{
		{"not a proof", "hunter2", stsproof.ErrFormat},
		{"bad base64", stsproof.Prefix + "!!!", stsproof.ErrFormat},
		{"http scheme", mutate(t, good, func(u *url.URL, _ url.Values) string { u.Scheme = "http"; return u.String() }), stsproof.ErrFormat},
		{"host not allowed", mutate(t, good, func(u *url.URL, _ url.Values) string { u.Host = "evil.example"; return u.String() }), stsproof.ErrFormat},
		{"host lookalike", mutate(t, good, func(u *url.URL, _ url.Values) string { u.Host = "sts.amazonaws.com.evil.example"; return u.String() }), stsproof.ErrFormat},
		{"userinfo", mutate(t, good, func(u *url.URL, _ url.Values) string { u.User = url.User("x"); return u.String() }), stsproof.ErrFormat},
		{"path", mutate(t, good, func(u *url.URL, _ url.Values) string { u.Path = "/x"; return u.String() }), stsproof.ErrFormat},
		{"duplicated parameter", mutate(t, good, func(u *url.URL, _ url.Values) string { return u.String() + "&Action=GetCallerIdentity" }), stsproof.ErrFormat},
		{"duplicated parameter other case", mutate(t, good, func(u *url.URL, _ url.Values) string { return u.String() + "&action=GetCallerIdentity" }), stsproof.ErrFormat},
		{"extra parameter", mutate(t, good, func(u *url.URL, _ url.Values) string { return u.String() + "&RoleArn=x" }), stsproof.ErrFormat},
		{"different action", mutate(t, good, func(u *url.URL, q url.Values) string {
			q.Set("Action", "AssumeRole")
			u.RawQuery = q.Encode()
			return u.String()
		}), stsproof.ErrFormat},
		{"audience header unsigned", unsigned, stsproof.ErrFormat},
		{"expires too long", mutate(t, good, func(u *url.URL, q url.Values) string {
			q.Set("X-Amz-Expires", "3600")
			u.RawQuery = q.Encode()
			return u.String()
		}), stsproof.ErrFormat},
		{"no date", mutate(t, good, func(u *url.URL, q url.Values) string {
			q.Del("X-Amz-Date")
			u.RawQuery = q.Encode()
			return u.String()
		}), stsproof.ErrFormat},
		{"wrong audience", presign(t, srv, "other-registry.example"), stsproof.ErrRejected},
		{"tampered signature", mutate(t, good, func(u *url.URL, q url.Values) string {
			q.Set("X-Amz-Signature", strings.Repeat("0", 64))
			u.RawQuery = q.Encode()
			return u.String()
		}), stsproof.ErrRejected},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := srv.Calls()
			_, err := v.Verify(context.Background(), c.proof)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if errors.Is(err, stsproof.ErrFormat) && srv.Calls() != before {
				t.Fatal("a proof failing local rules reached STS")
			}
		})
	}
}

func TestVerifyTooOld(t *testing.T) {
	srv, _ := setup(t)
	proof := presign(t, srv, "registry.example")
	_, late := setup(t, stsproof.WithClock(func() time.Time { return time.Now().Add(16 * time.Minute) }))
	// late trusts a different fake; the age rule fires before any call.
	if _, err := late.Verify(context.Background(), proof); !errors.Is(err, stsproof.ErrFormat) {
		t.Fatalf("err = %v, want ErrFormat", err)
	}
}

func TestDefaultHostsRefuseTestServer(t *testing.T) {
	srv := ststest.New(ciKey)
	defer srv.Close()
	v, err := stsproof.NewVerifier("registry.example")
	if err != nil {
		t.Fatal(err)
	}
	proof := presign(t, srv, "registry.example")
	if _, err := v.Verify(context.Background(), proof); !errors.Is(err, stsproof.ErrFormat) || srv.Calls() != 0 {
		t.Fatalf("err = %v, calls = %d", err, srv.Calls())
	}
	for _, h := range []string{"sts.amazonaws.com", "sts.eu-west-1.amazonaws.com", "sts.cn-north-1.amazonaws.com.cn"} {
		p := mutate(t, proof, func(u *url.URL, _ url.Values) string { u.Host = h; return u.String() })
		if _, err := v.Check(p); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
}

func TestCanonicalARN(t *testing.T) {
	for in, want := range map[string]string{
		"arn:aws:sts::1:assumed-role/ci/sess":          "arn:aws:iam::1:role/ci",
		"arn:aws-cn:sts::1:assumed-role/ci/a@b.c":      "arn:aws-cn:iam::1:role/ci",
		"arn:aws:iam::1:user/path/alice":               "arn:aws:iam::1:user/path/alice",
		"arn:aws:iam::1:root":                          "arn:aws:iam::1:root",
		"arn:aws:sts::1:federated-user/bob":            "arn:aws:sts::1:federated-user/bob",
		"arn:aws:sts::1:assumed-role/ci":               "",
		"arn:aws:s3:::bucket":                          "",
		"not-an-arn":                                   "",
		"arn:aws:sts::1:assumed-role/AWSReserved/x/y/": "arn:aws:iam::1:role/AWSReserved",
	} {
		got, err := stsproof.CanonicalARN(in)
		if want == "" {
			if err == nil {
				t.Errorf("%s: got %s, want error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%s: got %q, %v; want %q", in, got, err, want)
		}
	}
}

func FuzzCheck(f *testing.F) {
	srv := ststest.New(ciKey)
	defer srv.Close()
	p, err := stsproof.Presign(context.Background(), srv.AWSConfig(ciKey), "registry.example")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(p)
	f.Add(stsproof.Encode("https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15"))
	f.Add(stsproof.Encode("https://sts.amazonaws.com/?Action=GetCallerIdentity&action=x"))
	f.Add(stsproof.Prefix)
	f.Add("berth-sts-v1.%%%")
	v, err := stsproof.NewVerifier("registry.example")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, proof string) {
		u, err := v.Check(proof)
		if err != nil {
			if !errors.Is(err, stsproof.ErrFormat) {
				t.Fatalf("Check error %v does not wrap ErrFormat", err)
			}
			return
		}
		if u.Scheme != "https" || u.Path != "/" || !strings.HasPrefix(u.Host, "sts.") || u.Query().Get("Action") != "GetCallerIdentity" {
			t.Fatalf("accepted %s", u)
		}
	})
}

// TestThrottlingIsUnavailable: STS throttling (400 Throttling, or 429) and
// server errors say nothing about the proof, so they are ErrUnavailable
// (the token endpoint answers 503 + Retry-After), never ErrRejected (a
// failed login, 401) (issue 11, point 9).
func TestThrottlingIsUnavailable(t *testing.T) {
	srv, v := setup(t)
	proof := presign(t, srv, "registry.example")
	for _, c := range []struct {
		status int
		code   string
	}{
		{400, "Throttling"},
		{400, "ThrottlingException"},
		{400, "RequestLimitExceeded"},
		{429, "TooManyRequestsException"},
		{500, "InternalFailure"},
		{503, "ServiceUnavailable"},
	} {
		srv.Fail(c.status, c.code)
		_, err := v.Verify(context.Background(), proof)
		if !errors.Is(err, stsproof.ErrUnavailable) || errors.Is(err, stsproof.ErrRejected) {
			t.Errorf("%d %s: err = %v, want ErrUnavailable only", c.status, c.code, err)
		}
		if c.status < 500 && !errors.Is(err, stsproof.ErrThrottled) {
			t.Errorf("%d %s: err = %v, want ErrThrottled", c.status, c.code, err)
		}
	}
	// Refusals stay refusals.
	srv.Fail(403, "SignatureDoesNotMatch")
	if _, err := v.Verify(context.Background(), proof); !errors.Is(err, stsproof.ErrRejected) {
		t.Fatalf("signature refusal: %v", err)
	}
	srv.Fail(0, "")
	if _, err := v.Verify(context.Background(), proof); err != nil {
		t.Fatal(err)
	}
}
