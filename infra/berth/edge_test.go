package berth_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"
	"github.com/berth-registry/berth/infra/berth"
)

// noEdgeStack: the defaults with the edge upload path turned off.
var noEdgeStack = sync.OnceValue(func() *synthesized {
	return synth(func(_ awscdk.Stack, p *berth.RegistryProps) { p.EdgeUploads = jsii.Bool(false) })
})

// one returns the only resource of typ, failing the test otherwise.
func (s *synthesized) one(t *testing.T, typ string) (string, obj) {
	t.Helper()
	rs := s.resources(typ)
	if len(rs) != 1 {
		t.Fatalf("%d %s resources, want 1", len(rs), typ)
	}
	for id, r := range rs {
		return id, r
	}
	return "", nil
}

func jsonText(v interface{}) string { b, _ := json.Marshal(v); return string(b) }

// distConfig returns the distribution's DistributionConfig.
func (s *synthesized) distConfig(t *testing.T) obj {
	t.Helper()
	_, d := s.one(t, "AWS::CloudFront::Distribution")
	return d["Properties"].(obj)["DistributionConfig"].(obj)
}

// behavior returns the cache behaviour for path.
func behavior(t *testing.T, cfg obj, path string) obj {
	t.Helper()
	for _, b := range cfg["CacheBehaviors"].(arr) {
		if b.(obj)["PathPattern"] == path {
			return b.(obj)
		}
	}
	t.Fatalf("no %s behaviour", path)
	return nil
}

func TestEdgeFunctionAndStore(t *testing.T) {
	s := use(t, defaultStack)
	kvsID, _ := s.one(t, "AWS::CloudFront::KeyValueStore")
	_, fn := s.one(t, "AWS::CloudFront::Function")
	p := fn["Properties"].(obj)
	cfg := p["FunctionConfig"].(obj)
	if cfg["Runtime"] != "cloudfront-js-2.0" || p["AutoPublish"] != true {
		t.Errorf("function runtime %v, auto publish %v", cfg["Runtime"], p["AutoPublish"])
	}
	wantKVS := arr{obj{"KeyValueStoreARN": obj{"Fn::GetAtt": arr{kvsID, "Arn"}}}}
	if !reflect.DeepEqual(cfg["KeyValueStoreAssociations"], wantKVS) {
		t.Errorf("function store associations %v, want %v", cfg["KeyValueStoreAssociations"], wantKVS)
	}
	// The deployed code is the repository's file, byte for byte: the same
	// file the local emulator (internal/cloudfront) runs.
	src, err := os.ReadFile(filepath.Join(filepath.Dir(infraDir()), berth.EdgeFunctionPath))
	if err != nil {
		t.Fatal(err)
	}
	if p["FunctionCode"] != string(src) {
		t.Errorf("function code (%d bytes) differs from %s (%d bytes)", len(jsonText(p["FunctionCode"])), berth.EdgeFunctionPath, len(src))
	}
	// CloudFront Functions take at most 10 KB of code.
	if len(src) > 10240 {
		t.Errorf("%s is %d bytes; CloudFront Functions allow 10240", berth.EdgeFunctionPath, len(src))
	}
}

