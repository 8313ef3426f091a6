// Package edge is the registry's side of the edge upload path (docs/clients.md "Upload paths",
// path 2): upload tokens that a CloudFront Function checks before it lets a
// client PUT a blob straight into S3, and the keys that sign them.
//
// A token is three dot-separated, URL-path-safe parts:
//
//	<kid>.<payload>.<sig>
//
//	kid      [A-Za-z0-9_-]{1,16}: which key signed it (KeyPrefix+kid in the
//	         CloudFront KeyValueStore holds that key)
//	payload  base64url without padding of the JSON {"r":repo,"u":upload,"e":unix-expiry}
//	sig      base64url without padding of HMAC-SHA256(key, kid + "." + payload),
//	         where key is the KeyValueStore value taken as its UTF-8 bytes
//
// The same rules are implemented in JavaScript by the CloudFront Function
// (pkg/edge/cffunc/upload.js); the tests of both check each other's tokens.
package edge

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/berth-registry/berth/pkg/oci"
)

// KeyValueStore key names shared with the CloudFront Function.
const (
	// KeyPrefix + kid holds a signing key (at least 32 random characters).
	KeyPrefix = "upload-key-"
	// KeyCurrent holds the kid new tokens are signed with.
	KeyCurrent = "upload-key-current"
)

// PathPrefix is where upload tokens live on the registry's host.
const PathPrefix = "/_upload/"

// Errors of token verification.
var (
	ErrMalformed = errors.New("malformed upload token")
	ErrSignature = errors.New("upload token signature mismatch")
	ErrExpired   = errors.New("upload token expired")
)

// Claims is what a token binds.
type Claims struct {
	Repo    string `json:"r"`
	Upload  string `json:"u"`
	Expires int64  `json:"e"` // unix seconds
}

// Key is one signing key.
type Key struct {
	ID     string
	Secret string
}

// ValidKeyID reports whether id may name a key.
func ValidKeyID(id string) bool {
	if len(id) == 0 || len(id) > 16 {
		return false
	}
	return urlSafe(id)
}

func urlSafe(s string) bool {
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// Sign returns the token for c under k.
func Sign(k Key, c Claims) (string, error) {
	if !ValidKeyID(k.ID) {
		return "", fmt.Errorf("%w: key id %q", ErrMalformed, k.ID)
	}
	if len(k.Secret) < 32 {
		return "", errors.New("upload token key shorter than 32 characters")
	}
	if !oci.ValidName(c.Repo) || c.Upload == "" || !urlSafe(c.Upload) {
		return "", fmt.Errorf("%w: claims %q/%q", ErrMalformed, c.Repo, c.Upload)
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	payload := base64.RawURLEncoding.EncodeToString(raw)
	return k.ID + "." + payload + "." + mac(k.Secret, k.ID+"."+payload), nil
}

func mac(secret, msg string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// KeyID returns the kid part of a token without verifying anything.
func KeyID(token string) (string, error) {
	kid, _, ok := strings.Cut(token, ".")
	if !ok || !ValidKeyID(kid) {
		return "", ErrMalformed
	}
	return kid, nil
}

// Verify checks token with the key it names (lookup returns the secret
// for a kid, or an error when there is none) and returns its claims.
func Verify(token string, lookup func(kid string) (string, error), now time.Time) (Claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || !ValidKeyID(parts[0]) || parts[1] == "" || parts[2] == "" {
		return Claims{}, ErrMalformed
	}
	secret, err := lookup(parts[0])
	if err != nil {
		return Claims{}, fmt.Errorf("upload token key %q: %w", parts[0], err)
	}
	want := mac(secret, parts[0]+"."+parts[1])
	if !hmac.Equal([]byte(want), []byte(parts[2])) {
		return Claims{}, ErrSignature
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return Claims{}, ErrMalformed
	}
	var c Claims
	if err := json.Unmarshal(raw, &c); err != nil || !oci.ValidName(c.Repo) || c.Upload == "" || !urlSafe(c.Upload) {
		return Claims{}, ErrMalformed
	}
	if now.Unix() >= c.Expires {
		return Claims{}, ErrExpired
	}
	return c, nil
}
