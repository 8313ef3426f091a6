// Package berth is the reusable CDK construct that deploys a Berth registry:
// an HTTP API in front of the api and token functions, the scan and cleanup
// functions, the S3 bucket and DynamoDB table, a CloudFront distribution with
// signed blob URLs, a KMS key for registry tokens, alarms and outputs.
//
//	berth.NewRegistry(stack, jsii.String("Registry"), &berth.RegistryProps{
//		CodeDir: "../dist",
//	})
//
// docs/deploy.md describes every prop and what the deployment costs.
package berth

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscertificatemanager"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudfront"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
)

// BucketEncryption selects the server-side encryption of the blob bucket.
type BucketEncryption string

const (
	// EncryptionS3Managed is SSE-S3 (AES-256 with S3's keys): no KMS request
	// charges on pulls, the default.
	EncryptionS3Managed BucketEncryption = "S3_MANAGED"
	// EncryptionKMS is SSE-KMS with a customer managed key (BucketKey, or one
	// the construct creates with rotation on) and S3 Bucket Keys enabled.
	EncryptionKMS BucketEncryption = "KMS"
)

// OIDCIssuer is one trusted OIDC identity provider for the token function
// (BERTH_OIDC_ISSUERS), such as GitHub Actions.
type OIDCIssuer struct {
	Issuer   string `json:"issuer"`
	Audience string `json:"audience"`
}

