package berth_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscertificatemanager"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/jsii-runtime-go"
	"github.com/berth-registry/berth/infra/berth"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

// infraDir is infra/, found from this file so tests run from any directory.
func infraDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// TestMain points the jsii runtime's cache and CDK_HOME into infra/.cache
// (unless the caller chose others) and every scratch file of this run (the
// jsii kernel's, cdk.out, the stand-in CodeDir) into one temporary
// directory that it removes afterwards.
func TestMain(m *testing.M) {
	cache := filepath.Join(infraDir(), ".cache")
	base := os.Getenv("TMPDIR")
	if base == "" {
		base = filepath.Join(cache, "tmp")
	}
	for env, dir := range map[string]string{
		"JSII_RUNTIME_PACKAGE_CACHE_ROOT": filepath.Join(cache, "jsii"),
		"CDK_HOME":                        filepath.Join(cache, "cdk"),
	} {
		if os.Getenv(env) == "" {
			os.Setenv(env, dir)
		}
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	run, err := os.MkdirTemp(base, "infra-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("TMPDIR", run)
	os.Setenv("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
	code := m.Run()
	jsii.Close()
	os.RemoveAll(run)
	os.Exit(code)
}

// codeDir is a CodeDir with a small stand-in bootstrap per function: the
// construct only packages the directory, it never runs it.
var codeDir = sync.OnceValue(func() string {
	dir, err := os.MkdirTemp("", "berth-dist-")
	if err != nil {
		panic(err)
	}
	for _, fn := range []string{berth.FnAPI, berth.FnToken, berth.FnScan, berth.FnCleanup, berth.FnOsvSync} {
		if err := os.MkdirAll(filepath.Join(dir, fn), 0o755); err != nil {
			panic(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fn, "bootstrap"), []byte("#!/bin/sh\n# stand-in for "+fn+"\n"), 0o755); err != nil {
			panic(err)
		}
	}
	return dir
})

// cdkContext is cdk.json's context (feature flags), which unit tests must
// load themselves.
var cdkContext = sync.OnceValue(func() map[string]interface{} {
	b, err := os.ReadFile(filepath.Join(infraDir(), "cdk.json"))
	if err != nil {
		panic(err)
	}
	var doc struct {
		Context map[string]interface{} `json:"context"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		panic(err)
	}
	return doc.Context
})

// testPublicKeyPEM is a fresh RSA 2048 public key, as CloudFront wants.
var testPublicKeyPEM = sync.OnceValue(func() string {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
})

// synthesized is one stack's template plus the cdk-nag annotations.
type synthesized struct {
	app      awscdk.App
	stack    awscdk.Stack
	template assertions.Template
	json     map[string]interface{}
}

// synth builds a stack holding one Registry with cdk-nag applied.
// configure may add resources to the stack and adjust the props.
func synth(configure func(stack awscdk.Stack, p *berth.RegistryProps)) *synthesized {
	return synthIn(nil, configure)
}

// synthIn is synth with the stack in env (nil: environment-agnostic).
func synthIn(env *awscdk.Environment, configure func(stack awscdk.Stack, p *berth.RegistryProps)) *synthesized {
	out, err := os.MkdirTemp("", "cdk.out-")
	if err != nil {
		panic(err)
	}
	app := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(out)})
	for k, v := range cdkContext() {
		app.Node().SetContext(jsii.String(k), v)
	}
	stack := awscdk.NewStack(app, jsii.String("Berth"), &awscdk.StackProps{Env: env})
	props := &berth.RegistryProps{CodeDir: codeDir()}
	if configure != nil {
		configure(stack, props)
	}
	berth.NewRegistry(stack, jsii.String("Registry"), props)
	awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)}), nil)
	defer func() {
		if r := recover(); r != nil {
			panic(fmt.Sprintf("%v%s", r, validationReport(out)))
		}
	}()
	tpl := assertions.Template_FromStack(stack, nil)
	return &synthesized{app: app, stack: stack, template: tpl, json: (*tpl.ToJSON())}
}

// validationReport lists the violations of a failed synth (unsuppressed
// cdk-nag errors, CloudFormation checks such as circular dependencies).
func validationReport(outdir string) string {
	b, err := os.ReadFile(filepath.Join(outdir, "validation-report.json"))
	if err != nil {
		return ""
	}
	var report struct {
		PluginReports []struct {
			Violations []struct {
				RuleName, Description string
			}
		}
	}
	if err := json.Unmarshal(b, &report); err != nil {
		return "\n" + string(b)
	}
	var out string
	for _, p := range report.PluginReports {
		for _, v := range p.Violations {
			out += "\n  " + v.RuleName + ": " + v.Description
		}
	}
	return out
}

// use returns the stack f synthesizes, failing the test (not the whole
// run) when synthesis fails.
func use(t *testing.T, f func() *synthesized) (s *synthesized) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("synth: %v", r)
		}
	}()
	return f()
}

// defaultStack: the props a first deployment uses, plus a CloudFront key.
var defaultStack = sync.OnceValue(func() *synthesized {
	return synth(func(_ awscdk.Stack, p *berth.RegistryProps) {
		p.CdnPublicKeyPEM = testPublicKeyPEM()
		p.OIDCIssuers = []berth.OIDCIssuer{{Issuer: "https://token.actions.githubusercontent.com", Audience: "berth"}}
		p.TokenTTL = "10m"
	})
})

// variantStack turns every optional knob the other way.
var variantStack = sync.OnceValue(func() *synthesized {
	return synth(func(stack awscdk.Stack, p *berth.RegistryProps) {
		p.ScanEnabled = jsii.Bool(false)
		p.DeletionProtection = jsii.Bool(false)
		p.Auth = jsii.Bool(false)
		p.RemovalPolicy = awscdk.RemovalPolicy_DESTROY
		p.BucketEncryption = berth.EncryptionKMS
		p.DomainName = "registry.example.com"
		p.Certificate = awscertificatemanager.Certificate_FromCertificateArn(stack, jsii.String("Cert"),
			jsii.String("arn:aws:acm:us-east-1:111122223333:certificate/00000000-0000-0000-0000-000000000000"))
		p.AlarmTopic = awssns.NewTopic(stack, jsii.String("Alarms"), &awssns.TopicProps{EnforceSSL: jsii.Bool(true)})
		p.ApiMemoryMiB = 2048
		p.BucketName = "my-berth-blobs"
		p.RetentionPolicy = variantRetentionPolicy
		p.TagImmutability = variantTagImmutability
		p.TokenReservedConcurrency = jsii.Number(0)
		p.ApiReservedConcurrency = 50
		p.OriginVerifySecret = "variant-origin-marker"
		p.EventBus = awsevents.NewEventBus(stack, jsii.String("RegistryEvents"), nil)
	})
})

// variantRetentionPolicy keeps one untagged image (ECR's documented example).
const variantRetentionPolicy = `{"rules":[{"rulePriority":1,"description":"Keep only one untagged image, expire all others",` +
	`"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}`

// variantTagImmutability keeps every tag but latest of team/** in place.
const variantTagImmutability = `[{"repositories":["team/**"],"imageTagMutability":"IMMUTABLE_WITH_EXCLUSION",` +
	`"imageTagMutabilityExclusionFilters":[{"filterType":"WILDCARD","filter":"latest"}]}]`

// kmsCdnStack: SSE-KMS bucket served through CloudFront.
var kmsCdnStack = sync.OnceValue(func() *synthesized {
	return synth(func(_ awscdk.Stack, p *berth.RegistryProps) {
		p.CdnPublicKeyPEM = testPublicKeyPEM()
		p.BucketEncryption = berth.EncryptionKMS
	})
})

// samShapedStack: the defaults, which is what template.yaml deploys (no
// CloudFront key pair).
var samShapedStack = sync.OnceValue(func() *synthesized { return synth(nil) })

// must runs f and turns a jsii panic (a failed assertion) into t.Errorf.
func must(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("%s: %v", what, r)
		}
	}()
	f()
}

// obj and arr shorten assertion literals.
type obj = map[string]interface{}
type arr = []interface{}
