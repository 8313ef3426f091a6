package metrics

import (
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/berth-registry/berth/pkg/respstatus"
	"github.com/berth-registry/berth/pkg/route"
)

// Route labels beyond route.Kind's names.
const (
	RouteToken = "token" // the token endpoint (/token)
	RouteOther = "other" // anything else
)

type middleware struct {
	next http.Handler
	rec  Recorder
}

// Middleware records every request next serves into rec: Requests and
// Latency by route and status class, and the counters a request's route,
// method and status imply (pushes, pulls, bytes uploaded, upload sessions,
// token grants and denials). It costs one small allocation per request
// (two on upload routes, whose bodies it counts).
func Middleware(rec Recorder, next http.Handler) http.Handler {
	return &middleware{next: next, rec: rec}
}

func (m *middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	kind, label := routeOf(r.URL.Path)
	sw := &respstatus.Writer{ResponseWriter: w}
	var body *countingBody
	if (kind == route.UploadStart || kind == route.Upload) && r.Body != nil && r.Body != http.NoBody &&
		(r.Method == http.MethodPost || r.Method == http.MethodPatch || r.Method == http.MethodPut) {
		// A shallow copy, as Request.WithContext makes: the caller's
		// request stays as it was.
		r2 := new(http.Request)
		*r2 = *r
		body = &countingBody{ReadCloser: r.Body}
		r2.Body = body
		r = r2
	}
	m.next.ServeHTTP(sw, r)
	status := sw.Status
	if status == 0 {
		status = http.StatusOK
	}
	m.rec.Request(label, status, time.Since(start))
	if body != nil && body.n > 0 {
		m.rec.Add(BytesUploaded, float64(body.n))
	}
	switch kind {
	case route.Manifest:
		switch {
		case r.Method == http.MethodPut && status == http.StatusCreated:
			m.rec.Add(ManifestPushes, 1)
		case r.Method == http.MethodGet && status == http.StatusOK:
			m.rec.Add(ManifestPulls, 1)
		}
	case route.UploadStart:
		if r.Method == http.MethodPost && status == http.StatusAccepted {
			m.rec.Add(UploadSessionsStarted, 1)
		}
	case route.Upload:
		if (r.Method == http.MethodPut && status == http.StatusCreated) ||
			(r.Method == http.MethodDelete && status == http.StatusNoContent) {
			m.rec.Add(UploadSessionsEnded, 1)
		}
	case route.Unknown:
		if label == RouteToken {
			switch status {
			case http.StatusOK:
				m.rec.Add(TokenGrants, 1)
			case http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests:
				m.rec.Add(TokenDenials, 1)
			}
		}
	}
}

// routeOf is the route kind of path and its low-cardinality label.
func routeOf(path string) (route.Kind, string) {
	rt, err := route.Parse(path)
	switch {
	case errors.Is(err, route.ErrNotV2) && path == "/token":
		return route.Unknown, RouteToken
	case errors.Is(err, route.ErrNotV2):
		return route.Unknown, RouteOther
	}
	return rt.Kind, rt.Kind.String()
}

type countingBody struct {
	io.ReadCloser
	n int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}
