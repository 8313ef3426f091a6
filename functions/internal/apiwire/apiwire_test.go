package apiwire_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/berth-registry/berth/functions/internal/apiwire"
	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/apigw"
	"github.com/berth-registry/berth/pkg/awsbackend"
	"github.com/berth-registry/berth/pkg/events/eventbridge/ebtest"
	"github.com/berth-registry/berth/pkg/registry/registrytest"
)

// Handler builds the function's handler from the AWS configuration chain
// alone (pointed at the emulators here), as a cold start does.
func TestHandlerOnEmulators(t *testing.T) {
	testenv.UseEmulators(t)
	ctx := t.Context()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bs := awsbackend.Settings{Bucket: testenv.Name("apiwire"), Table: testenv.Name("apiwire"), S3PathStyle: true, Create: true}
	if _, err := awsbackend.Open(ctx, cfg, bs, nil); err != nil { // the stack's job in AWS
		t.Fatal(err)
	}
	bs.Create = false
	h, err := apiwire.Handler(ctx, cfg, apiwire.Settings{Backend: bs, MaxBodyBytes: apigw.MaxBodyBytes}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/v2/wired/app/blobs/uploads/", nil))
	if rec.Code != http.StatusAccepted || rec.Header().Get("OCI-Chunk-Min-Length") != "4194304" {
		t.Fatalf("POST: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	loc := rec.Header().Get("Location")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", loc, nil))
	if rec.Code != http.StatusNoContent {
		t.Fatalf("GET %s: %d %s (the session is not in DynamoDB)", loc, rec.Code, rec.Body)
	}
}

// With BERTH_EVENT_BUS set, a push through the wired handler puts its
// event on that bus with the SDK client the configuration chain builds
// (here pointed at the PutEvents fake by AWS_ENDPOINT_URL_EVENTBRIDGE).
func TestHandlerEventBus(t *testing.T) {
	testenv.UseEmulators(t)
	fake := ebtest.New(t)
	t.Setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", fake.URL)
	ctx := t.Context()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bs := awsbackend.Settings{Bucket: testenv.Name("apiwire"), Table: testenv.Name("apiwire"), S3PathStyle: true, Create: true}
	if _, err := awsbackend.Open(ctx, cfg, bs, nil); err != nil {
		t.Fatal(err)
	}
	bs.Create = false
	h, err := apiwire.Handler(ctx, cfg, apiwire.Settings{Backend: bs, MaxBodyBytes: apigw.MaxBodyBytes, EventBus: "berth-events"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	d := registrytest.PushImage(t, h, "team/app", "v1", registrytest.NewImage([]byte(`{}`), []byte("layer"))).Digest
	got := fake.Entries()
	if len(got) != 1 || got[0].EventBusName != "berth-events" || got[0].DetailType != "Berth Image Action" {
		t.Fatalf("entries %+v", got)
	}
	if dt := ebtest.DetailOf(t, got[0]); dt["image-digest"] != string(d) || dt["image-tag"] != "v1" || dt["action-type"] != "PUSH" {
		t.Fatalf("detail %v", dt)
	}
}
