// Package template checks template.yaml (AWS SAM) against the code: every
// function directory is deployed, every environment variable a function
// reads is set on it, every path the /v2/ handler serves is routed to the
// API function, and each function's IAM grants are exactly what its code
// calls. SAM CLI and cfn-lint cannot be installed here (TOOLCHAIN.md); this
// is the offline check.
package template

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-registry/berth/internal/apigwemu"
	"github.com/berth-registry/berth/pkg/route"
	"gopkg.in/yaml.v3"
)

const root = "../.."

// load reads template.yaml, turning CloudFormation short-form tags into
// their long form (!Ref X → {"Ref": X}, !GetAtt A.B → {"Fn::GetAtt": [A, B]},
// !Sub s → {"Fn::Sub": s}).
func load(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	v, err := decode(doc.Content[0])
	if err != nil {
		t.Fatal(err)
	}
	return v.(map[string]any)
}

func decode(n *yaml.Node) (any, error) {
	var v any
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i < len(n.Content); i += 2 {
			val, err := decode(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[n.Content[i].Value] = val
		}
		v = m
	case yaml.SequenceNode:
		s := []any{}
		for _, c := range n.Content {
			val, err := decode(c)
			if err != nil {
				return nil, err
			}
			s = append(s, val)
		}
		v = s
	case yaml.ScalarNode:
		v = n.Value
	case yaml.AliasNode:
		return decode(n.Alias)
	default:
		return nil, fmt.Errorf("line %d: unexpected YAML node", n.Line)
	}
	switch tag := n.Tag; {
	case !strings.HasPrefix(tag, "!") || strings.HasPrefix(tag, "!!"):
		return v, nil
	case tag == "!Ref":
		return map[string]any{"Ref": v}, nil
	case tag == "!GetAtt":
		if s, ok := v.(string); ok {
			res, attr, _ := strings.Cut(s, ".")
			v = []any{res, attr}
		}
		return map[string]any{"Fn::GetAtt": v}, nil
	default:
		return map[string]any{"Fn::" + tag[1:]: v}, nil
	}
}

func get(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func str(v any, path ...string) string { s, _ := get(v, path...).(string); return s }

// functionDirs lists functions/<name> directories holding a main package.
func functionDirs(t *testing.T) []string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(root, "functions", "*", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range matches {
		out = append(out, filepath.Base(filepath.Dir(m)))
	}
	return out
}

// logicalID is the CloudFormation id of functions/<dir>: api → ApiFunction.
func logicalID(dir string) string { return strings.ToUpper(dir[:1]) + dir[1:] + "Function" }

func TestEveryFunctionDeployed(t *testing.T) {
	tpl := load(t)
	res := get(tpl, "Resources").(map[string]any)
	dirs := functionDirs(t)
	if len(dirs) == 0 {
		t.Fatal("no functions/*/main.go found")
	}
	for _, d := range dirs {
		fn := res[logicalID(d)]
		if str(fn, "Type") != "AWS::Serverless::Function" {
			t.Errorf("functions/%s has no %s AWS::Serverless::Function", d, logicalID(d))
			continue
		}
		if got := str(fn, "Properties", "CodeUri"); got != "dist/"+d+".zip" {
			t.Errorf("%s CodeUri = %q, want dist/%s.zip (what make build writes)", logicalID(d), got, d)
		}
	}
	for id, r := range res {
		if str(r, "Type") == "AWS::Serverless::Function" && !slices.ContainsFunc(dirs, func(d string) bool { return logicalID(d) == id }) {
			t.Errorf("%s has no functions/ directory", id)
		}
	}
	g := get(tpl, "Globals", "Function")
	if str(g, "Runtime") != "provided.al2023" || str(g, "Handler") != "bootstrap" || fmt.Sprint(get(g, "Architectures")) != "[arm64]" {
		t.Errorf("Globals.Function: runtime %q, handler %q, architectures %v", str(g, "Runtime"), str(g, "Handler"), get(g, "Architectures"))
	}
}

// envRead is one variable a function's code reads.
type envRead struct {
	name     string
	required bool
}

// envReads parses the function's Go files for lambdaenv reads
// (env.Required(lambdaenv.Table) and friends) and direct os.Getenv /
// os.LookupEnv calls.
func envReads(t *testing.T, dir string) map[string]envRead {
	t.Helper()
	consts := lambdaenvConsts(t)
	fset := token.NewFileSet()
	out := map[string]envRead{}
	files, _ := filepath.Glob(filepath.Join(root, "functions", dir, "*.go"))
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "os" && (sel.Sel.Name == "Getenv" || sel.Sel.Name == "LookupEnv") {
				if lit, ok := call.Args[0].(*ast.BasicLit); ok {
					name, _ := strconv.Unquote(lit.Value)
					out[name] = envRead{name: name}
				}
				return true
			}
			arg, ok := call.Args[0].(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if pkg, ok := arg.X.(*ast.Ident); ok && pkg.Name == "lambdaenv" {
				if name, ok := consts[arg.Sel.Name]; ok {
					r := out[name]
					r.name, r.required = name, r.required || sel.Sel.Name == "Required"
					out[name] = r
				}
			}
			return true
		})
	}
	return out
}

