// Package obswire puts the audit trail and the request metrics around a
// function's handler (the api and token functions share it; the api
// function's other wiring, in apiwire, is too heavy for the token
// function to link).
package obswire

import (
	"log/slog"
	"net/http"

	"github.com/berth-registry/berth/pkg/apigw"
	"github.com/berth-registry/berth/pkg/audit"
	"github.com/berth-registry/berth/pkg/metrics"
)

// Observe puts the audit trail and the request metrics around h, each
// when given: outside the token guard, so that denied requests are
// recorded too, and inside the API Gateway adapter, whose request id the
// records carry (apigw.RequestID).
func Observe(h http.Handler, auditLog *slog.Logger, rec metrics.Recorder) http.Handler {
	if auditLog != nil {
		h = audit.Middleware(audit.Config{Log: auditLog, RequestID: apigw.RequestID}, h)
	}
	if rec != nil {
		h = metrics.Middleware(rec, h)
	}
	return h
}
