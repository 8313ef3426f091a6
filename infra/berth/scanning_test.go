package berth_test

import (
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/jsii-runtime-go"

	"github.com/berth-registry/berth/infra/berth"
)

// scanBusStack: scanning with a bus of the registry's own, a custom sync
// schedule and ecosystem list, an SSE-KMS bucket and a larger /tmp.
var scanBusStack = sync.OnceValue(func() *synthesized {
	return synth(func(stack awscdk.Stack, p *berth.RegistryProps) {
		p.EventBus = awsevents.NewEventBus(stack, jsii.String("RegistryEvents"), nil)
		p.OsvSyncSchedule = "rate(2 hours)"
		p.OsvEcosystems = []string{"Debian", "Red Hat", "Go"}
		p.BucketEncryption = berth.EncryptionKMS
		p.ScanEphemeralStorageMiB = 4096
	})
})

// The push rule sends image pushes to the scan function and nothing else:
// the registry's source and detail-type, PUSH only, and no push of the
// scanner's own SBOM or report (which would invoke the scanner for each
// report it attaches). An index push has no artifact-media-type, so the
// pattern must match its absence too.
func TestScanOnPushRule(t *testing.T) {
	s := use(t, defaultStack)
	rules := map[string]obj{}
	for id, r := range s.resources("AWS::Events::Rule") {
		rules[cdkName(id)] = r["Properties"].(obj)
	}
	p, del := rules["ScanOnPush"], rules["ScanOnDelete"]
	if p == nil || del == nil || len(rules) != 2 {
		t.Fatalf("rules %v", keys(toObj(rules)))
	}
	wantDel := obj{"source": arr{"berth.registry"}, "detail-type": arr{"Berth Image Action", "Berth Blob Action"}, "detail": obj{"action-type": arr{"DELETE"}}}
	if !reflect.DeepEqual(del["EventPattern"], wantDel) || !strings.Contains(jsonText(del["Targets"]), "RegistryScanFunction") {
		t.Errorf("delete rule %s", jsonText(del))
	}
	want := obj{
		"source":      arr{"berth.registry"},
		"detail-type": arr{"Berth Image Action"},
		"detail": obj{
			"action-type": arr{"PUSH"},
			"artifact-media-type": arr{
				obj{"exists": false},
				obj{"anything-but": arr{"application/spdx+json", "application/vnd.cyclonedx+json"}},
			},
		},
	}
	if !reflect.DeepEqual(p["EventPattern"], want) {
		t.Errorf("pattern %s\nwant    %s", jsonText(p["EventPattern"]), jsonText(want))
	}
	if _, onBus := p["EventBusName"]; onBus {
		t.Errorf("default stack: rule names bus %v, want the default bus", p["EventBusName"])
	}
	targets := p["Targets"].(arr)
	if len(targets) != 1 || !strings.Contains(jsonText(targets[0].(obj)["Arn"]), "RegistryScanFunction") {
		t.Errorf("targets %s", jsonText(targets))
	}
	if rp := jsonText(targets[0].(obj)["RetryPolicy"]); !strings.Contains(rp, `"MaximumRetryAttempts":2`) {
		t.Errorf("retry policy %s", rp)
	}
	// EventBridge may invoke the scan function for these rules only.
	var found []string
	for _, perm := range s.resources("AWS::Lambda::Permission") {
		pp := perm["Properties"].(obj)
		if pp["Principal"] == "events.amazonaws.com" {
			found = append(found, jsonText(pp["SourceArn"]))
			if !strings.Contains(jsonText(pp["FunctionName"]), "RegistryScanFunction") || !strings.Contains(jsonText(pp["SourceArn"]), "RegistryScanOn") {
				t.Errorf("events permission %s", jsonText(pp))
			}
		}
	}
	if len(found) != 2 {
		t.Errorf("EventBridge invoke permissions %v, want one per rule", found)
	}

	v := use(t, scanBusStack)
	for id, vrule := range v.resources("AWS::Events::Rule") {
		if bus := jsonText(vrule["Properties"].(obj)["EventBusName"]); !strings.Contains(bus, "RegistryEvents") {
			t.Errorf("own bus: rule %s on %s", id, bus)
		}
	}
	if st := v.statements(t, "ScanFunction")["PutRegistryEvents"]; st == nil || !strings.Contains(resourceText(st)[0], "RegistryEvents") {
		t.Errorf("own bus: scan PutEvents %v", st)
	}
}