// RegistryProps is what a platform team sets. The zero value deploys a
// working registry on the CloudFront default domain with auth on, scanning
// on, and data retained when the stack is deleted.
type RegistryProps struct {
	// CodeDir holds one directory per function with its bootstrap binary
	// (api/bootstrap, token/bootstrap, ...), as `make build` writes to dist/.
	// Default "../dist" (relative to infra/, where cdk runs).
	CodeDir string

	// DomainName is the registry's host name (registry.example.com). It needs
	// Certificate, an ACM certificate in us-east-1 covering it; point a CNAME
	// or alias record at the distribution. Empty: the CloudFront domain.
	DomainName  string
	Certificate awscertificatemanager.ICertificate
	// PriceClass of the distribution. Default PRICE_CLASS_100 (North
	// America, Europe, Israel: the cheapest edges).
	PriceClass awscloudfront.PriceClass

	// CdnPublicKeyPEM is the public half (PEM, RSA 2048) of the key pair the
	// api function signs CloudFront blob URLs with. Empty: no key group, and
	// blob GETs redirect to presigned S3 URLs instead of CloudFront.
	CdnPublicKeyPEM string
	// CdnPrivateKeySecret holds the private half (PEM) in Secrets Manager,
	// imported with a complete ARN. Nil with CdnPublicKeyPEM set: the
	// construct creates an empty secret; put the PEM into it after the
	// first deploy (docs/deploy.md, "CloudFront key pair").
	CdnPrivateKeySecret awssecretsmanager.ISecret

	// Function memory in MiB, the same defaults as template.yaml: api 1024
	// (about 0.6 vCPU: a 4.4 MB chunk is base64-decoded, hashed and sent to
	// S3 well within a second), token 512 (TLS handshakes to STS and JWKS,
	// ECDSA checks), scan 2048 (about 1.2 vCPU for decompressing and
	// walking layers, and room for the OSV records of the ecosystems an
	// image needs; docs/deploy.md "Deploying scanning"), cleanup 256
	// (network-bound), osvsync 256 (a streamed copy, network-bound).
	ApiMemoryMiB, TokenMemoryMiB, ScanMemoryMiB, CleanupMemoryMiB, OsvSyncMemoryMiB float64
	// LogRetention of every log group (functions, API access log).
	// Default ONE_MONTH.
	LogRetention awslogs.RetentionDays
	// LogLevel is BERTH_LOG_LEVEL: debug, info, warn or error. Default info.
	LogLevel string

	// ScanEnabled deploys vulnerability scanning (docs/deploy.md,
	// "Deploying scanning"): the scan function with the blobs/
	// ObjectCreated notification and a rule for image push events, and the
	// osvsync function on OsvSyncSchedule. It needs Events. Default true.
	ScanEnabled *bool
	// ScanEphemeralStorageMiB is the scan function's /tmp, which caches
	// the OSV exports the images need (downloaded on first use, kept while
	// warm). Default 2048.
	ScanEphemeralStorageMiB float64
	// OsvSyncSchedule runs the osvsync function (an EventBridge Scheduler
	// expression). Default "rate(6 hours)".
	OsvSyncSchedule string
	// OsvEcosystems are the OSV ecosystems synced (BERTH_OSV_ECOSYSTEMS),
	// as OSV spells them. Nil: Debian, Ubuntu, Alpine, Red Hat, Rocky
	// Linux, AlmaLinux, Go, PyPI, npm, Maven, crates.io.
	OsvEcosystems []string

	// GCGrace (BERTH_GC_GRACE, a Go duration) is how long a blob must have
	// been unreferenced before the cleanup function deletes it; "0" turns
	// garbage collection off (docs/gc.md). Default "24h".
	GCGrace string
	// UploadTTL (BERTH_UPLOAD_TTL, a Go duration) is how long an upload
	// session lives. Default "1h".
	UploadTTL string
	// PresignExpiry (BERTH_PRESIGN_EXPIRY, a Go duration) of blob redirect
	// URLs. Default "20m".
	PresignExpiry string
	// MaxBodyBytes (BERTH_MAX_BODY_BYTES) caps a request body through
	// Lambda. Default 4404019 (6 MB invocation payload after base64).
	MaxBodyBytes int64
	// StagingExpirationDays expires objects under uploads/ (chunk carry-over
	// and staging) that an aborted upload left behind. Default 1.
	StagingExpirationDays float64

	// RemovalPolicy of the bucket, table, keys and secret. Default RETAIN.
	RemovalPolicy awscdk.RemovalPolicy
	// DeletionProtection of the table. Default true.
	DeletionProtection *bool
	// BucketName fixes the bucket's name. Default: berth-<account>-<region>-
	// <stack id>-<construct hash>, computed so the scan notification needs
	// no custom resource.
	BucketName string
	// BucketEncryption: EncryptionS3Managed (default) or EncryptionKMS.
	BucketEncryption BucketEncryption
	// BucketKey is the customer managed key for EncryptionKMS. Nil: created.
	BucketKey awskms.IKey

	// Auth is BERTH_AUTH. Default true ("on"): no anonymous writes.
	Auth *bool
	// TokenSigningKey is an asymmetric ECC_NIST_P256 SIGN_VERIFY KMS key for
	// registry tokens. Nil: created.
	TokenSigningKey awskms.IKey
	// TokenTTL (BERTH_TOKEN_TTL, a Go duration) of registry tokens.
	// Default "15m".
	TokenTTL string
	// AuthPolicy is the repository policy document the token function reads
	// from the SSM parameter the construct creates (BERTH_AUTH_POLICY_PARAM).
	// Default DefaultAuthPolicy (deny everything).
	AuthPolicy string
	// OIDCIssuers trusted for workload identity (BERTH_OIDC_ISSUERS).
	OIDCIssuers []OIDCIssuer

	// RetentionPolicy is an Amazon ECR lifecycle policy (JSON) the hourly
	// cleanup function applies to every repository
	// (BERTH_RETENTION_POLICY, docs/retention.md), for example
	// {"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged",
	// "countType":"sinceImagePushed","countUnit":"days","countNumber":7},
	// "action":{"type":"expire"}}]}. Empty (default): nothing is expired.
	// It must be valid JSON of at most MaxRetentionPolicyBytes (Lambda keeps
	// all of a function's variables within 4 KB); the function validates
	// the rules themselves at cold start and refuses archive storage.
	RetentionPolicy string

	// TagImmutability is the api function's per-repository tag mutability
	// rules, a JSON array in the vocabulary of Amazon ECR's
	// imageTagMutability (BERTH_TAG_IMMUTABILITY, docs/retention.md), for
	// example [{"repositories":["team/**"],"imageTagMutability":
	// "IMMUTABLE_WITH_EXCLUSION","imageTagMutabilityExclusionFilters":
	// [{"filterType":"WILDCARD","filter":"latest"}]}]. Empty (default):
	// every tag is mutable. It must be valid JSON of at most
	// MaxTagImmutabilityBytes; the function validates the rules at cold
	// start and refuses to start with invalid ones.
	TagImmutability string
	// Events turns on registry events (BERTH_EVENT_BUS, docs/events.md):
	// the api function puts one per push, tag delete and manifest delete,
	// the cleanup function one per retention expiry and GC blob deletion,
	// each role with events:PutEvents on exactly that bus. Default true.
	Events *bool
	// EventBus receives the events. Nil: the account's default bus in the
	// stack's region. A bus of the registry's own:
	// awsevents.NewEventBus(stack, jsii.String("RegistryEvents"), nil).
	EventBus awsevents.IEventBus

	// EdgeUploads deploys the edge upload path (docs/deploy.md, "Edge
	// uploads"): a CloudFront KeyValueStore with the upload token keys, the
	// CloudFront Function pkg/edge/cffunc/upload.js on /_upload/* and /v2/*,
	// and a /_upload/* behaviour that PUTs blobs straight into the bucket
	// through origin access control, so layers of any size up to 5 GB skip
	// Lambda. Default true (the distribution is always there).
	EdgeUploads *bool
	// EdgeFunctionFile is the CloudFront Function's source. Default: the
	// repository's pkg/edge/cffunc/upload.js, found from the working
	// directory (infra/, where cdk runs) or from this package's source.
	EdgeFunctionFile string
	// LambdaEdge deploys the Lambda@Edge function
	// pkg/edge/lambdaedge/oversize.js (docs/deploy.md, "The oversize 413")
	// on origin response of /v2/*/blobs/uploads/* and /_upload/*: API
	// Gateway's own 413 for a chunked upload body too big for Lambda
	// becomes an OCI error naming `berth push`. It needs a stack with an
	// explicit region (without one it is left out, with the warning
	// NoLambdaEdgeWarning); outside us-east-1 it adds a stack there, so
	// deploy with `cdk deploy --all`. Billed per upload request. Default
	// true.
	LambdaEdge *bool

	// ThrottleRateLimit and ThrottleBurstLimit of the HTTP API's default
	// stage (every route; above them API Gateway answers 429 before any
	// function runs). Defaults 500 requests/s and 1000, as template.yaml.
	ThrottleRateLimit, ThrottleBurstLimit float64

	// TokenReservedConcurrency reserves, and so caps, the token function's
	// concurrency: a /token flood cannot take the account concurrency the
	// api function needs. Nil: 10 (about the account's KMS ECC Sign quota
	// of 300/s at ~30 ms a token). It comes out of the account's unreserved
	// pool, which Lambda keeps at 100 or more: where the account's quota is
	// below 110 (new accounts may start at 10), set 0, which means no
	// reservation (never a disabled function).
	TokenReservedConcurrency *float64
	// ApiReservedConcurrency of the api function. 0 (default): none; a
	// reservation is taken from every other function in the account while
	// the registry idles, and caps the API too. Throttling bounds its load.
	ApiReservedConcurrency float64

	// OriginVerifySecret is the value CloudFront's API origin sends in
	// X-Berth-Origin-Verify and the HTTP API stage's berthOriginVerify
	// variable holds: pkg/apigw refuses (403) requests to the execute-api
	// endpoint that lack it, so CloudFront (its edge function, any WAF or
	// geo restriction added to it) cannot be bypassed. Default: derived
	// from the stack id's last 96 bits, which nobody outside the account
	// sees (its first 32 appear in the default bucket name). It marks the
	// path a request took; it is not a credential. Letters, digits and
	// "-._~" only.
	OriginVerifySecret string

	// AlarmTopic receives alarm and OK notifications. Nil: alarms only.
	AlarmTopic awssns.ITopic
	// Api5xxRatePercent is the API 5xx rate that raises the alarm.
	// Default 5.
	Api5xxRatePercent float64
}

