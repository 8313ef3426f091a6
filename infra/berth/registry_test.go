package berth_test

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"
)

// resources returns the template's resources of type typ by logical id.
func (s *synthesized) resources(typ string) map[string]obj {
	out := map[string]obj{}
	for id, r := range s.json["Resources"].(obj) {
		if r.(obj)["Type"] == typ {
			out[id] = r.(obj)
		}
	}
	return out
}

// function returns the logical id and resource of the function whose
// logical id starts with Registry<prefix> (ApiFunction, ...).
func (s *synthesized) function(t *testing.T, prefix string) (string, obj) {
	t.Helper()
	for id, r := range s.resources("AWS::Lambda::Function") {
		if strings.HasPrefix(id, "Registry"+prefix) {
			return id, r
		}
	}
	t.Fatalf("no function %s", prefix)
	return "", nil
}

func keys(m obj) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestResourceCounts(t *testing.T) {
	counts := map[string]map[string]float64{
		"default": {
			"AWS::ApiGatewayV2::Api": 1, "AWS::ApiGatewayV2::Integration": 2, "AWS::ApiGatewayV2::Route": 4,
			"AWS::ApiGatewayV2::Stage": 1, "AWS::CloudFront::CachePolicy": 1, "AWS::CloudFront::Distribution": 1,
			"AWS::CloudFront::KeyGroup": 1, "AWS::CloudFront::OriginAccessControl": 1, "AWS::CloudFront::PublicKey": 1,
			"AWS::CloudFront::KeyValueStore": 1, "AWS::CloudFront::Function": 1,
			// Scanning: the scan and osvsync functions, their roles and
			// log groups, the sync schedule and its role, the push and
			// delete rules and their invoke permissions, two alarms per
			// function.
			"AWS::CloudWatch::Alarm": 15, "AWS::CloudWatch::Dashboard": 1, "AWS::DynamoDB::Table": 1, "AWS::IAM::Role": 7, "AWS::KMS::Key": 1,
			"AWS::Lambda::Function": 5, "AWS::Lambda::Permission": 7, "AWS::Logs::LogGroup": 6, "AWS::S3::Bucket": 1,
			"AWS::S3::BucketPolicy": 1, "AWS::SSM::Parameter": 1, "AWS::Scheduler::Schedule": 2, "AWS::Events::Rule": 2,
			"AWS::SecretsManager::Secret": 1, "AWS::SNS::Topic": 0, "Custom::S3BucketNotifications": 0,
		},
		// Scan off, KMS bucket, no CloudFront key pair (the edge path still
		// needs the bucket origin's access control), alarm topic.
		"variant": {
			"AWS::CloudFront::KeyGroup": 0, "AWS::CloudFront::PublicKey": 0, "AWS::CloudFront::OriginAccessControl": 1,
			"AWS::CloudFront::KeyValueStore": 1, "AWS::CloudFront::Function": 1,
			"AWS::CloudFront::CachePolicy": 0, "AWS::SecretsManager::Secret": 0, "AWS::KMS::Key": 2,
			"AWS::Lambda::Function": 3, "AWS::Lambda::Permission": 4, "AWS::Logs::LogGroup": 4, "AWS::IAM::Role": 4,
			"AWS::CloudWatch::Alarm": 10, "AWS::CloudWatch::Dashboard": 1, "AWS::SNS::Topic": 1, "Custom::S3BucketNotifications": 0,
			"AWS::Events::Rule": 0, "AWS::Scheduler::Schedule": 1,
		},
	}
	for name, s := range map[string]*synthesized{"default": use(t, defaultStack), "variant": use(t, variantStack)} {
		total := 0
		for typ, n := range counts[name] {
			must(t, name+" "+typ, func() { s.template.ResourceCountIs(jsii.String(typ), jsii.Number(n)) })
		}
		for range s.json["Resources"].(obj) {
			total++
		}
		t.Logf("%s stack: %d resources", name, total)
	}
}

