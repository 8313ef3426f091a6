package gc_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/gc"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage/storagetest"
)

// BenchmarkPass measures one pass that deletes 10 blobs, in stores that
// hold 1,000 and 100,000 referenced blobs (embedded store; the request
// count is the same on DynamoDB by construction): a pass's work follows
// what changed, not what is stored. Reported: metadata requests per pass
// and wall time. The orphan pass is off here: it is budgeted per pass
// (gc.DefaultOrphanBudget objects) and priced per object in docs/gc.md.
func BenchmarkPass(b *testing.B) {
	for _, stored := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("stored=%d/deleted=10", stored), func(b *testing.B) {
			e := testenv.NewEmbedded(b)
			ctx := context.Background()
			setup := meta.New(e.Items)
			// stored blobs, referenced by manifests of 10 blobs each.
			for m := 0; m < stored/10; m++ {
				var layers []string
				for i := 0; i < 10; i++ {
					d := oci.FromBytes(oci.SHA256, []byte(fmt.Sprintf("blob %d/%d", m, i)))
					if err := setup.BlobLinkPut(ctx, "r", d, 1); err != nil {
						b.Fatal(err)
					}
					layers = append(layers, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":1}`, d))
				}
				body := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":1},"layers":[%s]}`,
					oci.MediaTypeImageManifest, oci.MediaTypeImageConfig, oci.FromBytes(oci.SHA256, []byte(fmt.Sprintf("blob %d/0", m))), strings.Join(layers, ",")))
				parsed, err := oci.ParseManifest(oci.MediaTypeImageManifest, body)
				if err != nil {
					b.Fatal(err)
				}
				if err := setup.ManifestPut(ctx, meta.ManifestPut{Repo: "r", Digest: oci.FromBytes(oci.SHA256, body), Body: body, Parsed: parsed}); err != nil {
					b.Fatal(err)
				}
			}
			now := func() time.Time { return time.Now().Add(2 * time.Hour) }
			counted := storagetest.NewProbe(e.Items)
			c := gc.Collector{Store: meta.New(counted, meta.WithClock(now)), Blobs: e.Blobs, Grace: time.Hour, Now: now}
			if st, err := c.Pass(ctx); err != nil || st.Deleted != 0 { // settle: every entry so far is referenced
				b.Fatalf("settle: %+v %v", st, err)
			}
			var requests, deleted int64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for j := 0; j < 10; j++ {
					body := []byte(fmt.Sprintf("garbage %d/%d", i, j))
					d := oci.FromBytes(oci.SHA256, body)
					if err := e.Blobs.BlobPut(ctx, d, int64(len(body)), bytes.NewReader(body)); err != nil {
						b.Fatal(err)
					}
					if err := setup.BlobLinkPut(ctx, "r", d, int64(len(body))); err != nil {
						b.Fatal(err)
					}
				}
				counted.Reset()
				b.StartTimer()
				st, err := c.Pass(ctx)
				if err != nil {
					b.Fatal(err)
				}
				for _, n := range counted.Reset() {
					requests += int64(n)
				}
				deleted += int64(st.Deleted)
			}
			b.ReportMetric(float64(requests)/float64(b.N), "requests/pass")
			b.ReportMetric(float64(deleted)/float64(b.N), "deleted/pass")
		})
	}
}
