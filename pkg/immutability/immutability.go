// Package immutability decides which tags may not move once pushed, per
// repository, with the settings of Amazon ECR's tag mutability
// (PutImageTagMutability): MUTABLE, IMMUTABLE, and the two settings with
// exclusion filters, IMMUTABLE_WITH_EXCLUSION and MUTABLE_WITH_EXCLUSION.
// Berth has no per-repository settings API, so the settings are one JSON
// document of rules that name repositories by pattern
// (docs/retention.md, "Tag immutability"):
//
//	[{"repositories": ["team/**"],
//	  "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
//	  "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "latest"}]}]
//
// The first rule whose repositories match a repository decides for it; a
// repository no rule matches has mutable tags, as a new ECR repository does.
package immutability

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"

	"github.com/berth-registry/berth/pkg/glob"
)

// The tag mutability settings (ECR's values of imageTagMutability).
const (
	Mutable                = "MUTABLE"                  // every tag may move
	Immutable              = "IMMUTABLE"                // no tag may move
	ImmutableWithExclusion = "IMMUTABLE_WITH_EXCLUSION" // no tag may move, except those the filters match
	MutableWithExclusion   = "MUTABLE_WITH_EXCLUSION"   // every tag may move, except those the filters match
)

// FilterWildcard is the only filter type ECR defines: `*` matches any run
// of characters (none included); everything else is literal.
const FilterWildcard = "WILDCARD"

// MaxFilters is ECR's limit of exclusion filters per setting (1 to 5).
const MaxFilters = 5

// filterRE is ECR's pattern for a filter: the characters of a tag, and `*`.
var filterRE = regexp.MustCompile(`^[0-9a-zA-Z._*-]{1,128}$`)

// ErrInvalid wraps every validation failure.
var ErrInvalid = errors.New("invalid tag immutability rules")

// Rule is one entry of the document: a tag mutability setting for the
// repositories it names (patterns as in the access policy: `*` within one
// `/`-separated segment, `**` across segments, `?` one character).
type Rule struct {
	Repositories                       []string `json:"repositories"`
	ImageTagMutability                 string   `json:"imageTagMutability"`
	ImageTagMutabilityExclusionFilters []Filter `json:"imageTagMutabilityExclusionFilters,omitempty"`
}

// Filter is an exclusion filter (ECR's ImageTagMutabilityExclusionFilter).
type Filter struct {
	FilterType string `json:"filterType"`
	Filter     string `json:"filter"`
}

// Rules are parsed, validated rules; a nil *Rules makes every tag mutable.
type Rules struct {
	rules []compiled
}

type compiled struct {
	repos     []glob.Pattern
	immutable bool           // the setting's default for tags
	except    []glob.Pattern // tags that get the opposite
}

// Parse decodes and validates a rules document: a JSON array of Rule.
// Unknown fields are errors (a misspelt field would otherwise leave tags
// mutable), and every problem is reported, each naming its rule.
func Parse(data []byte) (*Rules, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var raw []Rule
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%w: want a JSON array of rules: %w", ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the array of rules", ErrInvalid)
	}
	out := &Rules{}
	var errs []error
	for i, r := range raw {
		c, problems := r.compile()
		for _, err := range problems {
			errs = append(errs, fmt.Errorf("%w: rule %d: %w", ErrInvalid, i, err))
		}
		out.rules = append(out.rules, c)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// compile compiles r and returns every problem it has.
func (r Rule) compile() (compiled, []error) {
	var c compiled
	var errs []error
	if len(r.Repositories) == 0 {
		errs = append(errs, errors.New("repositories: at least one pattern is required"))
	}
	for _, p := range r.Repositories {
		g, err := glob.Path(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("repositories: %q: %w", p, err))
			continue
		}
		c.repos = append(c.repos, g)
	}
	withFilters := false
	switch r.ImageTagMutability {
	case Mutable:
	case Immutable:
		c.immutable = true
	case ImmutableWithExclusion:
		c.immutable, withFilters = true, true
	case MutableWithExclusion:
		withFilters = true
	case "":
		errs = append(errs, fmt.Errorf("imageTagMutability is required (%s, %s, %s or %s)", Mutable, Immutable, ImmutableWithExclusion, MutableWithExclusion))
	default:
		errs = append(errs, fmt.Errorf("imageTagMutability %q: want %s, %s, %s or %s", r.ImageTagMutability, Mutable, Immutable, ImmutableWithExclusion, MutableWithExclusion))
	}
	n := len(r.ImageTagMutabilityExclusionFilters)
	switch {
	case withFilters && n == 0:
		errs = append(errs, fmt.Errorf("%s needs imageTagMutabilityExclusionFilters (1 to %d)", r.ImageTagMutability, MaxFilters))
	case withFilters && n > MaxFilters:
		errs = append(errs, fmt.Errorf("%d exclusion filters; ECR allows at most %d", n, MaxFilters))
	case !withFilters && n > 0 && r.ImageTagMutability != "":
		errs = append(errs, fmt.Errorf("imageTagMutabilityExclusionFilters are only for %s and %s, not %s", ImmutableWithExclusion, MutableWithExclusion, r.ImageTagMutability))
	}
	for _, f := range r.ImageTagMutabilityExclusionFilters {
		if f.FilterType != FilterWildcard {
			errs = append(errs, fmt.Errorf("filterType %q: want %s", f.FilterType, FilterWildcard))
		}
		if !filterRE.MatchString(f.Filter) {
			errs = append(errs, fmt.Errorf("filter %q: want 1 to 128 of the characters 0-9 a-z A-Z . _ - and *", f.Filter))
			continue
		}
		// A tag has no `/` and a filter no `?`, so a path pattern's `*`
		// is exactly ECR's wildcard here.
		g, err := glob.Path(f.Filter)
		if err != nil {
			errs = append(errs, fmt.Errorf("filter %q: %w", f.Filter, err))
			continue
		}
		c.except = append(c.except, g)
	}
	return c, errs
}

// Immutable reports whether tag of repo may not move once pushed: the
// setting of the first rule that names repo, turned around for tags its
// exclusion filters match. No rule: mutable.
func (r *Rules) Immutable(repo, tag string) bool {
	if r == nil {
		return false
	}
	for _, c := range r.rules {
		if !matchAny(c.repos, repo) {
			continue
		}
		return c.immutable != matchAny(c.except, tag)
	}
	return false
}

func matchAny(ps []glob.Pattern, s string) bool {
	for _, p := range ps {
		if p.Match(s) {
			return true
		}
	}
	return false
}