func TestEdgeBehaviors(t *testing.T) {
	for name, s := range map[string]*synthesized{"default": use(t, defaultStack), "variant": use(t, variantStack)} {
		cfg := s.distConfig(t)
		origins := cfg["Origins"].(arr)
		if len(origins) != 2 {
			t.Fatalf("%s: %d origins, want the API and the bucket: %v", name, len(origins), origins)
		}
		api, bucket := origins[0].(obj), origins[1].(obj)
		// The function's fallback selects the API origin by this id.
		if api["Id"] != berth.APIOriginID || api["CustomOriginConfig"] == nil || api["S3OriginConfig"] != nil {
			t.Errorf("%s: origin 0 is not the API origin %q: %v", name, berth.APIOriginID, api)
		}
		s3 := bucket["S3OriginConfig"].(obj)
		if bucket["OriginAccessControlId"] == nil || s3["OriginReadTimeout"] != float64(berth.S3OriginReadTimeout) || berth.S3OriginReadTimeout != 120 {
			t.Errorf("%s: bucket origin %v, want OAC and a %d s read timeout", name, bucket, 120)
		}
		if _, ok := cfg["CustomErrorResponses"]; ok {
			t.Errorf("%s: distribution-wide custom error responses would also rewrite /_upload/* failures", name)
		}

		fnID, _ := s.one(t, "AWS::CloudFront::Function")
		arnOf := obj{"Fn::GetAtt": arr{fnID, "FunctionARN"}}
		up := behavior(t, cfg, berth.UploadPathPattern)
		want := obj{
			"PathPattern":           "/_upload/*",
			"TargetOriginId":        bucket["Id"],
			"AllowedMethods":        arr{"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"},
			"CachePolicyId":         "4135ea2d-6df8-44a3-9df3-4b5a84be39ad", // CachingDisabled
			"OriginRequestPolicyId": "b689b0a8-53d0-40ab-baf2-68738e2966ac", // AllViewerExceptHostHeader
			"ViewerProtocolPolicy":  "https-only",
			"Compress":              false,
			"FunctionAssociations": arr{
				obj{"EventType": "viewer-request", "FunctionARN": arnOf},
				obj{"EventType": "viewer-response", "FunctionARN": arnOf},
			},
		}
		if jsonText(up) != jsonText(want) {
			t.Errorf("%s: /_upload/* behaviour\n %s\nwant\n %s", name, jsonText(up), jsonText(want))
		}
		v2 := behavior(t, cfg, "/v2/*")
		if v2["TargetOriginId"] != berth.APIOriginID || jsonText(v2["FunctionAssociations"]) != jsonText(arr{obj{"EventType": "viewer-request", "FunctionARN": arnOf}}) {
			t.Errorf("%s: /v2/* behaviour %s", name, jsonText(v2))
		}
		if tok := behavior(t, cfg, "/token"); tok["FunctionAssociations"] != nil {
			t.Errorf("%s: /token runs a function: %v", name, tok["FunctionAssociations"])
		}
	}
}

func TestEdgeBucketAndKeyPolicies(t *testing.T) {
	s := use(t, defaultStack)
	_, pol := s.one(t, "AWS::S3::BucketPolicy")
	var write obj
	for _, st := range pol["Properties"].(obj)["PolicyDocument"].(obj)["Statement"].(arr) {
		st := st.(obj)
		if strings.Contains(jsonText(st["Principal"]), "cloudfront.amazonaws.com") && strings.Contains(jsonText(st["Action"]), "s3:Delete") {
			t.Errorf("CloudFront may delete: %s", jsonText(st))
		}
		if st["Sid"] == "CloudFrontWritesBlobs" {
			write = st
		}
	}
	if write == nil {
		t.Fatal("no CloudFrontWritesBlobs statement in the bucket policy")
	}
	distID, _ := s.one(t, "AWS::CloudFront::Distribution")
	if write["Effect"] != "Allow" || write["Action"] != "s3:PutObject" ||
		jsonText(write["Principal"]) != `{"Service":"cloudfront.amazonaws.com"}` ||
		!strings.HasSuffix(jsonText(write["Resource"]), `"/blobs/sha256/*"]]}`) ||
		!strings.Contains(jsonText(write["Condition"]), `{"StringEquals":{"AWS:SourceArn":`) ||
		!strings.Contains(jsonText(write["Condition"]), `":distribution/",{"Ref":"`+distID+`"}`) {
		t.Errorf("CloudFrontWritesBlobs = %s", jsonText(write))
	}

	// SSE-KMS with the construct's key: CloudFront may have data keys made
	// for its PUTs (and decrypt for the signed GETs).
	k := use(t, kmsCdnStack)
	var encrypt obj
	for id, key := range k.resources("AWS::KMS::Key") {
		if !strings.HasPrefix(id, "RegistryBucketKey") {
			continue
		}
		for _, st := range key["Properties"].(obj)["KeyPolicy"].(obj)["Statement"].(arr) {
			if st.(obj)["Sid"] == "CloudFrontEncryptsBlobs" {
				encrypt = st.(obj)
			}
		}
	}
	if encrypt == nil || jsonText(encrypt["Action"]) != `["kms:Encrypt","kms:GenerateDataKey"]` ||
		jsonText(encrypt["Principal"]) != `{"Service":"cloudfront.amazonaws.com"}` ||
		!strings.Contains(jsonText(encrypt["Condition"]), `"ArnLike":{"AWS:SourceArn"`) {
		t.Errorf("CloudFrontEncryptsBlobs = %s", jsonText(encrypt))
	}
}

