package berth_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"

	"github.com/berth-registry/berth/infra/berth"
)

// Registry events (docs/events.md): the api and cleanup functions name the
// bus in BERTH_EVENT_BUS and may put events on exactly that bus; the
// default stack uses the account's default bus (TestIAMPerFunction), the
// variant a bus of its own, and Events=false neither variable nor grant.
func TestEventBus(t *testing.T) {
	v := use(t, variantStack)
	var busID string
	for id := range v.resources("AWS::Events::EventBus") {
		busID = id
	}
	if busID == "" {
		t.Fatal("variant: no event bus")
	}
	for _, fn := range []string{"ApiFunction", "CleanupFunction"} {
		_, f := v.function(t, fn)
		env, _ := json.Marshal(f["Properties"].(obj)["Environment"].(obj)["Variables"].(obj)["BERTH_EVENT_BUS"])
		if !strings.Contains(string(env), `"Fn::GetAtt":["`+busID+`","Arn"]`) {
			t.Errorf("variant %s BERTH_EVENT_BUS = %s, want the created bus's ARN", fn, env)
		}
		st := v.statements(t, fn)["PutRegistryEvents"]
		if st == nil || strings.Join(strs(st["Action"]), ",") != "events:PutEvents" || len(resourceText(st)) != 1 || !strings.Contains(resourceText(st)[0], busID) {
			t.Errorf("variant %s PutRegistryEvents = %v", fn, st)
		}
	}

	off := use(t, func() *synthesized {
		// Scanning needs events (TestScanNeedsEvents).
		return synth(func(_ awscdk.Stack, p *berth.RegistryProps) {
			p.Events, p.ScanEnabled = jsii.Bool(false), jsii.Bool(false)
		})
	})
	for _, fn := range []string{"ApiFunction", "CleanupFunction", "TokenFunction"} {
		_, f := off.function(t, fn)
		if _, set := f["Properties"].(obj)["Environment"].(obj)["Variables"].(obj)["BERTH_EVENT_BUS"]; set {
			t.Errorf("events off: %s sets BERTH_EVENT_BUS", fn)
		}
		if _, ok := off.statements(t, fn)["PutRegistryEvents"]; ok {
			t.Errorf("events off: %s may put events", fn)
		}
	}
}
