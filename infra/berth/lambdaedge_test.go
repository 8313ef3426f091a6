package berth_test

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"
	"github.com/berth-registry/berth/infra/berth"
	"github.com/berth-registry/berth/pkg/edge/lambdaedge"
)

const testAccount = "111122223333"

// usEast1Stack: the registry in us-east-1, where the Lambda@Edge function
// can live in the stack itself.
var usEast1Stack = sync.OnceValue(func() *synthesized {
	return synthIn(&awscdk.Environment{Account: jsii.String(testAccount), Region: jsii.String("us-east-1")}, nil)
})

// euWest1Stack: the registry elsewhere; the function goes to a us-east-1
// stack of its own.
var euWest1Stack = sync.OnceValue(func() *synthesized {
	return synthIn(&awscdk.Environment{Account: jsii.String(testAccount), Region: jsii.String("eu-west-1")}, nil)
})

// edgeStackOf is the us-east-1 stack that holds s's function.
func edgeStackOf(t *testing.T, s *synthesized) *synthesized {
	t.Helper()
	id := *s.stack.Node().Id() + berth.EdgeStackSuffix
	c := s.app.Node().TryFindChild(jsii.String(id))
	if c == nil {
		t.Fatalf("no stack %s in the app", id)
	}
	st, ok := c.(awscdk.Stack)
	if !ok {
		t.Fatalf("%s is not a stack", id)
	}
	var tpl assertions.Template
	must(t, "edge stack template", func() { tpl = assertions.Template_FromStack(st, nil) })
	if tpl == nil {
		t.FailNow()
	}
	return &synthesized{app: s.app, stack: st, template: tpl, json: *tpl.ToJSON()}
}

// oversizeFunction returns the Lambda@Edge function of s (nil: none).
func oversizeFunction(t *testing.T, s *synthesized) (string, obj) {
	t.Helper()
	var id string
	var fn obj
	for fid, r := range s.resources("AWS::Lambda::Function") {
		if strings.Contains(fid, "OversizeFunction") {
			if fn != nil {
				t.Fatalf("two oversize functions: %s, %s", id, fid)
			}
			id, fn = fid, r
		}
	}
	return id, fn
}

// checkOversizeFunction asserts the function, its role and its only
// policy, and returns the version's logical id.
func checkOversizeFunction(t *testing.T, s *synthesized) string {
	t.Helper()
	fnID, fn := oversizeFunction(t, s)
	if fn == nil {
		t.Fatal("no Lambda@Edge function")
	}
	p := fn["Properties"].(obj)
	if p["Runtime"] != "nodejs22.x" || p["Handler"] != "index.handler" || p["MemorySize"] != float64(128) ||
		jsonText(p["Architectures"]) != `["x86_64"]` || p["Timeout"] != float64(5) {
		t.Errorf("function runtime %v, handler %v, memory %v, architectures %v, timeout %v",
			p["Runtime"], p["Handler"], p["MemorySize"], p["Architectures"], p["Timeout"])
	}
	// Inline, byte for byte the source the emulator runs.
	if code := p["Code"].(obj); code["ZipFile"] != lambdaedge.Source {
		t.Errorf("function code %s, want pkg/edge/lambdaedge/oversize.js inline", jsonText(code))
	}
	if p["Environment"] != nil || p["Layers"] != nil || p["VpcConfig"] != nil || p["LoggingConfig"] != nil {
		t.Errorf("Lambda@Edge takes no environment, layers or VPC: %s", jsonText(p))
	}
	roleRef := p["Role"].(obj)["Fn::GetAtt"].(arr)[0].(string)
	role := s.json["Resources"].(obj)[roleRef].(obj)["Properties"].(obj)
	trust := jsonText(role["AssumeRolePolicyDocument"])
	for _, svc := range []string{"lambda.amazonaws.com", "edgelambda.amazonaws.com"} {
		if !strings.Contains(trust, `"`+svc+`"`) {
			t.Errorf("role trust %s lacks %s", trust, svc)
		}
	}
	if role["ManagedPolicyArns"] != nil || role["Policies"] != nil {
		t.Errorf("role has policies of its own: %s", jsonText(role))
	}
	// Exactly one policy names the role: CloudWatch Logs on the function's
	// log group in every region.
	var policies []obj
	for _, pol := range s.resources("AWS::IAM::Policy") {
		if strings.Contains(jsonText(pol["Properties"].(obj)["Roles"]), `"`+roleRef+`"`) {
			policies = append(policies, pol["Properties"].(obj))
		}
	}
	if len(policies) != 1 {
		t.Fatalf("%d policies on the function's role, want 1", len(policies))
	}
	sts := policies[0]["PolicyDocument"].(obj)["Statement"].(arr)
	if len(sts) != 1 {
		t.Fatalf("logs policy: %s", jsonText(sts))
	}
	st := sts[0].(obj)
	fnName := jsonText(obj{"Ref": fnID})
	group := `{"Fn::Join":["",["arn:",{"Ref":"AWS::Partition"},":logs:*:",{"Ref":"AWS::AccountId"},":log-group:/aws/lambda/us-east-1.",` + fnName
	res, _ := st["Resource"].(arr)
	got := map[string]bool{}
	for _, r := range res {
		got[jsonText(r)] = true
	}
	if st["Effect"] != "Allow" || jsonText(st["Action"]) != `["logs:CreateLogGroup","logs:CreateLogStream","logs:PutLogEvents"]` ||
		len(res) != 2 || !got[group+`]]}`] || !got[group+`,":*"]]}`] {
		t.Errorf("logs statement %s", jsonText(st))
	}
	// No log group of CDK's: Lambda@Edge logs in the edge regions.
	for id, g := range s.resources("AWS::Logs::LogGroup") {
		if strings.Contains(jsonText(g), `"Ref":"`+fnID+`"`) {
			t.Errorf("log group %s for the Lambda@Edge function: %s", id, jsonText(g))
		}
	}
	for vid, v := range s.resources("AWS::Lambda::Version") {
		if jsonText(v["Properties"].(obj)["FunctionName"]) == fnName {
			return vid
		}
	}
	t.Fatal("no version of the Lambda@Edge function")
	return ""
}

