// Package lambdaedge carries Berth's Lambda@Edge function: oversize.js, an
// origin-response handler (Node.js, CommonJS, no dependencies) on the
// upload behaviours that turns API Gateway's own 413 for a body Lambda
// cannot take into an OCI SIZE_INVALID error naming `berth push`
// (docs/lambda.md, "The oversize 413 at the edge"). The CDK construct
// (infra/berth) deploys Source inline; the local CloudFront emulator
// (internal/cloudfront) runs it in goja.
package lambdaedge

import _ "embed"

// Source is oversize.js.
//
//go:embed oversize.js
var Source string

// What the deployment needs to know about the function.
const (
	// Handler is the function's handler: an inline (ZipFile) Node.js
	// function is stored as index.js, and oversize.js sets
	// exports.handler.
	Handler = "index.handler"
	// MaxInlineBytes is CloudFormation's limit on inline function code
	// (AWS::Lambda::Function Code.ZipFile).
	MaxInlineBytes = 4096
	// DocsURL is the page the error message points at.
	DocsURL = "https://github.com/berth-registry/berth/blob/main/docs/clients.md#upload-paths"
)

// The cache behaviours the function is attached to, as CloudFront path
// patterns ('*' matches any run of characters, slashes included). The
// registry's upload URLs need a behaviour of their own, ordered before
// /v2/*: a pattern cannot attach a function to part of another's paths.
const (
	// UploadsPathPattern is the registry's upload URLs:
	// /v2/<name>/blobs/uploads/ and /v2/<name>/blobs/uploads/<id>.
	UploadsPathPattern = "/v2/*/blobs/uploads/*"
	// EdgeUploadPathPattern is the edge upload path (edge.PathPrefix).
	EdgeUploadPathPattern = "/_upload/*"
)
