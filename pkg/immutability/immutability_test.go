package immutability

import (
	"errors"
	"strings"
	"testing"
)

const doc = `[
 {"repositories":["team/*"],"imageTagMutability":"IMMUTABLE_WITH_EXCLUSION",
  "imageTagMutabilityExclusionFilters":[{"filterType":"WILDCARD","filter":"latest"},{"filterType":"WILDCARD","filter":"dev-*"}]},
 {"repositories":["team/**"],"imageTagMutability":"MUTABLE"},
 {"repositories":["prod/**","releases"],"imageTagMutability":"IMMUTABLE"},
 {"repositories":["sandbox/**"],"imageTagMutability":"MUTABLE_WITH_EXCLUSION",
  "imageTagMutabilityExclusionFilters":[{"filterType":"WILDCARD","filter":"v*.*.*"}]}
]`

func TestImmutable(t *testing.T) {
	r, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		repo, tag string
		want      bool
	}{
		{"team/app", "v1", true},
		{"team/app", "latest", false},   // excluded
		{"team/app", "latest-1", true},  // a filter matches the whole tag
		{"team/app", "dev-42", false},   // excluded by a wildcard
		{"team/app/sub", "v1", false},   // team/* is one segment: the second rule decides
		{"prod/api", "latest", true},    // IMMUTABLE: every tag
		{"releases", "x", true},         // exact repository name
		{"releases2", "x", false},       // no rule
		{"sandbox/a/b", "v1.2.3", true}, // MUTABLE_WITH_EXCLUSION: filtered tags are immutable
		{"sandbox/a/b", "v1.2", false},  // ... the others move
		{"elsewhere", "v1", false},      // no rule: mutable
	} {
		if got := r.Immutable(c.repo, c.tag); got != c.want {
			t.Errorf("%s:%s immutable = %v, want %v", c.repo, c.tag, got, c.want)
		}
	}
	var none *Rules
	if none.Immutable("prod/api", "v1") {
		t.Error("nil rules made a tag immutable")
	}
	empty, err := Parse([]byte(`[]`))
	if err != nil || empty.Immutable("a", "b") {
		t.Errorf("empty rules: %v", err)
	}
}

func TestParseInvalid(t *testing.T) {
	rule := func(body string) string { return `[{"repositories":["a"],` + body + `}]` }
	wild := func(f string) string { return `{"filterType":"WILDCARD","filter":"` + f + `"}` }
	for name, c := range map[string]struct{ doc, want string }{
		"not JSON":           {`[{`, "JSON array"},
		"an object":          {`{"repositories":["a"]}`, "JSON array"},
		"trailing data":      {`[] []`, "data after"},
		"unknown field":      {`[{"repositories":["a"],"imageTagMutability":"MUTABLE","imageTagMutabilty":"IMMUTABLE"}]`, `unknown field "imageTagMutabilty"`},
		"no repositories":    {`[{"imageTagMutability":"IMMUTABLE"}]`, "repositories: at least one"},
		"bad repository":     {`[{"repositories":["a/***"],"imageTagMutability":"IMMUTABLE"}]`, `"a/***"`},
		"no setting":         {rule(`"imageTagMutability":""`), "imageTagMutability is required"},
		"unknown setting":    {rule(`"imageTagMutability":"immutable"`), `imageTagMutability "immutable"`},
		"exclusion, no list": {rule(`"imageTagMutability":"IMMUTABLE_WITH_EXCLUSION"`), "needs imageTagMutabilityExclusionFilters"},
		"six filters": {rule(`"imageTagMutability":"MUTABLE_WITH_EXCLUSION","imageTagMutabilityExclusionFilters":[` +
			strings.Join([]string{wild("a"), wild("b"), wild("c"), wild("d"), wild("e"), wild("f")}, ",") + `]`), "at most 5"},
		"filters without exclusion": {rule(`"imageTagMutability":"IMMUTABLE","imageTagMutabilityExclusionFilters":[` + wild("latest") + `]`), "only for"},
		"filter type":               {rule(`"imageTagMutability":"IMMUTABLE_WITH_EXCLUSION","imageTagMutabilityExclusionFilters":[{"filterType":"REGEX","filter":"a"}]`), `filterType "REGEX"`},
		"filter character":          {rule(`"imageTagMutability":"IMMUTABLE_WITH_EXCLUSION","imageTagMutabilityExclusionFilters":[` + wild("a/b") + `]`), `filter "a/b"`},
		"filter empty":              {rule(`"imageTagMutability":"IMMUTABLE_WITH_EXCLUSION","imageTagMutabilityExclusionFilters":[` + wild("") + `]`), `filter ""`},
		"filter too long":           {rule(`"imageTagMutability":"IMMUTABLE_WITH_EXCLUSION","imageTagMutabilityExclusionFilters":[` + wild(strings.Repeat("a", 129)) + `]`), "1 to 128"},
	} {
		t.Run(name, func(t *testing.T) {
			r, err := Parse([]byte(c.doc))
			if err == nil {
				t.Fatalf("accepted: %+v", r)
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q: want ErrInvalid mentioning %q", err, c.want)
			}
		})
	}
}

// Every problem is reported at once, each naming its rule.
func TestParseReportsAll(t *testing.T) {
	_, err := Parse([]byte(`[{"repositories":["a"],"imageTagMutability":"IMMUTABLE"},
		{"repositories":[],"imageTagMutability":"X"}]`))
	for _, want := range []string{"rule 1: repositories", `rule 1: imageTagMutability "X"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
}
