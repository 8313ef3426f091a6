package auth

import (
	"slices"
	"strings"

	"github.com/berth-registry/berth/pkg/auth/token"
)

// Scope is one resource scope of the distribution token spec:
// "repository:<name>:<actions>" or "registry:catalog:*".
type Scope struct {
	Type    string
	Name    string
	Actions []string
}

// String formats s for a WWW-Authenticate challenge or a token request.
func (s Scope) String() string {
	return s.Type + ":" + s.Name + ":" + strings.Join(s.Actions, ",")
}

// ParseScope parses one scope. The resource type may carry a class in
// parentheses ("repository(plugin)"), which is dropped. Names may not hold
// ':' in OCI, so the name is everything between the first and last colon.
func ParseScope(s string) (Scope, bool) {
	typ, rest, ok := strings.Cut(s, ":")
	if !ok {
		return Scope{}, false
	}
	i := strings.LastIndexByte(rest, ':')
	if i <= 0 {
		return Scope{}, false
	}
	name, actions := rest[:i], rest[i+1:]
	if j := strings.IndexByte(typ, '('); j >= 0 && strings.HasSuffix(typ, ")") {
		typ = typ[:j]
	}
	if typ == "" || actions == "" {
		return Scope{}, false
	}
	var acts []string
	for a := range strings.SplitSeq(actions, ",") {
		if a != "" && !slices.Contains(acts, a) {
			acts = append(acts, a)
		}
	}
	return Scope{Type: typ, Name: name, Actions: acts}, len(acts) > 0
}

// parseScopes parses every scope in the query values; a value may hold
// several scopes separated by spaces (as some clients copy the challenge's
// scope parameter verbatim). Malformed scopes are dropped.
func parseScopes(values []string) []Scope {
	var out []Scope
	for _, v := range values {
		for f := range strings.FieldsSeq(v) {
			if s, ok := ParseScope(f); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// challengeScopes merges scopes with the same resource (for the challenge).
func mergeScopes(in []Scope) []Scope {
	var out []Scope
	for _, s := range in {
		i := slices.IndexFunc(out, func(o Scope) bool { return o.Type == s.Type && o.Name == s.Name })
		if i < 0 {
			out = append(out, Scope{Type: s.Type, Name: s.Name, Actions: slices.Clone(s.Actions)})
			continue
		}
		for _, a := range s.Actions {
			if !slices.Contains(out[i].Actions, a) {
				out[i].Actions = append(out[i].Actions, a)
			}
		}
	}
	return out
}

func toAccess(scopes []Scope) []token.Access {
	out := make([]token.Access, 0, len(scopes))
	for _, s := range scopes {
		out = append(out, token.Access{Type: s.Type, Name: s.Name, Actions: s.Actions})
	}
	return out
}
