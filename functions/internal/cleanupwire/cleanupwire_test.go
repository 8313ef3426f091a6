package cleanupwire_test

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/berth-registry/berth/functions/internal/cleanupwire"
	"github.com/berth-registry/berth/functions/internal/edgewire"
	"github.com/berth-registry/berth/functions/internal/lambdaenv"
	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/awsbackend"
)

// Handler builds the function's entry point from the AWS configuration
// chain alone (pointed at the emulators here): the schedule sweeps through
// the real drivers, and a verify event reaches the verifier.
func TestHandlerOnEmulators(t *testing.T) {
	testenv.UseEmulators(t)
	ctx := t.Context()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bs := awsbackend.Settings{Bucket: testenv.Name("cleanup"), Table: testenv.Name("cleanup"), S3PathStyle: true, Create: true}
	if _, err := awsbackend.Open(ctx, cfg, bs, nil); err != nil { // the stack's job in AWS
		t.Fatal(err)
	}
	bs.Create = false
	var logs bytes.Buffer
	h, err := cleanupwire.Handler(ctx, cfg, cleanupwire.Settings{Backend: bs}, lambdaenv.Logger(&logs, 0))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("../../../events/cleanup-schedule.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := h(ctx, raw); err != nil {
		t.Fatalf("scheduled run: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), `"msg":"cleanup: sweep uploads"`) || strings.Contains(logs.String(), "rotate") {
		t.Errorf("scheduled run without edge keys: %s", logs.String())
	}
	// A verify event goes to the verifier over the same drivers, which
	// logs its outcome for an upload it does not know.
	logs.Reset()
	ev, _ := json.Marshal(edgewire.VerifyEvent{Berth: edgewire.KindVerify, Repo: "team/app", Upload: "no-such-upload"})
	err = h(ctx, ev)
	if !strings.Contains(logs.String(), `"msg":"cleanup: verify upload"`) || !strings.Contains(logs.String(), "no-such-upload") || strings.Contains(logs.String(), "sweep") {
		t.Errorf("verify event did not reach the verifier (err %v): %s", err, logs.String())
	}
}
