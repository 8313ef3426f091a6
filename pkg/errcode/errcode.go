// Package errcode defines the OCI Distribution error codes, their HTTP
// statuses and the error type handlers return. It imports nothing of Berth's.
package errcode

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Code is an OCI Distribution error code.
type Code string

// The error codes of the OCI Distribution Spec v1.1, plus the distribution
// extensions clients understand (UNAVAILABLE, TOOMANYREQUESTS).
const (
	BlobUnknown         Code = "BLOB_UNKNOWN"
	BlobUploadInvalid   Code = "BLOB_UPLOAD_INVALID"
	BlobUploadUnknown   Code = "BLOB_UPLOAD_UNKNOWN"
	DigestInvalid       Code = "DIGEST_INVALID"
	ManifestBlobUnknown Code = "MANIFEST_BLOB_UNKNOWN"
	ManifestInvalid     Code = "MANIFEST_INVALID"
	ManifestUnknown     Code = "MANIFEST_UNKNOWN"
	NameInvalid         Code = "NAME_INVALID"
	NameUnknown         Code = "NAME_UNKNOWN"
	SizeInvalid         Code = "SIZE_INVALID"
	Unauthorized        Code = "UNAUTHORIZED"
	Denied              Code = "DENIED"
	Unsupported         Code = "UNSUPPORTED"
	TooManyRequests     Code = "TOOMANYREQUESTS"
	// Extensions used by distribution and understood by clients.
	PaginationNumberInvalid Code = "PAGINATION_NUMBER_INVALID"
	RangeInvalid            Code = "RANGE_INVALID"
	TagInvalid              Code = "TAG_INVALID"
	Unavailable             Code = "UNAVAILABLE"
	Unknown                 Code = "UNKNOWN"
)

// Info is one row of the code table.
type Info struct {
	Status  int
	Message string
}

// table maps every code to its default HTTP status and message. The
// messages are the spec's descriptions.
var table = map[Code]Info{
	BlobUnknown:         {http.StatusNotFound, "blob unknown to registry"},
	BlobUploadInvalid:   {http.StatusBadRequest, "blob upload invalid"},
	BlobUploadUnknown:   {http.StatusNotFound, "blob upload unknown to registry"},
	DigestInvalid:       {http.StatusBadRequest, "provided digest did not match uploaded content"},
	ManifestBlobUnknown: {http.StatusBadRequest, "manifest references a manifest or blob unknown to registry"},
	ManifestInvalid:     {http.StatusBadRequest, "manifest invalid"},
	ManifestUnknown:     {http.StatusNotFound, "manifest unknown to registry"},
	NameInvalid:         {http.StatusBadRequest, "invalid repository name"},
	NameUnknown:         {http.StatusNotFound, "repository name not known to registry"},
	SizeInvalid:         {http.StatusBadRequest, "provided length did not match content length"},
	Unauthorized:        {http.StatusUnauthorized, "authentication required"},
	Denied:              {http.StatusForbidden, "requested access to the resource is denied"},
	Unsupported:         {http.StatusMethodNotAllowed, "the operation is unsupported"},
	TooManyRequests:     {http.StatusTooManyRequests, "too many requests"},
	// distribution answers a bad tags or catalog n with this code and 400.
	PaginationNumberInvalid: {http.StatusBadRequest, "invalid number of results requested"},
	RangeInvalid:            {http.StatusRequestedRangeNotSatisfiable, "invalid content range"},
	TagInvalid:              {http.StatusBadRequest, "manifest tag did not match URI"},
	Unavailable:             {http.StatusServiceUnavailable, "service unavailable"},
	Unknown:                 {http.StatusInternalServerError, "unknown error"},
}

// Lookup returns the table row for c; unknown codes map to 500.
func Lookup(c Code) Info {
	if i, ok := table[c]; ok {
		return i
	}
	return table[Unknown]
}

// Codes returns every code in the table (for tests and docs).
func Codes() []Code {
	out := make([]Code, 0, len(table))
	for c := range table {
		out = append(out, c)
	}
	return out
}

// Error is an OCI error a handler returns. One adapter writes it.
type Error struct {
	Code    Code
	Message string // defaults to the table's message
	Detail  any    // JSON-encodable detail, optional
	Status  int    // overrides the table's status when non-zero
	Header  http.Header
	Err     error // cause, logged, never sent to the client
}

// New returns an error with the given code and detail.
func New(code Code, detail any) *Error { return &Error{Code: code, Detail: detail} }

// Wrap returns an error with the given code and cause.
func Wrap(code Code, cause error) *Error {
	return &Error{Code: code, Detail: nil, Err: cause}
}

// WithStatus sets an explicit status and returns e.
func (e *Error) WithStatus(s int) *Error { e.Status = s; return e }

// WithDetailDigest sets a {"digest": d} detail and returns e.
func (e *Error) WithDetailDigest(d fmt.Stringer) *Error {
	e.Detail = map[string]string{"digest": d.String()}
	return e
}

// WithDetail sets a JSON-encodable detail and returns e.
func (e *Error) WithDetail(d any) *Error { e.Detail = d; return e }

// WithDetailField sets the detail to the object {key: value} and returns e.
// Details are always JSON objects, so clients can read them one way.
func (e *Error) WithDetailField(key, value string) *Error {
	e.Detail = map[string]string{key: value}
	return e
}

// WithMessage sets the message and returns e.
func (e *Error) WithMessage(m string) *Error { e.Message = m; return e }

// WithHeader adds a response header and returns e.
func (e *Error) WithHeader(k, v string) *Error {
	if e.Header == nil {
		e.Header = http.Header{}
	}
	e.Header.Add(k, v)
	return e
}

func (e *Error) Error() string {
	msg := e.message()
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, msg, e.Err)
	}
	if e.Detail != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, msg, e.Detail)
	}
	return fmt.Sprintf("%s: %s", e.Code, msg)
}

func (e *Error) Unwrap() error { return e.Err }

// HTTPStatus is the status the error is written with.
func (e *Error) HTTPStatus() int {
	if e.Status != 0 {
		return e.Status
	}
	return Lookup(e.Code).Status
}

func (e *Error) message() string {
	if e.Message != "" {
		return e.Message
	}
	return Lookup(e.Code).Message
}

// Body is the wire shape: {"errors":[{"code","message","detail"}]}.
type Body struct {
	Errors []Entry `json:"errors"`
}

// Entry is one error in a Body.
type Entry struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail"`
}

// Write writes err as an OCI error response. Errors that are not *Error are
// written as 500 UNKNOWN without their text (it may hold internals).
func Write(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: Unknown}
	}
	for k, vs := range e.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	body, _ := json.Marshal(Body{Errors: []Entry{{Code: e.Code, Message: e.message(), Detail: detailOrEmpty(e.Detail)}}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(e.HTTPStatus())
	_, _ = w.Write(body) // net/http drops it for HEAD

}

func detailOrEmpty(d any) any {
	if d == nil {
		return map[string]any{}
	}
	return d
}
