// Package cffunc carries the CloudFront Function of the edge upload path
// (docs/clients.md, "Upload paths"): upload.js, a CloudFront Functions JavaScript runtime
// 2.0 source. The CDK construct deploys the file by path; the local
// CloudFront emulator (internal/cloudfront) runs Source.
package cffunc

import _ "embed"

// Source is upload.js.
//
//go:embed upload.js
var Source string

// Constants upload.js hard-codes (a CloudFront Function has no environment):
// a test keeps them in step with the file. It also hard-codes the Lambda
// body limit, apigw.MaxBodyBytes: bigger upload bodies get an OCI 413 from
// the function before API Gateway answers its own.
const (
	// APIOriginID is the distribution's origin id of the API (API Gateway),
	// which the function selects for upload requests that do not go to S3.
	APIOriginID = "berth-api"
	// S3MaxPutBytes is S3's limit for one PutObject (5 GiB).
	S3MaxPutBytes = 5368709120
	// MaxSourceBytes is CloudFront's limit on a function's size.
	MaxSourceBytes = 10240
)
