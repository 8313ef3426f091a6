// Command infra is the CDK app that deploys Berth in one stack:
//
//	make build && cd infra && cdk deploy
//
// Settings come from CDK context (cdk.json or -c berth:key=value);
// docs/deploy.md lists them. Every berth:* key is checked at synth, all at
// once, so a typo or a bad value fails `cdk synth` with the key's name
// instead of deploying something else. cdk-nag's AwsSolutions checks run on
// every synth.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscertificatemanager"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudfront"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/jsii-runtime-go"
	"github.com/berth-registry/berth/infra/berth"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
	"gopkg.in/yaml.v3"
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
	all, _ := app.Node().GetAllContext(nil).(map[string]any)
	s, err := readSettings(all)
	if err != nil {
		return err
	}
	for _, fn := range []string{berth.FnAPI, berth.FnToken, berth.FnScan, berth.FnCleanup} {
		if _, err := os.Stat(s.props.CodeDir + "/" + fn + "/bootstrap"); err != nil {
			return fmt.Errorf("%w (run `make build` first, or set -c berth:codeDir=DIR)", err)
		}
	}
	stack := awscdk.NewStack(app, jsii.String(s.stackName), &awscdk.StackProps{
		Description: jsii.String("Berth: serverless OCI container registry"),
		Env:         stackEnv(),
	})
	props := s.props
	// Imported resources need the stack as their scope, so they are made
	// here from the ARNs readSettings checked.
	if s.certificateArn != "" {
		props.Certificate = awscertificatemanager.Certificate_FromCertificateArn(stack, jsii.String("Certificate"), jsii.String(s.certificateArn))
	}
	if s.cdnPrivateKeySecretArn != "" {
		props.CdnPrivateKeySecret = awssecretsmanager.Secret_FromSecretCompleteArn(stack, jsii.String("CdnPrivateKeySecret"), jsii.String(s.cdnPrivateKeySecretArn))
	}
	if s.alarmTopicArn != "" {
		props.AlarmTopic = awssns.Topic_FromTopicArn(stack, jsii.String("AlarmTopic"), jsii.String(s.alarmTopicArn))
	}
	if s.bucketKeyArn != "" {
		props.BucketKey = awskms.Key_FromKeyArn(stack, jsii.String("BucketKey"), jsii.String(s.bucketKeyArn))
	}
	if s.tokenSigningKeyArn != "" {
		props.TokenSigningKey = awskms.Key_FromKeyArn(stack, jsii.String("TokenSigningKey"), jsii.String(s.tokenSigningKeyArn))
	}
	berth.NewRegistry(stack, jsii.String("Registry"), &props)
	awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)}), nil)
	return nil
}

// stackEnv is the account and region the cdk CLI found in the caller's
// credentials and configuration (it sets CDK_DEFAULT_ACCOUNT and
// CDK_DEFAULT_REGION when it runs the app). The Lambda@Edge function needs
// a stack with an explicit region (docs/deploy.md, "The oversize 413");
// without one, as in an offline synth with no AWS configuration, the stack
// stays environment-agnostic and the construct leaves that function out
// with a warning.
func stackEnv() *awscdk.Environment {
	env := &awscdk.Environment{}
	if v := os.Getenv("CDK_DEFAULT_ACCOUNT"); v != "" {
		env.Account = jsii.String(v)
	}
	if v := os.Getenv("CDK_DEFAULT_REGION"); v != "" {
		env.Region = jsii.String(v)
	}
	if env.Account == nil && env.Region == nil {
		return nil
	}
	return env
}

// settings is the app's configuration read from context: the construct's
// props with every plain value set, and the ARNs of resources to import
// (which need the stack to exist).
type settings struct {
	stackName string
	props     berth.RegistryProps

	certificateArn, cdnPrivateKeySecretArn, alarmTopicArn string
	bucketKeyArn, tokenSigningKeyArn                      string
}

