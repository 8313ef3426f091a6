package bench

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/tests/harness"
)

// BenchmarkBerthPushVsCrane times `berth push` against `crane push` of the
// same OCI layout (3 × 256 MiB layers by default; BERTH_BENCH_LAYER_MIB
// changes the size) into `berth serve --backend aws` on the emulators,
// without Lambda: berth push sends layers straight to the S3 server with
// presigned URLs, crane streams each one PATCH through the registry
// process. Each iteration pushes both into fresh repositories, alternating
// which goes first. Run:
//
//	go test ./tests/bench -run '^$' -bench BerthPushVsCrane -benchtime 3x
func BenchmarkBerthPushVsCrane(b *testing.B) {
	mib := int64(256)
	if v, err := strconv.ParseInt(os.Getenv("BERTH_BENCH_LAYER_MIB"), 10, 64); err == nil && v > 0 {
		mib = v
	}
	// The emulators testenv found or started, for the berth serve process.
	s3 := testenv.S3Emulator(b)
	b.Setenv(harness.EnvDynamoDB, testenv.DynamoDBEndpoint(b))
	b.Setenv(harness.EnvS3, s3.URL)
	b.Setenv(harness.EnvS3AccessKey, s3.AccessKey)
	b.Setenv(harness.EnvS3SecretKey, s3.SecretKey)
	srv := harness.Start(b, harness.Config{Backend: harness.AWS})
	crane := harness.Client(b, "crane")
	crane.Timeout = 30 * time.Minute
	bin := harness.Binary(b)
	env := append(os.Environ(), "HOME="+b.TempDir(), "DOCKER_CONFIG="+b.TempDir(), "CI=true")
	l := harness.WriteImage(b, "bench", mib<<20, mib<<20, mib<<20)
	total := float64(3 * mib << 20)

	var berthTook, craneTook time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		runs := []func(){
			func() {
				start := time.Now()
				cmd := exec.Command(bin, "push", l.Dir, fmt.Sprintf("%s/bench/berth-%d:v1", srv.Addr, i))
				cmd.Env = env
				out, err := cmd.CombinedOutput()
				berthTook += time.Since(start)
				if err != nil {
					b.Fatalf("berth push: %v\n%s", err, out)
				}
				b.Logf("berth push: %s", lastLine(out))
			},
			func() {
				start := time.Now()
				r := crane.Exec("push", l.Dir, fmt.Sprintf("%s/bench/crane-%d:v1", srv.Addr, i))
				craneTook += time.Since(start)
				if r.Err != nil {
					b.Fatalf("crane push: %v\n%s", r.Err, r.Output())
				}
			},
		}
		if i%2 == 1 {
			runs[0], runs[1] = runs[1], runs[0]
		}
		for _, run := range runs {
			run()
		}
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(berthTook.Seconds()/n, "berth-s/op")
	b.ReportMetric(craneTook.Seconds()/n, "crane-s/op")
	b.ReportMetric(total/1e6/(berthTook.Seconds()/n), "berth-MB/s")
	b.ReportMetric(total/1e6/(craneTook.Seconds()/n), "crane-MB/s")
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
