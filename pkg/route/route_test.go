package route

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	cases := []struct {
		path string
		want Route
		err  error
	}{
		{"/v2/", Route{Kind: Base}, nil},
		{"/v2", Route{Kind: Base}, nil},
		{"/v2/_catalog", Route{Kind: Catalog}, nil},
		{"/v2/a/b/c/tags/list", Route{Kind: Tags, Name: "a/b/c"}, nil},
		{"/v2/foo/manifests/latest", Route{Kind: Manifest, Name: "foo", Arg: "latest"}, nil},
		{"/v2/foo/manifests/sha256:abc", Route{Kind: Manifest, Name: "foo", Arg: "sha256:abc"}, nil},
		{"/v2/foo/blobs/sha256:abc", Route{Kind: Blob, Name: "foo", Arg: "sha256:abc"}, nil},
		{"/v2/foo/blobs/uploads/", Route{Kind: UploadStart, Name: "foo"}, nil},
		{"/v2/foo/blobs/uploads", Route{Kind: UploadStart, Name: "foo"}, nil},
		{"/v2/foo/blobs/uploads/xyz", Route{Kind: Upload, Name: "foo", Arg: "xyz"}, nil},
		{"/v2/foo/referrers/sha256:abc", Route{Kind: Referrers, Name: "foo", Arg: "sha256:abc"}, nil},
		{"/v2/a/b/_berth/images", Route{Kind: Images, Name: "a/b"}, nil},
		{"/v2/_berth/images", Route{}, ErrNoRoute},
		{"/v2/a/_berth/images/x", Route{}, ErrNoRoute},
		// names that contain endpoint words are matched from the right
		{"/v2/x/manifests/y/manifests/z", Route{Kind: Manifest, Name: "x/manifests/y", Arg: "z"}, nil},
		{"/v2/blobs/blobs/uploads/", Route{Kind: UploadStart, Name: "blobs"}, nil},
		{"/v2/tags/tags/list", Route{Kind: Tags, Name: "tags"}, nil},
		{"/v2/Foo/tags/list", Route{Kind: Tags, Name: "Foo"}, ErrNameInvalid},
		{"/v2/../etc/tags/list", Route{Kind: Tags, Name: "../etc"}, ErrNameInvalid},
		{"/v2/a//b/tags/list", Route{Kind: Tags, Name: "a//b"}, ErrNameInvalid},
		{"/v2/manifests/x", Route{}, ErrNoRoute},
		{"/v2/foo/manifests/", Route{}, ErrNoRoute},
		{"/v2/foo/bar", Route{}, ErrNoRoute},
		{"/v3/", Route{}, ErrNotV2},
	}
	for _, c := range cases {
		got, err := Parse(c.path)
		if !errors.Is(err, c.err) {
			t.Errorf("%s: err %v, want %v", c.path, err, c.err)
			continue
		}
		if got != c.want {
			t.Errorf("%s: got %+v, want %+v", c.path, got, c.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/a/b/manifests/latest", "/v2/x/blobs/uploads/id", "/v2/_catalog", "/v2/a/referrers/sha256:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		r, err := Parse(p)
		if err == nil && r.Kind != Base && r.Kind != Catalog && r.Name == "" {
			t.Fatalf("route %+v without name", r)
		}
	})
}