// contextKeys are the berth:* keys the app reads; any other berth:* key is
// refused, because a misspelt key would otherwise be ignored and deploy
// the default (an OIDC issuer that is silently not trusted, say).
var contextKeys = []string{
	"stackName", "codeDir", "domainName", "certificateArn", "priceClass",
	"cdnPublicKeyFile", "cdnPrivateKeySecretArn",
	"apiMemoryMiB", "tokenMemoryMiB", "scanMemoryMiB", "cleanupMemoryMiB",
	"logRetention", "logLevel", "scan", "edgeUploads", "edgeFunctionFile", "lambdaEdge",
	"retentionPolicyFile", "tagImmutabilityFile", "uploadTtl", "presignExpiry", "maxBodyBytes", "stagingExpirationDays",
	"removalPolicy", "deletionProtection", "bucketName", "bucketEncryption", "bucketKeyArn",
	"auth", "tokenSigningKeyArn", "tokenTtl", "authPolicyFile", "oidcIssuers",
	"throttleRateLimit", "throttleBurstLimit", "tokenReservedConcurrency", "apiReservedConcurrency",
	"originVerifySecret", "alarmTopicArn", "api5xxRatePercent",
	"scanEphemeralStorageMiB", "osvSyncMemoryMiB", "osvSyncSchedule", "osvEcosystems",
}

