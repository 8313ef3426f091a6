// Package metrics names Berth's operational metrics and records them: a
// CloudWatch Embedded Metric Format writer for the Lambda functions (EMF:
// one JSON log line per invocation that CloudWatch turns into metrics in
// the "Berth" namespace, with no API call and no IAM permission) and, in
// package prom, Prometheus for berth serve --metrics-addr. Middleware
// derives the HTTP figures (requests by route and status, pushes, pulls,
// bytes uploaded, upload sessions, token grants) from each request and its
// response; other code adds its own counters by name through a Counter it
// declares (docs/audit.md lists every metric).
package metrics

import "time"

// Namespace is the CloudWatch namespace of every metric.
const Namespace = "Berth"

// Request metrics: one per request, with the dimensions Route (the route
// kind: manifest, blob, upload, token…) and StatusClass (2xx…5xx).
const (
	Requests = "Requests" // Count
	Latency  = "Latency"  // Milliseconds
)

// Counters, with no dimension other than the function's.
const (
	ManifestPushes = "ManifestPushes" // manifest PUTs answered 201
	ManifestPulls  = "ManifestPulls"  // manifest GETs answered 200
	// BytesUploaded counts blob upload request bodies as read (POST, PATCH,
	// PUT on the upload routes); BytesRedirected the size of each blob
	// whose GET was answered with a redirect to S3 or CloudFront.
	BytesUploaded   = "BytesUploaded"
	BytesRedirected = "BytesRedirected"
	// Upload sessions opened (POST answered 202) and ended (the finishing
	// PUT answered 201, or a DELETE answered 204). berth serve reports the
	// difference as a gauge; sessions abandoned until they expire are not
	// "ended".
	UploadSessionsStarted = "UploadSessionsStarted"
	UploadSessionsEnded   = "UploadSessionsEnded"
	// AWS SDK retry attempts (every attempt after the first) and attempts
	// that failed with a throttling error code, per service.
	DynamoDBRetries   = "DynamoDBRetries"
	DynamoDBThrottles = "DynamoDBThrottles"
	S3Retries         = "S3Retries"
	S3Throttles       = "S3Throttles"
	// Token endpoint answers: a token issued (200), or refused (401, 403,
	// 429).
	TokenGrants  = "TokenGrants"
	TokenDenials = "TokenDenials"
	// Garbage collection passes (pkg/gc): blobs deleted (orphans included),
	// the bytes they held, and passes that ended in an error.
	GCBlobsDeleted = "GCBlobsDeleted"
	GCBytesFreed   = "GCBytesFreed"
	GCFailures     = "GCFailures"
	// Vulnerability scanning: layers indexed, layers whose indexing failed,
	// image reports written, and scan invocations that failed.
	ScanLayersIndexed  = "ScanLayersIndexed"
	ScanLayerErrors    = "ScanLayerErrors"
	ScanImagesReported = "ScanImagesReported"
	ScanFailures       = "ScanFailures"
)

// Def describes one counter.
type Def struct {
	Name string // CloudWatch metric name
	Unit string // CloudWatch unit: Count or Bytes
	Prom string // Prometheus name
	Help string
}

// Counters lists every counter Berth records.
func Counters() []Def {
	return []Def{
		{ManifestPushes, "Count", "berth_manifest_pushes_total", "Manifest PUTs answered 201."},
		{ManifestPulls, "Count", "berth_manifest_pulls_total", "Manifest GETs answered 200."},
		{BytesUploaded, "Bytes", "berth_blob_bytes_uploaded_total", "Blob upload request body bytes read."},
		{BytesRedirected, "Bytes", "berth_blob_bytes_redirected_total", "Sizes of blobs whose GET was redirected to storage."},
		{UploadSessionsStarted, "Count", "berth_upload_sessions_started_total", "Upload sessions opened."},
		{UploadSessionsEnded, "Count", "berth_upload_sessions_ended_total", "Upload sessions completed or cancelled."},
		{DynamoDBRetries, "Count", "berth_dynamodb_retries_total", "DynamoDB request retry attempts."},
		{DynamoDBThrottles, "Count", "berth_dynamodb_throttles_total", "DynamoDB request attempts throttled."},
		{S3Retries, "Count", "berth_s3_retries_total", "S3 request retry attempts."},
		{S3Throttles, "Count", "berth_s3_throttles_total", "S3 request attempts throttled."},
		{TokenGrants, "Count", "berth_token_grants_total", "Tokens issued."},
		{TokenDenials, "Count", "berth_token_denials_total", "Token requests refused (401, 403, 429)."},
		{GCBlobsDeleted, "Count", "berth_gc_blobs_deleted_total", "Blobs deleted by garbage collection."},
		{GCBytesFreed, "Bytes", "berth_gc_bytes_freed_total", "Bytes freed by garbage collection."},
		{GCFailures, "Count", "berth_gc_failures_total", "Garbage collection passes that failed."},
		{ScanLayersIndexed, "Count", "berth_scan_layers_indexed_total", "Layers indexed for vulnerability scanning."},
		{ScanLayerErrors, "Count", "berth_scan_layer_errors_total", "Layers whose indexing failed."},
		{ScanImagesReported, "Count", "berth_scan_images_reported_total", "Image vulnerability reports written."},
		{ScanFailures, "Count", "berth_scan_failures_total", "Scan invocations that failed."},
	}
}

// Recorder is what Middleware records into (EMF, prom.Recorder).
// Implementations are safe for concurrent use.
type Recorder interface {
	// Add adds v to the counter name (one of Counters).
	Add(name string, v float64)
	// Request records one request: its route, status and latency.
	Request(route string, status int, elapsed time.Duration)
}

// Discard records nothing.
type Discard struct{}

// Add implements Recorder.
func (Discard) Add(string, float64) {}

// Request implements Recorder.
func (Discard) Request(string, int, time.Duration) {}

// StatusClass is the dimension value of a status: "2xx" … "5xx".
func StatusClass(status int) string {
	switch {
	case status < 200:
		return "1xx"
	case status < 300:
		return "2xx"
	case status < 400:
		return "3xx"
	case status < 500:
		return "4xx"
	}
	return "5xx"
}
