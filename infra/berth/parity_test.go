package berth_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The parity test reads the SAM template (../template.yaml) and the
// construct's synthesized template into one model — functions with their
// settings, environment variable names and IAM actions, routes, the cleanup
// schedule, the scan notification, table and bucket settings — and reports
// every difference. Memory and timeouts are logged, not compared: each
// deployment path may size its functions.

// model is what both templates must agree on.
type model struct {
	functions map[string]*fnModel // by logical id prefix: ApiFunction, ...
	routes    []string            // "ANY /v2/{proxy+} -> ApiFunction"
	schedules []string            // "rate(1 hour) -> CleanupFunction"
	notify    []string            // "s3:ObjectCreated:* prefix=blobs/ -> ScanFunction"
	rules     []string            // EventBridge rules: `{"detail":…,"source":…} -> ScanFunction`
	table     []string            // "key PK HASH", "billing PAY_PER_REQUEST", ...
	bucket    []string            // "sse AES256", "tls-only", ...
	edge      []string            // edge upload path resources: "AWS::CloudFront::Function", "behaviour /_upload/*"
}

type fnModel struct {
	settings []string // runtime, architecture, handler
	env      []string // variable names
	actions  []string // IAM actions, logs:* excluded (both grant their own log writes)
	sizing   string   // memory/timeout, informational
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return dedupe(out)
}

func dedupe(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// diff lists what only a has and what only b has.
func diff(a, b []string) (onlyA, onlyB []string) {
	in := func(s []string, v string) bool {
		for _, x := range s {
			if x == v {
				return true
			}
		}
		return false
	}
	for _, v := range a {
		if !in(b, v) {
			onlyA = append(onlyA, v)
		}
	}
	for _, v := range b {
		if !in(a, v) {
			onlyB = append(onlyB, v)
		}
	}
	return onlyA, onlyB
}

// --- the CDK side -----------------------------------------------------------

var cdkHash = regexp.MustCompile(`^Registry(.*?)[0-9A-F]{8}$`)

// cdkName strips the construct prefix and hash: RegistryApiFunction2B8C176D → ApiFunction.
func cdkName(id string) string {
	if m := cdkHash.FindStringSubmatch(id); m != nil {
		return m[1]
	}
	return id
}

func str(v interface{}) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return fmt.Sprint(v)
	case bool:
		return fmt.Sprint(v)
	}
	return fmt.Sprintf("%v", v)
}

func list(v interface{}) []interface{} {
	if a, ok := v.([]interface{}); ok {
		return a
	}
	if v == nil {
		return nil
	}
	return []interface{}{v}
}

func m(v interface{}) map[string]interface{} {
	if o, ok := v.(map[string]interface{}); ok {
		return o
	}
	return map[string]interface{}{}
}

// refName names what a Ref/GetAtt points at, in either template.
func refName(v interface{}, name func(string) string) string {
	o := m(v)
	if r, ok := o["Ref"].(string); ok {
		return name(r)
	}
	if g := list(o["Fn::GetAtt"]); len(g) > 0 {
		return name(str(g[0]))
	}
	if s, ok := v.(string); ok {
		return name(strings.SplitN(s, ".", 2)[0])
	}
	return fmt.Sprint(v)
}

func statementActions(doc interface{}, skipLogs bool) []string {
	var out []string
	for _, st := range list(m(doc)["Statement"]) {
		if str(m(st)["Effect"]) != "Allow" {
			continue
		}
		for _, a := range list(m(st)["Action"]) {
			if skipLogs && strings.HasPrefix(str(a), "logs:") {
				continue
			}
			out = append(out, str(a))
		}
	}
	return out
}