// lambdaenvConsts maps the lambdaenv constant names to variable names.
func lambdaenvConsts(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, "functions/internal/lambdaenv/lambdaenv.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if i < len(vs.Values) {
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						out[n.Name], _ = strconv.Unquote(lit.Value)
					}
				}
			}
		}
	}
	return out
}

// optionalUnset lists variables a function reads that the template may leave
// unset because the code's default is right in AWS.
var optionalUnset = map[string]string{
	"BERTH_STS_AUDIENCE":           "defaults to BERTH_SERVICE, the audience berth login signs IAM proofs for",
	"BERTH_CDN_URL":                "CloudFront signed blob URLs are opt-in (infra/ wires a distribution)",
	"BERTH_CDN_KEY_PAIR_ID":        "CloudFront signed blob URLs are opt-in",
	"BERTH_CDN_PRIVATE_KEY_SECRET": "CloudFront signed blob URLs are opt-in",
	// The edge upload path (KeyValueStore, CloudFront Function, /_upload/*)
	// is CDK-only (docs/deploy.md, "Edge uploads"; template.yaml's header):
	// SAM deploys without it and both functions run with the edge off.
	"BERTH_EDGE_KVS_ARN":      "edge upload path: CDK deployment only (infra/berth/edge.go)",
	"BERTH_TOKEN_RATE_PER_IP": "token signing limits: auth.DefaultLimits are right in AWS (docs/auth.md)",
	"BERTH_TOKEN_RATE_GLOBAL": "token signing limits: auth.DefaultLimits are right in AWS (docs/auth.md)",
	"BERTH_OSV_BASE_URL":      "OSV's own export bucket is the default; the variable exists for tests and mirrors",
	// Set by Lambda itself in every execution environment (reserved: a
	// template may not set them).
	"AWS_LAMBDA_FUNCTION_NAME": "reserved: Lambda sets it (the EMF metrics' Function dimension)",
	"AWS_LAMBDA_RUNTIME_API":   "reserved: Lambda sets it (the after-response extension registers there)",
}

func TestEnvironmentMatchesCode(t *testing.T) {
	tpl := load(t)
	for _, d := range functionDirs(t) {
		vars, _ := get(tpl, "Resources", logicalID(d), "Properties", "Environment", "Variables").(map[string]any)
		reads := envReads(t, d)
		for name, r := range reads {
			if _, set := vars[name]; set {
				continue
			}
			if _, ok := optionalUnset[name]; ok && !r.required {
				continue
			}
			t.Errorf("functions/%s reads %s but %s does not set it", d, name, logicalID(d))
		}
		for name := range vars {
			if _, read := reads[name]; !read {
				t.Errorf("%s sets %s, which functions/%s never reads", logicalID(d), name, d)
			}
		}
	}
}

