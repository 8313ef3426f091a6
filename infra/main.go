// Command infra is the CDK app that deploys Berth in one stack:
//
//	make build && cd infra && cdk deploy
//
// Settings come from CDK context (cdk.json or -c key=value); docs/deploy.md
// lists them. cdk-nag's AwsSolutions checks run on every synth.
package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscertificatemanager"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudfront"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/jsii-runtime-go"
	"github.com/berth-registry/berth/infra/berth"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

func main() {
	defer jsii.Close()
	app := awscdk.NewApp(nil)
	if err := newStack(app); err != nil {
		fmt.Fprintln(os.Stderr, "berth infra:", err)
		os.Exit(1)
	}
	app.Synth(nil)
}

// newStack adds the Berth stack to app, configured from context.
func newStack(app awscdk.App) error {
	ctx := func(key string) string {
		if v, ok := app.Node().TryGetContext(jsii.String("berth:" + key)).(string); ok {
			return v
		}
		return ""
	}
	flag := func(key string) (*bool, error) {
		if ctx(key) == "" {
			return nil, nil
		}
		b, err := strconv.ParseBool(ctx(key))
		if err != nil {
			return nil, fmt.Errorf("context berth:%s: %w", key, err)
		}
		return &b, nil
	}
	name := ctx("stackName")
	if name == "" {
		name = "Berth"
	}
	stack := awscdk.NewStack(app, jsii.String(name), &awscdk.StackProps{
		Description: jsii.String("Berth: serverless OCI container registry"),
	})

	props := &berth.RegistryProps{
		CodeDir:          ctx("codeDir"),
		DomainName:       ctx("domainName"),
		PriceClass:       awscloudfront.PriceClass(ctx("priceClass")),
		LogRetention:     awslogs.RetentionDays(ctx("logRetention")),
		LogLevel:         ctx("logLevel"),
		TokenTTL:         ctx("tokenTtl"),
		UploadTTL:        ctx("uploadTtl"),
		BucketName:       ctx("bucketName"),
		BucketEncryption: berth.BucketEncryption(ctx("bucketEncryption")),
		RemovalPolicy:    awscdk.RemovalPolicy(ctx("removalPolicy")),
		EdgeFunctionFile: ctx("edgeFunctionFile"),
	}
	if props.CodeDir == "" {
		props.CodeDir = "../dist"
	}
	for _, fn := range []string{berth.FnAPI, berth.FnToken, berth.FnScan, berth.FnCleanup} {
		if _, err := os.Stat(props.CodeDir + "/" + fn + "/bootstrap"); err != nil {
			return fmt.Errorf("%w (run `make build` first, or set -c berth:codeDir=DIR)", err)
		}
	}
	var err error
	for key, dst := range map[string]**bool{
		"scan": &props.ScanEnabled, "auth": &props.Auth, "deletionProtection": &props.DeletionProtection,
		"edgeUploads": &props.EdgeUploads,
	} {
		if *dst, err = flag(key); err != nil {
			return err
		}
	}
	if arn := ctx("certificateArn"); arn != "" {
		props.Certificate = awscertificatemanager.Certificate_FromCertificateArn(stack, jsii.String("Certificate"), jsii.String(arn))
	}
	if file := ctx("cdnPublicKeyFile"); file != "" {
		pem, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("context berth:cdnPublicKeyFile: %w", err)
		}
		props.CdnPublicKeyPEM = string(pem)
	}
	if file := ctx("retentionPolicyFile"); file != "" {
		policy, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("context berth:retentionPolicyFile: %w", err)
		}
		props.RetentionPolicy = string(policy)
	}
	if arn := ctx("cdnPrivateKeySecretArn"); arn != "" {
		props.CdnPrivateKeySecret = awssecretsmanager.Secret_FromSecretCompleteArn(stack, jsii.String("CdnPrivateKeySecret"), jsii.String(arn))
	}
	if arn := ctx("alarmTopicArn"); arn != "" {
		props.AlarmTopic = awssns.Topic_FromTopicArn(stack, jsii.String("AlarmTopic"), jsii.String(arn))
	}
	if file := ctx("authPolicyFile"); file != "" {
		doc, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("context berth:authPolicyFile: %w", err)
		}
		props.AuthPolicy = string(doc)
	}
	berth.NewRegistry(stack, jsii.String("Registry"), props)
	awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)}), nil)
	return nil
}
