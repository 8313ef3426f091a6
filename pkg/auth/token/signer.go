package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// LocalSigner signs with an in-memory ECDSA P-256 key.
type LocalSigner struct {
	key *ecdsa.PrivateKey
	kid string
}

var _ Signer = (*LocalSigner)(nil)

// NewLocalSigner wraps a P-256 private key.
func NewLocalSigner(key *ecdsa.PrivateKey) (*LocalSigner, error) {
	if key.Curve != elliptic.P256() {
		return nil, errors.New("token: key must be P-256")
	}
	kid, err := KeyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	return &LocalSigner{key: key, kid: kid}, nil
}

// LoadOrCreateKeyFile reads a PEM (PKCS#8 or SEC 1) P-256 key from path,
// or creates one with mode 0600 (and its directory with 0700) when path does
// not exist. A key readable by group or others is refused.
func LoadOrCreateKeyFile(path string) (*LocalSigner, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createKeyFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("token: read key: %w", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("token: stat key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("token: key file %s has mode %v; want 0600", path, st.Mode().Perm())
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("token: %s holds no PEM block", path)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		err = fmt.Errorf("unexpected PEM type %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("token: parse key %s: %w", path, err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("token: %s is not an ECDSA key", path)
	}
	return NewLocalSigner(ec)
}

func createKeyFile(path string) (*LocalSigner, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("token: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("token: marshal key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("token: key directory: %w", err)
	}
	// O_EXCL: when two processes race, one creates and the other reads.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return LoadOrCreateKeyFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("token: create key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, fmt.Errorf("token: write key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("token: write key: %w", err)
	}
	return NewLocalSigner(key)
}

// KeyID implements Signer.
func (s *LocalSigner) KeyID() string { return s.kid }

// PublicKey implements Signer.
func (s *LocalSigner) PublicKey() *ecdsa.PublicKey { return &s.key.PublicKey }

// Sign implements Signer.
func (s *LocalSigner) Sign(_ context.Context, digest []byte) ([]byte, error) {
	r, sv, err := ecdsa.Sign(rand.Reader, s.key, digest)
	if err != nil {
		return nil, fmt.Errorf("token: sign: %w", err)
	}
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	sv.FillBytes(out[32:])
	return out, nil
}

// KMSAPI is the part of the KMS client the KMS signer uses.
type KMSAPI interface {
	Sign(ctx context.Context, in *kms.SignInput, optFns ...func(*kms.Options)) (*kms.SignOutput, error)
	GetPublicKey(ctx context.Context, in *kms.GetPublicKeyInput, optFns ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error)
}

// KMSSigner signs with an AWS KMS asymmetric key (key spec ECC_NIST_P256,
// usage SIGN_VERIFY). The public key is fetched once, at construction.
type KMSSigner struct {
	client KMSAPI
	keyID  string
	pub    *ecdsa.PublicKey
	kid    string
}

var _ Signer = (*KMSSigner)(nil)

// NewKMSSigner fetches keyID's public key and returns a signer.
func NewKMSSigner(ctx context.Context, client KMSAPI, keyID string) (*KMSSigner, error) {
	out, err := client.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(keyID)})
	if err != nil {
		return nil, fmt.Errorf("token: kms GetPublicKey %s: %w", keyID, err)
	}
	if out.KeySpec != kmstypes.KeySpecEccNistP256 {
		return nil, fmt.Errorf("token: kms key %s has spec %s, want ECC_NIST_P256", keyID, out.KeySpec)
	}
	pk, err := x509.ParsePKIXPublicKey(out.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("token: kms public key: %w", err)
	}
	pub, ok := pk.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("token: kms key %s is not P-256", keyID)
	}
	kid, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	return &KMSSigner{client: client, keyID: keyID, pub: pub, kid: kid}, nil
}

// KeyID implements Signer.
func (s *KMSSigner) KeyID() string { return s.kid }

// PublicKey implements Signer.
func (s *KMSSigner) PublicKey() *ecdsa.PublicKey { return s.pub }

// Sign implements Signer: KMS signs the digest and returns DER, which is
// converted to JOSE r||s.
func (s *KMSSigner) Sign(ctx context.Context, digest []byte) ([]byte, error) {
	out, err := s.client.Sign(ctx, &kms.SignInput{
		KeyId:            aws.String(s.keyID),
		Message:          digest,
		MessageType:      kmstypes.MessageTypeDigest,
		SigningAlgorithm: kmstypes.SigningAlgorithmSpecEcdsaSha256,
	})
	if err != nil {
		return nil, fmt.Errorf("token: kms Sign: %w", err)
	}
	return DERToJOSE(out.Signature)
}

// DERToJOSE converts an ASN.1 DER ECDSA P-256 signature to r||s.
func DERToJOSE(der []byte) ([]byte, error) {
	var sig struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &sig)
	if err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("token: malformed DER signature")
	}
	if sig.R.Sign() <= 0 || sig.S.Sign() <= 0 || sig.R.BitLen() > 256 || sig.S.BitLen() > 256 {
		return nil, fmt.Errorf("token: signature out of range")
	}
	out := make([]byte, 64)
	sig.R.FillBytes(out[:32])
	sig.S.FillBytes(out[32:])
	return out, nil
}