// routeKeys collects the HttpApi route keys of one function.
func routeKeys(tpl map[string]any, id string) []string {
	var keys []string
	evs, _ := get(tpl, "Resources", id, "Properties", "Events").(map[string]any)
	for _, ev := range evs {
		if str(ev, "Type") != "HttpApi" {
			continue
		}
		keys = append(keys, str(ev, "Properties", "Method")+" "+str(ev, "Properties", "Path"))
		if v := str(ev, "Properties", "PayloadFormatVersion"); v != "2.0" {
			panic(fmt.Sprintf("%s route %s: payload format %q, the adapter speaks 2.0", id, keys[len(keys)-1], v))
		}
	}
	sort.Strings(keys)
	return keys
}

func TestTokenRouted(t *testing.T) {
	tpl := load(t)
	em := apigwemu.NewEmulator(nil, apigwemu.WithRoutes(routeKeys(tpl, "TokenFunction")...))
	for _, m := range []string{"GET", "POST"} {
		if _, ok := em.Event(httptest.NewRequest(m, "/token?service=x&scope=repository:a:pull", nil), nil, "id"); !ok {
			t.Errorf("%s /token is not routed to TokenFunction", m)
		}
	}
	api := apigwemu.NewEmulator(nil, apigwemu.WithRoutes(routeKeys(tpl, "ApiFunction")...))
	if _, ok := api.Event(httptest.NewRequest("GET", "/token", nil), nil, "id"); ok {
		t.Error("/token also routed to ApiFunction")
	}
}

func TestEveryRegistryPathRouted(t *testing.T) {
	tpl := load(t)
	keys := routeKeys(tpl, "ApiFunction")
	em := apigwemu.NewEmulator(nil, apigwemu.WithRoutes(keys...))
	const dgst = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
	// One request per route × method the handler serves (registry.New's table).
	calls := []struct {
		kind    route.Kind
		methods string
		path    string
	}{
		{route.Base, "GET HEAD", "/v2/"},
		{route.Catalog, "GET", "/v2/_catalog"},
		{route.Tags, "GET", "/v2/library/alpine/tags/list"},
		{route.Manifest, "GET HEAD PUT DELETE", "/v2/library/alpine/manifests/3.22"},
		{route.Blob, "GET HEAD DELETE", "/v2/a/b/c/blobs/" + dgst},
		{route.UploadStart, "POST", "/v2/a/blobs/uploads/"},
		{route.Upload, "GET PATCH PUT DELETE", "/v2/a/blobs/uploads/0123456789abcdef"},
		{route.Referrers, "GET", "/v2/a/referrers/" + dgst},
	}
	for _, c := range calls {
		rt, err := route.Parse(c.path)
		if err != nil || rt.Kind != c.kind {
			t.Errorf("%s: parses as %v (%v), want %v", c.path, rt.Kind, err, c.kind)
		}
		for m := range strings.FieldsSeq(c.methods) {
			r := httptest.NewRequest(m, c.path, nil)
			if _, ok := em.Event(r, nil, "id"); !ok {
				t.Errorf("%s %s is not routed to ApiFunction (routes %v)", m, c.path, keys)
			}
		}
	}
}

