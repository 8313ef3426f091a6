package berth

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudfront"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudfrontorigins"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsscheduler"
	"github.com/aws/aws-cdk-go/awscdk/v2/interfaces/interfacesawscloudfront"
	"github.com/aws/jsii-runtime-go"
	"github.com/berth-registry/berth/pkg/edge/lambdaedge"
)

// newCDN puts CloudFront in front of the API (/v2/, /token, caching off)
// and, with a signing key, of the bucket (/blobs/*, signed URLs only,
// cached by digest), then tells the functions the registry's host.
func (r *registry) newCDN() {
	p := &r.props
	apiDomain := awscdk.Fn_Select(jsii.Number(2), awscdk.Fn_Split(jsii.String("/"), r.api.ApiEndpoint(), nil))
	api := &awscloudfront.BehaviorOptions{
		Origin: awscloudfrontorigins.NewHttpOrigin(apiDomain, &awscloudfrontorigins.HttpOriginProps{
			ProtocolPolicy:     awscloudfront.OriginProtocolPolicy_HTTPS_ONLY,
			OriginSslProtocols: &[]awscloudfront.OriginSslPolicy{awscloudfront.OriginSslPolicy_TLS_V1_2},
			ReadTimeout:        awscdk.Duration_Seconds(jsii.Number(30)),
			OriginId:           jsii.String(APIOriginID),
			// Overrides a viewer's header of the same name.
			CustomHeaders: &map[string]*string{apigwOriginVerifyHeader: r.origin},
		}),
		AllowedMethods: awscloudfront.AllowedMethods_ALLOW_ALL(),
		CachePolicy:    awscloudfront.CachePolicy_CACHING_DISABLED(),
		// API Gateway routes on its own Host header; everything else
		// (Authorization, Range, query strings) goes through.
		OriginRequestPolicy:  awscloudfront.OriginRequestPolicy_ALL_VIEWER_EXCEPT_HOST_HEADER(),
		ViewerProtocolPolicy: awscloudfront.ViewerProtocolPolicy_HTTPS_ONLY,
		Compress:             jsii.Bool(false),
	}
	v2 := &awscloudfront.AddBehaviorOptions{
		AllowedMethods:       api.AllowedMethods,
		CachePolicy:          api.CachePolicy,
		OriginRequestPolicy:  api.OriginRequestPolicy,
		ViewerProtocolPolicy: api.ViewerProtocolPolicy,
		Compress:             api.Compress,
	}
	var upload awscloudfront.Function
	if r.edgeOn() {
		// The same function on /v2/* answers an over-size PATCH/PUT/POST
		// with an OCI 413 naming berth push, before API Gateway answers
		// its own non-OCI one.
		upload = r.newEdgeFunction()
		v2.FunctionAssociations = &[]*awscloudfront.FunctionAssociation{
			{Function: upload, EventType: awscloudfront.FunctionEventType_VIEWER_REQUEST},
		}
	}
	// A chunked body has no Content-Length for that function to see: API
	// Gateway answers it with its own 413, which the Lambda@Edge function
	// rewrites on the upload URLs (nil: off, or no region).
	oversize := r.newOversizeFunction()
	// /v2/* and its upload URLs are added after the distribution, in
	// precedence order (AdditionalBehaviors is a map: no order).
	behaviors := map[string]*awscloudfront.BehaviorOptions{"/token": api}
	// One bucket origin (added after the distribution, so it is origin 1)
	// serves signed blob GETs and edge upload PUTs.
	var bucketOrigin awscloudfront.IOrigin
	var blobBehavior *awscloudfront.AddBehaviorOptions
	if r.keyPair != nil || r.edgeOn() {
		// Origin access control with a bucket policy of our own: CloudFront
		// may read blobs/ (signed URLs) and put blobs/sha256/ (edge
		// uploads) and nothing else (the L2 origin would grant the whole
		// bucket).
		oac := awscloudfront.NewS3OriginAccessControl(r.Construct, jsii.String("BlobOriginAccessControl"), &awscloudfront.S3OriginAccessControlProps{
			Description: jsii.String("Berth blobs"),
			Signing:     awscloudfront.Signing_SIGV4_ALWAYS(),
		})
		bucketOrigin = awscloudfrontorigins.S3BucketOrigin_WithBucketDefaults(r.bucket, &awscloudfront.OriginProps{
			OriginAccessControlId: oac.OriginAccessControlId(),
		})
	}
	if r.keyPair != nil {
		group := awscloudfront.NewKeyGroup(r.Construct, jsii.String("CdnKeyGroup"), &awscloudfront.KeyGroupProps{
			Items:   &[]interfacesawscloudfront.IPublicKeyRef{r.keyPair},
			Comment: jsii.String("Berth signed blob URLs"),
		})
		// A blob's bytes never change for its key (the digest), so edges
		// may keep it long; signature query strings are not in the key.
		cache := awscloudfront.NewCachePolicy(r.Construct, jsii.String("BlobCachePolicy"), &awscloudfront.CachePolicyProps{
			Comment:                    jsii.String("Berth blobs: immutable, keyed by path (digest)"),
			MinTtl:                     awscdk.Duration_Days(jsii.Number(1)),
			DefaultTtl:                 awscdk.Duration_Days(jsii.Number(30)),
			MaxTtl:                     awscdk.Duration_Days(jsii.Number(365)),
			QueryStringBehavior:        awscloudfront.CacheQueryStringBehavior_None(),
			HeaderBehavior:             awscloudfront.CacheHeaderBehavior_None(),
			CookieBehavior:             awscloudfront.CacheCookieBehavior_None(),
			EnableAcceptEncodingGzip:   jsii.Bool(false),
			EnableAcceptEncodingBrotli: jsii.Bool(false),
		})
		blobBehavior = &awscloudfront.AddBehaviorOptions{
			AllowedMethods:       awscloudfront.AllowedMethods_ALLOW_GET_HEAD(),
			CachedMethods:        awscloudfront.CachedMethods_CACHE_GET_HEAD(),
			CachePolicy:          cache,
			TrustedKeyGroups:     &[]interfacesawscloudfront.IKeyGroupRef{group},
			ViewerProtocolPolicy: awscloudfront.ViewerProtocolPolicy_HTTPS_ONLY,
			Compress:             jsii.Bool(false),
		}
	}
	dp := &awscloudfront.DistributionProps{
		Comment:             jsii.String("Berth OCI registry"),
		DefaultBehavior:     api,
		AdditionalBehaviors: &behaviors,
		PriceClass:          p.PriceClass,
		HttpVersion:         awscloudfront.HttpVersion_HTTP2_AND_3,
		EnableIpv6:          jsii.Bool(true),
	}
	if p.DomainName != "" {
		dp.DomainNames = jsii.Strings(p.DomainName)
		dp.Certificate = p.Certificate
		dp.MinimumProtocolVersion = awscloudfront.SecurityPolicyProtocol_TLS_V1_2_2021
	}
	// No custom error responses, ever: they would apply to /_upload/* too
	// and could turn a failed upload into a 200 the viewer-response
	// function marks 201 (research note §B).
	r.dist = awscloudfront.NewDistribution(r.Construct, jsii.String("Distribution"), dp)
	if oversize != nil {
		uploads := *v2
		uploads.EdgeLambdas = edgeLambdas(oversize)
		r.dist.AddBehavior(jsii.String(lambdaedge.UploadsPathPattern), api.Origin, &uploads)
	}
	r.dist.AddBehavior(jsii.String("/v2/*"), api.Origin, v2)
	if blobBehavior != nil {
		r.dist.AddBehavior(jsii.String("/"+BlobPrefix+"*"), bucketOrigin, blobBehavior)
		r.allowCloudFrontRead()
	}
	if upload != nil {
		ub := r.uploadBehavior(upload)
		ub.EdgeLambdas = edgeLambdas(oversize)
		r.dist.AddBehavior(jsii.String(UploadPathPattern), bucketOrigin, ub)
		r.setS3OriginReadTimeout()
		r.allowCloudFrontWrite()
	}

	r.host = r.dist.DistributionDomainName()
	if p.DomainName != "" {
		r.host = jsii.String(p.DomainName)
	}
	for _, fn := range []string{FnAPI, FnToken} {
		r.fns[fn].AddEnvironment(jsii.String("BERTH_SERVICE"), r.host, nil)
		r.fns[fn].AddEnvironment(jsii.String("BERTH_TOKEN_ISSUER"), r.RegistryURL(), nil)
	}
	if r.keyPair != nil {
		api := r.fns[FnAPI]
		api.AddEnvironment(jsii.String("BERTH_CDN_URL"), r.RegistryURL(), nil)
		api.AddEnvironment(jsii.String("BERTH_CDN_KEY_PAIR_ID"), r.keyPair.PublicKeyId(), nil)
		api.AddEnvironment(jsii.String("BERTH_CDN_PRIVATE_KEY_SECRET"), r.secret.SecretArn(), nil)
	}
}

