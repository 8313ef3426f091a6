package gc_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-registry/berth/pkg/gc"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/registry/registrytest"
)

// stressDuration is how long the clients run per backend
// (BERTH_GC_STRESS_DURATION, a Go duration; default 12s).
func stressDuration(t *testing.T) time.Duration {
	if v := os.Getenv("BERTH_GC_STRESS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("BERTH_GC_STRESS_DURATION: %v", err)
		}
		return d
	}
	return 12 * time.Second
}

// stressCounts is what the stress test did and found.
type stressCounts struct {
	Pushes, PushRetries, Retags, TagDeletes, ManifestDeletes, Pulls atomic.Int64
	// MissingDuringRun: a blob GET missed while the manifest naming it
	// still existed. Must stay 0.
	MissingDuringRun atomic.Int64
}

// TestStress: clients push images that share base layers, re-tag, delete
// tags and manifests and push the same layers again, while passes with a
// one-second grace run back to back. Every tag left pulls completely, and
// once pushes stop, a grace period and one pass leave storage holding
// exactly the referenced blobs.
func TestStress(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) { stress(t, b) })
	}
}

func stress(t *testing.T, b backend) {
	items, blobs := b.open(t)
	reg := registry.New(registry.Config{}, items, blobs)
	store := meta.New(items)
	const grace = time.Second
	col := gc.Collector{Store: store, Blobs: blobs, Grace: grace, Orphans: blobs, OrphanGrace: grace}

	// Base layers every image shares some of: re-pushed all the time,
	// unreferenced now and then, collected, pushed again.
	var bases [][]byte
	for i := range 24 {
		bases = append(bases, bytes.Repeat([]byte{byte('a' + i)}, 2048+i))
	}
	repos := []string{"team/api", "team/web", "team/db"}

	ctx, stop := context.WithCancel(context.Background())
	var totals gc.Stats
	var passes atomic.Int64
	var gcWG sync.WaitGroup
	gcWG.Add(1)
	go func() {
		defer gcWG.Done()
		for ctx.Err() == nil {
			st, err := col.Pass(context.Background())
			if err != nil {
				t.Errorf("pass: %v", err)
				return
			}
			passes.Add(1)
			addStats(&totals, st)
			time.Sleep(20 * time.Millisecond)
		}
	}()

	var n stressCounts
	var wg sync.WaitGroup
	deadline := time.Now().Add(stressDuration(t))
	for c := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(c), uint64(time.Now().UnixNano())))
			cl := &stressClient{t: t, reg: reg, rng: rng, n: &n}
			for i := 0; time.Now().Before(deadline); i++ {
				repo := repos[rng.IntN(len(repos))]
				switch op := rng.IntN(10); {
				case op < 3:
					cl.push(repo, fmt.Sprintf("c%d-%d", c, rng.IntN(4)), cl.image(bases))
				case op < 4:
					cl.retag(repo, fmt.Sprintf("c%d-%d", c, rng.IntN(4)), fmt.Sprintf("c%d-%d", c, rng.IntN(4)))
				case op < 5:
					cl.deleteRef(repo, fmt.Sprintf("c%d-%d", c, rng.IntN(4)), &n.TagDeletes)
				case op < 6:
					cl.deleteManifestOf(repo, fmt.Sprintf("c%d-%d", c, rng.IntN(4)))
				case op < 9:
					cl.deletePushed()
				default:
					cl.pullTag(repo, fmt.Sprintf("c%d-%d", c, rng.IntN(4)))
				}
			}
		}()
	}
	wg.Wait()
	stop()
	gcWG.Wait()

	// Every remaining tag pulls completely.
	missingAtEnd := 0
	tags := 0
	for _, repo := range repos {
		list, _, err := store.TagList(context.Background(), repo, "", 0)
		if err != nil {
			continue // no manifests left in it
		}
		for _, tag := range list {
			tags++
			missingAtEnd += stressClient{t: t, reg: reg, n: &n}.pullStrict(repo, tag)
		}
	}
	// Pushes have stopped: one grace period and one pass later, storage
	// holds exactly the referenced blobs.
	time.Sleep(grace + 1100*time.Millisecond) // times have second resolution
	st, err := col.Pass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	addStats(&totals, st)
	referenced := map[oci.Digest]bool{}
	for _, repo := range repos {
		ms, err := store.ManifestList(context.Background(), repo)
		if err != nil {
			t.Fatal(err)
		}
		for _, mi := range ms {
			m, err := store.ManifestGet(context.Background(), repo, mi.Digest)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range m.Blobs {
				referenced[d] = true
			}
		}
	}
	have := stored(t, blobs)
	leaked, missing := 0, 0
	for d := range have {
		if !referenced[d] {
			leaked++
			t.Errorf("leaked: %s is stored but no manifest references it", d)
		}
	}
	for d := range referenced {
		if !have[d] {
			missing++
			t.Errorf("missing: %s is referenced but not stored", d)
		}
	}
	if missingAtEnd > 0 || n.MissingDuringRun.Load() > 0 {
		t.Errorf("%d blobs missing in pulls at the end, %d during the run", missingAtEnd, n.MissingDuringRun.Load())
	}
	report, _ := json.Marshal(map[string]any{
		"backend": b.name, "pushes": n.Pushes.Load(), "push_retries": n.PushRetries.Load(), "retags": n.Retags.Load(),
		"tag_deletes": n.TagDeletes.Load(), "manifest_deletes": n.ManifestDeletes.Load(), "pulls": n.Pulls.Load(),
		"gc_passes": passes.Load() + 1, "blobs_deleted": totals.Deleted, "bytes_reclaimed": totals.Bytes,
		"orphans_deleted": totals.Orphans, "raced": totals.Raced, "tags_at_end": tags, "stored_at_end": len(have),
		"missing_blobs": missingAtEnd + int(n.MissingDuringRun.Load()) + missing, "leaked_objects": leaked,
	})
	t.Logf("gc stress: %s", report)
	if totals.Deleted == 0 {
		t.Error("the passes deleted nothing: the test did not exercise collection")
	}
}

