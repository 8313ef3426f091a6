// Package stsproof makes and verifies Berth's IAM identity proof: a
// presigned STS GetCallerIdentity request that the caller signs with its own
// AWS credentials and the registry sends to STS to learn who signed it.
//
// # Format
//
// A proof is the string
//
//	berth-sts-v1.<base64url, no padding, of the presigned URL>
//
// where the URL is an https GET of STS's GetCallerIdentity action, presigned
// with SigV4 query parameters for 15 minutes (X-Amz-Expires=900), whose
// signed headers include x-berth-audience: <the registry's STS audience>.
// The audience header is not in the URL: the verifier adds it when it calls
// STS, so a proof made for another service fails STS's signature check and
// cannot be replayed here. The scheme is aws-iam-authenticator's (EKS),
// with x-berth-audience in place of x-k8s-aws-id.
package stsproof

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Prefix starts every proof; the version names the format above.
const Prefix = "berth-sts-v1."

// AudienceHeader is the signed header that binds a proof to one registry.
const AudienceHeader = "x-berth-audience"

// Lifetime is how long a proof is valid after its X-Amz-Date.
const Lifetime = 15 * 60 // seconds

// Presign makes a proof from awsCfg's credentials (any source the SDK
// supports: profiles, SSO, instance and container roles, web identity) for
// the registry whose STS audience is audience. awsCfg.BaseEndpoint, when
// set, points the proof at another STS endpoint (the verifier must allow it).
func Presign(ctx context.Context, awsCfg aws.Config, audience string) (string, error) {
	if audience == "" {
		return "", errors.New("stsproof: empty audience")
	}
	if awsCfg.Region == "" {
		// The global endpoint needs no region; us-east-1 signs for it.
		awsCfg.Region = "us-east-1"
	}
	client := sts.NewPresignClient(sts.NewFromConfig(awsCfg), sts.WithPresignClientFromClientOptions(func(o *sts.Options) {
		o.APIOptions = append(o.APIOptions,
			smithyhttp.SetHeaderValue(AudienceHeader, audience),
			addExpires,
		)
	}))
	req, err := client.PresignGetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		return "", fmt.Errorf("stsproof: presign GetCallerIdentity: %w", err)
	}
	return Encode(req.URL), nil
}

// addExpires sets X-Amz-Expires before signing, as STS presigned URLs are
// valid for 15 minutes from X-Amz-Date whatever the parameter says.
func addExpires(stack *middleware.Stack) error {
	return stack.Build.Add(middleware.BuildMiddlewareFunc("berthPresignExpires",
		func(ctx context.Context, in middleware.BuildInput, next middleware.BuildHandler) (middleware.BuildOutput, middleware.Metadata, error) {
			if req, ok := in.Request.(*smithyhttp.Request); ok {
				q := req.URL.Query()
				q.Set("X-Amz-Expires", strconv.Itoa(Lifetime))
				req.URL.RawQuery = q.Encode()
			}
			return next.HandleBuild(ctx, in)
		}), middleware.After)
}

// Encode wraps a presigned URL in the proof format.
func Encode(presignedURL string) string {
	return Prefix + base64.RawURLEncoding.EncodeToString([]byte(presignedURL))
}

// Decode unwraps a proof into its URL. It checks the format only.
func Decode(proof string) (string, error) {
	rest, ok := cutPrefix(proof)
	if !ok {
		return "", ErrFormat
	}
	if len(rest) > maxProofBytes {
		return "", fmt.Errorf("%w: too long", ErrFormat)
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return "", fmt.Errorf("%w: base64: %v", ErrFormat, err)
	}
	return string(b), nil
}

// IsProof reports whether s has the proof prefix (it may still be invalid).
func IsProof(s string) bool {
	_, ok := cutPrefix(s)
	return ok
}

func cutPrefix(s string) (string, bool) {
	if len(s) < len(Prefix) || s[:len(Prefix)] != Prefix {
		return "", false
	}
	return s[len(Prefix):], true
}

// maxProofBytes bounds the encoded URL (a session token is at most a few KB).
const maxProofBytes = 16 << 10