func TestEdgeEnvironment(t *testing.T) {
	s := use(t, defaultStack)
	kvsID, _ := s.one(t, "AWS::CloudFront::KeyValueStore")
	cleanupID, _ := s.function(t, "CleanupFunction")
	kvsArn := jsonText(obj{"Fn::GetAtt": arr{kvsID, "Arn"}})
	for prefix, want := range map[string]map[string]string{
		"ApiFunction":     {"BERTH_EDGE_KVS_ARN": kvsArn, "BERTH_CLEANUP_FUNCTION": jsonText(obj{"Ref": cleanupID})},
		"CleanupFunction": {"BERTH_EDGE_KVS_ARN": kvsArn},
	} {
		_, fn := s.function(t, prefix)
		env := fn["Properties"].(obj)["Environment"].(obj)["Variables"].(obj)
		for k, v := range want {
			if jsonText(env[k]) != v {
				t.Errorf("%s %s = %s, want %s", prefix, k, jsonText(env[k]), v)
			}
		}
	}
}

// TestEdgeOff: EdgeUploads=false leaves no edge resource, variable or
// grant behind; the verify-upload wiring stays (direct uploads do not
// need the edge).
func TestEdgeOff(t *testing.T) {
	s := use(t, noEdgeStack)
	for _, typ := range []string{"AWS::CloudFront::KeyValueStore", "AWS::CloudFront::Function", "AWS::CloudFront::OriginAccessControl"} {
		if n := len(s.resources(typ)); n != 0 {
			t.Errorf("%d %s with the edge off", n, typ)
		}
	}
	cfg := s.distConfig(t)
	if text := jsonText(cfg); strings.Contains(text, "_upload") || strings.Contains(text, "FunctionAssociations") || len(cfg["Origins"].(arr)) != 1 {
		t.Errorf("distribution with the edge off: %s", text)
	}
	for _, prefix := range []string{"ApiFunction", "CleanupFunction"} {
		_, fn := s.function(t, prefix)
		if env := fn["Properties"].(obj)["Environment"].(obj)["Variables"].(obj); env["BERTH_EDGE_KVS_ARN"] != nil {
			t.Errorf("%s has BERTH_EDGE_KVS_ARN with the edge off", prefix)
		}
		if text := jsonText(s.statements(t, prefix)); strings.Contains(text, "cloudfront-keyvaluestore") {
			t.Errorf("%s may use a key store with the edge off", prefix)
		}
	}
	if _, ok := s.statements(t, "ApiFunction")["InvokeUploadVerifier"]; !ok {
		t.Error("api function cannot invoke the verifier with the edge off")
	}
	if text := jsonText(s.json["Resources"]); strings.Contains(text, "CloudFrontWritesBlobs") {
		t.Error("CloudFront may write blobs with the edge off")
	}
}

func TestEdgeFunctionFileMissing(t *testing.T) {
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(jsonText(r), "edge function source not found") {
			t.Errorf("synth with a missing function file: %v", r)
		}
	}()
	synth(func(_ awscdk.Stack, p *berth.RegistryProps) { p.EdgeFunctionFile = "/nonexistent/upload.js" })
}