// readSettings checks and converts the berth:* entries of ctx (all of the
// app's context: cdk.json, cdk.context.json and -c). Values may be strings
// (what -c gives) or, from cdk.json, JSON booleans, numbers and, for
// oidcIssuers, an array. Every problem is reported, joined in one error.
func readSettings(ctx map[string]any) (settings, error) {
	r := &ctxReader{ctx: ctx}
	r.checkKeys()
	s := settings{stackName: r.str("stackName")}
	if s.stackName == "" {
		s.stackName = "Berth"
	}
	p := &s.props
	p.CodeDir = r.str("codeDir")
	if p.CodeDir == "" {
		p.CodeDir = "../dist"
	}
	p.DomainName = r.str("domainName")
	s.certificateArn = r.arn("certificateArn", "acm", "certificate/")
	if p.DomainName != "" && s.certificateArn == "" {
		r.fail("domainName", "needs berth:certificateArn (an ACM certificate in us-east-1 that covers %s)", p.DomainName)
	}
	if s.certificateArn != "" && p.DomainName == "" {
		r.fail("certificateArn", "is only used with berth:domainName")
	}
	p.PriceClass = awscloudfront.PriceClass(r.enum("priceClass", "PRICE_CLASS_", "PRICE_CLASS_100", "PRICE_CLASS_200", "PRICE_CLASS_ALL"))
	if file := r.str("cdnPublicKeyFile"); file != "" {
		pem := r.file("cdnPublicKeyFile", file)
		if pem != "" && !strings.Contains(pem, "-----BEGIN PUBLIC KEY-----") {
			r.fail("cdnPublicKeyFile", "%s is not a PEM public key (openssl rsa -pubout writes one)", file)
		}
		p.CdnPublicKeyPEM = pem
	}
	s.cdnPrivateKeySecretArn = r.arn("cdnPrivateKeySecretArn", "secretsmanager", "secret:")
	if s.cdnPrivateKeySecretArn != "" && p.CdnPublicKeyPEM == "" && r.str("cdnPublicKeyFile") == "" {
		r.fail("cdnPrivateKeySecretArn", "needs berth:cdnPublicKeyFile (the public half of the key pair)")
	}

	// Lambda takes 128 to 10240 MiB in 1 MiB steps.
	p.ApiMemoryMiB = r.number("apiMemoryMiB", 128, 10240, true)
	p.TokenMemoryMiB = r.number("tokenMemoryMiB", 128, 10240, true)
	p.ScanMemoryMiB = r.number("scanMemoryMiB", 128, 10240, true)
	p.CleanupMemoryMiB = r.number("cleanupMemoryMiB", 128, 10240, true)
	p.LogRetention = awslogs.RetentionDays(r.enum("logRetention", "", retentionDays...))
	p.LogLevel = strings.ToLower(r.str("logLevel"))
	if p.LogLevel != "" && !slices.Contains([]string{"debug", "info", "warn", "error"}, p.LogLevel) {
		r.fail("logLevel", "is %q; want debug, info, warn or error", p.LogLevel)
	}
	p.ScanEnabled = r.flag("scan")
	// Lambda's /tmp: 512 MiB to 10 GiB.
	p.ScanEphemeralStorageMiB = r.number("scanEphemeralStorageMiB", 512, 10240, true)
	p.OsvSyncMemoryMiB = r.number("osvSyncMemoryMiB", 128, 10240, true)
	p.OsvSyncSchedule = r.str("osvSyncSchedule")
	if v := r.str("osvEcosystems"); v != "" {
		for e := range strings.SplitSeq(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				p.OsvEcosystems = append(p.OsvEcosystems, e)
			}
		}
	}
	p.EdgeUploads = r.flag("edgeUploads")
	p.LambdaEdge = r.flag("lambdaEdge")
	p.EdgeFunctionFile = r.str("edgeFunctionFile")
	if p.EdgeFunctionFile != "" {
		r.file("edgeFunctionFile", p.EdgeFunctionFile)
	}
	if file := r.str("retentionPolicyFile"); file != "" {
		doc := r.file("retentionPolicyFile", file)
		switch {
		case doc == "":
		case !json.Valid([]byte(doc)):
			r.fail("retentionPolicyFile", "%s is not valid JSON (an Amazon ECR lifecycle policy, docs/retention.md)", file)
		case len(doc) > berth.MaxRetentionPolicyBytes:
			r.fail("retentionPolicyFile", "%s is %d bytes; Lambda's environment fits %d (docs/retention.md)", file, len(doc), berth.MaxRetentionPolicyBytes)
		}
		p.RetentionPolicy = doc
	}
	if file := r.str("tagImmutabilityFile"); file != "" {
		doc := r.file("tagImmutabilityFile", file)
		switch {
		case doc == "":
		case !json.Valid([]byte(doc)):
			r.fail("tagImmutabilityFile", "%s is not valid JSON (an array of tag mutability rules, docs/retention.md)", file)
		case len(doc) > berth.MaxTagImmutabilityBytes:
			r.fail("tagImmutabilityFile", "%s is %d bytes; the api function's environment leaves room for %d (docs/retention.md)", file, len(doc), berth.MaxTagImmutabilityBytes)
		}
		p.TagImmutability = doc
	}
	p.UploadTTL = r.duration("uploadTtl")
	p.PresignExpiry = r.duration("presignExpiry")
	// A body above 4404019 bytes is more than 6 MB once API Gateway has
	// base64-encoded it: Lambda would refuse the invocation.
	p.MaxBodyBytes = int64(r.number("maxBodyBytes", 1, 4404019, true))
	p.StagingExpirationDays = r.number("stagingExpirationDays", 1, 3650, true)

	p.RemovalPolicy = awscdk.RemovalPolicy(r.enum("removalPolicy", "", "RETAIN", "DESTROY", "SNAPSHOT", "RETAIN_ON_UPDATE_OR_DELETE"))
	p.DeletionProtection = r.flag("deletionProtection")
	p.BucketName = r.str("bucketName")
	if p.BucketName != "" && !bucketNameRE.MatchString(p.BucketName) {
		r.fail("bucketName", "%q is not a valid S3 bucket name (3-63 lowercase letters, digits, dots and hyphens)", p.BucketName)
	}
	p.BucketEncryption = berth.BucketEncryption(r.enum("bucketEncryption", "", string(berth.EncryptionS3Managed), string(berth.EncryptionKMS)))
	s.bucketKeyArn = r.arn("bucketKeyArn", "kms", "key/")
	if s.bucketKeyArn != "" && p.BucketEncryption == berth.EncryptionS3Managed {
		r.fail("bucketKeyArn", "is a KMS key, but berth:bucketEncryption is S3_MANAGED")
	}

	p.Auth = r.flag("auth")
	s.tokenSigningKeyArn = r.arn("tokenSigningKeyArn", "kms", "key/")
	p.TokenTTL = r.duration("tokenTtl")
	if file := r.str("authPolicyFile"); file != "" {
		doc := r.file("authPolicyFile", file)
		var v map[string]any
		if doc != "" {
			if err := yaml.Unmarshal([]byte(doc), &v); err != nil || v == nil {
				r.fail("authPolicyFile", "%s is not a JSON or YAML policy document (docs/auth.md)", file)
			}
		}
		p.AuthPolicy = doc
	}
	p.OIDCIssuers = r.oidcIssuers("oidcIssuers")

	p.ThrottleRateLimit = r.number("throttleRateLimit", 1, 1e6, false)
	p.ThrottleBurstLimit = r.number("throttleBurstLimit", 1, 1e6, true)
	if _, ok := ctx[prefix+"tokenReservedConcurrency"]; ok {
		n := r.number("tokenReservedConcurrency", 0, 1e5, true)
		p.TokenReservedConcurrency = &n
	}
	p.ApiReservedConcurrency = r.number("apiReservedConcurrency", 0, 1e5, true)
	p.OriginVerifySecret = r.str("originVerifySecret")
	if p.OriginVerifySecret != "" && !originVerifyRE.MatchString(p.OriginVerifySecret) {
		r.fail("originVerifySecret", "may hold letters, digits and -._~ only (it is a header and a stage variable value)")
	}
	s.alarmTopicArn = r.arn("alarmTopicArn", "sns", "")
	p.Api5xxRatePercent = r.number("api5xxRatePercent", 0.01, 100, false)
	return s, errors.Join(r.errs...)
}

