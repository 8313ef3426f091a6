package policy

import "errors"

// glob is a compiled pattern. In path mode (repository names, OIDC claims)
// `*` matches within one `/`-separated segment, `**` across segments and `?`
// one character other than `/`. In ARN mode `*` and `?` follow IAM: `*`
// matches any run of characters, `/` and `:` included.
type glob struct {
	src    string
	tokens []tok
}

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

func compileGlob(p string, arn bool) (glob, error) {
	if p == "" {
		return glob{}, errors.New("empty pattern")
	}
	var ts []tok
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '*' && i+1 < len(p) && p[i+1] == '*':
			if arn {
				return glob{}, errors.New("** is not used in ARN patterns (* already matches everything)")
			}
			ts = append(ts, tok{kind: tDStar})
			i++
			if i+1 < len(p) && p[i+1] == '*' {
				return glob{}, errors.New("*** in pattern")
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
	return glob{src: p, tokens: ts}, nil
}

// match runs in O(len(tokens)·len(s)) whatever the pattern.
func (g glob) match(s string) bool {
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

func (g glob) String() string { return g.src }
