// Package containerd pushes and pulls an image with containerd's own
// registry client, used as a library: the code BuildKit (docker buildx
// --push), Docker Engine ≥ 29 with the containerd image store, nerdctl and
// ctr run. It is its own Go module so containerd's dependencies stay out of
// the registry's module graph.
//
// The registry is `berth serve --via-lambda --edge --backend aws` on the
// emulators: the CloudFront emulation runs the edge Function, blob PUTs go
// straight to the S3 server, everything else through the emulated API
// Gateway and Lambda.
package containerd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-registry/berth/tests/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

const layerSize = 64 << 20

// image writes a config, one random layer of layerSize bytes and their
// manifest into a containerd content store.
func image(ctx context.Context, t *testing.T, cs content.Store) (manifest ocispec.Descriptor, layer []byte) {
	t.Helper()
	put := func(mediaType string, b []byte) ocispec.Descriptor {
		d := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
		if err := content.WriteBlob(ctx, cs, d.Digest.String(), bytes.NewReader(b), d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	layer = make([]byte, layerSize)
	if _, err := rand.Read(layer); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(layer)}}})
	m := ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    put(ocispec.MediaTypeImageConfig, cfg),
		Layers:    []ocispec.Descriptor{put(ocispec.MediaTypeImageLayer, layer)},
	}
	m.SchemaVersion = 2
	mb, _ := json.Marshal(m)
	return put(ocispec.MediaTypeImageManifest, mb), layer
}

func fetch(ctx context.Context, t *testing.T, f remotes.Fetcher, d ocispec.Descriptor) []byte {
	t.Helper()
	rc, err := f.Fetch(ctx, d)
	if err != nil {
		t.Fatalf("fetch %s: %v", d.Digest, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", d.Digest, err)
	}
	return b
}

// TestPushPullThroughEdge: containerd's pusher takes the edge Location
// from the POST and PUTs each blob there; the layer's bytes must reach S3
// without passing through Lambda, and pull back identical.
func TestPushPullThroughEdge(t *testing.T) {
	srv := harness.Start(t, harness.Config{Backend: harness.Edge})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cs, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	desc, layer := image(ctx, t, cs)

	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchAllHosts)),
	})
	ref := srv.Addr + "/containerd/app:v1"
	mark := srv.Mark()
	pusher, err := resolver.Pusher(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remotes.PushContent(ctx, pusher, desc, cs, nil, nil, nil); err != nil {
		t.Fatalf("containerd push: %v", err)
	}
	// No request that reached the registry (Lambda) carried the layer.
	for _, r := range srv.Requests()[mark:] {
		if r.BytesIn >= layerSize {
			t.Errorf("%s %s carried %d bytes through Lambda", r.Method, r.Path, r.BytesIn)
		}
	}

	name, got, err := resolver.Resolve(ctx, ref)
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	if got.Digest != desc.Digest {
		t.Fatalf("resolved %s, pushed %s", got.Digest, desc.Digest)
	}
	f, err := resolver.Fetcher(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(fetch(ctx, t, f, got), &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != 1 {
		t.Fatalf("manifest has %d layers", len(m.Layers))
	}
	if pulled := fetch(ctx, t, f, m.Layers[0]); !bytes.Equal(pulled, layer) {
		t.Fatalf("pulled layer differs (%d bytes, want %d)", len(pulled), len(layer))
	}
}
