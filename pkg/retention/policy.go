// Package retention applies Amazon ECR lifecycle policies to a Berth
// registry, so teams reuse the policies they already have (docs/retention.md).
//
// Parse reads and validates the policy JSON, Evaluate decides which images
// a policy expires (pure logic, ECR's documented semantics), and Apply runs
// a policy over every repository through pkg/meta. docs/retention.md lists
// where Berth differs from ECR.
package retention

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
)

// Values of the policy fields (ECR's names).
const (
	TagStatusTagged   = "tagged"
	TagStatusUntagged = "untagged"
	TagStatusAny      = "any"

	CountImageCountMoreThan     = "imageCountMoreThan"
	CountSinceImagePushed       = "sinceImagePushed"
	CountSinceImagePulled       = "sinceImagePulled"
	CountSinceImageTransitioned = "sinceImageTransitioned"

	UnitDays     = "days"
	ActionExpire = "expire"
)

// MaxPolicyBytes is ECR's limit on lifecycle policy text (30720 characters).
const MaxPolicyBytes = 30720

// maxWildcards is ECR's limit of `*` per tagPatternList entry.
const maxWildcards = 4

// ErrInvalid wraps every validation failure.
var ErrInvalid = errors.New("invalid lifecycle policy")

// ErrUnsupported wraps the ECR features Berth does not implement yet.
var ErrUnsupported = errors.New("not supported yet")

// Policy is a parsed, validated lifecycle policy. Rules are sorted by
// RulePriority, lowest (applied first) to highest.
type Policy struct {
	Rules []Rule `json:"rules"`
}

// Rule is one lifecycle policy rule.
type Rule struct {
	RulePriority int       `json:"rulePriority"`
	Description  string    `json:"description,omitempty"`
	Selection    Selection `json:"selection"`
	Action       Action    `json:"action"`
}

// Selection chooses the images a rule considers and how many it keeps.
type Selection struct {
	TagStatus      string   `json:"tagStatus"`
	TagPrefixList  []string `json:"tagPrefixList,omitempty"`
	TagPatternList []string `json:"tagPatternList,omitempty"`
	StorageClass   string   `json:"storageClass,omitempty"`
	CountType      string   `json:"countType"`
	CountUnit      string   `json:"countUnit,omitempty"`
	CountNumber    int      `json:"countNumber"`
}

// Action is what a rule does to the images it marks.
type Action struct {
	Type               string `json:"type"`
	TargetStorageClass string `json:"targetStorageClass,omitempty"`
}

// wire mirrors the JSON with pointers, so "absent" and "zero" differ.
type wire struct {
	Rules *[]wireRule `json:"rules"`
}

type wireRule struct {
	RulePriority *int     `json:"rulePriority"`
	Description  string   `json:"description"`
	Selection    *wireSel `json:"selection"`
	Action       *Action  `json:"action"`
}

type wireSel struct {
	TagStatus      string    `json:"tagStatus"`
	TagPrefixList  *[]string `json:"tagPrefixList"`
	TagPatternList *[]string `json:"tagPatternList"`
	StorageClass   string    `json:"storageClass"`
	CountType      string    `json:"countType"`
	CountUnit      *string   `json:"countUnit"`
	CountNumber    *int      `json:"countNumber"`
}