// checkOversizeBehaviors asserts which behaviours run the function on
// origin response (want is the association's LambdaFunctionARN) and that
// the upload URLs take precedence over /v2/* with otherwise the same
// settings.
func checkOversizeBehaviors(t *testing.T, s *synthesized, want interface{}) {
	t.Helper()
	cfg := s.distConfig(t)
	assoc := jsonText(arr{obj{"EventType": "origin-response", "LambdaFunctionARN": want}})
	order := map[string]int{}
	for i, b := range cfg["CacheBehaviors"].(arr) {
		order[b.(obj)["PathPattern"].(string)] = i
	}
	if uploads, ok := order[lambdaedge.UploadsPathPattern]; !ok || uploads > order["/v2/*"] {
		t.Errorf("behaviour order %v: %s must come before /v2/*", order, lambdaedge.UploadsPathPattern)
	}
	for path, runs := range map[string]bool{
		lambdaedge.UploadsPathPattern: true, berth.UploadPathPattern: true, "/v2/*": false, "/token": false,
	} {
		b := behavior(t, cfg, path)
		if got := jsonText(b["LambdaFunctionAssociations"]); runs && got != assoc || !runs && b["LambdaFunctionAssociations"] != nil {
			t.Errorf("%s: Lambda@Edge associations %s", path, got)
		}
	}
	if cfg["DefaultCacheBehavior"].(obj)["LambdaFunctionAssociations"] != nil {
		t.Error("the default behaviour runs Lambda@Edge")
	}
	// Copies: the template's maps are shared by every test of the stack.
	settings := func(b obj) string {
		out := obj{}
		for k, v := range b {
			if k != "PathPattern" && k != "LambdaFunctionAssociations" {
				out[k] = v
			}
		}
		return jsonText(out)
	}
	if u, v := settings(behavior(t, cfg, lambdaedge.UploadsPathPattern)), settings(behavior(t, cfg, "/v2/*")); u != v {
		t.Errorf("%s differs from /v2/* beyond the function:\n %s\n %s", lambdaedge.UploadsPathPattern, u, v)
	}
	// The edge upload path keeps its CloudFront Function on both viewer
	// events (CloudFront allows Lambda@Edge beside them on origin events).
	if fa := behavior(t, cfg, berth.UploadPathPattern)["FunctionAssociations"].(arr); len(fa) != 2 {
		t.Errorf("/_upload/* function associations %s", jsonText(fa))
	}
}

func warnings(s *synthesized, id string) int {
	found := assertions.Annotations_FromStack(s.stack).FindWarning(jsii.String("*"), like(id))
	var msgs []interface{}
	b, _ := json.Marshal(found)
	_ = json.Unmarshal(b, &msgs)
	return len(msgs)
}

