package awsbackend_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/awsbackend"
	"github.com/berth-registry/berth/pkg/errcode"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/storage"
)

// storageFixture is a bucket and a table that exist on the emulators.
func storageFixture(t *testing.T) (aws.Config, awsbackend.Settings) {
	t.Helper()
	cfg := emulatorConfig(t)
	s := awsbackend.Settings{Bucket: testenv.Name("check"), Table: testenv.Name("check"), S3PathStyle: true, Create: true}
	if _, err := awsbackend.Open(t.Context(), cfg, s, nil); err != nil {
		t.Fatal(err)
	}
	s.Create = false
	return cfg, s
}

// noCredentials is a credentials chain that finds nothing, as on a
// laptop without AWS configuration.
var noCredentials = aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
	return aws.Credentials{}, errors.New("failed to refresh cached credentials, no EC2 IMDS role found")
})

// Check fails at start with a reason an operator can act on, for each
// way the storage can be out of reach; a working setup passes.
func TestCheck(t *testing.T) {
	cfg, good := storageFixture(t)
	secret, err := cfg.Credentials.Retrieve(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		creds aws.CredentialsProvider // nil: the emulators' own
		set   func(s *awsbackend.Settings)
		want  string // "" : Check passes
	}{
		{name: "working", want: ""},
		{name: "no credentials", creds: noCredentials, want: "no usable AWS credentials"},
		{name: "wrong secret", creds: credentials.NewStaticCredentialsProvider(secret.AccessKeyID, "not-the-secret", ""),
			want: "access denied; the credentials must be valid"},
		{name: "missing bucket", set: func(s *awsbackend.Settings) { s.Bucket = testenv.Name("missing") },
			want: "not found in " + cfg.Region},
		{name: "missing table", set: func(s *awsbackend.Settings) { s.Table = testenv.Name("missing") },
			want: "table \"missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := cfg.Copy(), good
			if tc.creds != nil {
				c.Credentials = tc.creds
			}
			if tc.set != nil {
				tc.set(&s)
			}
			be, err := awsbackend.Open(t.Context(), c, s, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = be.Check(t.Context())
			if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check: %v, want %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "UNAVAILABLE") {
				t.Errorf("start-up error carries the client-facing wrapping: %v", err)
			}
			if tc.name == "missing table" && !strings.Contains(err.Error(), "not found in "+cfg.Region) {
				t.Errorf("missing table: %v", err)
			}
		})
	}
}

// At request time a misconfiguration answers 503 UNAVAILABLE saying the
// registry cannot reach its storage, not 500 UNKNOWN, and the client
// sees neither the AWS message nor any credential.
func TestRequestsWithoutStorageAccess(t *testing.T) {
	cfg, good := storageFixture(t)
	secret, err := cfg.Credentials.Retrieve(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		creds   aws.CredentialsProvider
		set     func(s *awsbackend.Settings)
		message string
		code    string // the AWS error code in the detail, if any
	}{
		{name: "no credentials", creds: noCredentials, message: "it has no usable AWS credentials"},
		{name: "missing table", set: func(s *awsbackend.Settings) { s.Table = testenv.Name("missing") },
			message: "its bucket or table does not exist", code: "ResourceNotFoundException"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := cfg.Copy(), good
			if tc.creds != nil {
				c.Credentials = tc.creds
			}
			if tc.set != nil {
				tc.set(&s)
			}
			be, err := awsbackend.Open(t.Context(), c, s, nil)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(registry.New(registry.Config{}, be.Items, be.Blobs))
			t.Cleanup(srv.Close)
			resp, err := http.Get(srv.URL + "/v2/app/manifests/latest")
			if err != nil {
				t.Fatal(err)
			}
			var body errcode.Body
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusServiceUnavailable || len(body.Errors) != 1 {
				t.Fatalf("status %d, body %+v (%v)", resp.StatusCode, body, err)
			}
			e := body.Errors[0]
			if e.Code != errcode.Unavailable || e.Message != "the registry cannot reach its storage: "+tc.message {
				t.Errorf("error %+v", e)
			}
			detail, _ := e.Detail.(map[string]any)
			if detail["storage"] != "dynamodb" || tc.code != "" && detail["code"] != tc.code {
				t.Errorf("detail %+v", e.Detail)
			}
			raw, _ := json.Marshal(body)
			for _, leak := range []string{secret.SecretAccessKey, secret.AccessKeyID, "IMDS", "refresh"} {
				if strings.Contains(string(raw), leak) {
					t.Errorf("response carries %q: %s", leak, raw)
				}
			}
		})
	}

	// The blob driver reports the same way, and the errors still match
	// the storage sentinel callers retry on. A HEAD's 403 has no body to
	// tell a bad signature from a denied action: it reads as denied.
	c := cfg.Copy()
	c.Credentials = credentials.NewStaticCredentialsProvider(secret.AccessKeyID, "not-the-secret", "")
	be, err := awsbackend.Open(t.Context(), c, good, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := oci.FromBytes(oci.SHA256, []byte("never stored"))
	_, err = be.Blobs.BlobOpen(t.Context(), d)
	var e *errcode.Error
	if !errors.As(err, &e) || e.Code != errcode.Unavailable || !strings.Contains(e.Message, "access is denied") ||
		!errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("BlobOpen with a wrong secret: %v", err)
	}
}