func tableModel(p map[string]interface{}) []string {
	var out []string
	attrs := map[string]string{}
	for _, a := range list(p["AttributeDefinitions"]) {
		attrs[str(m(a)["AttributeName"])] = str(m(a)["AttributeType"])
	}
	for _, k := range list(p["KeySchema"]) {
		n := str(m(k)["AttributeName"])
		out = append(out, "key "+n+" "+str(m(k)["KeyType"])+" "+attrs[n])
	}
	out = append(out, "billing "+str(p["BillingMode"]))
	if ttl := m(p["TimeToLiveSpecification"]); len(ttl) > 0 && str(ttl["Enabled"]) == "true" {
		out = append(out, "ttl "+str(ttl["AttributeName"]))
	}
	if str(m(p["PointInTimeRecoverySpecification"])["PointInTimeRecoveryEnabled"]) == "true" {
		out = append(out, "pitr")
	}
	for _, g := range list(p["GlobalSecondaryIndexes"]) {
		out = append(out, "gsi "+str(m(g)["IndexName"]))
	}
	return out
}

func bucketModel(p map[string]interface{}, policies []map[string]interface{}) []string {
	var out []string
	for _, r := range list(m(p["BucketEncryption"])["ServerSideEncryptionConfiguration"]) {
		out = append(out, "sse "+str(m(m(r)["ServerSideEncryptionByDefault"])["SSEAlgorithm"]))
	}
	pab := m(p["PublicAccessBlockConfiguration"])
	if str(pab["BlockPublicAcls"]) == "true" && str(pab["BlockPublicPolicy"]) == "true" &&
		str(pab["IgnorePublicAcls"]) == "true" && str(pab["RestrictPublicBuckets"]) == "true" {
		out = append(out, "block-public-access")
	}
	if str(m(p["VersioningConfiguration"])["Status"]) == "Enabled" {
		out = append(out, "versioned")
	}
	for _, r := range list(m(p["LifecycleConfiguration"])["Rules"]) {
		if d := m(m(r)["AbortIncompleteMultipartUpload"])["DaysAfterInitiation"]; d != nil {
			out = append(out, "abort-incomplete-multipart-days "+str(d))
		}
	}
	for _, pol := range policies {
		for _, st := range list(m(pol["PolicyDocument"])["Statement"]) {
			st := m(st)
			if str(st["Effect"]) == "Deny" && str(m(m(st["Condition"])["Bool"])["aws:SecureTransport"]) == "false" {
				out = append(out, "tls-only")
			}
		}
	}
	return out
}

