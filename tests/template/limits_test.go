package template

import (
	"fmt"
	"testing"
)

// param returns a template parameter's default, failing when it is missing.
func param(t *testing.T, tpl map[string]any, name string) string {
	t.Helper()
	p := get(tpl, "Parameters", name)
	if p == nil {
		t.Errorf("no parameter %s", name)
		return ""
	}
	return fmt.Sprint(get(p, "Default"))
}

// The API is throttled by default (HTTP API default route settings from
// overridable parameters), the token function has a small reserved
// concurrency so a token flood cannot take the concurrency the api function
// needs, the api function reserves nothing by default (it would take from
// every other function in the account), and a reserved concurrency of 0
// means "none", never "disabled". The execute-api endpoint is the entry of
// a SAM deployment (no CloudFront here); the origin-verify stage variable
// is there for a CloudFront put in front of it, off by default.
func TestThrottlingAndConcurrency(t *testing.T) {
	tpl := load(t)
	for name, want := range map[string]string{
		"ApiThrottleRateLimit": "500", "ApiThrottleBurstLimit": "1000",
		"TokenReservedConcurrency": "10", "ApiReservedConcurrency": "0",
		"OriginVerifySecret": "",
	} {
		if got := param(t, tpl, name); got != want {
			t.Errorf("parameter %s default %q, want %q", name, got, want)
		}
	}
	settings := get(tpl, "Resources", "HttpApi", "Properties", "DefaultRouteSettings")
	for k, p := range map[string]string{"ThrottlingRateLimit": "ApiThrottleRateLimit", "ThrottlingBurstLimit": "ApiThrottleBurstLimit"} {
		if got := fmt.Sprint(get(settings, k)); got != fmt.Sprint(map[string]any{"Ref": p}) {
			t.Errorf("HttpApi DefaultRouteSettings.%s = %s, want !Ref %s", k, got, p)
		}
	}
	for fn, p := range map[string]string{"TokenFunction": "TokenReservedConcurrency", "ApiFunction": "ApiReservedConcurrency"} {
		got := fmt.Sprint(get(tpl, "Resources", fn, "Properties", "ReservedConcurrentExecutions"))
		want := fmt.Sprint(map[string]any{"Fn::If": []any{"Has" + p, map[string]any{"Ref": p}, map[string]any{"Ref": "AWS::NoValue"}}})
		if got != want {
			t.Errorf("%s ReservedConcurrentExecutions = %s, want %s", fn, got, want)
		}
		cond := fmt.Sprint(get(tpl, "Conditions", "Has"+p))
		if want := fmt.Sprint(map[string]any{"Fn::Not": []any{map[string]any{"Fn::Equals": []any{map[string]any{"Ref": p}, "0"}}}}); cond != want {
			t.Errorf("condition Has%s = %s, want %s", p, cond, want)
		}
	}
	vars := fmt.Sprint(get(tpl, "Resources", "HttpApi", "Properties", "StageVariables"))
	want := fmt.Sprint(map[string]any{"Fn::If": []any{"HasOriginVerifySecret",
		map[string]any{"berthOriginVerify": map[string]any{"Ref": "OriginVerifySecret"}}, map[string]any{"Ref": "AWS::NoValue"}}})
	if vars != want {
		t.Errorf("HttpApi StageVariables = %s, want %s", vars, want)
	}
}
