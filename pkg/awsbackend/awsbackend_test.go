package awsbackend_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/awsbackend"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

func TestValidate(t *testing.T) {
	base := awsbackend.Settings{Bucket: "b", Table: "t"}
	cf := func(url, kid, secret, file string) awsbackend.Settings {
		s := base
		s.CloudFront = awsbackend.CloudFront{URL: url, KeyPairID: kid, KeySecret: secret, KeyFile: file}
		return s
	}
	for _, tc := range []struct {
		name string
		s    awsbackend.Settings
		want string // "" : valid
	}{
		{"plain", base, ""},
		{"cloudfront from a secret", cf("https://cdn", "K1", "arn:aws:secretsmanager:eu-west-1:1:secret:k", ""), ""},
		{"cloudfront from a file", cf("https://cdn", "K1", "", "key.pem"), ""},
		{"no bucket, no table", awsbackend.Settings{}, "no bucket\nno table"},
		{"url alone", cf("https://cdn", "", "", ""), "go together"},
		{"no key", cf("https://cdn", "K1", "", ""), "go together"},
		{"key alone", cf("", "", "s", ""), "go together"},
		{"two keys", cf("https://cdn", "K1", "s", "key.pem"), "go together"},
	} {
		err := tc.s.Validate()
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// secrets is Secrets Manager holding one secret string per id.
type secrets map[string]string

func (s secrets) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	v, ok := s[aws.ToString(in.SecretId)]
	if !ok {
		return nil, errors.New("ResourceNotFoundException")
	}
	return &secretsmanager.GetSecretValueOutput{SecretString: aws.String(v)}, nil
}

func TestLoadCloudFrontKey(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(rk)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec8, _ := x509.MarshalPKCS8PrivateKey(ek)
	pkcs1PEM := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}))
	sm := secrets{
		"pkcs1": pkcs1PEM,
		"pkcs8": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})),
		"ec":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ec8})),
		"empty": "replace me",
	}
	ctx := context.Background()
	for _, id := range []string{"pkcs1", "pkcs8"} {
		k, err := awsbackend.LoadCloudFrontKey(ctx, awsbackend.CloudFront{KeySecret: id}, sm)
		if err != nil || !k.Equal(rk) {
			t.Errorf("secret %s: %v", id, err)
		}
	}
	for id, want := range map[string]string{"ec": "not an RSA key", "empty": "no PEM block", "missing": "ResourceNotFound"} {
		if _, err := awsbackend.LoadCloudFrontKey(ctx, awsbackend.CloudFront{KeySecret: id}, sm); err == nil ||
			!strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), id) {
			t.Errorf("secret %s: %v, want an error naming the secret and %q", id, err, want)
		}
	}
	file := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(file, []byte(pkcs1PEM), 0o600); err != nil {
		t.Fatal(err)
	}
	if k, err := awsbackend.LoadCloudFrontKey(ctx, awsbackend.CloudFront{KeyFile: file}, nil); err != nil || !k.Equal(rk) {
		t.Errorf("file: %v", err)
	}
	if _, err := awsbackend.LoadCloudFrontKey(ctx, awsbackend.CloudFront{KeyFile: file + ".missing"}, nil); err == nil {
		t.Error("a missing key file loaded")
	}
	if _, err := awsbackend.LoadCloudFrontKey(ctx, awsbackend.CloudFront{KeySecret: "pkcs1"}, nil); err == nil {
		t.Error("a secret loaded without a Secrets Manager client")
	}
}

// emulatorConfig is the AWS configuration chain pointed at the emulators,
// as berth serve and the functions load it (AWS_ENDPOINT_URL_*).
func emulatorConfig(t *testing.T) aws.Config {
	t.Helper()
	testenv.UseEmulators(t)
	cfg, err := config.LoadDefaultConfig(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Open creates the bucket and table on request and returns drivers that
// work against them; NoRedirect turns the redirect capability off.
func TestOpenOnEmulators(t *testing.T) {
	cfg := emulatorConfig(t)
	ctx := t.Context()
	s := awsbackend.Settings{Bucket: testenv.Name("awsbe"), Table: testenv.Name("awsbe"), S3PathStyle: true, Create: true}
	be, err := awsbackend.Open(ctx, cfg, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("opened once, used everywhere")
	d := oci.FromBytes(oci.SHA256, body)
	if err := be.Blobs.BlobPut(ctx, d, int64(len(body)), bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	red, ok := be.Blobs.(storage.BlobRedirector)
	if !ok {
		t.Fatalf("%T cannot redirect", be.Blobs)
	}
	url, err := red.BlobURL(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, body) {
		t.Fatalf("presigned GET: %d %q", resp.StatusCode, got)
	}
	if err := be.Items.ItemPut(ctx, storage.Item{PK: "p", SK: "s", Data: []byte("x")}, storage.IfNone); err != nil {
		t.Fatal(err)
	}
	if it, err := be.Items.ItemGet(ctx, "p", "s"); err != nil || string(it.Data) != "x" {
		t.Fatalf("item %+v, %v", it, err)
	}

	// Opening again (a cold start) finds what exists; without Create
	// nothing is created, and the same data is there.
	s.Create, s.NoRedirect = false, true
	be2, err := awsbackend.Open(ctx, cfg, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := be2.Blobs.(storage.BlobRedirector); ok {
		t.Errorf("NoRedirect: %T still redirects", be2.Blobs)
	}
	rc, err := be2.Blobs.BlobOpen(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, body) {
		t.Errorf("blob through the second open: %q", got)
	}

	// Settings that cannot work fail before any client is built.
	if _, err := awsbackend.Open(ctx, cfg, awsbackend.Settings{Bucket: "b"}, nil); err == nil || !strings.Contains(err.Error(), "no table") {
		t.Errorf("no table: %v", err)
	}
	noRegion := cfg.Copy()
	noRegion.Region = ""
	if _, err := awsbackend.Open(ctx, noRegion, s, nil); err == nil || !strings.Contains(err.Error(), "region") {
		t.Errorf("no region: %v", err)
	}
}
