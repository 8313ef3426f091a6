package errcode

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Statuses the OCI Distribution Spec v1.1 and distribution assign.
var wantStatus = map[Code]int{
	BlobUnknown:             404,
	BlobUploadInvalid:       400,
	BlobUploadUnknown:       404,
	DigestInvalid:           400,
	ManifestBlobUnknown:     400,
	ManifestInvalid:         400,
	ManifestUnknown:         404,
	NameInvalid:             400,
	NameUnknown:             404,
	SizeInvalid:             400,
	Unauthorized:            401,
	Denied:                  403,
	Unsupported:             405,
	TooManyRequests:         429,
	PaginationNumberInvalid: 400,
	RangeInvalid:            416,
	TagInvalid:              400,
	Unavailable:             503,
	Unknown:                 500,
}

func TestTable(t *testing.T) {
	codes := Codes()
	if len(codes) != len(wantStatus) {
		t.Fatalf("table has %d codes, test knows %d", len(codes), len(wantStatus))
	}
	for _, c := range codes {
		want, ok := wantStatus[c]
		if !ok {
			t.Errorf("%s not checked", c)
			continue
		}
		info := Lookup(c)
		if info.Status != want {
			t.Errorf("%s: status %d, want %d", c, info.Status, want)
		}
		if info.Message == "" {
			t.Errorf("%s: no message", c)
		}
		rec := httptest.NewRecorder()
		Write(rec, New(c, nil))
		if rec.Code != want {
			t.Errorf("%s: wrote %d", c, rec.Code)
		}
		var b Body
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || len(b.Errors) != 1 || b.Errors[0].Code != c || b.Errors[0].Message == "" {
			t.Errorf("%s: body %s (%v)", c, rec.Body, err)
		}
		if rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s: content type %q", c, rec.Header().Get("Content-Type"))
		}
	}
	if Lookup("NOPE").Status != 500 {
		t.Error("unknown code is not 500")
	}
}

func TestWriteHidesInternalErrors(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, fmt.Errorf("secret path /var/lib/x: %w", errors.New("boom")))
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status %d", rec.Code)
	}
	if got := rec.Body.String(); got != `{"errors":[{"code":"UNKNOWN","message":"unknown error","detail":{}}]}` {
		t.Fatalf("body %s", got)
	}
	rec = httptest.NewRecorder()
	e := Wrap(DigestInvalid, errors.New("internal cause")).WithStatus(413).WithMessage("m").WithHeader("Retry-After", "1")
	Write(rec, fmt.Errorf("wrapped: %w", e))
	if rec.Code != 413 || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("status %d headers %v", rec.Code, rec.Header())
	}
	if got := rec.Body.String(); got != `{"errors":[{"code":"DIGEST_INVALID","message":"m","detail":{}}]}` {
		t.Fatalf("body %s", got)
	}
}