// allowCloudFrontRead lets this distribution, and only it, read blobs/ (and
// decrypt them when the bucket key is the construct's own).
func (r *registry) allowCloudFrontRead() {
	cloudfront := awsiam.NewServicePrincipal(jsii.String("cloudfront.amazonaws.com"), nil)
	onlyThis := &map[string]interface{}{"StringEquals": map[string]interface{}{"AWS:SourceArn": r.dist.DistributionArn()}}
	r.bucket.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:        jsii.String("CloudFrontReadsBlobs"),
		Principals: &[]awsiam.IPrincipal{cloudfront},
		Actions:    jsii.Strings("s3:GetObject"),
		Resources:  jsii.Strings(*r.bucket.ArnForObjects(jsii.String(BlobPrefix + "*"))),
		Conditions: onlyThis,
	}))
	if key, ok := r.bktKey.(awskms.Key); ok && r.props.BucketKey == nil {
		// The key policy cannot name this distribution: the key would then
		// depend on the distribution, which depends on the bucket, whose
		// notification waits for the scan function, whose role names the
		// key. It names this account's distributions instead.
		key.AddToResourcePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:        jsii.String("CloudFrontDecryptsBlobs"),
			Principals: &[]awsiam.IPrincipal{cloudfront},
			Actions:    jsii.Strings("kms:Decrypt"),
			Resources:  jsii.Strings("*"),
			Conditions: &map[string]interface{}{"ArnLike": map[string]interface{}{"AWS:SourceArn": awscdk.Fn_Join(jsii.String(""), &[]*string{
				jsii.String("arn:"), awscdk.Aws_PARTITION(), jsii.String(":cloudfront::"), awscdk.Aws_ACCOUNT_ID(), jsii.String(":distribution/*"),
			})}},
		}), nil)
	}
}

