// Package audit writes the audit trail: one structured record per request
// to the registry API or the token endpoint, saying who (the principal
// pkg/auth established), from where (source IP), did what (action,
// repository, reference, digest), with which result, under which request
// id. docs/audit.md describes the record and how to query it.
//
// Middleware owns the record. The layers below it know parts of it that
// the request does not carry (who the token names, why a request was
// denied, what a token grant contained), and an http.Handler can hand
// nothing back to the handler that called it except the response, so they
// annotate the record through the request's context (SetPrincipal, Deny,
// Grant); without a record in the context those calls do nothing.
//
// A record never holds a credential: no header values other than the user
// agent, no query string (presigned URL signatures and edge upload tokens
// travel there), no upload session id (its signed state lets its holder
// continue the upload), no request or response body.
package audit

import (
	"context"
	"io"
	"log/slog"
)

// Results of a record.
const (
	Success = "SUCCESS" // the operation was done (status < 400)
	Failure = "FAILURE" // it was authorized but failed (4xx other than 401/403, 5xx)
	Denied  = "DENIED"  // authentication or authorization refused it (401, 403)
)

// Actions of a record (Record.Action).
const (
	ActionPull       = "pull"
	ActionPush       = "push"
	ActionDelete     = "delete"
	ActionList       = "list" // catalog and tag lists
	ActionPing       = "ping" // GET /v2/: clients probing for the auth realm
	ActionTokenGrant = "token-grant"
	ActionOther      = "other" // a path outside the registry's routes
)

// Tag is the value of the "log" field of every record, so CloudWatch Logs
// Insights can tell records from the other lines of a function's log
// group: filter log = "audit".
const Tag = "audit"

// NewLogger returns the audit sink writing JSON lines to w, each tagged
// "log":"audit". In a Lambda function w is stdout (the function's log
// group); in berth serve, --audit-log.
func NewLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, nil)).With(slog.String("log", Tag))
}

// note is what the layers below Middleware add to the record.
type note struct {
	principal string
	denied    bool
	reason    string
	granted   []string
}

type ctxKey struct{}

func noteOf(ctx context.Context) *note {
	n, _ := ctx.Value(ctxKey{}).(*note)
	return n
}

// SetPrincipal names the caller of the request ctx belongs to: an IAM
// principal ARN, an OIDC issuer#subject, or a token's subject. Never a
// credential.
func SetPrincipal(ctx context.Context, principal string) {
	if n := noteOf(ctx); n != nil {
		n.principal = principal
	}
}

// Deny marks the request as refused by authentication or authorization,
// for reason (a fixed phrase, never a credential or an error that may
// quote one).
func Deny(ctx context.Context, reason string) {
	if n := noteOf(ctx); n != nil {
		n.denied, n.reason = true, reason
	}
}

// Grant records a token grant: the caller and the scopes granted.
func Grant(ctx context.Context, principal string, scopes []string) {
	if n := noteOf(ctx); n != nil {
		n.principal, n.granted = principal, scopes
	}
}
