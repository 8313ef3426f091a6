package berth_test

import (
	"strings"
	"testing"

	"github.com/berth-registry/berth/infra/berth"
)

// apiOrigin is the CloudFront origin in front of the HTTP API.
func apiOrigin(t *testing.T, s *synthesized) obj {
	t.Helper()
	for _, o := range s.distConfig(t)["Origins"].(arr) {
		if o.(obj)["Id"] == berth.APIOriginID {
			return o.(obj)
		}
	}
	t.Fatal("no API origin")
	return nil
}

// The token function's concurrency is capped (reserved) so a /token flood
// cannot take what the api function needs; the api function reserves none
// by default; and the HTTP API's execute-api endpoint only answers
// requests that came through CloudFront: the distribution's API origin
// adds X-Berth-Origin-Verify with the value of the stage's
// berthOriginVerify variable, which pkg/apigw checks.
func TestConcurrencyAndOriginVerify(t *testing.T) {
	s := use(t, defaultStack)
	reserved := func(s *synthesized, fn string) interface{} {
		_, f := s.function(t, fn)
		return f["Properties"].(obj)["ReservedConcurrentExecutions"]
	}
	if got := reserved(s, "TokenFunction"); got != float64(10) {
		t.Errorf("token function reserved concurrency %v, want 10", got)
	}
	for _, fn := range []string{"ApiFunction", "CleanupFunction", "ScanFunction"} {
		if got := reserved(s, fn); got != nil {
			t.Errorf("%s reserves %v, want none", fn, got)
		}
	}
	_, stage := s.one(t, "AWS::ApiGatewayV2::Stage")
	want := jsonText(stage["Properties"].(obj)["StageVariables"].(obj)["berthOriginVerify"])
	if !strings.Contains(want, "AWS::StackId") {
		t.Errorf("origin-verify value %s, want one derived from the stack id", want)
	}
	var got string
	headers, _ := apiOrigin(t, s)["OriginCustomHeaders"].(arr)
	for _, h := range headers {
		if h.(obj)["HeaderName"] == "X-Berth-Origin-Verify" {
			got = jsonText(h.(obj)["HeaderValue"])
		}
	}
	if got != want {
		t.Errorf("CloudFront API origin sends X-Berth-Origin-Verify %s, stage expects %s", got, want)
	}

	v := use(t, variantStack)
	if got := reserved(v, "TokenFunction"); got != nil {
		t.Errorf("variant (TokenReservedConcurrency 0): token function reserves %v, want none", got)
	}
	if got := reserved(v, "ApiFunction"); got != float64(50) {
		t.Errorf("variant: api function reserves %v, want 50", got)
	}
	_, vstage := v.one(t, "AWS::ApiGatewayV2::Stage")
	if got := vstage["Properties"].(obj)["StageVariables"].(obj)["berthOriginVerify"]; got != "variant-origin-marker" {
		t.Errorf("variant origin-verify value %v, want the prop's", got)
	}
}
