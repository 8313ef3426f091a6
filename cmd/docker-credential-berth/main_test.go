package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/berth-registry/berth/pkg/auth/stsproof"
	"github.com/berth-registry/berth/pkg/auth/stsproof/ststest"
)

// TestProtocol drives the helper as docker does, with credentials from the
// SDK's default chain (environment variables here) and STS's endpoint
// moved to an in-process STS by AWS_ENDPOINT_URL_STS.
func TestProtocol(t *testing.T) {
	key := ststest.Key{AccessKeyID: "AKIAENV", SecretAccessKey: "env-secret", SessionToken: "env-session",
		ARN: "arn:aws:sts::5:assumed-role/dev/alice", Account: "5", UserID: "AROA:alice"}
	sts := ststest.New(key)
	defer sts.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", key.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", key.SecretAccessKey)
	t.Setenv("AWS_SESSION_TOKEN", key.SessionToken)
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	t.Setenv("AWS_ENDPOINT_URL_STS", sts.URL)
	t.Setenv("BERTH_STS_AUDIENCE", "registry.example")
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	ctx := context.Background()
	call := func(action, in string) (string, error) {
		var out bytes.Buffer
		err := run(ctx, []string{action}, strings.NewReader(in), &out)
		return out.String(), err
	}
	out, err := call("get", "registry.example\n")
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ ServerURL, Username, Secret string }
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got.ServerURL != "registry.example" || got.Username != "berth" {
		t.Fatalf("%+v", got)
	}
	v, err := stsproof.NewVerifier("registry.example", stsproof.WithTestEndpoint(sts.Host(), sts.Roots()))
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(ctx, got.Secret)
	if err != nil {
		t.Fatalf("minted proof does not verify: %v", err)
	}
	if id.CanonicalARN != "arn:aws:iam::5:role/dev" {
		t.Fatalf("identity %+v", id)
	}
	if out, err := call("list", ""); err != nil || !strings.Contains(out, `"registry.example":"berth"`) {
		t.Fatalf("list: %q %v", out, err)
	}
	if _, err := call("store", `{"ServerURL":"registry.example","Username":"x","Secret":"y"}`); err != nil {
		t.Fatalf("store: %v", err)
	}
	if _, err := call("erase", "registry.example"); err != nil {
		t.Fatalf("erase: %v", err)
	}
	if out, err := call("list", ""); err != nil || strings.TrimSpace(out) != "{}" {
		t.Fatalf("list after erase: %q %v", out, err)
	}
	if _, err := call("get", ""); err == nil {
		t.Fatal("get without a server URL succeeded")
	}
	if _, err := call("bogus", ""); err == nil {
		t.Fatal("unknown action succeeded")
	}
}
