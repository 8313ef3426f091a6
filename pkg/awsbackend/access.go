package awsbackend

import (
	"context"
	"errors"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/berth-registry/berth/pkg/errcode"
	"github.com/berth-registry/berth/pkg/storage"
)

// Storage that cannot be used because of how it is set up (no
// credentials, rejected credentials, a denied action, a bucket or table
// that does not exist) is not a registry bug: without this mapping every
// request answered 500 UNKNOWN and the reason was only in the server log.
// Requests now answer 503 UNAVAILABLE with a message that says the
// registry cannot reach its storage and why in general terms; the AWS
// error, which may name accounts, roles and ARNs, stays in the log.

// problem is one way storage access can be misconfigured.
type problem int

const (
	noProblem problem = iota
	noCredentials
	credentialsRejected
	accessDenied
	storageMissing
)

// message is what a client is told; it names no account, role or resource.
func (p problem) message() string {
	switch p {
	case noCredentials:
		return "the registry cannot reach its storage: it has no usable AWS credentials"
	case credentialsRejected:
		return "the registry cannot reach its storage: its AWS credentials were rejected"
	case accessDenied:
		return "the registry cannot reach its storage: access is denied"
	case storageMissing:
		return "the registry cannot reach its storage: its bucket or table does not exist"
	}
	return ""
}

// Error codes of S3, DynamoDB and the S3 emulators, by what they mean for
// the operator.
var problemCodes = map[string]problem{
	"InvalidAccessKeyId":          credentialsRejected,
	"SignatureDoesNotMatch":       credentialsRejected,
	"ExpiredToken":                credentialsRejected,
	"ExpiredTokenException":       credentialsRejected,
	"InvalidToken":                credentialsRejected,
	"TokenRefreshRequired":        credentialsRejected,
	"UnrecognizedClientException": credentialsRejected,
	"InvalidSignatureException":   credentialsRejected,
	"InvalidClientTokenId":        credentialsRejected,
	"MissingAuthenticationToken":  credentialsRejected,
	"XAdminUserNotFound":          credentialsRejected, // versitygw: unknown access key
	"AccessDenied":                accessDenied,
	"AccessDeniedException":       accessDenied,
	"AllAccessDisabled":           accessDenied,
	"NoSuchBucket":                storageMissing,
	"ResourceNotFoundException":   storageMissing,
}

// credentialsError marks a failure to obtain credentials at all, which the
// SDK reports only as text ("get identity: failed to refresh cached
// credentials, ...").
type credentialsError struct{ err error }

func (e *credentialsError) Error() string { return e.err.Error() }
func (e *credentialsError) Unwrap() error { return e.err }

// markedCredentials wraps the configuration's credentials provider so its
// failures carry credentialsError through the SDK's wrapping.
type markedCredentials struct{ aws.CredentialsProvider }

func (m markedCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := m.CredentialsProvider.Retrieve(ctx)
	if err != nil && ctx.Err() == nil {
		return c, &credentialsError{err: err}
	}
	return c, err
}

// classify says which misconfiguration err reports, if any, and the AWS
// error code it carries.
func classify(err error) (problem, string) {
	var ce *credentialsError
	if errors.As(err, &ce) {
		return noCredentials, ""
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		if p, ok := problemCodes[ae.ErrorCode()]; ok {
			return p, ae.ErrorCode()
		}
	}
	// A HEAD answer has no body, hence no code: S3 answers 403 to a HEAD
	// the caller may not make (a blob HEAD without s3:ListBucket too).
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusForbidden {
		return accessDenied, "Forbidden"
	}
	return noProblem, ""
}

// accessMiddleware turns the misconfigurations classify recognises into
// an errcode UNAVAILABLE error. It sits outermost in the operation stack,
// so it sees the error after the SDK's retries; the error still wraps
// storage.ErrUnavailable and the SDK error, so drivers and callers that
// match either keep working.
func accessMiddleware(storageName string) func(*middleware.Stack) error {
	return func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("BerthStorageAccess",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				out, md, err := next.HandleInitialize(ctx, in)
				if err != nil && ctx.Err() == nil {
					if e := accessError(storageName, err); e != nil {
						err = e
					}
				}
				return out, md, err
			}), middleware.Before)
	}
}

// accessError is the client-facing error for a misconfiguration, or nil.
func accessError(storageName string, err error) *errcode.Error {
	p, code := classify(err)
	if p == noProblem {
		return nil
	}
	detail := map[string]string{"storage": storageName}
	if code != "" {
		detail["code"] = code
	}
	return errcode.Wrap(errcode.Unavailable, &accessCause{err: err}).WithMessage(p.message()).WithDetail(detail)
}

// accessCause is the SDK error behind an accessError. It also matches
// storage.ErrUnavailable, for callers that look for that sentinel (the
// sweepers retry later); its text is the SDK's alone.
type accessCause struct{ err error }

func (c *accessCause) Error() string   { return c.err.Error() }
func (c *accessCause) Unwrap() []error { return []error{storage.ErrUnavailable, c.err} }

// sdkError strips what accessMiddleware added, for messages an operator
// reads at start-up.
func sdkError(err error) error {
	var c *accessCause
	if errors.As(err, &c) {
		return c.err
	}
	return err
}

// withAccessErrors adds accessMiddleware to an S3 client's options.
func withS3AccessErrors(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, accessMiddleware("s3"))
}
