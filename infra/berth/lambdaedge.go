package berth

import (
	"fmt"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudfront"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudfront/experimental"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/berth-registry/berth/pkg/edge/lambdaedge"
)

// The Lambda@Edge function (docs/deploy.md, "The oversize 413"):
// pkg/edge/lambdaedge/oversize.js on origin response of the upload
// behaviours turns API Gateway's own 413 for a body too big for Lambda
// (a chunked PATCH from podman, skopeo or classic Docker: no function sees
// its size in advance) into an OCI SIZE_INVALID error naming `berth push`.
//
// Lambda@Edge functions live in us-east-1. CDK's experimental.EdgeFunction
// creates the function there: in the stack itself when the stack is in
// us-east-1, otherwise in a stack of its own (EdgeStackSuffix) that
// `cdk deploy --all` deploys first, its version ARN carried back through
// an SSM parameter and a custom resource. Either way the stack needs an
// explicit region; without one the construct leaves the function out and
// says so (NoLambdaEdgeWarning).
const (
	// LambdaEdgeRegion is where Lambda@Edge functions are created.
	LambdaEdgeRegion = "us-east-1"
	// LambdaEdgeMemoryMiB: the function builds one small JSON body.
	LambdaEdgeMemoryMiB = 128
	// NoLambdaEdgeWarning is the id of the warning annotation a stack
	// without an explicit region gets (the function is left out).
	NoLambdaEdgeWarning = "berth:no-lambda-edge"
	// EdgeStackSuffix ends the id (and so the name) of the us-east-1 stack
	// that holds the function when the registry's stack is elsewhere: the
	// stack Berth gets Berth-LambdaEdge.
	EdgeStackSuffix = "-LambdaEdge"
)

func (r *registry) lambdaEdgeOn() bool { return *r.props.LambdaEdge }

// newOversizeFunction creates the function and returns the version the
// upload behaviours run, or nil when it is off or the stack has no region.
func (r *registry) newOversizeFunction() awslambda.IVersion {
	if !r.lambdaEdgeOn() {
		return nil
	}
	stack := awscdk.Stack_Of(r.Construct)
	if *awscdk.Token_IsUnresolved(stack.Region()) {
		awscdk.Annotations_Of(r.Construct).AddWarningV2(jsii.String(NoLambdaEdgeWarning), jsii.String(
			"Berth: the stack has no explicit region, so the Lambda@Edge function that turns API Gateway's own 413 "+
				"into an OCI error naming `berth push` is left out (chunked uploads over ~4.7 MB get API Gateway's plain 413). "+
				"Set the stack's env (infra/main.go takes CDK_DEFAULT_REGION, which the cdk CLI sets from your credentials), "+
				"or LambdaEdge=false to silence this (docs/deploy.md, \"The oversize 413\")."))
		return nil
	}
	scope, stackID := r.lambdaEdgeScope(stack)
	id := "OversizeFunction"
	if stackID != nil {
		// Unique in the us-east-1 stack, which every registry of the
		// parent stack shares.
		id = *r.Node().Id() + id
	}
	// The role lives beside the function (a role in another region's stack
	// cannot be referenced): trusted by Lambda and Lambda@Edge, allowed
	// nothing but its own logs.
	role := awsiam.NewRole(scope, jsii.String(id+"Role"), &awsiam.RoleProps{
		Description: jsii.String("Berth Lambda@Edge oversize function: CloudWatch Logs only"),
		AssumedBy: awsiam.NewCompositePrincipal(
			awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
			awsiam.NewServicePrincipal(jsii.String("edgelambda.amazonaws.com"), nil),
		),
	})
	fn := experimental.NewEdgeFunction(r.Construct, jsii.String(id), &experimental.EdgeFunctionProps{
		Description:  jsii.String("Berth: OCI 413 for API Gateway's own 413 on upload paths (origin response)"),
		Runtime:      awslambda.Runtime_NODEJS_22_X(),
		Handler:      jsii.String(lambdaedge.Handler),
		Code:         awslambda.Code_FromInline(jsii.String(lambdaedge.Source)),
		MemorySize:   jsii.Number(LambdaEdgeMemoryMiB),
		Timeout:      awscdk.Duration_Seconds(jsii.Number(5)),
		Architecture: awslambda.Architecture_X86_64(), // Lambda@Edge runs x86_64 only
		Role:         role,
		StackId:      stackID,
	})
	// Lambda@Edge writes to /aws/lambda/us-east-1.<function> in the region
	// of each edge location that ran it; CloudFormation cannot create
	// those groups ahead. The group CDK adds for a function
	// (@aws-cdk/aws-lambda:useCdkManagedLogGroup), /aws/lambda/<function>
	// in us-east-1 and retained on deletion, would only ever hold console
	// test invocations, which the role may not log anyway: it goes.
	fn.Lambda().Node().TryRemoveChild(jsii.String("LogGroup"))
	// A policy of its own, not the role's default one: the function
	// depends on its role, and this policy names the function.
	logs := awsiam.NewPolicy(scope, jsii.String(id+"Logs"), &awsiam.PolicyProps{
		Roles: &[]awsiam.IRole{role},
		Statements: &[]awsiam.PolicyStatement{awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Sid:     jsii.String("EdgeLogs"),
			Actions: jsii.Strings("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"),
			Resources: &[]*string{
				lambdaEdgeLogGroupArn(fn.Lambda().FunctionName(), false),
				lambdaEdgeLogGroupArn(fn.Lambda().FunctionName(), true),
			},
		})},
	})
	r.suppressLambdaEdgeFindings(fn, logs)
	return fn.CurrentVersion()
}