// grants are the IAM actions each function's code needs, by resource. The
// API function's statements follow registry → storage.Items → DynamoDB and
// storage.Blobs → S3; cleanup's follow sweep.Sweeper.Uploads and retention.Apply.
var grants = map[string]map[string][]string{
	// KMS access to the token signing key is granted by the key's policy,
	// not here (TestTokenKeyPolicy).
	"ApiFunction": {
		// BatchGetItem: a manifest PUT reads its references in one round trip.
		"table":     {"dynamodb:BatchGetItem", "dynamodb:ConditionCheckItem", "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"},
		"blobs/*":   {"s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"}, // no DeleteObject: only GC deletes bytes; abort for failed >5 GB copies
		"uploads/*": {"s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"},
		"bucket":    {"s3:ListBucket"},
		// The asynchronous verify-upload invoke of the cleanup function.
		"cleanup-function": {"lambda:InvokeFunction"},
		"event-bus":        {"events:PutEvents"},
	},
	"CleanupFunction": {
		// Query, GetItem, DeleteItem: the upload sweep. UpdateItem: retention,
		// through meta.ManifestList and ManifestDelete. PutItem and
		// ConditionCheckItem: registry.Verifier saving a session and
		// linking the verified blob in one transaction. BatchGetItem: the
		// orphan pass of garbage collection (docs/gc.md).
		"table":     {"dynamodb:BatchGetItem", "dynamodb:ConditionCheckItem", "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"},
		"uploads/*": {"s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject"},
		// DeleteObject: garbage collection, the only grant that deletes bytes.
		"blobs/*":   {"s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"},
		"bucket":    {"s3:ListBucket"},
		"event-bus": {"events:PutEvents"},
	},
	// The scanner (infra/berth/scanning.go says why each): layers read,
	// referrer blobs pushed through the registry, layer indexes, OSV data
	// read only, the registry's push and delete paths in the table.
	"ScanFunction": {
		"table":     {"dynamodb:BatchGetItem", "dynamodb:ConditionCheckItem", "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"},
		"blobs/*":   {"s3:GetObject", "s3:PutObject"},
		"scan/*":    {"s3:DeleteObject", "s3:GetObject", "s3:PutObject"},
		"osv/*":     {"s3:GetObject"},
		"bucket":    {"s3:ListBucket"},
		"event-bus": {"events:PutEvents"},
	},
	// The OSV sync: its prefix, and the re-match request.
	"OsvsyncFunction": {
		"osv/*":         {"s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"},
		"bucket":        {"s3:ListBucket"},
		"scan-function": {"lambda:InvokeFunction"},
	},
	"TokenFunction": {
		"policy-parameter": {"ssm:GetParameter"},
	},
}

// resourceName names a statement resource for the grants table.
func resourceName(r any) string {
	switch {
	case fmt.Sprint(get(r, "Fn::GetAtt")) == "[MetadataTable Arn]":
		return "table"
	case fmt.Sprint(get(r, "Fn::GetAtt")) == "[TokenSigningKey Arn]":
		return "key"
	case strings.HasSuffix(str(r, "Fn::Sub"), ":parameter/berth/${AWS::StackName}/auth-policy"):
		return "policy-parameter"
	case fmt.Sprint(get(r, "Fn::GetAtt")) == "[BlobBucket Arn]":
		return "bucket"
	case fmt.Sprint(get(r, "Fn::GetAtt")) == "[CleanupFunction Arn]":
		return "cleanup-function"
	case fmt.Sprint(get(r, "Fn::GetAtt")) == "[ScanFunction Arn]":
		return "scan-function"
	case subList(r) == "arn:${AWS::Partition}:s3:::${Bucket}":
		return "bucket"
	case strings.HasPrefix(subList(r), "arn:${AWS::Partition}:s3:::${Bucket}/"):
		// The scan function names the bucket by its computed name (a
		// !Ref would be a circular dependency with the notification).
		return strings.TrimPrefix(subList(r), "arn:${AWS::Partition}:s3:::${Bucket}/")
	case str(r, "Fn::Sub") == "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBusName}":
		return "event-bus"
	case strings.HasPrefix(str(r, "Fn::Sub"), "${BlobBucket.Arn}/"):
		return strings.TrimPrefix(str(r, "Fn::Sub"), "${BlobBucket.Arn}/")
	}
	return fmt.Sprint(r)
}

