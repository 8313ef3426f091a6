package berth

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudfront"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/jsii-runtime-go"
)

// The edge upload path (docs/clients.md "Upload paths", docs/deploy.md "Edge uploads"): the
// api function answers an upload POST with Location /_upload/<token>; the
// CloudFront Function on /_upload/* checks the token against the keys in
// the KeyValueStore and sends a PUT with a body straight to the bucket
// (blobs/sha256/<hex>, S3 checks the digest), everything else to the API.

const (
	// UploadPathPattern is the edge upload behaviour's path (edge.PathPrefix).
	UploadPathPattern = "/_upload/*"
	// APIOriginID is the API origin's id: the function's fallback selects
	// it with cf.selectRequestOriginById('berth-api').
	APIOriginID = "berth-api"
	// EdgeFunctionPath is the function's source relative to the repository.
	EdgeFunctionPath = "pkg/edge/cffunc/upload.js"
	// S3OriginReadTimeout is the bucket origin's response timeout in
	// seconds: the most CloudFront allows without a quota increase (1–120 s,
	// research note §B). An upload PUT waits for S3's answer after its last
	// byte; CloudFront drops a PUT whose origin stays silent longer.
	S3OriginReadTimeout = 120
)

// Actions on the KeyValueStore data plane. The api function only reads the
// current key (edge.Keyring: GetKey); the cleanup function rotates keys
// (edge.Rotate: ListKeys, PutKey, DeleteKey, each write naming the ETag
// from DescribeKeyValueStore; GetKey through the keyring interface).
var (
	kvsRead   = []string{"cloudfront-keyvaluestore:GetKey"}
	kvsRotate = []string{
		"cloudfront-keyvaluestore:DeleteKey", "cloudfront-keyvaluestore:DescribeKeyValueStore",
		"cloudfront-keyvaluestore:GetKey", "cloudfront-keyvaluestore:ListKeys", "cloudfront-keyvaluestore:PutKey",
	}
)

func (r *registry) edgeOn() bool { return *r.props.EdgeUploads }

// newEdgeStore creates the KeyValueStore before the functions, whose
// environment and roles name it.
func (r *registry) newEdgeStore() {
	if !r.edgeOn() {
		return
	}
	r.kvs = awscloudfront.NewKeyValueStore(r.Construct, jsii.String("UploadKeys"), &awscloudfront.KeyValueStoreProps{
		Comment: jsii.String("Berth upload token keys (rotated by the cleanup function)"),
	})
}

// edgeFunctionFile finds upload.js: the prop, else relative to the working
// directory (the CDK app runs in infra/), else relative to this source file
// (tests, and apps built from a checkout elsewhere).
func (r *registry) edgeFunctionFile() string {
	candidates := []string{r.props.EdgeFunctionFile}
	if r.props.EdgeFunctionFile == "" {
		candidates = []string{filepath.Join("..", EdgeFunctionPath), EdgeFunctionPath}
		if _, file, _, ok := runtime.Caller(0); ok {
			candidates = append(candidates, filepath.Join(filepath.Dir(file), "..", "..", EdgeFunctionPath))
		}
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			abs, err := filepath.Abs(c)
			if err != nil {
				panic(fmt.Sprintf("berth: edge function %s: %v", c, err))
			}
			return abs
		}
	}
	panic(fmt.Sprintf("berth: edge function source not found (tried %v); set EdgeFunctionFile or EdgeUploads=false", candidates))
}

// newEdgeFunction is the one CloudFront Function of the edge path, with
// read access to the KeyValueStore.
func (r *registry) newEdgeFunction() awscloudfront.Function {
	return awscloudfront.NewFunction(r.Construct, jsii.String("UploadFunction"), &awscloudfront.FunctionProps{
		Code:          awscloudfront.FunctionCode_FromFile(&awscloudfront.FileCodeOptions{FilePath: jsii.String(r.edgeFunctionFile())}),
		Runtime:       awscloudfront.FunctionRuntime_JS_2_0(),
		KeyValueStore: r.kvs,
		Comment:       jsii.String("Berth edge uploads: token check, S3 or API routing, OCI responses"),
		AutoPublish:   jsii.Bool(true),
	})
}