// lambdaEdgeScope is where the function's role goes: the registry itself
// in us-east-1, else the us-east-1 stack experimental.EdgeFunction puts
// the function in, created here first so the role can go in it too
// (EdgeFunction finds and uses the stack whose id it is given).
func (r *registry) lambdaEdgeScope(stack awscdk.Stack) (constructs.Construct, *string) {
	if *stack.Region() == LambdaEdgeRegion {
		return r.Construct, nil
	}
	stage := awscdk.Stage_Of(r.Construct)
	if stage == nil {
		panic("berth: a stack with Lambda@Edge must be part of a CDK app or stage")
	}
	id := *stack.Node().Id() + EdgeStackSuffix
	if existing := stage.Node().TryFindChild(jsii.String(id)); existing != nil {
		s, ok := existing.(awscdk.Stack)
		if !ok {
			panic(fmt.Sprintf("berth: %s exists and is not a stack", id))
		}
		return s, jsii.String(id)
	}
	edgeStack := awscdk.NewStack(stage, jsii.String(id), &awscdk.StackProps{
		Description: jsii.String(fmt.Sprintf("Berth: the Lambda@Edge function of stack %s (Lambda@Edge functions live in us-east-1)", *stack.StackName())),
		Env:         &awscdk.Environment{Region: jsii.String(LambdaEdgeRegion), Account: stack.Account()},
		Tags:        stack.Tags().TagValues(),
	})
	return edgeStack, jsii.String(id)
}

// lambdaEdgeLogGroupArn is the function's log group in every region (its
// streams too, with streams).
func lambdaEdgeLogGroupArn(functionName *string, streams bool) *string {
	parts := []*string{
		jsii.String("arn:"), awscdk.Aws_PARTITION(), jsii.String(":logs:*:"), awscdk.Aws_ACCOUNT_ID(),
		jsii.String(":log-group:/aws/lambda/" + LambdaEdgeRegion + "."), functionName,
	}
	if streams {
		parts = append(parts, jsii.String(":*"))
	}
	return awscdk.Fn_Join(jsii.String(""), &parts)
}

// edgeLambdas is the origin-response association of v, if any.
func edgeLambdas(v awslambda.IVersion) *[]*awscloudfront.EdgeLambda {
	if v == nil {
		return nil
	}
	return &[]*awscloudfront.EdgeLambda{{FunctionVersion: v, EventType: awscloudfront.LambdaEdgeEventType_ORIGIN_RESPONSE}}
}
