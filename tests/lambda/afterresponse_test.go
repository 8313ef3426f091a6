package lambda_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/berth-registry/berth/internal/apigwemu"
	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/events/eventbridge/ebtest"
)

// The api function's EventBridge event leaves after the response: the real
// bootstrap, run against the emulated Runtime and Extensions APIs, answers
// a manifest PUT while its PutEvents call is still held at a gate, and the
// environment takes no further invocation until the call is done (Lambda
// freezes it only when every extension has asked for its next event), so
// the event can neither delay the push nor be lost to a freeze.
func TestEventsLeaveAfterTheResponse(t *testing.T) {
	ddb := testenv.DynamoDB(t)
	table := testenv.FreshTable(t, ddb)
	bus := ebtest.New(t)
	target, _ := url.Parse(bus.URL)
	arrived, release := make(chan struct{}, 8), make(chan struct{})
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		httputil.NewSingleHostReverseProxy(target).ServeHTTP(w, r)
	}))
	defer gate.Close()
	defer close(release)

	path, _ := bootstrap(t, "api", "amd64")
	rt, err := apigwemu.NewRuntimeAPI()
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	rt.Stderr = os.Stderr
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	ak, sk := testenv.DynamoDBCredentials()
	env := []string{"AWS_REGION=" + testenv.Region, "AWS_ACCESS_KEY_ID=" + ak, "AWS_SECRET_ACCESS_KEY=" + sk, "AWS_EC2_METADATA_DISABLED=true",
		"AWS_ENDPOINT_URL_DYNAMODB=" + testenv.DynamoDBEndpoint(t), "AWS_ENDPOINT_URL_EVENTBRIDGE=" + gate.URL,
		"BERTH_TABLE=" + table, "BERTH_BUCKET=berth-unused", "BERTH_AUTH=off", "BERTH_EVENT_BUS=berth-test", "BERTH_LOG_LEVEL=warn"}
	if err := rt.Supervise(ctx, path, env...); err != nil {
		t.Fatal(err)
	}

	em := apigwemu.NewEmulator(nil, apigwemu.WithRoutes(apiRoutes...), apigwemu.WithDomainName(domain))
	invoke := func(method, target string, body []byte, hdr ...string) (events.APIGatewayV2HTTPResponse, error) {
		r := httptest.NewRequest(method, target, bytes.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		ev, ok := em.Event(r, body, "after-response")
		if !ok {
			t.Fatalf("%s %s: no route", method, target)
		}
		payload, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		var resp events.APIGatewayV2HTTPResponse
		out, err := rt.Invoke(ctx, payload)
		if err == nil {
			err = json.Unmarshal(out, &resp)
		}
		return resp, err
	}

	// An index of no manifests references no blob: the push needs DynamoDB only.
	index := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
	resp, err := invoke("PUT", "/v2/team/app/manifests/v1", index, "Content-Type", "application/vnd.oci.image.index.v1+json")
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("manifest PUT: %d %v %s", resp.StatusCode, err, resp.Body)
	}
	// The client has its answer; PutEvents is on its way, held at the gate.
	select {
	case <-arrived:
	case <-ctx.Done():
		t.Fatal("no PutEvents after the push")
	}
	if n := len(bus.Entries()); n != 0 {
		t.Fatalf("%d events delivered before the gate opened", n)
	}

	// The next invocation waits for the environment, which waits for the
	// extension, which waits for PutEvents.
	next := make(chan error, 1)
	go func() {
		resp, err := invoke("GET", "/v2/", nil)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = errStatus(resp.StatusCode)
		}
		next <- err
	}()
	select {
	case err := <-next:
		t.Fatalf("the next invocation ran while the last one's event was still being delivered (%v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	release <- struct{}{}
	if err := <-next; err != nil {
		t.Fatalf("next invocation: %v", err)
	}
	got := bus.Entries()
	if len(got) != 1 || got[0].DetailType != "Berth Image Action" || got[0].EventBusName != "berth-test" {
		t.Fatalf("entries: %+v", got)
	}
	d := ebtest.DetailOf(t, got[0])
	if d["action-type"] != "PUSH" || d["repository-name"] != "team/app" || d["image-tag"] != "v1" {
		t.Fatalf("detail: %v", d)
	}
}

type errStatus int

func (e errStatus) Error() string { return http.StatusText(int(e)) }
