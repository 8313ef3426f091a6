package apigw

// MaxBodyBytes is the most blob bytes one request carries through API
// Gateway and Lambda: the 6 MB (6291456-byte) synchronous invocation
// payload holds the body base64-encoded inside the JSON event, beside its
// headers (docs/lambda.md has the arithmetic). It is the one definition:
// the api function's BERTH_MAX_BODY_BYTES default, `berth serve
// --via-lambda`, the CloudFront Function's 413 (pkg/edge/cffunc/upload.js
// hard-codes it and a test keeps the two equal) and the tests refer to it.
const MaxBodyBytes = 4404019
