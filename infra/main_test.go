package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"
	"github.com/berth-registry/berth/infra/berth"
)

const github = "https://token.actions.githubusercontent.com"

// TestReadSettingsTeam is the configuration docs/ci.md tells a team to
// deploy, as -c gives it (strings only): every value reaches the props.
func TestReadSettingsTeam(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("version: \"1\"\nrules: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := readSettings(map[string]any{
		"berth:stackName":                "BerthTeam",
		"berth:domainName":               "registry.example.com",
		"berth:certificateArn":           "arn:aws:acm:us-east-1:111122223333:certificate/abc",
		"berth:oidcIssuers":              `[{"issuer":"` + github + `","audience":"registry.example.com"}]`,
		"berth:authPolicyFile":           policy,
		"berth:apiMemoryMiB":             "2048",
		"berth:tokenReservedConcurrency": "0",
		"berth:throttleRateLimit":        "50.5",
		"berth:presignExpiry":            "5m",
		"berth:maxBodyBytes":             "1048576",
		"berth:removalPolicy":            "destroy",
		"berth:priceClass":               "PriceClass_200",
		"berth:logRetention":             "one_week",
		"berth:bucketEncryption":         "KMS",
		"berth:bucketKeyArn":             "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		"berth:tokenSigningKeyArn":       "arn:aws:kms:eu-west-1:111122223333:key/5678abcd-12ab-34cd-56ef-1234567890ab",
		"berth:originVerifySecret":       "abc-DEF_123.~",
		"berth:edgeUploads":              "false",
		"berth:lambdaEdge":               "false",
		"@aws-cdk/core:someFeatureFlag":  true, // not ours: ignored
	})
	if err != nil {
		t.Fatalf("readSettings: %v", err)
	}
	p := s.props
	if s.stackName != "BerthTeam" || p.DomainName != "registry.example.com" || s.certificateArn == "" {
		t.Errorf("stack %q domain %q certificate %q", s.stackName, p.DomainName, s.certificateArn)
	}
	if len(p.OIDCIssuers) != 1 || p.OIDCIssuers[0] != (berth.OIDCIssuer{Issuer: github, Audience: "registry.example.com"}) {
		t.Errorf("OIDCIssuers = %+v", p.OIDCIssuers)
	}
	if p.AuthPolicy != "version: \"1\"\nrules: []\n" {
		t.Errorf("AuthPolicy = %q", p.AuthPolicy)
	}
	if p.ApiMemoryMiB != 2048 || p.ThrottleRateLimit != 50.5 || p.MaxBodyBytes != 1048576 || p.PresignExpiry != "5m" {
		t.Errorf("memory %v rate %v body %v presign %q", p.ApiMemoryMiB, p.ThrottleRateLimit, p.MaxBodyBytes, p.PresignExpiry)
	}
	if p.TokenReservedConcurrency == nil || *p.TokenReservedConcurrency != 0 {
		t.Errorf("TokenReservedConcurrency = %v, want a pointer to 0 (no reservation)", p.TokenReservedConcurrency)
	}
	if p.RemovalPolicy != awscdk.RemovalPolicy_DESTROY || p.PriceClass != "PRICE_CLASS_200" || p.LogRetention != "ONE_WEEK" {
		t.Errorf("removal %q price %q retention %q", p.RemovalPolicy, p.PriceClass, p.LogRetention)
	}
	if p.BucketEncryption != berth.EncryptionKMS || s.bucketKeyArn == "" || s.tokenSigningKeyArn == "" {
		t.Errorf("encryption %q bucket key %q token key %q", p.BucketEncryption, s.bucketKeyArn, s.tokenSigningKeyArn)
	}
	if p.EdgeUploads == nil || *p.EdgeUploads || p.LambdaEdge == nil || *p.LambdaEdge || p.OriginVerifySecret != "abc-DEF_123.~" {
		t.Errorf("edge %v lambda@edge %v origin %q", p.EdgeUploads, p.LambdaEdge, p.OriginVerifySecret)
	}
}