func TestFunctions(t *testing.T) {
	s := use(t, defaultStack)
	want := map[string]struct {
		memory, timeout float64
		env             []string
	}{
		"ApiFunction": {1024, 30, []string{"BERTH_AUTH", "BERTH_AUTH_POLICY_PARAM", "BERTH_BUCKET", "BERTH_CDN_KEY_PAIR_ID", "BERTH_CDN_PRIVATE_KEY_SECRET",
			"BERTH_CDN_URL", "BERTH_CLEANUP_FUNCTION", "BERTH_EDGE_KVS_ARN", "BERTH_EVENT_BUS", "BERTH_LOG_LEVEL", "BERTH_MAX_BODY_BYTES", "BERTH_PRESIGN_EXPIRY", "BERTH_SERVICE", "BERTH_TABLE",
			"BERTH_TAG_IMMUTABILITY", "BERTH_TOKEN_ISSUER", "BERTH_TOKEN_KMS_KEY_ID", "BERTH_UPLOAD_TTL"}},
		"TokenFunction": {512, 10, []string{"BERTH_AUTH_POLICY_PARAM", "BERTH_LOG_LEVEL", "BERTH_OIDC_ISSUERS",
			"BERTH_SERVICE", "BERTH_TOKEN_ISSUER", "BERTH_TOKEN_KMS_KEY_ID", "BERTH_TOKEN_TTL"}},
		"ScanFunction":    {2048, 900, []string{"BERTH_BUCKET", "BERTH_EVENT_BUS", "BERTH_LOG_LEVEL", "BERTH_TABLE"}},
		"OsvsyncFunction": {256, 900, []string{"BERTH_BUCKET", "BERTH_LOG_LEVEL", "BERTH_OSV_ECOSYSTEMS", "BERTH_SCAN_FUNCTION"}},
		"CleanupFunction": {256, 900, []string{"BERTH_BUCKET", "BERTH_EDGE_KVS_ARN", "BERTH_EVENT_BUS", "BERTH_GC_GRACE", "BERTH_LOG_LEVEL", "BERTH_RETENTION_POLICY", "BERTH_TABLE"}},
	}
	for prefix, w := range want {
		id, fn := s.function(t, prefix)
		props := fn["Properties"].(obj)
		must(t, prefix, func() {
			s.template.HasResource(jsii.String("AWS::Lambda::Function"), obj{
				"Properties": obj{
					"Runtime": "provided.al2023", "Architectures": arr{"arm64"}, "Handler": "bootstrap",
					"MemorySize": w.memory, "Timeout": w.timeout,
					"LoggingConfig": obj{"LogGroup": obj{"Ref": assertions.Match_StringLikeRegexp(jsii.String("^Registry" + prefix + "Logs"))}},
					"Code":          obj{"S3Key": assertions.Match_StringLikeRegexp(jsii.String(`^[0-9a-f]{64}\.zip$`))},
				},
				"DependsOn": assertions.Match_ArrayWith(&arr{assertions.Match_StringLikeRegexp(jsii.String("^Registry" + prefix + "Role"))}),
			})
		})
		env := props["Environment"].(obj)["Variables"].(obj)
		if got := keys(env); !reflect.DeepEqual(got, w.env) {
			t.Errorf("%s (%s) env = %v, want %v", prefix, id, got, w.env)
		}
	}
	_, api := s.function(t, "ApiFunction")
	env := api["Properties"].(obj)["Environment"].(obj)["Variables"].(obj)
	for k, v := range map[string]string{"BERTH_AUTH": "on", "BERTH_MAX_BODY_BYTES": "4404019", "BERTH_PRESIGN_EXPIRY": "20m",
		"BERTH_UPLOAD_TTL": "1h", "BERTH_LOG_LEVEL": "info"} {
		if env[k] != v {
			t.Errorf("api %s = %v, want %s", k, env[k], v)
		}
	}
	// The CDN env names the distribution, the key, and the secret.
	must(t, "api CDN env", func() {
		s.template.HasResourceProperties(jsii.String("AWS::Lambda::Function"), obj{
			"Environment": obj{"Variables": obj{
				"BERTH_CDN_KEY_PAIR_ID":        obj{"Ref": assertions.Match_StringLikeRegexp(jsii.String("^RegistryCdnPublicKey"))},
				"BERTH_CDN_PRIVATE_KEY_SECRET": obj{"Ref": assertions.Match_StringLikeRegexp(jsii.String("^RegistryCdnPrivateKey"))},
				"BERTH_SERVICE":                obj{"Fn::GetAtt": arr{assertions.Match_StringLikeRegexp(jsii.String("^RegistryDistribution")), "DomainName"}},
				"BERTH_TOKEN_KMS_KEY_ID":       obj{"Fn::GetAtt": arr{assertions.Match_StringLikeRegexp(jsii.String("^RegistryTokenSigningKey")), "Arn"}},
			}},
		})
	})
	for prefix := range want {
		must(t, prefix+" log group", func() {
			s.template.HasResourceProperties(jsii.String("AWS::Logs::LogGroup"), obj{"RetentionInDays": 30})
		})
	}

	// The variant: custom domain, auth off, memory override, scan absent.
	v := use(t, variantStack)
	must(t, "variant api", func() {
		v.template.HasResourceProperties(jsii.String("AWS::Lambda::Function"), obj{
			"MemorySize": 2048,
			"Environment": obj{"Variables": obj{
				"BERTH_AUTH": "off", "BERTH_SERVICE": "registry.example.com", "BERTH_BUCKET": "my-berth-blobs",
				"BERTH_TOKEN_ISSUER": "https://registry.example.com",
				"BERTH_CDN_URL":      assertions.Match_Absent(),
			}},
		})
	})
	for _, r := range v.resources("AWS::Lambda::Function") {
		if d, _ := r["Properties"].(obj)["Description"].(string); strings.Contains(d, "scanner") {
			t.Errorf("scan function deployed with ScanEnabled false")
		}
	}
}

