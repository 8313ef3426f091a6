package berth

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigatewayv2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigatewayv2integrations"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudfront"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsssm"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
)

// Function names: the directory under CodeDir and functions/, and the
// CloudFormation logical id prefix (ApiFunction, TokenFunction, ...).
const (
	FnAPI     = "api"
	FnToken   = "token"
	FnScan    = "scan"
	FnCleanup = "cleanup"
)

// S3 key prefixes the drivers use (docs/dynamodb.md).
const (
	// BlobPrefix holds content-addressed blobs: blobs/<algorithm>/<hex>.
	BlobPrefix = "blobs/"
	// UploadPrefix holds upload staging: carry-over chunks and objects
	// being assembled. Objects older than StagingExpirationDays expire.
	UploadPrefix = "uploads/"
)

// Registry is a deployed Berth registry.
type Registry interface {
	constructs.Construct
	// Bucket holds the blobs.
	Bucket() awss3.IBucket
	// Table holds the metadata.
	Table() awsdynamodb.ITable
	// Api is the HTTP API in front of the api and token functions.
	Api() awsapigatewayv2.IHttpApi
	// Distribution is the registry's public endpoint.
	Distribution() awscloudfront.IDistribution
	// Function returns the function named FnAPI, FnToken, FnScan or
	// FnCleanup, or nil (FnScan when scanning is off).
	Function(name string) awslambda.IFunction
	// TokenSigningKey signs registry tokens.
	TokenSigningKey() awskms.IKey
	// RegistryURL is https://<registry host>.
	RegistryURL() *string
}

type registry struct {
	constructs.Construct
	props   RegistryProps
	bucket  awss3.Bucket
	name    *string // bucket name, computable without referencing the bucket
	table   awsdynamodb.Table
	api     awsapigatewayv2.HttpApi
	dist    awscloudfront.Distribution
	fns     map[string]awslambda.Function
	tokKey  awskms.IKey
	bktKey  awskms.IKey
	secret  awssecretsmanager.ISecret
	keyPair awscloudfront.PublicKey
	policy  awsssm.StringParameter
	host    *string
	origin  *string                     // the origin-verify value (OriginVerifySecret)
	kvs     awscloudfront.KeyValueStore // nil: no edge uploads
}

// NewRegistry adds a Berth registry to scope.
func NewRegistry(scope constructs.Construct, id *string, props *RegistryProps) Registry {
	if props == nil {
		props = &RegistryProps{}
	}
	r := &registry{
		Construct: constructs.NewConstruct(scope, id),
		props:     props.withDefaults(),
		fns:       map[string]awslambda.Function{},
	}
	p := &r.props
	if p.DomainName != "" && p.Certificate == nil {
		panic("berth: DomainName needs Certificate (ACM, us-east-1)")
	}
	if strings.Trim(p.OriginVerifySecret, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~") != "" {
		panic("berth: OriginVerifySecret may hold letters, digits and -._~ only (a stage variable value and a header value)")
	}
	if p.CdnPrivateKeySecret != nil && p.CdnPublicKeyPEM == "" {
		panic("berth: CdnPrivateKeySecret needs CdnPublicKeyPEM")
	}

	r.newStorage()
	r.newKeys()
	r.newEdgeStore()
	r.newFunctions()
	r.newAPI()
	r.newCDN()
	r.newSchedule()
	r.newScanning() // before the alarms, which cover every function
	r.newAlarms()
	r.newDashboard()
	r.suppressNagFindings()

	out := func(id, desc string, v *string) {
		awscdk.NewCfnOutput(r.Construct, jsii.String(id), &awscdk.CfnOutputProps{Description: jsii.String(desc), Value: v})
	}
	out("RegistryUrl", "Registry URL (docker login / pull / push)", r.RegistryURL())
	out("BucketName", "Blob bucket", r.bucket.BucketName())
	out("TableName", "Metadata table", r.table.TableName())
	if r.secret != nil && p.CdnPrivateKeySecret == nil {
		out("CdnPrivateKeySecretArn", "Put the CloudFront private key PEM here", r.secret.SecretArn())
	}
	return r
}

func (r *registry) Bucket() awss3.IBucket                     { return r.bucket }
func (r *registry) Table() awsdynamodb.ITable                 { return r.table }
func (r *registry) Api() awsapigatewayv2.IHttpApi             { return r.api }
func (r *registry) Distribution() awscloudfront.IDistribution { return r.dist }
func (r *registry) TokenSigningKey() awskms.IKey              { return r.tokKey }
func (r *registry) RegistryURL() *string {
	return awscdk.Fn_Join(jsii.String(""), &[]*string{jsii.String("https://"), r.host})
}

