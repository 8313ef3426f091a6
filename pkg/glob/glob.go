// Package glob matches the name patterns of Berth's configuration
// documents: repository names and OIDC claims (Path) in the access policy
// (pkg/auth/policy) and the tag immutability rules (pkg/immutability), and
// IAM ARNs (ARN). It imports nothing of ours.
package glob

import "errors"

// Pattern is a compiled pattern. In path mode (repository names, OIDC
// claims) `*` matches within one `/`-separated segment, `**` across
// segments and `?` one character other than `/`. In ARN mode `*` and `?`
// follow IAM: `*` matches any run of characters, `/` and `:` included.
type Pattern struct {
	src    string
	tokens []tok
}

// Path compiles a path pattern (repository names, OIDC claims).
func Path(p string) (Pattern, error) { return compile(p, false) }

// ARN compiles an IAM ARN pattern.
func ARN(p string) (Pattern, error) { return compile(p, true) }

type tokKind uint8

const (
	tLit tokKind = iota
	tStar
	tDStar
	tQuest
)

type tok struct {
	kind tokKind
	ch   byte
}

func compile(p string, arn bool) (Pattern, error) {
	if p == "" {
		return Pattern{}, errors.New("empty pattern")
	}
	var ts []tok
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '*' && i+1 < len(p) && p[i+1] == '*':
			if arn {
				return Pattern{}, errors.New("** is not used in ARN patterns (* already matches everything)")
			}
			ts = append(ts, tok{kind: tDStar})
			i++
			if i+1 < len(p) && p[i+1] == '*' {
				return Pattern{}, errors.New("*** in pattern")
			}
		case c == '*' && arn:
			ts = append(ts, tok{kind: tDStar})
		case c == '*':
			ts = append(ts, tok{kind: tStar})
		case c == '?':
			if arn {
				ts = append(ts, tok{kind: tQuest, ch: 1})
			} else {
				ts = append(ts, tok{kind: tQuest})
			}
		default:
			ts = append(ts, tok{kind: tLit, ch: c})
		}
	}
	return Pattern{src: p, tokens: ts}, nil
}

// Match reports whether the whole of s matches. It runs in
// O(len(pattern)·len(s)) whatever the pattern.
func (g Pattern) Match(s string) bool {
	n := len(s)
	// next[j]: tokens[i+1:] match s[j:]; cur[j]: tokens[i:] match s[j:].
	next := make([]bool, n+1)
	cur := make([]bool, n+1)
	next[n] = true
	for i := len(g.tokens) - 1; i >= 0; i-- {
		t := g.tokens[i]
		switch t.kind {
		case tLit:
			for j := 0; j <= n; j++ {
				cur[j] = j < n && s[j] == t.ch && next[j+1]
			}
		case tQuest:
			for j := 0; j <= n; j++ {
				cur[j] = j < n && (t.ch == 1 || s[j] != '/') && next[j+1]
			}
		case tStar, tDStar:
			cur[n] = next[n]
			for j := n - 1; j >= 0; j-- {
				cur[j] = next[j] || (cur[j+1] && (t.kind == tDStar || s[j] != '/'))
			}
		}
		cur, next = next, cur
	}
	return next[0]
}

// String is the pattern as written.
func (g Pattern) String() string { return g.src }