const prefix = "berth:"

var (
	// arnRE splits an ARN: partition, service, region, account, resource.
	arnRE          = regexp.MustCompile(`^arn:(aws[a-z-]*):([a-z0-9-]+):([a-z0-9-]*):(\d{12}|):(.+)$`)
	bucketNameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	originVerifyRE = regexp.MustCompile(`^[A-Za-z0-9._~-]+$`)
	retentionDays  = []string{
		"ONE_DAY", "THREE_DAYS", "FIVE_DAYS", "ONE_WEEK", "TWO_WEEKS", "ONE_MONTH", "TWO_MONTHS",
		"THREE_MONTHS", "FOUR_MONTHS", "FIVE_MONTHS", "SIX_MONTHS", "ONE_YEAR", "THIRTEEN_MONTHS",
		"EIGHTEEN_MONTHS", "TWO_YEARS", "THREE_YEARS", "FIVE_YEARS", "SIX_YEARS", "SEVEN_YEARS",
		"EIGHT_YEARS", "NINE_YEARS", "TEN_YEARS", "INFINITE",
	}
)

// ctxReader reads one key at a time and collects every error, so one synth
// reports all bad keys.
type ctxReader struct {
	ctx  map[string]any
	errs []error
}

func (r *ctxReader) fail(key, format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf("context %s%s: %s", prefix, key, fmt.Sprintf(format, args...)))
}

func (r *ctxReader) checkKeys() {
	var unknown []string
	for k := range r.ctx {
		if name, ok := strings.CutPrefix(k, prefix); ok && !slices.Contains(contextKeys, name) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		r.errs = append(r.errs, fmt.Errorf("context %s: unknown key (docs/deploy.md lists them: %s)", k, strings.Join(contextKeys, ", ")))
	}
}

// str is the key's value as a string; cdk.json may hold booleans and
// numbers, which are turned into their JSON text.
func (r *ctxReader) str(key string) string {
	switch v := r.ctx[prefix+key].(type) {
	case nil:
		return ""
	case string:
		return strings.TrimSpace(v)
	case bool:
		return strconv.FormatBool(v)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		r.fail(key, "must be a string, a number or a boolean, not %T", v)
		return ""
	}
}

func (r *ctxReader) flag(key string) *bool {
	v := r.str(key)
	if v == "" {
		return nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(key, "%q is not a boolean (true or false)", v)
		return nil
	}
	return &b
}

