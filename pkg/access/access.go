// Package access carries what the caller of a request may do from the
// authentication layer (pkg/auth) to the registry (pkg/registry), through
// the request's context, so that neither imports the other. The registry
// asks it only for decisions beyond the route's own scope, such as whether
// a blob another repository holds may be mounted for this caller.
package access

import "context"

// Checker answers for one request's caller.
type Checker interface {
	// MayPull reports whether the caller may pull from repo.
	MayPull(repo string) bool
	// MayPush reports whether the caller may push to repo.
	MayPush(repo string) bool
}

type ctxKey struct{}

// NewContext returns ctx carrying c.
func NewContext(ctx context.Context, c Checker) context.Context {
	return context.WithValue(ctx, ctxKey{}, c)
}

// FromContext returns the checker ctx carries, if any.
func FromContext(ctx context.Context) (Checker, bool) {
	c, ok := ctx.Value(ctxKey{}).(Checker)
	return c, ok
}

// Open is the checker of a registry without authentication: every caller
// may pull from and push to every repository.
type Open struct{}

// MayPull implements Checker.
func (Open) MayPull(string) bool { return true }

// MayPush implements Checker.
func (Open) MayPush(string) bool { return true }

// Identified is a Checker that knows who its caller is.
type Identified interface {
	// Subject names the caller (a token's subject): a principal, never a
	// credential.
	Subject() string
}

// SubjectOf returns the subject of the caller ctx carries, or "" when it
// carries none or an anonymous one.
func SubjectOf(ctx context.Context) string {
	if c, ok := FromContext(ctx); ok {
		if id, ok := c.(Identified); ok {
			return id.Subject()
		}
	}
	return ""
}