// TestLambdaEdgeInRegion: in us-east-1 the function, its version and role
// are in the registry's stack; both upload behaviours run it.
func TestLambdaEdgeInRegion(t *testing.T) {
	s := use(t, usEast1Stack)
	version := checkOversizeFunction(t, s)
	checkOversizeBehaviors(t, s, obj{"Ref": version})
	if n := warnings(s, berth.NoLambdaEdgeWarning); n != 0 {
		t.Errorf("%d %s warnings with a region", n, berth.NoLambdaEdgeWarning)
	}
	if len(s.resources("Custom::CrossRegionStringParameterReader")) != 0 {
		t.Error("cross-region reader in us-east-1")
	}
}

// TestLambdaEdgeCrossRegion: elsewhere the function is in a us-east-1 stack
// the registry's stack depends on (cdk deploy --all deploys it first), its
// version ARN read back through SSM.
func TestLambdaEdgeCrossRegion(t *testing.T) {
	s := use(t, euWest1Stack)
	if _, fn := oversizeFunction(t, s); fn != nil {
		t.Fatal("the Lambda@Edge function is in the eu-west-1 stack")
	}
	edge := edgeStackOf(t, s)
	if *edge.stack.Region() != "us-east-1" || *edge.stack.Account() != testAccount || *edge.stack.StackName() != "Berth-LambdaEdge" {
		t.Errorf("edge stack %s in %s/%s", *edge.stack.StackName(), *edge.stack.Account(), *edge.stack.Region())
	}
	checkOversizeFunction(t, edge)
	readers := s.resources("Custom::CrossRegionStringParameterReader")
	if len(readers) != 1 {
		t.Fatalf("%d cross-region readers, want 1", len(readers))
	}
	var reader string
	for id := range readers {
		reader = id
	}
	checkOversizeBehaviors(t, s, obj{"Fn::GetAtt": arr{reader, "FunctionArn"}})
	var depends bool
	for _, d := range *s.stack.Dependencies() {
		depends = depends || *d.Node().Path() == *edge.stack.Node().Path()
	}
	if !depends {
		t.Error("the registry's stack does not depend on the edge stack")
	}
	if len(edge.resources("AWS::SSM::Parameter")) != 1 {
		t.Error("no SSM parameter with the version ARN in the edge stack")
	}
	// cdk-nag runs on both stacks (the aspect is on the app); synthesis
	// fails on an unsuppressed error, so reaching here means none.
	for name, st := range map[string]*synthesized{"eu-west-1": s, "edge": edge} {
		a := assertions.Annotations_FromStack(st.stack)
		b, _ := json.Marshal(a.FindError(jsii.String("*"), like("AwsSolutions-")))
		if string(b) != "[]" && string(b) != "null" {
			t.Errorf("%s stack: cdk-nag errors %s", name, b)
		}
	}
}

// TestLambdaEdgeWithoutRegion: an environment-agnostic stack (the other
// test stacks, and an offline `make synth`) gets no function and a
// warning that says why.
func TestLambdaEdgeWithoutRegion(t *testing.T) {
	s := use(t, defaultStack)
	if _, fn := oversizeFunction(t, s); fn != nil {
		t.Error("a Lambda@Edge function without a region")
	}
	if n := warnings(s, berth.NoLambdaEdgeWarning); n != 1 {
		t.Errorf("%d %s warnings, want 1", n, berth.NoLambdaEdgeWarning)
	}
	text := jsonText(s.distConfig(t))
	if strings.Contains(text, "LambdaFunctionAssociations") || strings.Contains(text, lambdaedge.UploadsPathPattern) {
		t.Errorf("distribution without a region: %s", text)
	}
	if s := use(t, noEdgeStack); warnings(s, berth.NoLambdaEdgeWarning) != 1 {
		t.Error("EdgeUploads=false also silenced the Lambda@Edge warning")
	}
}

// TestLambdaEdgeOff: LambdaEdge=false leaves it out without a warning, in
// a stack that has a region.
func TestLambdaEdgeOff(t *testing.T) {
	s := use(t, func() *synthesized {
		return synthIn(&awscdk.Environment{Account: jsii.String(testAccount), Region: jsii.String("us-east-1")},
			func(_ awscdk.Stack, p *berth.RegistryProps) { p.LambdaEdge = jsii.Bool(false) })
	})
	if _, fn := oversizeFunction(t, s); fn != nil {
		t.Error("a Lambda@Edge function with LambdaEdge=false")
	}
	if n := warnings(s, berth.NoLambdaEdgeWarning); n != 0 {
		t.Errorf("%d %s warnings with LambdaEdge=false", n, berth.NoLambdaEdgeWarning)
	}
	if text := jsonText(s.distConfig(t)); strings.Contains(text, "LambdaFunctionAssociations") {
		t.Errorf("distribution with LambdaEdge=false: %s", text)
	}
}
