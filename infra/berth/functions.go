package berth

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsssm"
	"github.com/aws/jsii-runtime-go"
)

// fnSpec is what differs between the four functions.
type fnSpec struct {
	name        string
	description string
	memory      float64
	timeout     awscdk.Duration
	env         map[string]*string
	statements  []awsiam.PolicyStatement
	reserved    float64 // reserved concurrency; 0: none
	// ephemeralMiB is the size of /tmp; 0: Lambda's default 512 MiB.
	ephemeralMiB float64
}

// logicalID turns a function name into its logical id prefix: api → ApiFunction.
func logicalID(fn string) string { return strings.ToUpper(fn[:1]) + fn[1:] + "Function" }

// statement is an Allow statement.
func statement(sid string, actions []string, resources ...*string) awsiam.PolicyStatement {
	return awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:       jsii.String(sid),
		Effect:    awsiam.Effect_ALLOW,
		Actions:   jsii.Strings(actions...),
		Resources: &resources,
	})
}

// bucketARN is the bucket's ARN built from its name, so that policies which
// use it do not depend on the bucket resource (the bucket's notification
// depends on the scan function, which depends on its role).
func (r *registry) bucketARN(suffix string) *string {
	return awscdk.Fn_Join(jsii.String(""), &[]*string{
		jsii.String("arn:"), awscdk.Aws_PARTITION(), jsii.String(":s3:::"), r.name, jsii.String(suffix),
	})
}

func (r *registry) logGroup(id string) awslogs.LogGroup {
	return awslogs.NewLogGroup(r.Construct, jsii.String(id), &awslogs.LogGroupProps{
		Retention:     r.props.LogRetention,
		RemovalPolicy: awscdk.RemovalPolicy_DESTROY,
	})
}

// Variables of functions/internal/lambdaenv the construct sets beyond
// each spec's own list (the edge path and the verify-upload invoke).
const (
	lambdaEnvEdgeKVS         = "BERTH_EDGE_KVS_ARN"
	lambdaEnvCleanupFunction = "BERTH_CLEANUP_FUNCTION"
	lambdaEnvEventBus        = "BERTH_EVENT_BUS"
)

// eventBusARN is the bus registry events go to: Props.EventBus, or the
// account's default bus in the stack's region.
func (r *registry) eventBusARN() *string {
	if r.props.EventBus != nil {
		return r.props.EventBus.EventBusArn()
	}
	return awscdk.Fn_Join(jsii.String(""), &[]*string{
		jsii.String("arn:"), awscdk.Aws_PARTITION(), jsii.String(":events:"), awscdk.Aws_REGION(),
		jsii.String(":"), awscdk.Aws_ACCOUNT_ID(), jsii.String(":event-bus/default"),
	})
}

// Actions per function. DynamoDB transactions need the per-item actions of
// their operations; there is no TransactWriteItems action.
var (
	// BatchGetItem: a manifest PUT reads the links of everything it
	// references in one round trip (storage.ItemBatchGetter), and the
	// orphan pass of garbage collection reads records 50 blobs at a time.
	ddbRead   = []string{"dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem"}
	ddbWrite  = []string{"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem"}
	s3Staging = []string{"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"}
)