// number parses a number in [lo, hi]; 0 when unset (the construct's
// default).
func (r *ctxReader) number(key string, lo, hi float64, integer bool) float64 {
	v := r.str(key)
	if v == "" {
		return 0
	}
	n, err := strconv.ParseFloat(v, 64)
	switch {
	case err != nil || math.IsNaN(n):
		r.fail(key, "%q is not a number", v)
	case integer && n != math.Trunc(n):
		r.fail(key, "%q is not a whole number", v)
	case n < lo || n > hi:
		r.fail(key, "%s is out of range [%g, %g]", v, lo, hi)
	default:
		return n
	}
	return 0
}

func (r *ctxReader) duration(key string) string {
	v := r.str(key)
	if v == "" {
		return ""
	}
	if d, err := time.ParseDuration(v); err != nil || d <= 0 {
		r.fail(key, "%q is not a positive Go duration (15m, 1h30m)", v)
		return ""
	}
	return v
}

// enum accepts one of allowed in any case, with - for _ and, if short is
// set, without that prefix ("100" for PRICE_CLASS_100).
func (r *ctxReader) enum(key, short string, allowed ...string) string {
	v := r.str(key)
	if v == "" {
		return ""
	}
	norm := strings.ToUpper(strings.ReplaceAll(v, "-", "_"))
	for _, a := range allowed {
		if norm == a || (short != "" && short+norm == a) || strings.ReplaceAll(norm, "PRICECLASS_", "PRICE_CLASS_") == a {
			return a
		}
	}
	r.fail(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
	return ""
}

// arn checks an ARN of service whose resource starts with resource.
func (r *ctxReader) arn(key, service, resource string) string {
	v := r.str(key)
	if v == "" {
		return ""
	}
	m := arnRE.FindStringSubmatch(v)
	if m == nil || m[2] != service || !strings.HasPrefix(m[5], resource) {
		r.fail(key, "%q is not an ARN of the form arn:aws:%s:<region>:<account>:%s…", v, service, resource)
		return ""
	}
	if service == "acm" && m[3] != "us-east-1" {
		r.fail(key, "the certificate is in %s; CloudFront needs one in us-east-1", m[3])
	}
	return v
}

func (r *ctxReader) file(key, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		r.fail(key, "%v", err)
		return ""
	}
	return string(b)
}

// oidcIssuers reads the trusted issuers: a JSON array of
// {"issuer": "https://…", "audience": "…"}, as a string (-c) or as an
// array in cdk.json. The token function would refuse to start on an
// entry without https or audience; here it fails the synth instead.
func (r *ctxReader) oidcIssuers(key string) []berth.OIDCIssuer {
	raw, ok := r.ctx[prefix+key]
	if !ok || raw == nil {
		return nil
	}
	var text []byte
	switch v := raw.(type) {
	case string:
		if strings.TrimSpace(v) == "" {
			return nil
		}
		text = []byte(v)
	default:
		var err error
		if text, err = json.Marshal(v); err != nil {
			r.fail(key, "%v", err)
			return nil
		}
	}
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.DisallowUnknownFields()
	var issuers []berth.OIDCIssuer
	if err := dec.Decode(&issuers); err != nil {
		r.fail(key, `is not a JSON array of {"issuer":"https://…","audience":"…"}: %v`, err)
		return nil
	}
	seen := map[string]bool{}
	for i, is := range issuers {
		u, err := url.Parse(is.Issuer)
		switch {
		case is.Issuer == "":
			r.fail(key, "entry %d has no issuer", i)
		case err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "":
			r.fail(key, "entry %d: issuer %q must be an https URL without query or fragment (tokens name it in iss, and its keys are fetched from it)", i, is.Issuer)
		case seen[is.Issuer]:
			r.fail(key, "entry %d: issuer %s is listed twice", i, is.Issuer)
		}
		seen[is.Issuer] = true
		if strings.TrimSpace(is.Audience) == "" {
			r.fail(key, "entry %d: issuer %s has no audience (set it to the registry's host name, the aud its tokens must carry)", i, is.Issuer)
		}
	}
	return issuers
}