// uploadBehavior is the /_upload/* behaviour on the bucket origin.
//
// Origin request policy: AllViewerExceptHostHeader. A request the function
// sends to S3 carries only what the function left on it (the read-only
// host/length headers, content-type, and the x-amz-checksum-sha256 and
// x-amz-meta-berth-* headers it set; every client x-amz-* header and the
// query string are gone), and OAC replaces Authorization with its own
// SigV4 signature. A request it hands to the API origin (PATCH, GET,
// DELETE, an empty closing PUT) needs the client's Authorization,
// Content-Range, Content-Type and query string (?digest=). An allow-list
// policy cannot forward Authorization (CloudFront allows it only in a cache
// policy, and CachingDisabled has no cache key), so the all-viewer policy
// is the one that serves both; the Host header stays out because both S3
// and API Gateway route on their own host names.
func (r *registry) uploadBehavior(fn awscloudfront.Function) *awscloudfront.AddBehaviorOptions {
	return &awscloudfront.AddBehaviorOptions{
		AllowedMethods:       awscloudfront.AllowedMethods_ALLOW_ALL(),
		CachePolicy:          awscloudfront.CachePolicy_CACHING_DISABLED(),
		OriginRequestPolicy:  awscloudfront.OriginRequestPolicy_ALL_VIEWER_EXCEPT_HOST_HEADER(),
		ViewerProtocolPolicy: awscloudfront.ViewerProtocolPolicy_HTTPS_ONLY,
		Compress:             jsii.Bool(false),
		FunctionAssociations: &[]*awscloudfront.FunctionAssociation{
			{Function: fn, EventType: awscloudfront.FunctionEventType_VIEWER_REQUEST},
			{Function: fn, EventType: awscloudfront.FunctionEventType_VIEWER_RESPONSE},
		},
	}
}

// setS3OriginReadTimeout raises the bucket origin's response timeout. The
// L2 S3 origin in CDK 2.270 has no ReadTimeout (only HTTP origins do), so
// it is set on the CloudFormation resource: the bucket origin is the
// distribution's second origin (index 1), added right after the API
// origin of the default behaviour (newCDN keeps that order; the infra
// tests check the property lands on the S3 origin).
func (r *registry) setS3OriginReadTimeout() {
	cfn := r.dist.Node().DefaultChild().(awscloudfront.CfnDistribution)
	cfn.AddPropertyOverride(jsii.String("DistributionConfig.Origins.1.S3OriginConfig.OriginReadTimeout"), jsii.Number(S3OriginReadTimeout))
}

// allowCloudFrontWrite lets this distribution, and only it, PUT blobs under
// blobs/sha256/ (the only algorithm the function sends to S3). No delete:
// the behaviour must allow DELETE for the API fallback, and a DELETE that
// reached S3 would be refused here (research note §B).
func (r *registry) allowCloudFrontWrite() {
	cloudfront := awsiam.NewServicePrincipal(jsii.String("cloudfront.amazonaws.com"), nil)
	r.bucket.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("CloudFrontWritesBlobs"),
		Principals: &[]awsiam.IPrincipal{cloudfront},
		Actions:    jsii.Strings("s3:PutObject"),
		Resources:  jsii.Strings(*r.bucket.ArnForObjects(jsii.String(BlobPrefix + "sha256/*"))),
		Conditions: &map[string]interface{}{"StringEquals": map[string]interface{}{"AWS:SourceArn": r.dist.DistributionArn()}},
	}))
	if key, ok := r.bktKey.(awskms.Key); ok && r.props.BucketKey == nil {
		// As for reads (allowCloudFrontRead): the key policy names this
		// account's distributions, not this one, to avoid a cycle. SSE-KMS
		// PutObject makes S3 ask for a data key on the writer's behalf.
		key.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:        jsii.String("CloudFrontEncryptsBlobs"),
			Principals: &[]awsiam.IPrincipal{cloudfront},
			Actions:    jsii.Strings("kms:Encrypt", "kms:GenerateDataKey"),
			Resources:  jsii.Strings("*"),
			Conditions: &map[string]interface{}{"ArnLike": map[string]interface{}{"AWS:SourceArn": awscdk.Fn_Join(jsii.String(""), &[]*string{
				jsii.String("arn:"), awscdk.Aws_PARTITION(), jsii.String(":cloudfront::"), awscdk.Aws_ACCOUNT_ID(), jsii.String(":distribution/*"),
			})}},
		}), nil)
	}
}