// statements returns the inline policy statements of the role that the
// function with this logical id prefix runs as.
func (s *synthesized) statements(t *testing.T, prefix string) map[string]obj {
	t.Helper()
	_, fn := s.function(t, prefix)
	roleID := fn["Properties"].(obj)["Role"].(obj)["Fn::GetAtt"].(arr)[0].(string)
	role := s.json["Resources"].(obj)[roleID].(obj)["Properties"].(obj)
	out := map[string]obj{}
	for _, p := range role["Policies"].(arr) {
		for _, st := range p.(obj)["PolicyDocument"].(obj)["Statement"].(arr) {
			st := st.(obj)
			out[st["Sid"].(string)] = st
		}
	}
	if m, ok := role["ManagedPolicyArns"]; ok {
		t.Errorf("%s role has managed policies %v", prefix, m)
	}
	return out
}

func strs(v interface{}) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case arr:
		out := []string{}
		for _, x := range v {
			out = append(out, x.(string))
		}
		sort.Strings(out)
		return out
	}
	return nil
}

// resourceText renders a statement's resources for matching.
func resourceText(st obj) []string {
	rs, ok := st["Resource"].(arr)
	if !ok {
		rs = arr{st["Resource"]}
	}
	var out []string
	for _, r := range rs {
		b, _ := json.Marshal(r)
		out = append(out, string(b))
	}
	return out
}

