package lambda_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/berth-registry/berth/internal/apigwemu"
)

// bootstraps builds each function once per test binary, the way
// mk/lambda.mk does, for one architecture.
var bootstraps sync.Map // "fn/arch" → *buildResult

type buildResult struct {
	once sync.Once
	path string
	size int64
	err  error
}

func bootstrap(tb testing.TB, fn, arch string) (string, int64) {
	tb.Helper()
	v, _ := bootstraps.LoadOrStore(fn+"/"+arch, &buildResult{})
	br := v.(*buildResult)
	br.once.Do(func() {
		dir, err := os.MkdirTemp("", "berth-bootstrap-")
		if err != nil {
			br.err = err
			return
		}
		br.path = filepath.Join(dir, "bootstrap")
		cmd := exec.Command("go", "build", "-trimpath", "-tags", "lambda.norpc", "-ldflags=-s -w", "-o", br.path, "./functions/"+fn)
		cmd.Dir = filepath.Join("..", "..")
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			br.err = err
			tb.Logf("%s", out)
			return
		}
		fi, err := os.Stat(br.path)
		if err == nil {
			br.size = fi.Size()
		}
		br.err = err
	})
	if br.err != nil {
		tb.Fatalf("build functions/%s for %s: %v", fn, arch, br.err)
	}
	return br.path, br.size
}

// coldStart is one function to start locally: its environment and the
// first event it handles.
type coldStart struct {
	fn    string
	env   []string
	event func(tb testing.TB) []byte
}

// fakeAWS is enough environment for the SDK's default config to load
// without touching the network; no call is made during these invocations.
var fakeAWS = []string{"AWS_REGION=eu-west-1", "AWS_ACCESS_KEY_ID=AKIDLOCAL", "AWS_SECRET_ACCESS_KEY=local", "AWS_EC2_METADATA_DISABLED=true"}

func fileEvent(name string) func(tb testing.TB) []byte {
	return func(tb testing.TB) []byte {
		b, err := os.ReadFile(filepath.Join("..", "..", "events", name))
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
}

// apiEvent is GET /v2/ as API Gateway sends it (no storage call).
func apiEvent(tb testing.TB) []byte {
	em := apigwemu.NewEmulator(nil, apigwemu.WithRoutes(apiRoutes...), apigwemu.WithDomainName(domain))
	ev, _ := em.Event(httptest.NewRequest("GET", "/v2/", nil), nil, "cold")
	b, err := json.Marshal(ev)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

var coldStarts = []coldStart{
	{fn: "api", env: []string{"BERTH_TABLE=berth", "BERTH_BUCKET=berth-blobs", "BERTH_AUTH=off"}, event: apiEvent},
	// The scan function builds its scanner (drivers, layer indexer,
	// registry handler) at cold start; the sample's records name another
	// bucket than its own, so it drops them without a storage call.
	{fn: "scan", env: []string{"BERTH_TABLE=berth", "BERTH_BUCKET=berth-blobs-cold-start"}, event: fileEvent("scan-s3-object-created.json")},
}

// startOnce starts bootstrap, hands it one event and returns the time from
// process start to the function's answer, and the answer.
func startOnce(tb testing.TB, path string, cs coldStart, payload []byte) (time.Duration, []byte) {
	tb.Helper()
	rt, err := apigwemu.NewRuntimeAPI()
	if err != nil {
		tb.Fatal(err)
	}
	defer rt.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := rt.Command(ctx, path, append(append([]string{}, fakeAWS...), cs.env...)...)
	type res struct {
		out []byte
		err error
		at  time.Time
	}
	done := make(chan res, 1)
	go func() {
		out, err := rt.Invoke(ctx, payload)
		done <- res{out, err, time.Now()}
	}()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	r := <-done
	cancel()
	_ = cmd.Wait()
	if r.err != nil {
		tb.Fatalf("%s: first invoke: %v", cs.fn, r.err)
	}
	return r.at.Sub(start), r.out
}

// BenchmarkColdStart reports, per function, the stripped arm64 bootstrap
// size (what Lambda downloads) and, running the amd64 build locally, the
// time from process start to the first handled event.
//
//	go test ./tests/lambda -run '^$' -bench ColdStart -benchtime 20x
func BenchmarkColdStart(b *testing.B) {
	for _, cs := range coldStarts {
		b.Run(cs.fn, func(b *testing.B) {
			_, armSize := bootstrap(b, cs.fn, "arm64")
			path, _ := bootstrap(b, cs.fn, "amd64")
			payload := cs.event(b)
			var total time.Duration
			b.ResetTimer()
			for b.Loop() {
				d, _ := startOnce(b, path, cs, payload)
				total += d
			}
			b.ReportMetric(float64(armSize), "arm64-bytes")
			b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms-to-first-response")
		})
	}
}

// sizeOnly are functions whose init needs AWS (token: the KMS public key;
// cleanup: its first invocation scans DynamoDB): built and measured, not run.
var sizeOnly = []string{"token", "cleanup"}

// TestBootstrapsStart builds every function for arm64 (the deployed form)
// and runs the locally runnable ones once, checking their first answer.
func TestBootstrapsStart(t *testing.T) {
	for _, cs := range coldStarts {
		t.Run(cs.fn, func(t *testing.T) {
			_, armSize := bootstrap(t, cs.fn, "arm64")
			path, _ := bootstrap(t, cs.fn, "amd64")
			d, out := startOnce(t, path, cs, cs.event(t))
			t.Logf("functions/%s: arm64 bootstrap %d bytes; start → first response %s", cs.fn, armSize, d)
			if cs.fn == "api" {
				var resp events.APIGatewayV2HTTPResponse
				if err := json.Unmarshal(out, &resp); err != nil || resp.StatusCode != 200 || resp.Headers["Docker-Distribution-Api-Version"] != "registry/2.0" {
					t.Errorf("GET /v2/ through the real bootstrap: %s", out)
				}
			} else if string(out) != "null" {
				t.Errorf("unexpected answer %s", out)
			}
		})
	}
	for _, fn := range sizeOnly {
		_, armSize := bootstrap(t, fn, "arm64")
		t.Logf("functions/%s: arm64 bootstrap %d bytes", fn, armSize)
	}
}
