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