// cdkModel reads the synthesized template.
func cdkModel(s *synthesized) *model {
	md := &model{functions: map[string]*fnModel{}}
	res := s.json["Resources"].(obj)
	for id, r := range s.resources("AWS::Lambda::Function") {
		p := m(r["Properties"])
		fn := &fnModel{
			settings: []string{"runtime " + str(p["Runtime"]), "handler " + str(p["Handler"])},
			sizing:   fmt.Sprintf("memory %v timeout %v", p["MemorySize"], p["Timeout"]),
		}
		for _, a := range list(p["Architectures"]) {
			fn.settings = append(fn.settings, "architecture "+str(a))
		}
		for k := range m(m(p["Environment"])["Variables"]) {
			fn.env = append(fn.env, k)
		}
		role := m(m(res[str(list(m(p["Role"])["Fn::GetAtt"])[0])])["Properties"])
		for _, pol := range list(role["Policies"]) {
			fn.actions = append(fn.actions, statementActions(m(pol)["PolicyDocument"], true)...)
		}
		md.functions[cdkName(id)] = fn
	}
	integrations := map[string]string{}
	for id, r := range s.resources("AWS::ApiGatewayV2::Integration") {
		integrations[id] = refName(m(r["Properties"])["IntegrationUri"], cdkName)
	}
	for _, r := range s.resources("AWS::ApiGatewayV2::Route") {
		p := m(r["Properties"])
		target := list(m(p["Target"])["Fn::Join"])
		integration := str(m(list(list(target[1])[1])[0])["Ref"])
		md.routes = append(md.routes, str(p["RouteKey"])+" -> "+integrations[integration])
	}
	for _, r := range s.resources("AWS::Scheduler::Schedule") {
		p := m(r["Properties"])
		md.schedules = append(md.schedules, str(p["ScheduleExpression"])+" -> "+refName(m(p["Target"])["Arn"], cdkName))
	}
	for _, r := range s.resources("AWS::Events::Rule") {
		p := m(r["Properties"])
		for _, tg := range list(p["Targets"]) {
			md.rules = append(md.rules, patternText(p["EventPattern"])+" -> "+refName(m(tg)["Arn"], cdkName))
		}
	}
	var policies []map[string]interface{}
	for _, r := range s.resources("AWS::S3::BucketPolicy") {
		policies = append(policies, m(r["Properties"]))
	}
	for _, r := range s.resources("AWS::DynamoDB::Table") {
		md.table = tableModel(m(r["Properties"]))
	}
	md.edge = edgeModel(s.json["Resources"].(obj))
	for _, r := range s.resources("AWS::S3::Bucket") {
		p := m(r["Properties"])
		md.bucket = bucketModel(p, policies)
		for _, c := range list(m(p["NotificationConfiguration"])["LambdaConfigurations"]) {
			c := m(c)
			var filter []string
			for _, rule := range list(m(m(c["Filter"])["S3Key"])["Rules"]) {
				filter = append(filter, strings.ToLower(str(m(rule)["Name"]))+"="+str(m(rule)["Value"]))
			}
			md.notify = append(md.notify, str(c["Event"])+" "+strings.Join(filter, " ")+" -> "+refName(c["Function"], cdkName))
		}
	}
	return md
}

// patternText is an event pattern as canonical JSON (sorted keys).
func patternText(p interface{}) string {
	b, _ := json.Marshal(p)
	return string(b)
}

// edgeModel lists the edge upload path's pieces in either template: the
// KeyValueStore, the CloudFront Function, and the distribution behaviours
// that run a function.
func edgeModel(res map[string]interface{}) []string {
	var out []string
	for _, r := range res {
		switch typ := str(m(r)["Type"]); typ {
		case "AWS::CloudFront::KeyValueStore", "AWS::CloudFront::Function":
			out = append(out, typ)
		case "AWS::CloudFront::Distribution":
			for _, b := range list(m(m(m(r)["Properties"])["DistributionConfig"])["CacheBehaviors"]) {
				for _, a := range list(m(b)["FunctionAssociations"]) {
					out = append(out, "behaviour "+str(m(b)["PathPattern"])+" "+str(m(a)["EventType"]))
				}
			}
		}
	}
	return out
}

// --- the SAM side -----------------------------------------------------------

// fromYAML turns a CloudFormation YAML node into JSON-shaped values,
// expanding the short intrinsic tags (!Ref, !GetAtt a.b, !Sub, ...).
func fromYAML(n *yaml.Node) interface{} {
	var v interface{}
	switch n.Kind {
	case yaml.DocumentNode:
		return fromYAML(n.Content[0])
	case yaml.AliasNode:
		return fromYAML(n.Alias)
	case yaml.MappingNode:
		o := map[string]interface{}{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			o[n.Content[i].Value] = fromYAML(n.Content[i+1])
		}
		v = o
	case yaml.SequenceNode:
		a := []interface{}{}
		for _, c := range n.Content {
			a = append(a, fromYAML(c))
		}
		v = a
	case yaml.ScalarNode:
		var s interface{}
		// Standard tags (!!bool, !!int) decode to their types; the short
		// intrinsic tags (!Ref) keep the text.
		if err := n.Decode(&s); err != nil || strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
			s = n.Value
		}
		v = s
	}
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		name := strings.TrimPrefix(n.Tag, "!")
		switch name {
		case "Ref", "Condition":
			return map[string]interface{}{name: v}
		case "GetAtt":
			if s, ok := v.(string); ok {
				parts := strings.SplitN(s, ".", 2)
				return map[string]interface{}{"Fn::GetAtt": []interface{}{parts[0], parts[len(parts)-1]}}
			}
			return map[string]interface{}{"Fn::GetAtt": v}
		default:
			return map[string]interface{}{"Fn::" + name: v}
		}
	}
	return v
}