// TestStackEnv: the stack takes the account and region the cdk CLI
// resolved (the Lambda@Edge function needs the region); with neither it
// stays environment-agnostic.
func TestStackEnv(t *testing.T) {
	t.Setenv("CDK_DEFAULT_ACCOUNT", "")
	t.Setenv("CDK_DEFAULT_REGION", "")
	if env := stackEnv(); env != nil {
		t.Errorf("env without CDK_DEFAULT_*: %+v", env)
	}
	t.Setenv("CDK_DEFAULT_REGION", "eu-west-1")
	if env := stackEnv(); env == nil || env.Account != nil || *env.Region != "eu-west-1" {
		t.Errorf("env with a region only: %+v", env)
	}
	t.Setenv("CDK_DEFAULT_ACCOUNT", "111122223333")
	if env := stackEnv(); env == nil || *env.Account != "111122223333" || *env.Region != "eu-west-1" {
		t.Errorf("env: %+v", env)
	}
}

// TestReadSettingsDefaults: no context leaves every prop zero (the
// construct's defaults) except the stack name and code directory.
func TestReadSettingsDefaults(t *testing.T) {
	s, err := readSettings(map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	if s.stackName != "Berth" || s.props.CodeDir != "../dist" {
		t.Errorf("stack %q code %q", s.stackName, s.props.CodeDir)
	}
	if s.props.OIDCIssuers != nil || s.props.TokenReservedConcurrency != nil || s.props.Auth != nil || s.props.MaxBodyBytes != 0 {
		t.Errorf("props not left to the construct's defaults: %+v", s.props)
	}
}

// TestReadSettingsCDKJSON: cdk.json holds JSON values, not strings.
func TestReadSettingsCDKJSON(t *testing.T) {
	var ctx map[string]any
	if err := json.Unmarshal([]byte(`{
		"berth:oidcIssuers": [{"issuer": "`+github+`", "audience": "reg.example"}],
		"berth:auth": true, "berth:tokenMemoryMiB": 1024, "berth:api5xxRatePercent": 2.5
	}`), &ctx); err != nil {
		t.Fatal(err)
	}
	s, err := readSettings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.props.OIDCIssuers) != 1 || s.props.OIDCIssuers[0].Audience != "reg.example" {
		t.Errorf("OIDCIssuers = %+v", s.props.OIDCIssuers)
	}
	if s.props.Auth == nil || !*s.props.Auth || s.props.TokenMemoryMiB != 1024 || s.props.Api5xxRatePercent != 2.5 {
		t.Errorf("auth %v memory %v rate %v", s.props.Auth, s.props.TokenMemoryMiB, s.props.Api5xxRatePercent)
	}
}

