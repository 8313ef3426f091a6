package glob

import "testing"

func TestGlob(t *testing.T) {
	cases := []struct {
		pat, s string
		arn    bool
		want   bool
	}{
		{"team/*", "team/app", false, true},
		{"team/*", "team/app/sub", false, false},
		{"team/**", "team/app/sub", false, true},
		{"team/**", "team", false, false},
		{"**", "a/b/c", false, true},
		{"*", "a", false, true},
		{"*", "a/b", false, false},
		{"**/app", "x/y/app", false, true},
		{"a/*/c", "a/b/c", false, true},
		{"a/*/c", "a/b/x/c", false, false},
		{"a/**/c", "a/b/x/c", false, true},
		{"app-?", "app-1", false, true},
		{"app-?", "app-12", false, false},
		{"a?b", "a/b", false, false},
		{"org/team-*", "org/team-api", false, true},
		{"exact", "exactly", false, false},
		{"arn:aws:iam::1:role/ci-*", "arn:aws:iam::1:role/ci-push", true, true},
		{"arn:aws:iam::1:role/*", "arn:aws:iam::1:role/path/x", true, true},
		{"arn:aws:iam::*:role/ci", "arn:aws:iam::2:role/ci", true, true},
		{"arn:aws:iam::1:role/ci", "arn:aws:iam::1:role/ci2", true, false},
	}
	for _, c := range cases {
		g, err := compile(c.pat, c.arn)
		if err != nil {
			t.Fatalf("%s: %v", c.pat, err)
		}
		if got := g.Match(c.s); got != c.want {
			t.Errorf("%q match %q = %v, want %v", c.pat, c.s, got, c.want)
		}
	}
	for _, bad := range []string{"", "a/***"} {
		if _, err := compile(bad, false); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
	if _, err := compile("arn:**", true); err == nil {
		t.Error("** accepted in ARN pattern")
	}
}

func FuzzGlob(f *testing.F) {
	f.Add("team/**", "team/a/b", false)
	f.Add("a*?b", "a/xb", true)
	f.Fuzz(func(t *testing.T, pat, s string, arn bool) {
		if len(pat) > 64 || len(s) > 128 {
			return
		}
		g, err := compile(pat, arn)
		if err != nil {
			return
		}
		if got, want := g.Match(s), refMatch(g.tokens, s); got != want {
			t.Fatalf("%q ~ %q: dp %v, reference %v", pat, s, got, want)
		}
	})
}

// refMatch is the obvious backtracking matcher, for the fuzz comparison.
func refMatch(ts []tok, s string) bool {
	if len(ts) == 0 {
		return s == ""
	}
	t := ts[0]
	switch t.kind {
	case tLit:
		return s != "" && s[0] == t.ch && refMatch(ts[1:], s[1:])
	case tQuest:
		return s != "" && (t.ch == 1 || s[0] != '/') && refMatch(ts[1:], s[1:])
	default:
		for i := 0; i <= len(s); i++ {
			if refMatch(ts[1:], s[i:]) {
				return true
			}
			if i < len(s) && t.kind == tStar && s[i] == '/' {
				return false
			}
		}
		return false
	}
}
