package push

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// RemoteSource reads an image from a registry through ggcr, with the
// credentials of the docker config (and its credential helpers).
type RemoteSource struct {
	ref  name.Reference
	opts []remote.Option
}

// NewRemoteSource reads ref (as name.ParseReference parses it) from its
// registry. conn says how to reach that registry.
func NewRemoteSource(ref string, conn Conn) (*RemoteSource, error) {
	r, err := parseRef(ref, conn)
	if err != nil {
		return nil, err
	}
	return &RemoteSource{ref: r, opts: []remote.Option{
		remote.WithAuthFromKeychain(conn.keychain()),
		remote.WithTransport(conn.baseTransport()),
		remote.WithUserAgent(conn.userAgent()),
	}}, nil
}

func (s *RemoteSource) with(ctx context.Context) []remote.Option {
	return append([]remote.Option{remote.WithContext(ctx)}, s.opts...)
}

// MountFrom names the source repository, for cross-repository mounts.
func (s *RemoteSource) MountFrom() (registry, repo string) {
	return s.ref.Context().RegistryStr(), s.ref.Context().RepositoryStr()
}

func (s *RemoteSource) Root(ctx context.Context) (v1.Descriptor, []byte, error) {
	d, err := remote.Get(s.ref, s.with(ctx)...)
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("get %s: %w", s.ref, err)
	}
	return v1.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}, d.Manifest, nil
}

func (s *RemoteSource) Manifest(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	got, err := remote.Get(s.ref.Context().Digest(d.Digest.String()), s.with(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("get manifest %s: %w", d.Digest, err)
	}
	return got.Manifest, nil
}

func (s *RemoteSource) Blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	l, err := remote.Layer(s.ref.Context().Digest(d.Digest.String()), s.with(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	return l.Compressed()
}

// Referrers asks the source's referrers API (ggcr falls back to the
// sha256-<hex> tag schema when the registry has none).
func (s *RemoteSource) Referrers(ctx context.Context, d v1.Descriptor) ([]v1.Descriptor, error) {
	idx, err := remote.Referrers(s.ref.Context().Digest(d.Digest.String()), s.with(ctx)...)
	var terr *transport.Error
	if errors.As(err, &terr) && (terr.StatusCode == http.StatusNotFound || terr.StatusCode == http.StatusMethodNotAllowed) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("referrers of %s: %w", d.Digest, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	return im.Manifests, nil
}