func (r *registry) Function(name string) awslambda.IFunction {
	if fn, ok := r.fns[name]; ok {
		return fn
	}
	return nil
}

// newKeys creates the token signing key and the CloudFront signing secret.
func (r *registry) newKeys() {
	p := &r.props
	r.tokKey = p.TokenSigningKey
	if r.tokKey == nil {
		// Whoever may call kms:Sign on this key mints registry tokens for
		// any repository. CDK's default key policy gives the account root
		// kms:*, which lets every principal an IAM policy allows kms:Sign on
		// * sign. The root keeps administration only (no use, and no
		// kms:CreateGrant, with which a principal could grant itself Sign);
		// grantTokenKey names the two roles that use the key.
		r.tokKey = awskms.NewKey(r.Construct, jsii.String("TokenSigningKey"), &awskms.KeyProps{
			Description:   jsii.String("Berth registry token signing (ES256)"),
			KeySpec:       awskms.KeySpec_ECC_NIST_P256,
			KeyUsage:      awskms.KeyUsage_SIGN_VERIFY,
			RemovalPolicy: p.RemovalPolicy,
			Policy: awsiam.NewPolicyDocument(&awsiam.PolicyDocumentProps{Statements: &[]awsiam.PolicyStatement{
				awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
					Sid:        jsii.String("KeyAdministration"),
					Principals: &[]awsiam.IPrincipal{awsiam.NewAccountRootPrincipal()},
					Actions:    jsii.Strings(TokenKeyAdminActions...),
					Resources:  jsii.Strings("*"),
				}),
			}}),
		})
	}
	if p.CdnPublicKeyPEM == "" {
		return
	}
	r.secret = p.CdnPrivateKeySecret
	if r.secret == nil {
		r.secret = awssecretsmanager.NewSecret(r.Construct, jsii.String("CdnPrivateKey"), &awssecretsmanager.SecretProps{
			Description:   jsii.String("Berth: PEM private key of the CloudFront key pair for signed blob URLs (replace the generated value)"),
			RemovalPolicy: p.RemovalPolicy,
		})
	}
	r.keyPair = awscloudfront.NewPublicKey(r.Construct, jsii.String("CdnPublicKey"), &awscloudfront.PublicKeyProps{
		EncodedKey: jsii.String(p.CdnPublicKeyPEM),
		Comment:    jsii.String("Berth signed blob URLs"),
	})
}

// TokenKeyAdminActions are what the account root (and through it IAM) may
// do with a token signing key the construct creates: administer it, never
// use it. template.yaml's key policy lists the same.
var TokenKeyAdminActions = []string{
	"kms:CancelKeyDeletion", "kms:CreateAlias", "kms:Delete*", "kms:Describe*", "kms:Disable*",
	"kms:Enable*", "kms:Get*", "kms:List*", "kms:Put*", "kms:Revoke*", "kms:ScheduleKeyDeletion",
	"kms:TagResource", "kms:UntagResource", "kms:Update*",
}

// ownTokenKey reports whether the construct created the token signing key
// (and so writes its policy).
func (r *registry) ownTokenKey() (awskms.Key, bool) {
	key, ok := r.tokKey.(awskms.Key)
	return key, ok && r.props.TokenSigningKey == nil
}

// grantTokenKey lets the token function sign and the api function read the
// public key. On the construct's own key the key policy names the roles
// (the roles then name no KMS action: both naming each other would be a
// dependency cycle, and a key policy naming a same-account role needs no
// IAM grant besides). An imported key's policy is not ours: the roles get
// IAM statements, which work when that policy delegates to IAM.
func (r *registry) grantTokenKey(token, api *fnSpec) {
	if _, own := r.ownTokenKey(); own {
		return
	}
	token.statements = append(token.statements, statement("TokenSign", []string{"kms:GetPublicKey", "kms:Sign"}, r.tokKey.KeyArn()))
	api.statements = append(api.statements, statement("TokenVerify", []string{"kms:GetPublicKey"}, r.tokKey.KeyArn()))
}

