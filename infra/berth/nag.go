package berth

import (
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudfront/experimental"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

// suppressNagFindings records, on the resources concerned, why Berth
// deliberately differs from cdk-nag's AwsSolutions rules. Every other rule
// passes; infra tests assert no unsuppressed finding remains.
func (r *registry) suppressNagFindings() {
	suppress := func(scope interface{}, id, reason string, appliesTo ...interface{}) {
		s := &cdknag.NagPackSuppression{Id: jsii.String(id), Reason: jsii.String(reason)}
		if len(appliesTo) > 0 {
			s.AppliesTo = &appliesTo
		}
		cdknag.NagSuppressions_AddResourceSuppressions(scope, &[]*cdknag.NagPackSuppression{s}, jsii.Bool(true))
	}
	re := func(pattern string) interface{} {
		return &cdknag.RegexAppliesTo{Regex: jsii.String(pattern)}
	}

	suppress(r.bucket, "AwsSolutions-S1",
		"Server access logs would log every blob GET a second time at S3 request prices; CloudTrail data events are the audit trail when a team needs one, and CloudFront serves pulls.")
	for _, name := range []string{FnAPI, FnCleanup} {
		suppress(r.fns[name].Role(), "AwsSolutions-IAM5",
			"Object permissions are scoped to the registry bucket's key prefixes ("+BlobPrefix+"* for content-addressed blobs, "+UploadPrefix+"* for upload staging): object keys are digests and upload ids known only at run time ("+name+" function).",
			re(`/^Resource::arn:<AWS::Partition>:s3:::.*\/(blobs|uploads)\/\*$/`))
	}
	suppress(r.api, "AwsSolutions-APIG4",
		"The registry authorizes every request itself: the Docker token protocol needs the OCI 401 challenge (WWW-Authenticate: Bearer realm=...), which an API Gateway authorizer cannot send, and /token must be reachable anonymously.")
	suppress(r.dist, "AwsSolutions-CFR1",
		"A registry is global by nature; teams that need geo restriction add it to the distribution.")
	suppress(r.dist, "AwsSolutions-CFR2",
		"WAF costs at least $5 per month plus per-request charges, against a deployment that costs nothing at rest; requests are throttled at the HTTP API and authorized by tokens. Attach a web ACL when required.")
	suppress(r.dist, "AwsSolutions-CFR3",
		"CloudFront standard logs need an ACL-enabled bucket; the API access log records every /v2/ and /token request, and blob URLs are only issued to authorized requests.")
	if r.props.DomainName == "" {
		suppress(r.dist, "AwsSolutions-CFR4",
			"Without DomainName the distribution uses the default *.cloudfront.net certificate, whose security policy CloudFront fixes at TLSv1; with DomainName the policy is TLSv1.2_2021.")
	}
	if r.secret != nil && r.props.CdnPrivateKeySecret == nil {
		suppress(r.secret, "AwsSolutions-SMG4",
			"The secret holds the private half of a CloudFront key pair: rotating it means adding a new public key to the key group first (docs/deploy.md), which Secrets Manager rotation cannot do.")
	}
}

// suppressLambdaEdgeFindings covers the Lambda@Edge function, which may
// sit in a stack of its own (the suppressions go on the resources, not on
// the registry's subtree).
func (r *registry) suppressLambdaEdgeFindings(fn experimental.EdgeFunction, logs awsiam.Policy) {
	cdknag.NagSuppressions_AddResourceSuppressions(logs, &[]*cdknag.NagPackSuppression{{
		Id: jsii.String("AwsSolutions-IAM5"),
		Reason: jsii.String("Lambda@Edge writes its logs in the region of each edge location that ran it, " +
			"to /aws/lambda/us-east-1.<function> and streams Lambda names at run time: the region and the " +
			"stream are wildcards, the account and the log group are not."),
		AppliesTo: &[]interface{}{&cdknag.RegexAppliesTo{Regex: jsii.String(`/^Resource::arn:<AWS::Partition>:logs:\*:<AWS::AccountId>:log-group:\/aws\/lambda\/us-east-1\.<.*>(:\*)?$/`)}},
	}}, jsii.Bool(true))
	cdknag.NagSuppressions_AddResourceSuppressions(fn.Lambda(), &[]*cdknag.NagPackSuppression{{
		Id: jsii.String("AwsSolutions-L1"),
		Reason: jsii.String("Lambda@Edge supports fewer runtimes than Lambda, and later: nodejs22.x is the one " +
			"Berth's origin-response function is written and checked for (pkg/edge/lambdaedge); it uses no runtime API."),
	}}, jsii.Bool(true))
}
