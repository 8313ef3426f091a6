package retention_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/driver/boltdb"
	"github.com/berth-registry/berth/pkg/driver/dynamo"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/registry/registrytest"
	"github.com/berth-registry/berth/pkg/retention"
	"github.com/berth-registry/berth/pkg/storage"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

// env is a real registry over the embedded drivers, with a clock the test
// moves so images get push times in the past.
type env struct {
	t     *testing.T
	clock atomic.Int64
	items storage.Items
	reg   *registry.Registry
	store *meta.Store
}

func newEnv(t *testing.T, wrap func(storage.Items) storage.Items) *env {
	e := &env{t: t}
	e.clock.Store(now.UnixNano())
	clock := func() time.Time { return time.Unix(0, e.clock.Load()) }
	db := testenv.NewEmbedded(t, boltdb.WithClock(clock))
	e.items = db.Items
	if wrap != nil {
		e.items = wrap(db.Items)
	}
	e.reg = registry.New(registry.Config{Now: clock}, db.Items, db.Blobs)
	e.store = meta.New(e.items, meta.WithClock(clock))
	return e
}

// eachBackend runs fn on an env over the embedded store and on one whose
// metadata is in DynamoDB Local (blobs stay on the filesystem: retention
// never touches them).
func eachBackend(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Run("embedded", func(t *testing.T) { fn(t, newEnv(t, nil)) })
	t.Run("dynamodb", func(t *testing.T) {
		e := &env{t: t}
		e.clock.Store(now.UnixNano())
		clock := func() time.Time { return time.Unix(0, e.clock.Load()) }
		client := testenv.DynamoDB(t)
		e.items = dynamo.New(client, testenv.FreshTable(t, client), dynamo.WithClock(clock))
		e.reg = registry.New(registry.Config{Now: clock}, e.items, testenv.NewEmbedded(t).Blobs)
		e.store = meta.New(e.items, meta.WithClock(clock))
		fn(t, e)
	})
}

// at sets the clock days before now.
func (e *env) at(days float64) {
	e.clock.Store(now.Add(-time.Duration(days * 24 * float64(time.Hour))).UnixNano())
}

func (e *env) do(method, path, contentType string, body []byte) *httptest.ResponseRecorder {
	e.t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	w := httptest.NewRecorder()
	e.reg.ServeHTTP(w, req)
	return w
}

func (e *env) blob(repo string, b []byte, mediaType string) oci.Descriptor {
	e.t.Helper()
	return oci.Descriptor{MediaType: mediaType, Digest: registrytest.PushBlob(e.t, e.reg, repo, b), Size: int64(len(b))}
}

// manifest pushes m (schemaVersion added) under ref, or by digest when ref
// is "".
func (e *env) manifest(repo, ref string, m map[string]any) oci.Descriptor {
	e.t.Helper()
	m["schemaVersion"] = 2
	body, err := json.Marshal(m)
	if err != nil {
		e.t.Fatal(err)
	}
	return registrytest.PutManifest(e.t, e.reg, repo, ref, m["mediaType"].(string), body)
}