// MaxRetentionPolicyBytes bounds RetentionPolicy: Lambda allows 4 KB for
// all of a function's environment variables, and the cleanup function's
// others (table and bucket names, log level) take well under 512 bytes.
const MaxRetentionPolicyBytes = 3584

// MaxTagImmutabilityBytes bounds TagImmutability: the api function's
// other variables (names, ARNs, the CDN settings) take about 1 KB of
// Lambda's 4 KB.
const MaxTagImmutabilityBytes = 2048

// DefaultAuthPolicy grants nothing: the token function fails closed until a
// policy is set (docs/auth.md, pkg/auth/policy).
const DefaultAuthPolicy = `{"version":"1","rules":[]}`

// withDefaults returns a copy of p with every zero value replaced.
func (p RegistryProps) withDefaults() RegistryProps {
	if p.CodeDir == "" {
		p.CodeDir = "../dist"
	}
	if p.PriceClass == "" {
		p.PriceClass = awscloudfront.PriceClass_PRICE_CLASS_100
	}
	setF := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	setS := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	setF(&p.ApiMemoryMiB, 1024)
	setF(&p.TokenMemoryMiB, 512)
	setF(&p.ScanMemoryMiB, 2048)
	setF(&p.ScanEphemeralStorageMiB, 2048)
	setF(&p.OsvSyncMemoryMiB, 256)
	setF(&p.CleanupMemoryMiB, 256)
	setF(&p.StagingExpirationDays, 1)
	setF(&p.ThrottleRateLimit, 500)
	setF(&p.ThrottleBurstLimit, 1000)
	setF(&p.Api5xxRatePercent, 5)
	if p.TokenReservedConcurrency == nil {
		ten := 10.0
		p.TokenReservedConcurrency = &ten
	}
	if p.LogRetention == "" {
		p.LogRetention = awslogs.RetentionDays_ONE_MONTH
	}
	setS(&p.LogLevel, "info")
	setS(&p.OsvSyncSchedule, "rate(6 hours)")
	setS(&p.UploadTTL, "1h")
	setS(&p.GCGrace, "24h")
	setS(&p.PresignExpiry, "20m")
	setS(&p.AuthPolicy, DefaultAuthPolicy)
	setS(&p.TokenTTL, "15m")
	if p.MaxBodyBytes == 0 {
		p.MaxBodyBytes = 4404019
	}
	if p.RemovalPolicy == "" {
		p.RemovalPolicy = awscdk.RemovalPolicy_RETAIN
	}
	if p.BucketEncryption == "" {
		p.BucketEncryption = EncryptionS3Managed
		if p.BucketKey != nil {
			p.BucketEncryption = EncryptionKMS
		}
	}
	t := true
	if p.ScanEnabled == nil {
		p.ScanEnabled = &t
	}
	if p.Events == nil {
		p.Events = &t
	}
	if p.DeletionProtection == nil {
		p.DeletionProtection = &t
	}
	if p.Auth == nil {
		p.Auth = &t
	}
	if p.EdgeUploads == nil {
		p.EdgeUploads = &t
	}
	if p.LambdaEdge == nil {
		p.LambdaEdge = &t
	}
	return p
}