func addStats(into *gc.Stats, st gc.Stats) {
	into.Deleted += st.Deleted
	into.Bytes += st.Bytes + st.OrphanBytes
	into.Orphans += st.Orphans
	into.Raced += st.Raced
}

// stressClient pushes and pulls as registry clients do: HEAD each blob and
// upload what is missing, then PUT the manifest; a refused push (a blob
// being collected: 503; or collected after the HEAD: MANIFEST_BLOB_UNKNOWN)
// is retried from the start.
type stressClient struct {
	t   *testing.T
	reg http.Handler
	rng *mrand.Rand
	n   *stressCounts
	// pushed is what this client pushed ("repo@digest"): untagged
	// manifests are deleted from here, as retention would.
	pushed []string
}

func (c stressClient) do(method, path string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	if method == http.MethodPut && len(body) > 0 && bytes.HasPrefix(body, []byte(`{"schemaVersion"`)) {
		req.Header.Set("Content-Type", oci.MediaTypeImageManifest)
	}
	w := httptest.NewRecorder()
	c.reg.ServeHTTP(w, req)
	return w
}

func (c stressClient) image(bases [][]byte) registrytest.Image {
	own := make([]byte, 1024+c.rng.IntN(4096))
	_, _ = rand.Read(own)
	i, j := c.rng.IntN(len(bases)), c.rng.IntN(len(bases))
	layers := [][]byte{bases[i]}
	if j != i {
		layers = append(layers, bases[j])
	}
	return registrytest.NewImage([]byte(fmt.Sprintf(`{"n":%d}`, c.rng.IntN(32))), append(layers, own)...)
}

