package berth_test

import (
	"encoding/json"
	"path"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awskms"
	"github.com/aws/jsii-runtime-go"
	"github.com/berth-registry/berth/infra/berth"
)

// tokenKeyAdmin is what the account root may do with the token signing key
// (the same list as template.yaml, tests/template/keypolicy_test.go):
// administer it, never use it, and no kms:CreateGrant, with which a
// principal could grant itself kms:Sign.
var tokenKeyAdmin = []string{
	"kms:CancelKeyDeletion", "kms:CreateAlias", "kms:Delete*", "kms:Describe*", "kms:Disable*",
	"kms:Enable*", "kms:Get*", "kms:List*", "kms:Put*", "kms:Revoke*", "kms:ScheduleKeyDeletion",
	"kms:TagResource", "kms:UntagResource", "kms:Update*",
}

// tokenKeyPolicy maps principal (root, or the function whose role it is)
// → sorted actions of the token signing key's policy.
func tokenKeyPolicy(t *testing.T, s *synthesized) map[string][]string {
	t.Helper()
	roles := map[string]string{} // role logical id → function prefix
	for _, fn := range []string{"ApiFunction", "TokenFunction", "CleanupFunction", "ScanFunction"} {
		for id, r := range s.resources("AWS::Lambda::Function") {
			if strings.HasPrefix(id, "Registry"+fn) {
				roles[r["Properties"].(obj)["Role"].(obj)["Fn::GetAtt"].(arr)[0].(string)] = fn
			}
		}
	}
	var key obj
	for _, r := range s.resources("AWS::KMS::Key") {
		if r["Properties"].(obj)["KeySpec"] == "ECC_NIST_P256" {
			key = r
		}
	}
	if key == nil {
		t.Fatal("no token signing key")
	}
	out := map[string][]string{}
	for _, st := range key["Properties"].(obj)["KeyPolicy"].(obj)["Statement"].(arr) {
		st := st.(obj)
		if st["Effect"] != "Allow" {
			continue
		}
		if st["Condition"] != nil {
			t.Errorf("token key statement %v has a condition this test does not read", st["Sid"])
		}
		who := jsonText(st["Principal"])
		if strings.HasSuffix(who, `":root"]]}}`) {
			who = "root"
		} else if ga, ok := st["Principal"].(obj)["AWS"].(obj)["Fn::GetAtt"].(arr); ok && roles[ga[0].(string)] != "" {
			who = roles[ga[0].(string)]
		}
		out[who] = append(out[who], strs(st["Action"])...)
	}
	for k := range out {
		sort.Strings(out[k])
	}
	return out
}

// Whoever may call kms:Sign on the token signing key mints registry tokens
// for any repository. The CDK default key policy gives the account root
// kms:*, so any principal an IAM policy allows kms:Sign on * could. The
// key policy now names the token function's role for Sign and the api
// function's for GetPublicKey; the root administers without using the key.
func TestTokenKeyPolicy(t *testing.T) {
	want := map[string][]string{
		"root":          tokenKeyAdmin,
		"TokenFunction": {"kms:GetPublicKey", "kms:Sign"},
		"ApiFunction":   {"kms:GetPublicKey"},
	}
	for name, s := range map[string]*synthesized{"default": use(t, defaultStack), "variant": use(t, variantStack)} {
		got := tokenKeyPolicy(t, s)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s stack: token key policy\n %v\nwant\n %v", name, got, want)
		}
		for who, actions := range got {
			for _, a := range actions {
				for _, use := range []string{"kms:Sign", "kms:CreateGrant"} {
					if ok, _ := path.Match(strings.ToLower(a), strings.ToLower(use)); ok && !(who == "TokenFunction" && use == "kms:Sign") {
						t.Errorf("%s stack: %s may %s (through %s)", name, who, use, a)
					}
				}
			}
		}
		// The roles name no KMS action on the token key: the key policy
		// grants them (naming the key there too would be a cycle).
		for _, fn := range []string{"ApiFunction", "TokenFunction"} {
			for sid, st := range s.statements(t, fn) {
				if strings.Contains(jsonText(st), "TokenSigningKey") {
					t.Errorf("%s stack: %s role statement %s names the token key", name, fn, sid)
				}
			}
		}
	}
}

// An imported TokenSigningKey keeps its own policy, which the construct
// cannot change: the roles then carry the IAM statements, and that key's
// policy must delegate to IAM (docs/deploy.md).
func TestImportedTokenKey(t *testing.T) {
	s := use(t, func() *synthesized {
		return synth(func(stack awscdk.Stack, p *berth.RegistryProps) {
			p.TokenSigningKey = awskms.Key_FromKeyArn(stack, jsii.String("Imported"),
				jsii.String("arn:aws:kms:us-east-1:111122223333:key/11111111-2222-3333-4444-555555555555"))
		})
	})
	if n := len(s.resources("AWS::KMS::Key")); n != 0 {
		t.Errorf("%d KMS keys created beside an imported one", n)
	}
	for fn, want := range map[string][]string{"ApiFunction": {"kms:GetPublicKey"}, "TokenFunction": {"kms:GetPublicKey", "kms:Sign"}} {
		var got []string
		for _, st := range s.statements(t, fn) {
			b, _ := json.Marshal(st)
			if strings.Contains(string(b), "11111111-2222-3333-4444-555555555555") {
				got = append(got, strs(st["Action"])...)
			}
		}
		sort.Strings(got)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s grants on the imported key %v, want %v", fn, got, want)
		}
	}
}