// newSchedule runs the cleanup function hourly.
func (r *registry) newSchedule() {
	r.scheduleFunction(FnCleanup, "Cleanup", "Berth cleanup: expired uploads, unreferenced blobs", "rate(1 hour)")
}

// scheduleFunction runs function fn on expr with EventBridge Scheduler,
// passing an EventBridge scheduled-event shaped input. The schedule (id
// <id>Schedule) and its role (<id>ScheduleRole) may invoke exactly the
// function's unqualified ARN (the L2 target would also grant every
// version: ARN:*).
func (r *registry) scheduleFunction(fn, id, description, expr string) {
	f := r.fns[fn]
	role := awsiam.NewRole(r.Construct, jsii.String(id+"ScheduleRole"), &awsiam.RoleProps{
		Description: jsii.String("Berth: EventBridge Scheduler invokes the " + fn + " function"),
		AssumedBy: awsiam.NewServicePrincipal(jsii.String("scheduler.amazonaws.com"), &awsiam.ServicePrincipalOpts{
			Conditions: &map[string]interface{}{
				"StringEquals": map[string]interface{}{"aws:SourceAccount": awscdk.Aws_ACCOUNT_ID()},
			},
		}),
		InlinePolicies: &map[string]awsiam.PolicyDocument{"invoke": awsiam.NewPolicyDocument(&awsiam.PolicyDocumentProps{
			Statements: &[]awsiam.PolicyStatement{statement("Invoke"+id, []string{"lambda:InvokeFunction"}, f.FunctionArn())},
		})},
	})
	input := map[string]interface{}{
		"version":     "0",
		"id":          "<aws.scheduler.execution-id>",
		"detail-type": "Scheduled Event",
		"source":      "aws.scheduler",
		"account":     awscdk.Aws_ACCOUNT_ID(),
		"time":        "<aws.scheduler.scheduled-time>",
		"region":      awscdk.Aws_REGION(),
		"resources":   []string{"<aws.scheduler.schedule-arn>"},
		"detail":      map[string]interface{}{},
	}
	awsscheduler.NewCfnSchedule(r.Construct, jsii.String(id+"Schedule"), &awsscheduler.CfnScheduleProps{
		Description:        jsii.String(description),
		ScheduleExpression: jsii.String(expr),
		State:              jsii.String("ENABLED"),
		FlexibleTimeWindow: &awsscheduler.CfnSchedule_FlexibleTimeWindowProperty{Mode: jsii.String("OFF")},
		Target: &awsscheduler.CfnSchedule_TargetProperty{
			Arn:     f.FunctionArn(),
			RoleArn: role.RoleArn(),
			Input:   awscdk.Stack_Of(r.Construct).ToJsonString(input, nil),
			RetryPolicy: &awsscheduler.CfnSchedule_RetryPolicyProperty{
				MaximumRetryAttempts:     jsii.Number(2),
				MaximumEventAgeInSeconds: jsii.Number(3600),
			},
		},
	})
}