func (c *stressClient) push(repo, tag string, img registrytest.Image) {
	for attempt := 0; attempt < 20; attempt++ {
		if attempt > 0 {
			c.n.PushRetries.Add(1)
			time.Sleep(time.Duration(10+c.rng.IntN(40)) * time.Millisecond)
		}
		ok := true
		for _, b := range append([][]byte{img.Config}, img.Layers...) {
			d := oci.FromBytes(oci.SHA256, b)
			if c.do("HEAD", "/v2/"+repo+"/blobs/"+string(d), nil).Code == 200 {
				continue
			}
			w := c.do("POST", "/v2/"+repo+"/blobs/uploads/?digest="+string(d), b)
			if w.Code == http.StatusServiceUnavailable {
				ok = false
				break
			}
			if w.Code != http.StatusCreated {
				c.t.Errorf("push blob: %d %s", w.Code, w.Body)
				return
			}
		}
		if !ok {
			continue
		}
		w := c.do("PUT", "/v2/"+repo+"/manifests/"+tag, img.Manifest)
		switch {
		case w.Code == http.StatusCreated:
			c.n.Pushes.Add(1)
			c.pushed = append(c.pushed, repo+"@"+string(img.Digest))
			return
		case w.Code == http.StatusServiceUnavailable, w.Code == http.StatusBadRequest && bytes.Contains(w.Body.Bytes(), []byte("MANIFEST_BLOB_UNKNOWN")):
			continue
		default:
			c.t.Errorf("push manifest: %d %s", w.Code, w.Body)
			return
		}
	}
	c.t.Errorf("push %s:%s: still refused after 20 attempts", repo, tag)
}

func (c stressClient) retag(repo, from, to string) {
	w := c.do("GET", "/v2/"+repo+"/manifests/"+from, nil)
	if w.Code != 200 {
		return
	}
	if w2 := c.do("PUT", "/v2/"+repo+"/manifests/"+to, w.Body.Bytes()); w2.Code == http.StatusCreated {
		c.n.Retags.Add(1)
	}
}

func (c stressClient) deleteRef(repo, ref string, count *atomic.Int64) {
	if c.do("DELETE", "/v2/"+repo+"/manifests/"+ref, nil).Code == http.StatusAccepted {
		count.Add(1)
	}
}

func (c stressClient) deleteManifestOf(repo, tag string) {
	w := c.do("HEAD", "/v2/"+repo+"/manifests/"+tag, nil)
	if w.Code != 200 {
		return
	}
	c.deleteRef(repo, w.Header().Get("Docker-Content-Digest"), &c.n.ManifestDeletes)
}

// deletePushed deletes a manifest this client pushed, by digest, tagged
// or not (it may be gone already).
func (c *stressClient) deletePushed() {
	if len(c.pushed) == 0 {
		return
	}
	i := c.rng.IntN(len(c.pushed))
	repo, d, _ := strings.Cut(c.pushed[i], "@")
	c.pushed = append(c.pushed[:i], c.pushed[i+1:]...)
	c.deleteRef(repo, d, &c.n.ManifestDeletes)
}

// pullTag pulls repo:tag while everything else goes on: a blob miss counts
// only if the manifest still exists afterwards (it was not deleted
// meanwhile, so its blobs must be there).
func (c stressClient) pullTag(repo, tag string) {
	w := c.do("GET", "/v2/"+repo+"/manifests/"+tag, nil)
	if w.Code != 200 {
		return
	}
	c.n.Pulls.Add(1)
	d := w.Header().Get("Docker-Content-Digest")
	var m oci.Manifest
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		c.t.Errorf("manifest: %v", err)
		return
	}
	for _, desc := range m.Blobs() {
		if g := c.do("GET", "/v2/"+repo+"/blobs/"+string(desc.Digest), nil); g.Code != 200 {
			if c.do("HEAD", "/v2/"+repo+"/manifests/"+d, nil).Code == 200 {
				c.n.MissingDuringRun.Add(1)
				c.t.Errorf("pull %s:%s: blob %s answered %d while its manifest exists", repo, tag, desc.Digest, g.Code)
			}
			return
		}
	}
}

// pullStrict pulls repo:tag with nothing else running and returns how many
// blobs were missing or wrong.
func (c stressClient) pullStrict(repo, tag string) int {
	w := c.do("GET", "/v2/"+repo+"/manifests/"+tag, nil)
	if w.Code != 200 {
		c.t.Errorf("pull %s:%s: manifest %d", repo, tag, w.Code)
		return 1
	}
	var m oci.Manifest
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		c.t.Errorf("manifest: %v", err)
		return 1
	}
	missing := 0
	for _, desc := range m.Blobs() {
		g := c.do("GET", "/v2/"+repo+"/blobs/"+string(desc.Digest), nil)
		if g.Code != 200 || oci.FromBytes(oci.SHA256, g.Body.Bytes()) != desc.Digest {
			missing++
			c.t.Errorf("pull %s:%s: blob %s: %d", repo, tag, desc.Digest, g.Code)
		}
	}
	return missing
}