// samPolicyTemplates are the actions of the SAM policy templates a
// function's Policies may name (aws-sam-translator policy_templates.json).
var samPolicyTemplates = map[string][]string{
	"DynamoDBCrudPolicy": {"dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:Scan", "dynamodb:Query",
		"dynamodb:UpdateItem", "dynamodb:BatchWriteItem", "dynamodb:BatchGetItem", "dynamodb:DescribeTable", "dynamodb:ConditionCheckItem"},
	"DynamoDBReadPolicy":  {"dynamodb:GetItem", "dynamodb:Scan", "dynamodb:Query", "dynamodb:BatchGetItem", "dynamodb:DescribeTable"},
	"DynamoDBWritePolicy": {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem"},
	"S3ReadPolicy":        {"s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation", "s3:GetObjectVersion", "s3:GetLifecycleConfiguration"},
	"S3WritePolicy":       {"s3:PutObject", "s3:PutObjectAcl", "s3:PutLifecycleConfiguration"},
	"S3CrudPolicy": {"s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation", "s3:GetObjectVersion", "s3:PutObject", "s3:PutObjectAcl",
		"s3:GetLifecycleConfiguration", "s3:PutLifecycleConfiguration", "s3:DeleteObject"},
	"KMSDecryptPolicy":                      {"kms:Decrypt"},
	"SSMParameterReadPolicy":                {"ssm:DescribeParameters", "ssm:GetParameters", "ssm:GetParameter", "ssm:GetParametersByPath"},
	"AWSSecretsManagerGetSecretValuePolicy": {"secretsmanager:GetSecretValue"},
	"LambdaInvokePolicy":                    {"lambda:InvokeFunction"},
}

// merge overlays a function's properties on Globals.Function (maps merge
// key by key, as SAM does for Environment.Variables).
func merge(global, local map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range global {
		out[k] = v
	}
	for k, v := range local {
		if g, ok := out[k].(map[string]interface{}); ok {
			if l, ok := v.(map[string]interface{}); ok {
				v = merge(g, l)
			}
		}
		out[k] = v
	}
	return out
}

// samModel reads the SAM template; problems it cannot model are returned.
func samModel(doc map[string]interface{}) (*model, []string) {
	md := &model{functions: map[string]*fnModel{}}
	var problems []string
	global := m(m(doc["Globals"])["Function"])
	// A parameter's default stands for its !Ref (the schedules).
	param := func(v interface{}) interface{} {
		if ref, ok := m(v)["Ref"].(string); ok {
			if d, ok := m(m(doc["Parameters"])[ref])["Default"]; ok {
				return d
			}
		}
		return v
	}
	res := m(doc["Resources"])
	var policies []map[string]interface{}
	for _, r := range res {
		if str(m(r)["Type"]) == "AWS::S3::BucketPolicy" {
			policies = append(policies, m(m(r)["Properties"]))
		}
	}
	ids := make([]string, 0, len(res))
	for id := range res {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		r := m(res[id])
		p := m(r["Properties"])
		switch str(r["Type"]) {
		case "AWS::Serverless::Function":
			p = merge(global, p)
			fn := &fnModel{
				settings: []string{"runtime " + str(p["Runtime"]), "handler " + str(p["Handler"])},
				sizing:   fmt.Sprintf("memory %v timeout %v", p["MemorySize"], p["Timeout"]),
			}
			for _, a := range list(p["Architectures"]) {
				fn.settings = append(fn.settings, "architecture "+str(a))
			}
			for k := range m(m(p["Environment"])["Variables"]) {
				fn.env = append(fn.env, k)
			}
			for _, pol := range list(p["Policies"]) {
				switch pol := pol.(type) {
				case string:
					problems = append(problems, id+": managed policy "+pol+" (actions not comparable)")
				case map[string]interface{}:
					if _, ok := pol["Statement"]; ok {
						fn.actions = append(fn.actions, statementActions(pol, true)...)
						continue
					}
					for name := range pol {
						actions, ok := samPolicyTemplates[name]
						if !ok {
							problems = append(problems, id+": unknown SAM policy template "+name)
						}
						fn.actions = append(fn.actions, actions...)
					}
				}
			}
			for _, ev := range m(p["Events"]) {
				ev := m(ev)
				ep := m(ev["Properties"])
				switch str(ev["Type"]) {
				case "HttpApi":
					method := strings.ToUpper(str(ep["Method"]))
					if method == "" || method == "*" {
						method = "ANY"
					}
					route := method + " " + str(ep["Path"])
					if ep["Path"] == nil {
						route = "$default"
					}
					md.routes = append(md.routes, route+" -> "+id)
				case "ScheduleV2", "Schedule":
					expr := ep["ScheduleExpression"] // ScheduleV2
					if expr == nil {
						expr = ep["Schedule"] // Schedule (EventBridge rule)
					}
					md.schedules = append(md.schedules, str(param(expr))+" -> "+id)
				case "EventBridgeRule":
					md.rules = append(md.rules, patternText(ep["Pattern"])+" -> "+id)
				case "S3":
					var filter []string
					for _, rule := range list(m(m(ep["Filter"])["S3Key"])["Rules"]) {
						filter = append(filter, strings.ToLower(str(m(rule)["Name"]))+"="+str(m(rule)["Value"]))
					}
					for _, e := range list(ep["Events"]) {
						md.notify = append(md.notify, str(e)+" "+strings.Join(filter, " ")+" -> "+id)
					}
				}
			}
			md.functions[id] = fn
		case "AWS::Scheduler::Schedule":
			md.schedules = append(md.schedules, str(p["ScheduleExpression"])+" -> "+refName(m(p["Target"])["Arn"], func(s string) string { return s }))
		case "AWS::DynamoDB::Table":
			md.table = tableModel(p)
		case "AWS::Serverless::SimpleTable":
			problems = append(problems, id+": SimpleTable cannot have a sort key, TTL or PITR")
		case "AWS::S3::Bucket":
			md.bucket = bucketModel(p, policies)
			for _, c := range list(m(p["NotificationConfiguration"])["LambdaConfigurations"]) {
				c := m(c)
				var filter []string
				for _, rule := range list(m(m(c["Filter"])["S3Key"])["Rules"]) {
					filter = append(filter, strings.ToLower(str(m(rule)["Name"]))+"="+str(m(rule)["Value"]))
				}
				md.notify = append(md.notify, str(c["Event"])+" "+strings.Join(filter, " ")+" -> "+refName(c["Function"], func(s string) string { return s }))
			}
		}
	}
	md.edge = edgeModel(res)
	return md, problems
}

func loadSAM(path string) (map[string]interface{}, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m(fromYAML(&n)), nil
}

// compare reports every difference between the SAM model and the CDK model.
func compare(sam, cdk *model) []string {
	var out []string
	report := func(what string, s, c []string) {
		onlySAM, onlyCDK := diff(sorted(s), sorted(c))
		for _, v := range onlySAM {
			out = append(out, fmt.Sprintf("%s: only in template.yaml: %s", what, v))
		}
		for _, v := range onlyCDK {
			out = append(out, fmt.Sprintf("%s: only in the CDK construct: %s", what, v))
		}
	}
	var samFns, cdkFns []string
	for k := range sam.functions {
		samFns = append(samFns, k)
	}
	for k := range cdk.functions {
		cdkFns = append(cdkFns, k)
	}
	report("functions", samFns, cdkFns)
	for name, s := range sam.functions {
		c, ok := cdk.functions[name]
		if !ok {
			continue
		}
		report(name+" settings", s.settings, c.settings)
		report(name+" environment", s.env, c.env)
		report(name+" IAM actions", s.actions, c.actions)
	}
	report("routes", sam.routes, cdk.routes)
	report("schedules", sam.schedules, cdk.schedules)
	report("S3 notifications", sam.notify, cdk.notify)
	report("event rules", sam.rules, cdk.rules)
	report("table", sam.table, cdk.table)
	report("bucket", sam.bucket, cdk.bucket)
	report("edge", sam.edge, cdk.edge)
	return out
}

func TestParityWithSAMTemplate(t *testing.T) {
	path := filepath.Join(filepath.Dir(infraDir()), "template.yaml")
	doc, err := loadSAM(path)
	if err != nil {
		t.Fatalf("SAM template: %v", err)
	}
	sam, problems := samModel(doc)
	for _, p := range problems {
		t.Errorf("template.yaml: %s", p)
	}
	// The default stack without the CloudFront key pair: the SAM template
	// deploys without CloudFront.
	cdk := cdkModel(use(t, samShapedStack))
	for name, fn := range sam.functions {
		if c, ok := cdk.functions[name]; ok && c.sizing != fn.sizing {
			t.Logf("%s sizing differs (not compared): template.yaml %s, CDK %s", name, fn.sizing, c.sizing)
		}
	}
	seen := map[string]bool{}
	for _, d := range compare(sam, cdk) {
		if reason, ok := knownDifferences[d]; ok {
			seen[d] = true
			t.Logf("known difference (%s): %s", reason, d)
			continue
		}
		if reason, ok := cdkOnly[d]; ok {
			seen[d] = true
			t.Logf("CDK-only (%s): %s", reason, d)
			continue
		}
		t.Error(d)
	}
	for d := range knownDifferences {
		if !seen[d] {
			t.Errorf("known difference is gone, delete it from knownDifferences: %s", d)
		}
	}
	for d := range cdkOnly {
		if !seen[d] {
			t.Errorf("CDK-only difference is gone, delete it from cdkOnly: %s", d)
		}
	}
}

// cdkOnly is what the CDK deployment has and template.yaml deliberately
// does not (docs/deploy.md, "Edge uploads"; template.yaml's header): SAM
// cannot express the CloudFront Function and KeyValueStore wiring well, so
// the edge upload path is CDK-only. Each entry must occur, like
// knownDifferences.
var cdkOnly = func() map[string]string {
	const edge = "edge upload path, CDK only"
	out := map[string]string{
		"edge: only in the CDK construct: AWS::CloudFront::KeyValueStore":                     edge,
		"edge: only in the CDK construct: AWS::CloudFront::Function":                          edge,
		"edge: only in the CDK construct: behaviour /_upload/* viewer-request":                edge,
		"edge: only in the CDK construct: behaviour /_upload/* viewer-response":               edge,
		"edge: only in the CDK construct: behaviour /v2/* viewer-request":                     edge,
		"ApiFunction environment: only in the CDK construct: BERTH_EDGE_KVS_ARN":              edge,
		"CleanupFunction environment: only in the CDK construct: BERTH_EDGE_KVS_ARN":          edge,
		"ApiFunction IAM actions: only in the CDK construct: cloudfront-keyvaluestore:GetKey": edge,
	}
	for _, a := range []string{"DeleteKey", "DescribeKeyValueStore", "GetKey", "ListKeys", "PutKey"} {
		out["CleanupFunction IAM actions: only in the CDK construct: cloudfront-keyvaluestore:"+a] = edge
	}
	return out
}()

// knownDifferences are differences reported to the lead, each with the
// side that is expected to move. The test fails on any other difference,
// and on an entry here that no longer occurs.
var knownDifferences = map[string]string{}
