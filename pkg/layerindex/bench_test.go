package layerindex_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/scanfixture"
	"github.com/berth-registry/berth/pkg/layerindex"
	"github.com/berth-registry/berth/pkg/oci"
)

// benchLayer builds a synthetic gzip layer of about size compressed
// bytes: the machine's dpkg database, Python dist-info and Node packages
// among many files of filler that gzip compresses about 2:1, as it does
// binaries. It returns the blob,
// the tar size and the number of packages it declares.
func benchLayer(tb testing.TB, size int) ([]byte, int64, int) {
	tb.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		tb.Fatal(err)
	}
	cw := &countWriter{w: zw}
	tw := tar.NewWriter(cw)
	add := func(name string, mode int64, b []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			tb.Fatal(err)
		}
	}
	pkgs := 0
	status, err := os.ReadFile(scanfixture.HostDpkgStatus)
	if err != nil {
		tb.Fatal(err)
	}
	add("etc/os-release", 0o644, []byte(scanfixture.DebianOSRelease))
	add("var/lib/dpkg/status", 0o644, status)
	pkgs += len(scanfixture.DpkgInstalled(status))
	for i := range 300 {
		add(fmt.Sprintf("usr/lib/python3/dist-packages/pkg%d-1.%d.0.dist-info/METADATA", i, i), 0o644,
			scanfixture.PythonMetadata(fmt.Sprintf("pkg%d", i), fmt.Sprintf("1.%d.0", i), "bench"))
		pkgs++
	}
	for i := range 300 {
		b, _ := json.Marshal(map[string]string{"name": fmt.Sprintf("mod%d", i), "version": fmt.Sprintf("2.%d.1", i)})
		add(fmt.Sprintf("app/node_modules/mod%d/package.json", i), 0o644, b)
		pkgs++
	}
	rng := rand.NewChaCha8([32]byte{1, 2, 3})
	filler := make([]byte, 64<<10)
	for i := 0; buf.Len() < size; i++ {
		n := 4<<10 + (i*7919)%(60<<10)
		_, _ = rng.Read(filler[:n])
		for j := range filler[:n] {
			// 4 bits of entropy a byte: gzip gets about 2:1, like binaries.
			filler[j] = 'a' + filler[j]&15
		}
		mode := int64(0o644)
		if i%50 == 0 {
			mode = 0o755 // executables the Go binary extractor must look at
		}
		add(fmt.Sprintf("usr/share/filler/d%03d/f%06d", i%300, i), mode, filler[:n])
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes(), cw.n, pkgs
}

type countWriter struct {
	w interface{ Write([]byte) (int, error) }
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// BenchmarkIndex200MB indexes a ~200 MB gzip layer and reports
// throughput in compressed and decompressed MB/s, packages/s, and the
// peak heap in use above what the test holds before indexing (the blob
// itself), sampled every 5 ms.
func BenchmarkIndex200MB(b *testing.B) {
	blob, tarSize, wantPkgs := benchLayer(b, 200<<20)
	d := oci.Descriptor{MediaType: layerindex.MediaTypeOCILayerGzip, Digest: "sha256:00", Size: int64(len(blob))}
	ix := layerindex.New(layerindex.Limits{TempDir: b.TempDir()})

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peakHeap, peakSys uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				runtime.ReadMemStats(&m)
				peakHeap = max(peakHeap, m.HeapInuse)
				peakSys = max(peakSys, m.Sys)
			}
		}
	}()
	b.SetBytes(int64(len(blob)))
	b.ResetTimer()
	pkgs := 0
	for range b.N {
		l, err := ix.Index(context.Background(), d, bytes.NewReader(blob))
		if err != nil || l.Error != "" {
			b.Fatalf("err %v layer error %q", err, l.Error)
		}
		pkgs += len(l.Packages)
	}
	elapsed := b.Elapsed().Seconds()
	b.StopTimer()
	close(stop)
	wg.Wait()
	if pkgs/b.N != wantPkgs {
		b.Errorf("found %d packages per layer, want %d", pkgs/b.N, wantPkgs)
	}
	b.ReportMetric(float64(tarSize)*float64(b.N)/elapsed/1e6, "tarMB/s")
	b.ReportMetric(float64(pkgs)/elapsed, "pkgs/s")
	b.ReportMetric(float64(pkgs/b.N), "pkgs/layer")
	b.ReportMetric(float64(int64(peakHeap)-int64(base.HeapInuse))/(1<<20), "peakHeapMB")
	b.ReportMetric(float64(peakSys)/(1<<20), "peakSysMB")
}