// The sync function runs on its schedule (EventBridge Scheduler, its own
// role that may invoke exactly it), knows the scan function to ask for a
// re-match, and the scan function gets the /tmp its OSV cache needs.
func TestOsvSyncScheduleAndSizing(t *testing.T) {
	for name, c := range map[string]struct {
		s          *synthesized
		expr, ecos string
		tmp        float64
	}{
		"default": {use(t, defaultStack), "rate(6 hours)", "", 2048},
		"custom":  {use(t, scanBusStack), "rate(2 hours)", "Debian,Red Hat,Go", 4096},
	} {
		var sched obj
		for _, r := range c.s.resources("AWS::Scheduler::Schedule") {
			if strings.Contains(jsonText(r["Properties"].(obj)["Target"]), "RegistryOsvsyncFunction") {
				sched = r["Properties"].(obj)
			}
		}
		if sched == nil || sched["ScheduleExpression"] != c.expr {
			t.Errorf("%s: sync schedule %v", name, sched)
		} else {
			role := jsonText(sched["Target"].(obj)["RoleArn"])
			if !strings.Contains(role, "RegistryOsvSyncScheduleRole") {
				t.Errorf("%s: schedule role %s", name, role)
			}
		}
		_, fn := c.s.function(t, "OsvsyncFunction")
		env := fn["Properties"].(obj)["Environment"].(obj)["Variables"].(obj)
		if env["BERTH_OSV_ECOSYSTEMS"] != c.ecos || !strings.Contains(jsonText(env["BERTH_SCAN_FUNCTION"]), "RegistryScanFunction") {
			t.Errorf("%s: osvsync env %s", name, jsonText(env))
		}
		_, scan := c.s.function(t, "ScanFunction")
		if got := scan["Properties"].(obj)["EphemeralStorage"]; !reflect.DeepEqual(got, obj{"Size": c.tmp}) {
			t.Errorf("%s: scan /tmp %v, want %v MiB", name, got, c.tmp)
		}
	}
	for id, r := range use(t, defaultStack).resources("AWS::IAM::Role") {
		if !strings.Contains(id, "OsvSyncScheduleRole") {
			continue
		}
		st := r["Properties"].(obj)["Policies"].(arr)[0].(obj)["PolicyDocument"].(obj)["Statement"].(arr)
		if len(st) != 1 || jsonText(st[0].(obj)["Action"]) != `"lambda:InvokeFunction"` || !strings.Contains(jsonText(st[0].(obj)["Resource"]), "RegistryOsvsyncFunction") {
			t.Errorf("schedule role may %s", jsonText(st))
		}
	}

	// With SSE-KMS both scanning functions use exactly the bucket key.
	v := use(t, scanBusStack)
	for _, fn := range []string{"ScanFunction", "OsvsyncFunction"} {
		st := v.statements(t, fn)["BucketKey"]
		if st == nil || !reflect.DeepEqual(strs(st["Action"]), []string{"kms:Decrypt", "kms:GenerateDataKey"}) || !strings.Contains(resourceText(st)[0], "RegistryBucketKey") {
			t.Errorf("KMS %s BucketKey = %v", fn, st)
		}
	}
}

// Scanning without events would never see a push: the construct refuses
// it, naming both props.
func TestScanNeedsEvents(t *testing.T) {
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(jsonText(r), "ScanEnabled needs Events") {
			t.Errorf("Events false with scanning on: %v", r)
		}
	}()
	synth(func(_ awscdk.Stack, p *berth.RegistryProps) { p.Events = jsii.Bool(false) })
}