// tokenKeyPolicy adds the function roles to the construct's own key policy.
func (r *registry) tokenKeyPolicy() {
	key, own := r.ownTokenKey()
	if !own {
		return
	}
	for _, g := range []struct {
		sid, fn string
		actions []string
	}{
		{"TokenSign", FnToken, []string{"kms:GetPublicKey", "kms:Sign"}},
		{"TokenVerify", FnAPI, []string{"kms:GetPublicKey"}},
	} {
		key.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:        jsii.String(g.sid),
			Principals: &[]awsiam.IPrincipal{awsiam.NewArnPrincipal(r.fns[g.fn].Role().RoleArn())},
			Actions:    jsii.Strings(g.actions...),
			Resources:  jsii.Strings("*"),
		}), nil)
	}
}

// newStorage creates the blob bucket and the metadata table.
func (r *registry) newStorage() {
	p := &r.props
	r.name = jsii.String(p.BucketName)
	if p.BucketName == "" {
		stackUUID := awscdk.Fn_Select(jsii.Number(2), awscdk.Fn_Split(jsii.String("/"), awscdk.Aws_STACK_ID(), nil))
		r.name = awscdk.Fn_Join(jsii.String("-"), &[]*string{
			jsii.String("berth"),
			awscdk.Aws_ACCOUNT_ID(),
			awscdk.Aws_REGION(),
			awscdk.Fn_Select(jsii.Number(0), awscdk.Fn_Split(jsii.String("-"), stackUUID, nil)),
			jsii.String((*r.Node().Addr())[:6]),
		})
	}
	bp := &awss3.BucketProps{
		BucketName:        r.name,
		BlockPublicAccess: awss3.BlockPublicAccess_BLOCK_ALL(),
		EnforceSSL:        jsii.Bool(true),
		// Versioning stays off: keys are content addressed and never
		// overwritten with different bytes, and garbage collection must
		// really free storage. Metadata has PITR; blobs are re-pushable.
		Versioned:       jsii.Bool(false),
		ObjectOwnership: awss3.ObjectOwnership_BUCKET_OWNER_ENFORCED,
		RemovalPolicy:   p.RemovalPolicy,
		LifecycleRules: &[]*awss3.LifecycleRule{
			{
				Id:                                  jsii.String("abort-incomplete-multipart"),
				AbortIncompleteMultipartUploadAfter: awscdk.Duration_Days(jsii.Number(1)),
			},
			{
				Id:         jsii.String("expire-upload-staging"),
				Prefix:     jsii.String(UploadPrefix),
				Expiration: awscdk.Duration_Days(jsii.Number(p.StagingExpirationDays)),
			},
		},
	}
	switch p.BucketEncryption {
	case EncryptionKMS:
		r.bktKey = p.BucketKey
		if r.bktKey == nil {
			r.bktKey = awskms.NewKey(r.Construct, jsii.String("BucketKey"), &awskms.KeyProps{
				Description:       jsii.String("Berth blob bucket encryption"),
				EnableKeyRotation: jsii.Bool(true),
				RemovalPolicy:     p.RemovalPolicy,
			})
		}
		bp.Encryption = awss3.BucketEncryption_KMS
		bp.EncryptionKey = r.bktKey
		bp.BucketKeyEnabled = jsii.Bool(true)
	case EncryptionS3Managed:
		bp.Encryption = awss3.BucketEncryption_S3_MANAGED
	default:
		panic(fmt.Sprintf("berth: unknown BucketEncryption %q", p.BucketEncryption))
	}
	r.bucket = awss3.NewBucket(r.Construct, jsii.String("Bucket"), bp)

	r.table = awsdynamodb.NewTable(r.Construct, jsii.String("Table"), &awsdynamodb.TableProps{
		PartitionKey:        &awsdynamodb.Attribute{Name: jsii.String("PK"), Type: awsdynamodb.AttributeType_STRING},
		SortKey:             &awsdynamodb.Attribute{Name: jsii.String("SK"), Type: awsdynamodb.AttributeType_STRING},
		BillingMode:         awsdynamodb.BillingMode_PAY_PER_REQUEST,
		TimeToLiveAttribute: jsii.String("expires"),
		PointInTimeRecoverySpecification: &awsdynamodb.PointInTimeRecoverySpecification{
			PointInTimeRecoveryEnabled: jsii.Bool(true),
		},
		DeletionProtection: p.DeletionProtection,
		RemovalPolicy:      p.RemovalPolicy,
	})
}

