package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/berth-registry/berth/pkg/errcode"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/route"
	"github.com/berth-registry/berth/pkg/storage"
)

// TestToOCI walks every error the layers below hand to a handler and checks
// the one mapping gives it its code, status and detail as a client sees
// them on the wire.
func TestToOCI(t *testing.T) {
	const d = "sha256:4355a46b19d348dc2f57c046f8ef63d4538ebb936000f3c9ee954a27460dd865"
	blob := route.Route{Kind: route.Blob, Name: "lib/app", Arg: d}
	manifest := route.Route{Kind: route.Manifest, Name: "lib/app", Arg: "v1"}
	upload := route.Route{Kind: route.Upload, Name: "lib/app", Arg: "u-1"}
	wrap := func(sentinel error) error { return fmt.Errorf("layer below: %w", sentinel) }
	cases := []struct {
		name   string
		err    error
		rt     route.Route
		query  string
		code   errcode.Code
		status int
		detail string // JSON of the detail; "" skips the check
		header string // a header the answer must carry
	}{
		{"errcode passes through", errcode.New(errcode.TagInvalid, "x"), manifest, "", errcode.TagInvalid, 400, `"x"`, ""},
		{"wrapped errcode passes through", fmt.Errorf("ctx: %w", errcode.New(errcode.RangeInvalid, nil)), upload, "", errcode.RangeInvalid, 416, "", ""},
		{"missing reference", wrap(&meta.MissingError{Digest: oci.Digest(d), Kind: "blob", Err: meta.ErrBlobUnknown}), manifest, "", errcode.ManifestBlobUnknown, 400, `{"digest":"` + d + `"}`, ""},
		{"body over the cap", wrap(&http.MaxBytesError{Limit: 4404019}), upload, "", errcode.SizeInvalid, 413, "", ""},
		{"name unknown", wrap(meta.ErrNameUnknown), route.Route{Kind: route.Tags, Name: "lib/app"}, "", errcode.NameUnknown, 404, `{"name":"lib/app"}`, ""},
		{"manifest unknown", wrap(meta.ErrManifestUnknown), manifest, "", errcode.ManifestUnknown, 404, `{"reference":"v1"}`, ""},
		{"tag unknown", wrap(meta.ErrTagUnknown), manifest, "", errcode.ManifestUnknown, 404, `{"reference":"v1"}`, ""},
		{"tag immutable", wrap(meta.ErrTagImmutable), manifest, "", errcode.Denied, 403, `{"tag":"v1"}`, ""},
		{"blob not linked", wrap(meta.ErrBlobNotLinked), blob, "", errcode.BlobUnknown, 404, `{"digest":"` + d + `"}`, ""},
		{"upload unknown", wrap(meta.ErrUploadUnknown), upload, "", errcode.BlobUploadUnknown, 404, `{"upload":"u-1"}`, ""},
		{"upload not stored", wrap(meta.ErrUploadNotStored), upload, "", errcode.BlobUploadUnknown, 404, `{"upload":"u-1"}`, ""},
		{"parts invalid", wrap(storage.ErrPartsInvalid), upload, "", errcode.BlobUploadInvalid, 400, "", ""},
		{"digest mismatch names the claimed digest", wrap(storage.ErrDigestMismatch), upload, "digest=" + d, errcode.DigestInvalid, 400, `{"digest":"` + d + `"}`, ""},
		{"size mismatch", wrap(storage.ErrSizeMismatch), upload, "", errcode.SizeInvalid, 400, "", ""},
		{"storage limit", wrap(storage.ErrTooLarge), manifest, "", errcode.SizeInvalid, 413, "", ""},
		{"throttled", wrap(storage.ErrUnavailable), blob, "", errcode.Unavailable, 503, "", "Retry-After"},
		{"conflict", wrap(meta.ErrConflict), manifest, "", errcode.Unavailable, 503, "", "Retry-After"},
		{"upload busy", wrap(meta.ErrUploadBusy), upload, "", errcode.Unavailable, 503, "", "Retry-After"},
		{"upload exists", wrap(meta.ErrUploadExists), upload, "", errcode.Unavailable, 503, "", "Retry-After"},
		{"deadline", wrap(context.DeadlineExceeded), blob, "", errcode.Unavailable, 503, "", "Retry-After"},
		// "Not found" that nothing named is a fault of ours, not the client's.
		{"bare not found", wrap(storage.ErrNotFound), blob, "", errcode.Unknown, 500, "", ""},
		{"anything else", errors.New("boom"), blob, "", errcode.Unknown, 500, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPut, "/v2/x?"+c.query, nil)
			e := toOCI(c.err, r, c.rt)
			if e.Code != c.code || e.HTTPStatus() != c.status {
				t.Fatalf("toOCI = %s %d, want %s %d", e.Code, e.HTTPStatus(), c.code, c.status)
			}
			if !errors.Is(e, c.err) && !errors.As(c.err, new(*errcode.Error)) {
				t.Errorf("the OCI error lost its cause %v", c.err)
			}
			rec := httptest.NewRecorder()
			errcode.Write(rec, e)
			if rec.Code != c.status {
				t.Errorf("written with %d", rec.Code)
			}
			if c.header != "" && rec.Header().Get(c.header) == "" {
				t.Errorf("no %s header", c.header)
			}
			var body struct {
				Errors []struct {
					Code   errcode.Code    `json:"code"`
					Detail json.RawMessage `json:"detail"`
				} `json:"errors"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body.Errors) != 1 || body.Errors[0].Code != c.code {
				t.Fatalf("body %s (%v)", rec.Body, err)
			}
			if c.detail != "" && string(body.Errors[0].Detail) != c.detail {
				t.Errorf("detail %s, want %s", body.Errors[0].Detail, c.detail)
			}
		})
	}
}
