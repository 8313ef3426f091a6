package template

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"
	"testing"
)

// keyAdminActions are what the account root (delegation to IAM) may do with
// the token signing key: administer it, never use it. kms:CreateGrant is
// left out on purpose: a principal allowed kms:CreateGrant on * could grant
// itself kms:Sign (docs/deploy.md, "The token signing key").
var keyAdminActions = []string{
	"kms:CancelKeyDeletion", "kms:CreateAlias", "kms:Delete*", "kms:Describe*", "kms:Disable*",
	"kms:Enable*", "kms:Get*", "kms:List*", "kms:Put*", "kms:Revoke*", "kms:ScheduleKeyDeletion",
	"kms:TagResource", "kms:UntagResource", "kms:Update*",
}

// keyUse are the actions that use the key; each may name only the function
// roles listed.
var keyUse = map[string][]string{
	"kms:Sign":          {"TokenFunctionRole"},
	"kms:CreateGrant":   nil,
	"kms:ReEncryptFrom": nil,
	"kms:Verify":        nil,
}

// actionMatches reports whether an IAM action pattern (kms:*, kms:S*)
// covers action; IAM matches actions case-insensitively.
func actionMatches(pattern, action string) bool {
	ok, _ := path.Match(strings.ToLower(pattern), strings.ToLower(action))
	return ok
}

// principalName names a key policy principal: the account root, a function
// role by logical id, or its printed form.
func principalName(p any) string {
	aws := get(p, "AWS")
	if aws == nil {
		return fmt.Sprint(p)
	}
	if s := str(aws, "Fn::Sub"); s == "arn:${AWS::Partition}:iam::${AWS::AccountId}:root" {
		return "root"
	}
	if ga, ok := get(aws, "Fn::GetAtt").([]any); ok && len(ga) == 2 && ga[1] == "Arn" {
		return fmt.Sprint(ga[0])
	}
	return fmt.Sprint(aws)
}

// keyPolicyGrants maps principal → sorted allowed actions of the token
// signing key's policy, failing on anything it cannot read.
func keyPolicyGrants(t *testing.T) map[string][]string {
	t.Helper()
	key := get(load(t), "Resources", "TokenSigningKey", "Properties")
	if key == nil {
		t.Fatal("no TokenSigningKey")
	}
	out := map[string][]string{}
	for _, st := range asList(get(key, "KeyPolicy", "Statement")) {
		if str(st, "Effect") != "Allow" {
			continue
		}
		if get(st, "Condition") != nil {
			t.Errorf("key policy statement %s has a condition this test does not read", str(st, "Sid"))
		}
		who := principalName(get(st, "Principal"))
		for _, a := range asList(get(st, "Action")) {
			out[who] = append(out[who], a.(string))
		}
	}
	for k := range out {
		sort.Strings(out[k])
	}
	return out
}

// The token signing key signs registry tokens: whoever may call kms:Sign
// on it can mint a token for any repository. Only the token function's
// role may; the root administers the key (delegating that to IAM) but its
// statement covers no use of the key, so an IAM policy granting kms:Sign
// on * (kms:* included) no longer reaches it.
func TestTokenKeyPolicy(t *testing.T) {
	grants := keyPolicyGrants(t)
	want := map[string][]string{
		"root":              keyAdminActions,
		"TokenFunctionRole": {"kms:GetPublicKey", "kms:Sign"},
		"ApiFunctionRole":   {"kms:GetPublicKey"},
	}
	if !maps.EqualFunc(grants, want, slices.Equal) {
		t.Errorf("token key policy grants\n %v\nwant\n %v", grants, want)
	}
	for action, allowed := range keyUse {
		for who, patterns := range grants {
			for _, p := range patterns {
				if actionMatches(p, action) && !slices.Contains(allowed, who) {
					t.Errorf("key policy: %s may %s (through %q)", who, action, p)
				}
			}
		}
	}
	// The functions' own policies name no KMS action: the key policy alone
	// grants them (a role policy naming the key while the key policy names
	// the role would be a dependency cycle).
	for _, fn := range []string{"ApiFunction", "TokenFunction", "CleanupFunction", "ScanFunction"} {
		for _, pol := range asList(get(load(t), "Resources", fn, "Properties", "Policies")) {
			for _, st := range asList(get(pol, "Statement")) {
				for _, a := range asList(get(st, "Action")) {
					if s, _ := a.(string); strings.HasPrefix(strings.ToLower(s), "kms:") {
						t.Errorf("%s role policy grants %s; KMS access belongs in the key policy", fn, s)
					}
				}
			}
		}
	}
}

func TestActionMatches(t *testing.T) {
	for _, c := range []struct {
		pattern, action string
		want            bool
	}{
		{"kms:*", "kms:Sign", true}, {"kms:S*", "kms:Sign", true}, {"KMS:sign", "kms:Sign", true},
		{"kms:Get*", "kms:Sign", false}, {"kms:Put*", "kms:Sign", false}, {"kms:Sign", "kms:Sign", true},
	} {
		if got := actionMatches(c.pattern, c.action); got != c.want {
			t.Errorf("actionMatches(%q, %q) = %v", c.pattern, c.action, got)
		}
	}
}