// TestReadSettingsRefuses: each bad value fails the synth with the key's
// name and what is wrong, and one run reports all of them.
func TestReadSettingsRefuses(t *testing.T) {
	cases := []struct {
		ctx  map[string]any
		want string
	}{
		{map[string]any{"berth:oidcIssuers": `[{"issuer":"` + github + `"`}, "berth:oidcIssuers: is not a JSON array"},
		{map[string]any{"berth:oidcIssuers": `{"issuer":"` + github + `","audience":"x"}`}, "is not a JSON array"},
		{map[string]any{"berth:oidcIssuers": `[{"issuer":"` + github + `"}]`}, "has no audience"},
		{map[string]any{"berth:oidcIssuers": `[{"issuer":"http://issuer.example","audience":"x"}]`}, "must be an https URL"},
		{map[string]any{"berth:oidcIssuers": `[{"issuer":"` + github + `?a=b","audience":"x"}]`}, "must be an https URL"},
		{map[string]any{"berth:oidcIssuers": `[{"issuer":"` + github + `","audiance":"x"}]`}, `unknown field "audiance"`},
		{map[string]any{"berth:oidcIssuers": `[{"issuer":"` + github + `","audience":"x"},{"issuer":"` + github + `","audience":"y"}]`}, "listed twice"},
		{map[string]any{"berth:oidcIssuer": "x"}, "berth:oidcIssuer: unknown key"},
		{map[string]any{"berth:domainName": "r.example.com"}, "needs berth:certificateArn"},
		{map[string]any{"berth:domainName": "r.example.com", "berth:certificateArn": "arn:aws:acm:eu-west-1:111122223333:certificate/x"}, "needs one in us-east-1"},
		{map[string]any{"berth:alarmTopicArn": "arn:aws:sqs:eu-west-1:111122223333:q"}, "berth:alarmTopicArn"},
		{map[string]any{"berth:tokenSigningKeyArn": "arn:aws:kms:eu-west-1:111122223333:alias/x"}, "arn:aws:kms:<region>:<account>:key/"},
		{map[string]any{"berth:bucketKeyArn": "arn:aws:kms:eu-west-1:111122223333:key/x", "berth:bucketEncryption": "S3_MANAGED"}, "bucketEncryption is S3_MANAGED"},
		{map[string]any{"berth:apiMemoryMiB": "64"}, "out of range"},
		{map[string]any{"berth:apiMemoryMiB": "lots"}, "not a number"},
		{map[string]any{"berth:tokenReservedConcurrency": "2.5"}, "not a whole number"},
		{map[string]any{"berth:maxBodyBytes": "6291456"}, "out of range"},
		{map[string]any{"berth:tokenTtl": "15"}, "not a positive Go duration"},
		{map[string]any{"berth:logLevel": "verbose"}, "want debug, info, warn or error"},
		{map[string]any{"berth:auth": "yes please"}, "not a boolean"},
		{map[string]any{"berth:removalPolicy": "keep"}, "not one of RETAIN"},
		{map[string]any{"berth:originVerifySecret": "a b"}, "letters, digits"},
		{map[string]any{"berth:bucketName": "Berth_Bucket"}, "not a valid S3 bucket name"},
		{map[string]any{"berth:authPolicyFile": "/nonexistent/policy.yaml"}, "no such file"},
		{map[string]any{"berth:cdnPrivateKeySecretArn": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:k-AbCdEf"}, "needs berth:cdnPublicKeyFile"},
		{map[string]any{"berth:scan": []any{"x"}}, "must be a string"},
	}
	for _, c := range cases {
		_, err := readSettings(c.ctx)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("readSettings(%v) = %v, want an error containing %q", c.ctx, err, c.want)
		}
	}
	_, err := readSettings(map[string]any{"berth:logLevel": "loud", "berth:tokenTtl": "soon"})
	if err == nil || !strings.Contains(err.Error(), "berth:logLevel") || !strings.Contains(err.Error(), "berth:tokenTtl") {
		t.Errorf("two bad keys: %v, want both named", err)
	}
}

// TestSynthTrustsGitHub synthesizes the app as `cdk deploy -c …` would and
// checks that the token function trusts GitHub Actions.
func TestSynthTrustsGitHub(t *testing.T) {
	dist := t.TempDir()
	for _, fn := range []string{berth.FnAPI, berth.FnToken, berth.FnScan, berth.FnCleanup, berth.FnOsvSync} {
		if err := os.MkdirAll(filepath.Join(dist, fn), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dist, fn, "bootstrap"), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
	issuers := `[{"issuer":"` + github + `","audience":"registry.example.com"}]`
	app := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(t.TempDir()), Context: &map[string]any{
		"berth:codeDir":            dist,
		"berth:domainName":         "registry.example.com",
		"berth:certificateArn":     "arn:aws:acm:us-east-1:111122223333:certificate/abc",
		"berth:oidcIssuers":        issuers,
		"berth:tokenMemoryMiB":     "768",
		"berth:tokenSigningKeyArn": "arn:aws:kms:us-east-1:111122223333:key/5678abcd-12ab-34cd-56ef-1234567890ab",
	}})
	if err := newStack(app); err != nil {
		t.Fatal(err)
	}
	stack := awscdk.Stack_Of(app.Node().FindChild(jsii.String("Berth")))
	tmpl := assertions.Template_FromStack(stack, nil)
	fns := tmpl.FindResources(jsii.String("AWS::Lambda::Function"), nil)
	var found bool
	for _, res := range *fns {
		props, _ := (*res)["Properties"].(map[string]any)
		env, _ := props["Environment"].(map[string]any)
		vars, _ := env["Variables"].(map[string]any)
		if got, ok := vars["BERTH_OIDC_ISSUERS"]; ok {
			found = true
			if got != issuers {
				t.Errorf("BERTH_OIDC_ISSUERS = %v, want %s", got, issuers)
			}
			if props["MemorySize"] != 768.0 {
				t.Errorf("token function MemorySize = %v, want 768", props["MemorySize"])
			}
		}
	}
	if !found {
		t.Error("no function has BERTH_OIDC_ISSUERS")
	}
	if n := len(*tmpl.FindResources(jsii.String("AWS::KMS::Key"), nil)); n != 0 {
		t.Errorf("%d KMS keys created; the imported token key should replace the created one", n)
	}

	bad := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(t.TempDir()), Context: &map[string]any{
		"berth:codeDir": dist, "berth:oidcIssuers": `[{"issuer":"http://insecure.example","audience":"x"}]`,
	}})
	if err := newStack(bad); err == nil || !strings.Contains(err.Error(), "https") {
		t.Errorf("newStack with an http issuer: %v, want an error about https", err)
	}
}
