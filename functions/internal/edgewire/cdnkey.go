package edgewire

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// SecretGetter is the part of Secrets Manager CDNKey uses.
type SecretGetter interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// CDNKey reads the CloudFront signing key (an RSA PEM) from Secrets Manager.
func CDNKey(ctx context.Context, sm SecretGetter, secretID string) (*rsa.PrivateKey, error) {
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(secretID)})
	if err != nil {
		return nil, fmt.Errorf("cloudfront key %s: %w", secretID, err)
	}
	block, _ := pem.Decode([]byte(aws.ToString(out.SecretString)))
	if block == nil {
		return nil, fmt.Errorf("cloudfront key %s: no PEM block", secretID)
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("cloudfront key %s: %w", secretID, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("cloudfront key %s: %T, want RSA", secretID, k)
	}
	return rk, nil
}