// subList is the template string of a !Sub [template, variables].
func subList(r any) string {
	l, ok := get(r, "Fn::Sub").([]any)
	if !ok || len(l) != 2 {
		return ""
	}
	s, _ := l[0].(string)
	return s
}

func asList(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	return []any{v}
}

func TestIAMLeastPrivilege(t *testing.T) {
	tpl := load(t)
	for id, want := range grants {
		got := map[string][]string{}
		for _, pol := range asList(get(tpl, "Resources", id, "Properties", "Policies")) {
			if pol == nil {
				continue
			}
			if _, ok := pol.(string); ok {
				t.Errorf("%s uses managed policy %v; least privilege wants inline statements", id, pol)
				continue
			}
			for _, st := range asList(get(pol, "Statement")) {
				if str(st, "Effect") != "Allow" {
					continue
				}
				for _, r := range asList(get(st, "Resource")) {
					if r == "*" {
						t.Errorf("%s: statement on Resource *", id)
					}
					name := resourceName(r)
					for _, a := range asList(get(st, "Action")) {
						got[name] = append(got[name], a.(string))
					}
				}
			}
		}
		for k := range got {
			sort.Strings(got[k])
		}
		if !maps.EqualFunc(got, want, slices.Equal) {
			t.Errorf("%s grants\n %v\nwant\n %v", id, got, want)
		}
	}
}

func TestStorageAndSchedule(t *testing.T) {
	tpl := load(t)
	b := get(tpl, "Resources", "BlobBucket", "Properties")
	if fmt.Sprint(get(b, "PublicAccessBlockConfiguration")) != "map[BlockPublicAcls:true BlockPublicPolicy:true IgnorePublicAcls:true RestrictPublicBuckets:true]" {
		t.Errorf("public access block: %v", get(b, "PublicAccessBlockConfiguration"))
	}
	if get(b, "BucketEncryption") == nil {
		t.Error("bucket has no default encryption")
	}
	var abort, staging bool
	for _, r := range asList(get(b, "LifecycleConfiguration", "Rules")) {
		abort = abort || str(r, "AbortIncompleteMultipartUpload", "DaysAfterInitiation") == "1"
		staging = staging || str(r, "Prefix") == "uploads/" && str(r, "ExpirationInDays") == "2"
	}
	if !abort || !staging {
		t.Errorf("lifecycle: abort MPU after 1 day %v, expire uploads/ after 2 days %v", abort, staging)
	}
	pol := get(tpl, "Resources", "BlobBucketPolicy", "Properties", "PolicyDocument", "Statement")
	if !strings.Contains(fmt.Sprint(pol), "aws:SecureTransport:false") {
		t.Errorf("bucket policy does not deny plain HTTP: %v", pol)
	}
	tbl := get(tpl, "Resources", "MetadataTable", "Properties")
	if str(tbl, "BillingMode") != "PAY_PER_REQUEST" || str(tbl, "TimeToLiveSpecification", "AttributeName") != "expires" ||
		str(tbl, "PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled") != "true" ||
		fmt.Sprint(get(tbl, "KeySchema")) != "[map[AttributeName:PK KeyType:HASH] map[AttributeName:SK KeyType:RANGE]]" {
		t.Errorf("table: %v", tbl)
	}
	if s := str(tpl, "Resources", "CleanupFunction", "Properties", "Events", "Hourly", "Properties", "ScheduleExpression"); s != "rate(1 hour)" {
		t.Errorf("cleanup schedule %q", s)
	}
	scan := get(tpl, "Resources", "ScanFunction", "Properties", "Events", "BlobCreated", "Properties")
	if !strings.Contains(fmt.Sprint(get(scan, "Filter")), "Value:blobs/") || str(scan, "Events") != "s3:ObjectCreated:*" {
		t.Errorf("scan notification: %v", scan)
	}
	for _, o := range []string{"RegistryUrl", "BucketName", "TableName"} {
		if get(tpl, "Outputs", o) == nil {
			t.Errorf("output %s missing", o)
		}
	}
}