func concat(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// newFunctions creates the four functions (three with scanning off; the
// fifth, osvsync, comes with scanning: newScanning), each
// with its own log group and a role holding only its own statements.
func (r *registry) newFunctions() {
	p := &r.props
	table := r.table.TableArn()
	blobs, uploads := r.bucketARN("/"+BlobPrefix+"*"), r.bucketARN("/"+UploadPrefix+"*")
	common := map[string]*string{
		"BERTH_TABLE":     r.table.TableName(),
		"BERTH_BUCKET":    r.name,
		"BERTH_LOG_LEVEL": jsii.String(p.LogLevel),
	}
	auth := "off"
	if *p.Auth {
		auth = "on"
	}

	// A predictable name, so operators know which parameter to edit:
	// /berth/<stack name>/<construct id>/auth-policy.
	r.policy = awsssm.NewStringParameter(r.Construct, jsii.String("AuthPolicy"), &awsssm.StringParameterProps{
		ParameterName: awscdk.Fn_Join(jsii.String(""), &[]*string{
			jsii.String("/berth/"), awscdk.Aws_STACK_NAME(), jsii.String("/" + *r.Node().Id() + "/auth-policy"),
		}),
		SimpleName:  jsii.Bool(false),
		Description: jsii.String("Berth repository policy (docs/auth.md)"),
		StringValue: jsii.String(p.AuthPolicy),
		Tier:        awsssm.ParameterTier_STANDARD,
	})

	api := fnSpec{
		name: FnAPI, description: "Berth OCI /v2/ API", memory: p.ApiMemoryMiB,
		// The HTTP API integration timeout (30 s, its maximum): running
		// longer would bill work nobody waits for.
		timeout: awscdk.Duration_Seconds(jsii.Number(30)),
		env: map[string]*string{
			"BERTH_TABLE": common["BERTH_TABLE"], "BERTH_BUCKET": common["BERTH_BUCKET"],
			"BERTH_LOG_LEVEL":        common["BERTH_LOG_LEVEL"],
			"BERTH_PRESIGN_EXPIRY":   jsii.String(p.PresignExpiry),
			"BERTH_UPLOAD_TTL":       jsii.String(p.UploadTTL),
			"BERTH_MAX_BODY_BYTES":   envInt(p.MaxBodyBytes),
			"BERTH_AUTH":             jsii.String(auth),
			"BERTH_TOKEN_KMS_KEY_ID": r.tokKey.KeyArn(),
			// Required by the api's auth setup, which only verifies tokens
			// and never reads the policy: no ssm:GetParameter here.
			"BERTH_AUTH_POLICY_PARAM": r.policy.ParameterName(),
			"BERTH_TAG_IMMUTABILITY":  jsii.String(p.TagImmutability),
		},
		statements: []awsiam.PolicyStatement{
			statement("MetadataReadWrite", concat(ddbRead, ddbWrite), table),
			// Blob bytes are written once (PutObject also covers multipart
			// create/part/complete and the copy into place; a failed copy
			// above 5 GiB aborts its multipart upload) and read through
			// presigned URLs signed with this role; only garbage collection
			// deletes them.
			statement("BlobObjects", []string{"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"}, blobs),
			statement("UploadStaging", s3Staging, uploads),
			// Without ListBucket a HEAD of a missing key answers 403, not 404.
			// No s3:prefix condition: HEAD requests carry no prefix, so a
			// conditioned grant would never apply to them.
			statement("BlobBucketList", []string{"s3:ListBucket"}, r.bucketARN("")),
		},
	}
	if ti := p.TagImmutability; ti != "" {
		if !json.Valid([]byte(ti)) {
			panic("berth: TagImmutability is not valid JSON (an array of tag mutability rules, docs/retention.md)")
		}
		if len(ti) > MaxTagImmutabilityBytes {
			panic(fmt.Sprintf("berth: TagImmutability is %d bytes; the api function's environment leaves room for %d (docs/retention.md)", len(ti), MaxTagImmutabilityBytes))
		}
	}
	oidc, err := json.Marshal(p.OIDCIssuers)
	if err != nil {
		panic(err)
	}
	if p.OIDCIssuers == nil {
		oidc = []byte("[]")
	}
	api.reserved = p.ApiReservedConcurrency
	token := fnSpec{
		name: FnToken, description: "Berth token realm", memory: p.TokenMemoryMiB,
		reserved: *p.TokenReservedConcurrency,
		timeout:  awscdk.Duration_Seconds(jsii.Number(10)),
		env: map[string]*string{
			"BERTH_LOG_LEVEL":         common["BERTH_LOG_LEVEL"],
			"BERTH_TOKEN_KMS_KEY_ID":  r.tokKey.KeyArn(),
			"BERTH_AUTH_POLICY_PARAM": r.policy.ParameterName(),
			"BERTH_TOKEN_TTL":         jsii.String(p.TokenTTL),
			"BERTH_OIDC_ISSUERS":      jsii.String(string(oidc)),
		},
		statements: []awsiam.PolicyStatement{
			statement("AuthPolicyRead", []string{"ssm:GetParameter"}, r.policy.ParameterArn()),
		},
	}
	r.grantTokenKey(&token, &api)
	scan := r.scanSpec(common) // scanning.go
	// The cleanup function sweeps expired upload sessions (Query the
	// UPLOADS# index, GetItem each session, abort its staging, then one
	// transaction turns the session into a tombstone, an UpdateItem, and
	// deletes its index entry), applies the retention policy (Query the
	// catalog and each repository's manifests and tags, then
	// meta.ManifestDelete) and collects garbage (docs/gc.md: Query the GC#
	// candidate partitions and each candidate's BLOB# partition,
	// transactions that delete records and put GONE marks, DeleteObject on
	// blobs/* only, and ListBucket for the orphan pass). Only this function
	// may delete blob bytes.
	if rp := p.RetentionPolicy; rp != "" {
		if !json.Valid([]byte(rp)) {
			panic("berth: RetentionPolicy is not valid JSON (an Amazon ECR lifecycle policy, docs/retention.md)")
		}
		if len(rp) > MaxRetentionPolicyBytes {
			panic(fmt.Sprintf("berth: RetentionPolicy is %d bytes; Lambda environment variables fit %d (docs/retention.md)", len(rp), MaxRetentionPolicyBytes))
		}
	}
	cleanup := fnSpec{
		name: FnCleanup, description: "Berth cleanup: expired upload sessions, retention, garbage collection (hourly)", memory: p.CleanupMemoryMiB,
		// 15 minutes: a verify-upload event reads a multipart direct upload
		// back (tens of GB at ~100 MB/s); the hourly sweep needs far less.
		timeout: awscdk.Duration_Minutes(jsii.Number(15)),
		env: map[string]*string{
			"BERTH_TABLE": common["BERTH_TABLE"], "BERTH_BUCKET": common["BERTH_BUCKET"],
			"BERTH_LOG_LEVEL":        common["BERTH_LOG_LEVEL"],
			"BERTH_RETENTION_POLICY": jsii.String(p.RetentionPolicy),
			"BERTH_GC_GRACE":         jsii.String(p.GCGrace),
		},
		statements: []awsiam.PolicyStatement{
			statement("UploadSweep", []string{"dynamodb:Query", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}, table),
			statement("UploadStagingDelete", []string{"s3:AbortMultipartUpload", "s3:DeleteObject"}, uploads),
			statement("Retention", []string{"dynamodb:Query", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}, table),
			statement("GarbageCollection", []string{"s3:DeleteObject"}, blobs),
		},
	}
	// The cleanup function also verifies completed multipart direct
	// uploads (berth push above 5 GiB; registry.Verifier), invoked by the
	// api function: it reads the session and staged object, copies the
	// verified bytes to blobs/ (PutObject also covers the multipart copy;
	// abort when it fails) and links the blob in one transaction. Without
	// ListBucket a retried verification whose staging is already gone
	// would get 403 instead of 404.
	cleanup.statements = append(cleanup.statements,
		statement("VerifyUploadMetadata", concat(ddbRead, ddbWrite), table),
		statement("VerifyUploadStaging", []string{"s3:GetObject"}, uploads),
		statement("VerifyUploadBlobs", []string{"s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"}, blobs),
		statement("VerifyUploadList", []string{"s3:ListBucket"}, r.bucketARN("")),
	)
	if r.kvs != nil {
		arn := r.kvs.KeyValueStoreArn()
		api.env[lambdaEnvEdgeKVS] = arn
		cleanup.env[lambdaEnvEdgeKVS] = arn
		api.statements = append(api.statements, statement("EdgeKeyRead", kvsRead, arn))
		cleanup.statements = append(cleanup.statements, statement("EdgeKeyRotation", kvsRotate, arn))
	}
	if *p.Events {
		// By ARN, which PutEvents takes as the bus name: it also names a
		// bus of another account.
		bus := r.eventBusARN()
		api.env[lambdaEnvEventBus] = bus
		cleanup.env[lambdaEnvEventBus] = bus
		api.statements = append(api.statements, statement("PutRegistryEvents", []string{"events:PutEvents"}, bus))
		cleanup.statements = append(cleanup.statements, statement("PutRegistryEvents", []string{"events:PutEvents"}, bus))
	}
	if r.bktKey != nil {
		key := r.bktKey.KeyArn()
		api.statements = append(api.statements, statement("BucketKey", []string{"kms:Decrypt", "kms:GenerateDataKey"}, key))
		cleanup.statements = append(cleanup.statements, statement("BucketKey", []string{"kms:Decrypt", "kms:GenerateDataKey"}, key))
	}
	if r.secret != nil {
		api.statements = append(api.statements, statement("CdnPrivateKeyRead", []string{"secretsmanager:GetSecretValue"}, r.secret.SecretArn()))
	}

	// Cleanup first: the api function's environment and role name it (the
	// asynchronous verify-upload invoke, lambda:InvokeFunction on it only).
	r.fns[FnCleanup] = r.newFunction(cleanup)
	verifier := r.fns[FnCleanup]
	api.env[lambdaEnvCleanupFunction] = verifier.FunctionName()
	api.statements = append(api.statements, statement("InvokeUploadVerifier", []string{"lambda:InvokeFunction"}, verifier.FunctionArn()))
	specs := []fnSpec{api, token, scan}
	if !*p.ScanEnabled {
		specs = []fnSpec{api, token}
	}
	for _, s := range specs {
		r.fns[s.name] = r.newFunction(s)
	}
	r.tokenKeyPolicy()
	if *p.ScanEnabled {
		r.notifyScan()
	}
}

func (r *registry) newFunction(s fnSpec) awslambda.Function {
	id := logicalID(s.name)
	logs := r.logGroup(id + "Logs")
	doc := awsiam.NewPolicyDocument(&awsiam.PolicyDocumentProps{})
	doc.AddStatements(statement("Logs", []string{"logs:CreateLogStream", "logs:PutLogEvents"}, logs.LogGroupArn()))
	doc.AddStatements(s.statements...)
	role := awsiam.NewRole(r.Construct, jsii.String(id+"Role"), &awsiam.RoleProps{
		Description:    jsii.String("Berth " + s.name + " function"),
		AssumedBy:      awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		InlinePolicies: &map[string]awsiam.PolicyDocument{s.name: doc},
	})
	var reserved *float64
	if s.reserved > 0 { // 0 would disable the function: it means none here
		reserved = jsii.Number(s.reserved)
	}
	var tmp awscdk.Size
	if s.ephemeralMiB > 0 {
		tmp = awscdk.Size_Mebibytes(jsii.Number(s.ephemeralMiB))
	}
	return awslambda.NewFunction(r.Construct, jsii.String(id), &awslambda.FunctionProps{
		ReservedConcurrentExecutions: reserved,
		Description:                  jsii.String(s.description),
		Runtime:                      awslambda.Runtime_PROVIDED_AL2023(),
		Architecture:                 awslambda.Architecture_ARM_64(),
		Handler:                      jsii.String("bootstrap"),
		Code:                         awslambda.Code_FromAsset(jsii.String(r.assetDir(s.name)), nil),
		MemorySize:                   jsii.Number(s.memory),
		EphemeralStorageSize:         tmp,
		Timeout:                      s.timeout,
		Environment:                  &s.env,
		Role:                         role,
		LogGroup:                     logs,
	})
}

// notifyScan sends ObjectCreated events under blobs/ to the scan function
// as a native bucket notification (S3 event shape), not the CDK's
// notification custom resource: the permission names the bucket by its
// computed ARN, and the bucket waits for the permission.
func (r *registry) notifyScan() {
	scan := r.fns[FnScan]
	perm := awslambda.NewCfnPermission(r.Construct, jsii.String("ScanFunctionS3Invoke"), &awslambda.CfnPermissionProps{
		Action:        jsii.String("lambda:InvokeFunction"),
		FunctionName:  scan.FunctionArn(),
		Principal:     jsii.String("s3.amazonaws.com"),
		SourceAccount: awscdk.Aws_ACCOUNT_ID(),
		SourceArn:     r.bucketARN(""),
	})
	cfn := r.bucket.Node().DefaultChild().(awss3.CfnBucket)
	cfn.SetNotificationConfiguration(&awss3.CfnBucket_NotificationConfigurationProperty{
		LambdaConfigurations: &[]interface{}{&awss3.CfnBucket_LambdaConfigurationProperty{
			Event:    jsii.String("s3:ObjectCreated:*"),
			Function: scan.FunctionArn(),
			Filter: &awss3.CfnBucket_NotificationFilterProperty{
				S3Key: &awss3.CfnBucket_S3KeyFilterProperty{
					Rules: &[]interface{}{&awss3.CfnBucket_FilterRuleProperty{
						Name: jsii.String("prefix"), Value: jsii.String(BlobPrefix),
					}},
				},
			},
		}},
	})
	cfn.Node().AddDependency(perm)
}