// Parse decodes and validates a lifecycle policy. Unknown fields are
// errors (a misspelt field would otherwise change what gets deleted); every
// problem is reported, each naming its rule.
func Parse(data []byte) (*Policy, error) {
	if len(data) > MaxPolicyBytes {
		return nil, fmt.Errorf("%w: %d bytes, ECR's limit is %d", ErrInvalid, len(data), MaxPolicyBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var w wire
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the policy object", ErrInvalid)
	}
	if w.Rules == nil || len(*w.Rules) == 0 {
		return nil, fmt.Errorf("%w: rules: at least one rule is required", ErrInvalid)
	}
	var errs []error
	p := &Policy{}
	for i, wr := range *w.Rules {
		r, err := wr.rule(i)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.Rules = append(p.Rules, r)
	}
	if len(errs) == 0 {
		errs = append(errs, p.checkSet()...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// rule validates one rule on its own.
func (wr wireRule) rule(i int) (Rule, error) {
	name := fmt.Sprintf("rules[%d]", i)
	if wr.RulePriority != nil {
		name = fmt.Sprintf("rule %d", *wr.RulePriority)
	}
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalid, name, fmt.Sprintf(format, a...)))
	}
	unsupported := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s %w", ErrInvalid, name, fmt.Sprintf(format, a...), ErrUnsupported))
	}
	r := Rule{Description: wr.Description}
	switch {
	case wr.RulePriority == nil:
		bad("rulePriority is required")
	case *wr.RulePriority < 1:
		bad("rulePriority must be a positive integer, got %d", *wr.RulePriority)
	default:
		r.RulePriority = *wr.RulePriority
	}
	if wr.Action == nil {
		bad("action is required")
	} else {
		switch wr.Action.Type {
		case ActionExpire:
			if wr.Action.TargetStorageClass != "" {
				bad("action.targetStorageClass is only for transition actions")
			}
		case "transition":
			unsupported("action.type transition (archive storage) is")
		case "":
			bad("action.type is required (expire)")
		default:
			bad("action.type %q: want expire", wr.Action.Type)
		}
		r.Action = *wr.Action
	}
	s := wr.Selection
	if s == nil {
		bad("selection is required")
		return r, errors.Join(errs...)
	}
	prefixes, patterns := s.TagPrefixList != nil, s.TagPatternList != nil
	switch s.TagStatus {
	case TagStatusTagged:
		switch {
		case prefixes && patterns:
			bad("tagPrefixList and tagPatternList cannot both be set")
		case !prefixes && !patterns:
			bad(`tagStatus "tagged" needs a tagPrefixList or a tagPatternList`)
		case prefixes && len(*s.TagPrefixList) == 0:
			bad("tagPrefixList is empty")
		case patterns && len(*s.TagPatternList) == 0:
			bad("tagPatternList is empty")
		}
	case TagStatusUntagged, TagStatusAny:
		if prefixes || patterns {
			bad("tagPrefixList and tagPatternList are only allowed with tagStatus \"tagged\", not %q", s.TagStatus)
		}
	case "":
		bad("selection.tagStatus is required (tagged, untagged or any)")
	default:
		bad("selection.tagStatus %q: want tagged, untagged or any", s.TagStatus)
	}
	if prefixes {
		for _, v := range *s.TagPrefixList {
			if v == "" {
				bad("tagPrefixList has an empty prefix")
			}
		}
		r.Selection.TagPrefixList = *s.TagPrefixList
	}
	if patterns {
		for _, v := range *s.TagPatternList {
			switch {
			case v == "":
				bad("tagPatternList has an empty pattern")
			case strings.Count(v, "*") > maxWildcards:
				bad("tagPatternList entry %q has %d wildcards, at most %d are allowed", v, strings.Count(v, "*"), maxWildcards)
			}
		}
		r.Selection.TagPatternList = *s.TagPatternList
	}
	switch s.StorageClass {
	case "", "standard":
	case "archive":
		unsupported("storageClass archive is")
	default:
		bad("selection.storageClass %q: want standard", s.StorageClass)
	}
	switch s.CountType {
	case CountImageCountMoreThan:
		if s.CountUnit != nil {
			bad("countUnit is only allowed with countType sinceImagePushed or sinceImagePulled")
		}
	case CountSinceImagePushed, CountSinceImagePulled:
		// ECR takes sinceImagePulled with the transition action only (to
		// archive storage); Berth has no archive, so it expires
		// (docs/retention.md, "Where Berth differs from ECR").
		if s.CountUnit == nil {
			bad(`countUnit is required with countType %s ("days")`, s.CountType)
		} else if *s.CountUnit != UnitDays {
			bad("countUnit %q: want days", *s.CountUnit)
		}
	case CountSinceImageTransitioned:
		unsupported("countType sinceImageTransitioned (archive storage) is")
	case "":
		bad("selection.countType is required (imageCountMoreThan, sinceImagePushed or sinceImagePulled)")
	default:
		bad("selection.countType %q: want imageCountMoreThan, sinceImagePushed or sinceImagePulled", s.CountType)
	}
	switch {
	case s.CountNumber == nil:
		bad("selection.countNumber is required")
	case *s.CountNumber < 1:
		bad("selection.countNumber must be a positive integer, got %d", *s.CountNumber)
	default:
		r.Selection.CountNumber = *s.CountNumber
	}
	r.Selection.TagStatus = s.TagStatus
	r.Selection.StorageClass = s.StorageClass
	r.Selection.CountType = s.CountType
	if s.CountUnit != nil {
		r.Selection.CountUnit = *s.CountUnit
	}
	return r, errors.Join(errs...)
}

// checkSet validates the rules together and sorts them by priority.
func (p *Policy) checkSet() []error {
	var errs []error
	sort.SliceStable(p.Rules, func(i, j int) bool { return p.Rules[i].RulePriority < p.Rules[j].RulePriority })
	untagged, lists := 0, map[string]int{}
	for i, r := range p.Rules {
		if i > 0 && p.Rules[i-1].RulePriority == r.RulePriority {
			errs = append(errs, fmt.Errorf("%w: rulePriority %d is used by more than one rule", ErrInvalid, r.RulePriority))
		}
		switch r.Selection.TagStatus {
		case TagStatusAny:
			if i != len(p.Rules)-1 {
				errs = append(errs, fmt.Errorf("%w: rule %d: a rule with tagStatus \"any\" must have the highest rulePriority (rule %d comes after it)",
					ErrInvalid, r.RulePriority, p.Rules[len(p.Rules)-1].RulePriority))
			}
		case TagStatusUntagged:
			if untagged++; untagged == 2 {
				errs = append(errs, fmt.Errorf("%w: rule %d: only one rule may select untagged images", ErrInvalid, r.RulePriority))
			}
		case TagStatusTagged:
			key := listKey(r.Selection)
			if prev, dup := lists[key]; dup {
				errs = append(errs, fmt.Errorf("%w: rule %d selects the same tags as rule %d (rules must have a unique set of tag prefixes)", ErrInvalid, r.RulePriority, prev))
			} else {
				lists[key] = r.RulePriority
			}
		}
	}
	return errs
}

// listKey identifies a rule's tag list regardless of order and duplicates.
func listKey(s Selection) string {
	kind, l := "prefix", s.TagPrefixList
	if s.TagPatternList != nil {
		kind, l = "pattern", s.TagPatternList
	}
	l = slices.Clone(l)
	slices.Sort(l)
	return kind + "\x00" + strings.Join(slices.Compact(l), "\x00")
}

// String renders the policy as ECR lifecycle policy JSON.
func (p *Policy) String() string {
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Sprintf("retention.Policy(%v)", err)
	}
	return string(b)
}