func TestIAMPerFunction(t *testing.T) {
	type want struct {
		actions   []string
		resources []string // substrings, one per resource, in order
	}
	obj3 := func(p string) string { return `"/` + p + `*"` }
	cases := map[string]map[string]want{
		"ApiFunction": {
			"Logs":              {[]string{"logs:CreateLogStream", "logs:PutLogEvents"}, []string{"RegistryApiFunctionLogs"}},
			"MetadataReadWrite": {[]string{"dynamodb:BatchGetItem", "dynamodb:ConditionCheckItem", "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"}, []string{"RegistryTable"}},
			"BlobObjects":       {[]string{"s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"}, []string{obj3("blobs/")}},
			"UploadStaging":     {[]string{"s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"}, []string{obj3("uploads/")}},
			"BlobBucketList":    {[]string{"s3:ListBucket"}, []string{`":s3:::",`}},
			"CdnPrivateKeyRead": {[]string{"secretsmanager:GetSecretValue"}, []string{"RegistryCdnPrivateKey"}},
			// edge.Keyring reads the current key: GetKey and nothing else.
			"EdgeKeyRead": {[]string{"cloudfront-keyvaluestore:GetKey"}, []string{"RegistryUploadKeys"}},
			// The asynchronous verify-upload invoke, of the cleanup function only.
			"InvokeUploadVerifier": {[]string{"lambda:InvokeFunction"}, []string{"RegistryCleanupFunction"}},
			// Registry events, on the account's default bus only.
			"PutRegistryEvents": {[]string{"events:PutEvents"}, []string{`":event-bus/default"`}},
		},
		"TokenFunction": {
			"Logs":           {[]string{"logs:CreateLogStream", "logs:PutLogEvents"}, []string{"RegistryTokenFunctionLogs"}},
			"AuthPolicyRead": {[]string{"ssm:GetParameter"}, []string{"RegistryAuthPolicy"}},
		},
		// Scan: layers in, referrers out through the registry, indexes,
		// OSV data read-only (scanning.go says why each).
		"ScanFunction": {
			"Logs":                   {[]string{"logs:CreateLogStream", "logs:PutLogEvents"}, []string{"RegistryScanFunctionLogs"}},
			"ScanMetadata":           {[]string{"dynamodb:BatchGetItem", "dynamodb:ConditionCheckItem", "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"}, []string{"RegistryTable"}},
			"LayerReadReferrerWrite": {[]string{"s3:GetObject", "s3:PutObject"}, []string{obj3("blobs/")}},
			"LayerIndexes":           {[]string{"s3:DeleteObject", "s3:GetObject", "s3:PutObject"}, []string{obj3("scan/")}},
			"OsvDataRead":            {[]string{"s3:GetObject"}, []string{obj3("osv/")}},
			"ScanBucketList":         {[]string{"s3:ListBucket"}, []string{`":s3:::",`}},
			"PutRegistryEvents":      {[]string{"events:PutEvents"}, []string{`":event-bus/default"`}},
		},
		// The OSV sync: its prefix only, and the re-match request.
		"OsvsyncFunction": {
			"Logs":           {[]string{"logs:CreateLogStream", "logs:PutLogEvents"}, []string{"RegistryOsvsyncFunctionLogs"}},
			"OsvDataWrite":   {[]string{"s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"}, []string{obj3("osv/")}},
			"OsvBucketList":  {[]string{"s3:ListBucket"}, []string{`":s3:::",`}},
			"RequestRematch": {[]string{"lambda:InvokeFunction"}, []string{"RegistryScanFunction"}},
		},
		"CleanupFunction": {
			"Logs":                {[]string{"logs:CreateLogStream", "logs:PutLogEvents"}, []string{"RegistryCleanupFunctionLogs"}},
			"UploadSweep":         {[]string{"dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"}, []string{"RegistryTable"}},
			"UploadStagingDelete": {[]string{"s3:AbortMultipartUpload", "s3:DeleteObject"}, []string{obj3("uploads/")}},
			// Retention: list manifests and tags, meta.ManifestDelete.
			"Retention": {[]string{"dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"}, []string{"RegistryTable"}},
			// edge.Rotate through pkg/edge/kvs: writes name the ETag from Describe.
			"EdgeKeyRotation": {[]string{"cloudfront-keyvaluestore:DeleteKey", "cloudfront-keyvaluestore:DescribeKeyValueStore",
				"cloudfront-keyvaluestore:GetKey", "cloudfront-keyvaluestore:ListKeys", "cloudfront-keyvaluestore:PutKey"}, []string{"RegistryUploadKeys"}},
			// registry.Verifier: session lease/save/link, staged read, verified copy.
			"VerifyUploadMetadata": {[]string{"dynamodb:BatchGetItem", "dynamodb:ConditionCheckItem", "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"}, []string{"RegistryTable"}},
			"VerifyUploadStaging":  {[]string{"s3:GetObject"}, []string{obj3("uploads/")}},
			"VerifyUploadBlobs":    {[]string{"s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"}, []string{obj3("blobs/")}},
			"VerifyUploadList":     {[]string{"s3:ListBucket"}, []string{`":s3:::",`}},
			// Garbage collection: the only grant that deletes blob bytes.
			"GarbageCollection": {[]string{"s3:DeleteObject"}, []string{obj3("blobs/")}},
			"PutRegistryEvents": {[]string{"events:PutEvents"}, []string{`":event-bus/default"`}},
		},
	}
	s := use(t, defaultStack)
	for fn, wantSt := range cases {
		got := s.statements(t, fn)
		if !reflect.DeepEqual(keys(toObj(got)), keys(toObj(wantSt))) {
			t.Errorf("%s statements = %v, want %v", fn, keys(toObj(got)), keys(toObj(wantSt)))
		}
		for sid, w := range wantSt {
			st, ok := got[sid]
			if !ok {
				continue
			}
			if st["Effect"] != "Allow" {
				t.Errorf("%s %s effect %v", fn, sid, st["Effect"])
			}
			if a := strs(st["Action"]); !reflect.DeepEqual(a, w.actions) {
				t.Errorf("%s %s actions = %v, want %v", fn, sid, a, w.actions)
			}
			res := resourceText(st)
			if len(res) != len(w.resources) {
				t.Errorf("%s %s resources = %v, want %d", fn, sid, res, len(w.resources))
				continue
			}
			for i, r := range res {
				if r == `"*"` || !strings.Contains(r, w.resources[i]) {
					t.Errorf("%s %s resource %d = %s, want one naming %s", fn, sid, i, r, w.resources[i])
				}
			}
		}
	}

	// With SSE-KMS the api and scan functions may use exactly the bucket key.
	v := use(t, variantStack)
	for fn, actions := range map[string][]string{"ApiFunction": {"kms:Decrypt", "kms:GenerateDataKey"}, "CleanupFunction": {"kms:Decrypt", "kms:GenerateDataKey"}} {
		st := v.statements(t, fn)["BucketKey"]
		if st == nil || !reflect.DeepEqual(strs(st["Action"]), actions) || !strings.Contains(resourceText(st)[0], "RegistryBucketKey") {
			t.Errorf("variant %s BucketKey statement = %v", fn, st)
		}
		if _, ok := v.statements(t, fn)["CdnPrivateKeyRead"]; ok {
			t.Errorf("variant %s reads a CDN secret that does not exist", fn)
		}
	}

	// No identity policy in the stack allows every resource (key policies
	// say "*" for the key itself, which is how KMS spells it).
	for name, s := range map[string]*synthesized{"default": use(t, defaultStack), "variant": use(t, variantStack)} {
		for _, typ := range []string{"AWS::IAM::Role", "AWS::IAM::Policy", "AWS::S3::BucketPolicy"} {
			for id, r := range s.resources(typ) {
				b, _ := json.Marshal(r)
				if strings.Contains(string(b), `"Resource":"*"`) {
					t.Errorf("%s stack: %s allows Resource \"*\"", name, id)
				}
			}
		}
	}
}

func toObj[V any](m map[string]V) obj {
	out := obj{}
	for k, v := range m {
		out[k] = v
	}
	return out
}