// newAPI creates the HTTP API, its throttled, access-logged default stage
// and the /v2/ and /token routes.
func (r *registry) newAPI() {
	p := &r.props
	r.api = awsapigatewayv2.NewHttpApi(r.Construct, jsii.String("HttpApi"), &awsapigatewayv2.HttpApiProps{
		Description:        jsii.String("Berth OCI registry"),
		CreateDefaultStage: jsii.Bool(false),
	})
	stage := r.api.AddStage(jsii.String("DefaultStage"), &awsapigatewayv2.HttpStageOptions{
		StageName:  jsii.String("$default"),
		AutoDeploy: jsii.Bool(true),
		Throttle: &awsapigatewayv2.ThrottleSettings{
			RateLimit:  jsii.Number(p.ThrottleRateLimit),
			BurstLimit: jsii.Number(p.ThrottleBurstLimit),
		},
	})
	access := r.logGroup("ApiAccessLogs")
	format, _ := json.Marshal(map[string]string{
		"requestId": "$context.requestId", "ip": "$context.identity.sourceIp",
		"time": "$context.requestTime", "method": "$context.httpMethod",
		"path": "$context.path", "status": "$context.status",
		"length": "$context.responseLength", "latency": "$context.responseLatency",
		"integrationError": "$context.integrationErrorMessage",
	})
	cfnStage := stage.Node().DefaultChild().(awsapigatewayv2.CfnStage)
	// The execute-api endpoint answers only requests CloudFront's API
	// origin marked (pkg/apigw reads the variable from every event; newCDN
	// adds the header). DisableExecuteApiEndpoint cannot do it: CloudFront
	// reaches the API through that very endpoint unless the API has a
	// custom domain of its own.
	r.origin = jsii.String(p.OriginVerifySecret)
	if p.OriginVerifySecret == "" {
		uuid := awscdk.Fn_Split(jsii.String("-"), awscdk.Fn_Select(jsii.Number(2), awscdk.Fn_Split(jsii.String("/"), awscdk.Aws_STACK_ID(), nil)), nil)
		r.origin = awscdk.Fn_Join(jsii.String(""), &[]*string{
			awscdk.Fn_Select(jsii.Number(1), uuid), awscdk.Fn_Select(jsii.Number(2), uuid),
			awscdk.Fn_Select(jsii.Number(3), uuid), awscdk.Fn_Select(jsii.Number(4), uuid),
		})
	}
	cfnStage.SetStageVariables(map[string]interface{}{apigwOriginVerifyStageVariable: r.origin})
	cfnStage.SetAccessLogSettings(
		&awsapigatewayv2.CfnStage_AccessLogSettingsProperty{
			DestinationArn: access.LogGroupArn(),
			Format:         jsii.String(string(format)),
		})

	integrations := map[string]awsapigatewayv2integrations.HttpLambdaIntegration{}
	route := func(fn string, path string, methods ...awsapigatewayv2.HttpMethod) {
		if integrations[fn] == nil {
			integrations[fn] = awsapigatewayv2integrations.NewHttpLambdaIntegration(
				jsii.String(logicalID(fn)+"Integration"), r.fns[fn], &awsapigatewayv2integrations.HttpLambdaIntegrationProps{
					PayloadFormatVersion: awsapigatewayv2.PayloadFormatVersion_VERSION_2_0(),
				})
		}
		r.api.AddRoutes(&awsapigatewayv2.AddRoutesOptions{
			Path:        jsii.String(path),
			Methods:     &methods,
			Integration: integrations[fn],
		})
	}
	route(FnAPI, "/v2", awsapigatewayv2.HttpMethod_ANY)
	route(FnAPI, "/v2/{proxy+}", awsapigatewayv2.HttpMethod_ANY)
	route(FnToken, "/token", awsapigatewayv2.HttpMethod_GET, awsapigatewayv2.HttpMethod_POST)
}

// The origin-verify stage variable and header of pkg/apigw (infra is its
// own module and does not import it; tests/template checks the SAM side).
const (
	apigwOriginVerifyStageVariable = "berthOriginVerify"
	apigwOriginVerifyHeader        = "X-Berth-Origin-Verify"
)

// envInt formats n for an environment variable.
func envInt(n int64) *string { return jsii.String(strconv.FormatInt(n, 10)) }

// assetDir is the function's directory under CodeDir.
func (r *registry) assetDir(fn string) string { return filepath.Join(r.props.CodeDir, fn) }
