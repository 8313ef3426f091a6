package retention

import (
	"sort"
	"strings"
	"time"
)

// Image is what a rule looks at: one manifest of a repository.
type Image struct {
	Digest   string
	Tags     []string
	PushedAt time.Time
	// LastPulledAt is the last recorded pull; zero: never pulled, which
	// sinceImagePulled counts from PushedAt.
	LastPulledAt time.Time
}

// lastPulled is when sinceImagePulled counts img from: its last recorded
// pull, or its push when none was recorded.
func (img Image) lastPulled() time.Time {
	if img.LastPulledAt.After(img.PushedAt) {
		return img.LastPulledAt
	}
	return img.PushedAt
}

// Expiry is an image a policy expires and the rule that expires it.
type Expiry struct {
	Image
	Rule Rule
}

// Evaluate returns the images the policy expires, oldest first. It follows
// ECR's lifecycle policy evaluation rules:
//
//   - every rule is evaluated against all images at once; a rule selects
//     the images that match its tagStatus and tag list and marks, among
//     them, the ones beyond countNumber (imageCountMoreThan: images sorted
//     youngest to oldest, the first countNumber kept), pushed more than
//     countNumber days before now (sinceImagePushed), or last pulled more
//     than countNumber days before now, an image never pulled counting
//     from its push (sinceImagePulled);
//   - an image belongs to the rule with the lowest rulePriority that
//     selects it: it is expired only when that rule marks it. A lower
//     priority rule still counts it ("identifies" it) but cannot expire it.
//     So an image is expired by exactly one or zero rules;
//   - with tagPrefixList / tagPatternList, an image matches when every entry
//     of the list matches at least one of its tags.
//
// p must come from Parse. Ties in push time are broken by digest, so the
// result does not depend on the order of images.
func Evaluate(p *Policy, images []Image, now time.Time) []Expiry {
	sorted := make([]Image, len(images))
	copy(sorted, images)
	// Youngest first: the order imageCountMoreThan keeps in.
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if !a.PushedAt.Equal(b.PushedAt) {
			return a.PushedAt.After(b.PushedAt)
		}
		return a.Digest > b.Digest
	})
	owner := make([]int, len(sorted)) // index into p.Rules, -1: no rule selects it
	marked := make([][]bool, len(p.Rules))
	for i := range owner {
		owner[i] = -1
	}
	for ri, r := range p.Rules {
		marked[ri] = make([]bool, len(sorted))
		kept := 0
		for i, img := range sorted {
			if !r.Selection.selects(img) {
				continue
			}
			if owner[i] < 0 {
				owner[i] = ri
			}
			switch r.Selection.CountType {
			case CountImageCountMoreThan:
				if kept < r.Selection.CountNumber {
					kept++
				} else {
					marked[ri][i] = true
				}
			case CountSinceImagePushed:
				cutoff := now.Add(-time.Duration(r.Selection.CountNumber) * 24 * time.Hour)
				marked[ri][i] = img.PushedAt.Before(cutoff)
			case CountSinceImagePulled:
				cutoff := now.Add(-time.Duration(r.Selection.CountNumber) * 24 * time.Hour)
				marked[ri][i] = img.lastPulled().Before(cutoff)
			}
		}
	}
	var out []Expiry
	for i := len(sorted) - 1; i >= 0; i-- { // oldest first
		if ri := owner[i]; ri >= 0 && marked[ri][i] {
			out = append(out, Expiry{Image: sorted[i], Rule: p.Rules[ri]})
		}
	}
	return out
}

// selects reports whether the rule's tag selection matches img.
func (s Selection) selects(img Image) bool {
	switch s.TagStatus {
	case TagStatusAny:
		return true
	case TagStatusUntagged:
		return len(img.Tags) == 0
	case TagStatusTagged:
		if len(img.Tags) == 0 {
			return false
		}
		if s.TagPatternList != nil {
			return all(s.TagPatternList, img.Tags, matchPattern)
		}
		return all(s.TagPrefixList, img.Tags, strings.HasPrefix)
	}
	return false
}

// all reports whether every entry matches at least one tag.
func all(list, tags []string, match func(tag, entry string) bool) bool {
	for _, e := range list {
		found := false
		for _, t := range tags {
			if match(t, e) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// matchPattern matches tag against an ECR tag pattern: `*` stands for any
// run of characters (also none); everything else is literal.
func matchPattern(tag, pattern string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return tag == pattern
	}
	if !strings.HasPrefix(tag, parts[0]) {
		return false
	}
	tag = tag[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(tag, mid)
		if i < 0 {
			return false
		}
		tag = tag[i+len(mid):]
	}
	return len(tag) >= len(last) && strings.HasSuffix(tag, last)
}
