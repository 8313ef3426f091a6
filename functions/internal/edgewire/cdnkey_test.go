package edgewire

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// secrets is Secrets Manager holding one secret string per id.
type secrets map[string]string

func (s secrets) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	v, ok := s[aws.ToString(in.SecretId)]
	if !ok {
		return nil, errors.New("ResourceNotFoundException")
	}
	return &secretsmanager.GetSecretValueOutput{SecretString: aws.String(v)}, nil
}

func TestCDNKey(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(rk)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec8, _ := x509.MarshalPKCS8PrivateKey(ek)
	sm := secrets{
		"pkcs1": string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)})),
		"pkcs8": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})),
		"ec":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ec8})),
		"empty": "replace me",
	}
	ctx := context.Background()
	for _, id := range []string{"pkcs1", "pkcs8"} {
		k, err := CDNKey(ctx, sm, id)
		if err != nil || !k.Equal(rk) {
			t.Errorf("%s: %v", id, err)
		}
	}
	for id, want := range map[string]string{"ec": "want RSA", "empty": "no PEM block", "missing": "ResourceNotFound"} {
		if _, err := CDNKey(ctx, sm, id); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), id) {
			t.Errorf("%s: %v, want an error naming the secret and %q", id, err, want)
		}
	}
}