// image pushes a one-layer image and tags it (tag "" pushes by digest).
func (e *env) image(repo, tag, seed string) oci.Descriptor {
	e.t.Helper()
	img := registrytest.NewImage([]byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","seed":%q}`, seed)), []byte("layer of "+seed))
	return registrytest.PushImage(e.t, e.reg, repo, tag, img)
}

func (e *env) index(repo, tag string, children ...oci.Descriptor) oci.Descriptor {
	return e.manifest(repo, tag, map[string]any{"mediaType": oci.MediaTypeImageIndex, "manifests": children})
}

// referrer pushes a signature-like artifact whose subject is subject.
func (e *env) referrer(repo string, subject oci.Descriptor, seed string) oci.Descriptor {
	cfg := e.blob(repo, []byte("{}"), oci.MediaTypeEmptyJSON)
	sig := e.blob(repo, []byte("signature of "+seed), "application/octet-stream")
	return e.manifest(repo, "", map[string]any{
		"mediaType": oci.MediaTypeImageManifest, "artifactType": "application/vnd.example.signature",
		"config": cfg, "layers": []oci.Descriptor{sig}, "subject": subject,
	})
}

// state lists what a repository holds: "digest-name[tags]" sorted by name.
func (e *env) state(repo string, names map[oci.Digest]string) []string {
	e.t.Helper()
	list, err := e.store.ManifestList(e.t.Context(), repo)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, m := range list {
		n, ok := names[m.Digest]
		if !ok {
			n = string(m.Digest)
		}
		out = append(out, fmt.Sprintf("%s%v", n, m.Tags))
	}
	slices.Sort(out)
	return out
}

func (e *env) refcount(d oci.Digest) int64 {
	e.t.Helper()
	it, err := e.items.ItemGet(e.t.Context(), "BLOB#"+string(d), "META")
	if err != nil {
		e.t.Fatalf("blob %s: %v", d, err)
	}
	return it.Count
}

func logs(buf *bytes.Buffer) []map[string]any {
	var out []map[string]any
	for l := range strings.Lines(buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err == nil {
			out = append(out, m)
		}
	}
	return out
}

const testPolicy = `{"rules":[
 {"rulePriority":1,"description":"keep releases","selection":{"tagStatus":"tagged","tagPatternList":["v*.*.*"],"countType":"imageCountMoreThan","countNumber":9999},"action":{"type":"expire"}},
 {"rulePriority":2,"description":"two dev builds","selection":{"tagStatus":"tagged","tagPrefixList":["dev-"],"countType":"imageCountMoreThan","countNumber":2},"action":{"type":"expire"}},
 {"rulePriority":3,"description":"untagged for a week","selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}}
]}`

func TestApply(t *testing.T) {
	e := newEnv(t, nil)
	ctx := t.Context()
	policy, err := retention.Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	names := map[oci.Digest]string{}
	name := func(n string, d oci.Descriptor) oci.Descriptor { names[d.Digest] = n; return d }

	// A release index whose children are shared with an old dev index.
	e.at(50)
	c2 := name("c2", e.image("app", "", "platform-2"))
	c3 := name("c3", e.image("app", "", "platform-3"))
	release := name("release", e.index("app", "v1.0.0", c2, c3))
	name("release-sig", e.referrer("app", release, "release"))
	e.at(40)
	name("u-old", e.image("app", "", "untagged-old"))
	e.at(30)
	c1 := name("c1", e.image("app", "", "platform-1"))
	dev0 := name("dev-0", e.index("app", "dev-0", c1, c2))
	name("dev-0-sig", e.referrer("app", dev0, "dev-0"))
	e.at(20)
	dev1 := name("dev-1", e.image("app", "dev-1", "dev-1"))
	name("dev-1-sig", e.referrer("app", dev1, "dev-1"))
	e.at(10)
	name("dev-2", e.image("app", "dev-2", "dev-2"))
	e.at(2)
	name("dev-3", e.image("app", "dev-3", "dev-3"))
	name("u-new", e.image("app", "", "untagged-new"))
	// Another repository: an old untagged image and a tagged one.
	e.at(9)
	name("other-u", e.image("other", "", "other-untagged"))
	name("other-t", e.image("other", "latest", "other-tagged"))

	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	rep, err := retention.Apply(ctx, e.store, policy, now, log)
	if err != nil {
		t.Fatal(err)
	}
	want := retention.Report{Repositories: 2, Expired: 7}
	if rep != want {
		t.Errorf("report %+v, want %+v", rep, want)
	}
	// dev-0 and dev-1 (rule 2), u-old (rule 3), dev-0's untagged child c1
	// but not c2 (a child of the kept release), the referrers of dev-0 and
	// dev-1; in "other" the untagged image.
	if got, want := e.state("app", names), []string{
		"c2[]", "c3[]", "dev-2[dev-2]", "dev-3[dev-3]", "release-sig[]", "release[v1.0.0]", "u-new[]",
	}; !slices.Equal(got, want) {
		t.Errorf("app holds\n %v\nwant\n %v", got, want)
	}
	if got, want := e.state("other", names), []string{"other-t[latest]"}; !slices.Equal(got, want) {
		t.Errorf("other holds %v, want %v", got, want)
	}
	// Over HTTP: the expired are gone, tags list what stays.
	for _, n := range []string{"dev-0", "dev-1", "u-old", "c1", "dev-1-sig"} {
		var d oci.Digest
		for k, v := range names {
			if v == n {
				d = k
			}
		}
		if w := e.do("HEAD", "/v2/app/manifests/"+string(d), "", nil); w.Code != http.StatusNotFound {
			t.Errorf("HEAD %s: %d, want 404", n, w.Code)
		}
	}
	w := e.do("GET", "/v2/app/tags/list", "", nil)
	if body, _ := io.ReadAll(w.Body); !strings.Contains(string(body), `"tags":["dev-2","dev-3","v1.0.0"]`) {
		t.Errorf("tags/list: %s", body)
	}
	// The expired image's blobs are no longer referenced: GC may take them.
	for _, d := range []oci.Digest{oci.FromBytes(oci.SHA256, []byte("layer of dev-1")), oci.FromBytes(oci.SHA256, []byte("layer of platform-1"))} {
		if n := e.refcount(d); n != 0 {
			t.Errorf("refcount of %s = %d, want 0", d, n)
		}
	}
	if n := e.refcount(oci.FromBytes(oci.SHA256, []byte("layer of platform-2"))); n != 1 {
		t.Errorf("kept c2's layer refcount %d, want 1", n)
	}
	// One log line per expiry, naming repo, digest, tags, rule and reason.
	got := map[string]string{}
	for _, l := range logs(&buf) {
		if l["msg"] != "retention: expired" {
			continue
		}
		got[names[oci.Digest(l["digest"].(string))]] = fmt.Sprintf("%s %v rule=%v %s", l["repo"], l["tags"], l["rule"], l["reason"])
	}
	wantLogs := map[string]string{
		"dev-0":     "app [dev-0] rule=2 rule",
		"dev-1":     "app [dev-1] rule=2 rule",
		"u-old":     "app [] rule=3 rule",
		"c1":        "app [] rule=2 " + retention.ReasonChild,
		"dev-0-sig": "app [] rule=2 " + retention.ReasonReferrer,
		"dev-1-sig": "app [] rule=2 " + retention.ReasonReferrer,
		"other-u":   "other [] rule=3 rule",
	}
	if len(got) != rep.Expired || fmt.Sprint(got) != fmt.Sprint(wantLogs) {
		t.Errorf("expiry logs\n %v\nwant\n %v", got, wantLogs)
	}

	// A second run finds nothing more to do.
	rep, err = retention.Apply(ctx, e.store, policy, now, log)
	if err != nil || rep != (retention.Report{Repositories: 2}) {
		t.Errorf("second run: %+v, %v", rep, err)
	}
}

func TestApplyNilPolicy(t *testing.T) {
	e := newEnv(t, nil)
	e.at(100)
	e.image("app", "", "old")
	rep, err := retention.Apply(t.Context(), e.store, nil, now, slog.New(slog.DiscardHandler))
	if err != nil || rep != (retention.Report{}) {
		t.Errorf("nil policy: %+v, %v", rep, err)
	}
}

// Near the deadline Apply starts nothing and says how much is left.
func TestApplyDeadline(t *testing.T) {
	e := newEnv(t, nil)
	e.at(100)
	e.image("a", "", "old-a")
	e.image("b", "", "old-b")
	policy, err := retention.Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithDeadline(t.Context(), time.Now().Add(retention.Reserve/2))
	defer cancel()
	rep, err := retention.Apply(ctx, e.store, policy, now, slog.New(slog.DiscardHandler))
	if err != nil || rep != (retention.Report{Remaining: 2, Stopped: true}) {
		t.Errorf("near the deadline: %+v, %v", rep, err)
	}
	if got := e.state("a", nil); len(got) != 1 {
		t.Errorf("a holds %v", got)
	}
}

// retagItems re-tags a manifest right before retention re-reads the tags:
// a push racing with the evaluation (fault injection).
type retagItems struct {
	storage.Items
	tagQueries int
	hook       func()
}

func (r *retagItems) ItemQuery(ctx context.Context, pk, prefix, after string, limit int) ([]storage.Item, bool, error) {
	if pk == "REPO#app" && prefix == "TAG#" {
		if r.tagQueries++; r.tagQueries == 2 && r.hook != nil {
			r.hook()
		}
	}
	return r.Items.ItemQuery(ctx, pk, prefix, after, limit)
}

func TestApplyRetaggedDuringEvaluation(t *testing.T) {
	var ri *retagItems
	e := newEnv(t, func(it storage.Items) storage.Items { ri = &retagItems{Items: it}; return ri })
	e.at(30)
	old := e.image("app", "", "old")
	policy, err := retention.Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	ri.hook = func() {
		// Someone pushes the same manifest again under a tag.
		if err := e.store.ManifestPut(t.Context(), meta.ManifestPut{Repo: "app", Tag: "keep", Digest: old.Digest, Parsed: &oci.Manifest{MediaType: old.MediaType}}); err != nil {
			t.Error(err)
		}
	}
	var buf bytes.Buffer
	rep, err := retention.Apply(t.Context(), e.store, policy, now, slog.New(slog.NewJSONHandler(&buf, nil)))
	if err != nil || rep != (retention.Report{Repositories: 1}) {
		t.Errorf("report %+v, %v", rep, err)
	}
	if got := e.state("app", map[oci.Digest]string{old.Digest: "old"}); !slices.Equal(got, []string{"old[keep]"}) {
		t.Errorf("app holds %v, want the re-tagged image", got)
	}
	if !strings.Contains(buf.String(), "changed during evaluation") {
		t.Errorf("no warning logged: %s", buf.String())
	}
}

// pull GETs ref of repo, as a client pulls it (the pull is recorded).
func (e *env) pull(repo, ref string) {
	e.t.Helper()
	if w := e.do("GET", "/v2/"+repo+"/manifests/"+ref, "", nil); w.Code != http.StatusOK {
		e.t.Fatalf("pull %s:%s: %d %s", repo, ref, w.Code, w.Body)
	}
}

// sinceImagePulled expires what nobody pulled for the rule's days, an
// image never pulled counting from its push: pulls by tag and by digest
// both count, and a platform manifest pulled by digest keeps its index.
func TestApplySinceImagePulled(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		policy, err := retention.Parse([]byte(`{"rules":[
 {"rulePriority":1,"description":"unused for a month","selection":{"tagStatus":"any","countType":"sinceImagePulled","countUnit":"days","countNumber":30},"action":{"type":"expire"}}]}`))
		if err != nil {
			t.Fatal(err)
		}
		names := map[oci.Digest]string{}
		name := func(n string, d oci.Descriptor) oci.Descriptor { names[d.Digest] = n; return d }
		e.at(100)
		name("by-tag", e.image("app", "by-tag", "by-tag"))
		byDigest := name("by-digest", e.image("app", "", "by-digest"))
		name("stale", e.image("app", "stale", "stale"))
		name("never", e.image("app", "never", "never"))
		child := name("child", e.image("app", "", "platform"))
		name("index", e.index("app", "multi", child))
		e.at(60)
		e.pull("app", "stale") // a pull, but long ago
		e.at(10)
		name("new", e.image("app", "new", "new")) // pushed, never pulled
		e.at(3)
		e.pull("app", "by-tag")
		e.pull("app", string(byDigest.Digest))
		e.pull("app", string(child.Digest))
		e.at(0)

		// The preview lists what Apply then deletes, and deletes nothing.
		pre, err := retention.PreviewRepo(t.Context(), e.store, policy, "app", now)
		if err != nil {
			t.Fatal(err)
		}
		var previewed []string
		for _, x := range pre.Expired {
			previewed = append(previewed, names[x.Digest])
			if want := now.Add(-60 * 24 * time.Hour); names[x.Digest] == "stale" && !x.Pulled.Equal(want) {
				t.Errorf("stale: pulled %v, want %v", x.Pulled, want)
			}
		}
		slices.Sort(previewed) // pushed at the same time: the order is the digests'
		if want := []string{"never", "stale"}; !slices.Equal(previewed, want) || pre.Images != 6 || pre.Manifests != 7 {
			t.Errorf("preview %v (%d images, %d manifests), want %v (6, 7)", previewed, pre.Images, pre.Manifests, want)
		}
		rep, err := retention.Apply(t.Context(), e.store, policy, now, slog.New(slog.DiscardHandler))
		if err != nil || rep.Expired != 2 {
			t.Fatalf("apply: %+v, %v", rep, err)
		}
		if got, want := e.state("app", names), []string{
			"by-digest[]", "by-tag[by-tag]", "child[]", "index[multi]", "new[new]",
		}; !slices.Equal(got, want) {
			t.Errorf("app holds\n %v\nwant\n %v", got, want)
		}
	})
}
