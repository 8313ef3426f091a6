package retention

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func daysAgo(d float64) time.Time { return now.Add(-time.Duration(d * 24 * float64(time.Hour))) }

func img(digest string, age float64, tags ...string) Image {
	return Image{Digest: digest, Tags: tags, PushedAt: daysAgo(age)}
}

// pulledAt sets the image's last recorded pull, days before now.
func pulledAt(i Image, days float64) Image {
	i.LastPulledAt = daysAgo(days)
	return i
}

func mustParse(t *testing.T, doc string) *Policy {
	t.Helper()
	p, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// expired renders Evaluate's result as "digest/rule" pairs, oldest first.
func expired(p *Policy, images []Image) string {
	var out []string
	for _, e := range Evaluate(p, images, now) {
		out = append(out, fmt.Sprintf("%s/%d", e.Digest, e.Rule.RulePriority))
	}
	return strings.Join(out, " ")
}

func TestEvaluate(t *testing.T) {
	// Repositories and policies from ECR's "Examples of lifecycle
	// policies" (lifecycle_policy_examples.md), then Berth's own cases.
	ecrMulti := []Image{
		img("A", 10, "beta-1", "prod-1"),
		img("B", 9, "beta-2", "prod-2"),
		img("C", 8, "beta-3"),
	}
	ecrMultiTag := []Image{
		img("A", 12, "alpha-1"),
		img("B", 11, "beta-1"),
		img("C", 10, "alpha-2", "beta-2"),
		img("D", 4, "alpha-3"),
		img("E", 3, "beta-3"),
		img("F", 2, "alpha-4", "beta-4"),
	}
	count := func(n int) string { return fmt.Sprintf(`"countType":"imageCountMoreThan","countNumber":%d`, n) }
	age := func(days int) string {
		return fmt.Sprintf(`"countType":"sinceImagePushed","countUnit":"days","countNumber":%d`, days)
	}
	pulled := func(days int) string {
		return fmt.Sprintf(`"countType":"sinceImagePulled","countUnit":"days","countNumber":%d`, days)
	}
	for _, tc := range []struct {
		name   string
		policy string
		images []Image
		want   string
	}{{
		// Rule 1 marks A; rule 2 marks A and B, but B matches rule 1's
		// tags, so rule 2 cannot expire it. Result: A.
		name: "ECR multiple rules, example A",
		policy: policy(
			rule(1, `"tagStatus":"tagged","tagPrefixList":["prod"],`+count(1)),
			rule(2, `"tagStatus":"tagged","tagPrefixList":["beta"],`+count(1))),
		images: ecrMulti,
		want:   "A/1",
	}, {
		// The same with tagPatternList, as the current ECR page writes it.
		name: "ECR multiple rules, example A with patterns",
		policy: policy(
			rule(1, `"tagStatus":"tagged","tagPatternList":["prod*"],`+count(1)),
			rule(2, `"tagStatus":"tagged","tagPatternList":["beta*"],`+count(1))),
		images: ecrMulti,
		want:   "A/1",
	}, {
		// Rule 1 (beta) sees all three and marks A and B; rule 2 sees
		// nothing rule 1 has not already seen. Result: A and B.
		name: "ECR multiple rules, example B",
		policy: policy(
			rule(1, `"tagStatus":"tagged","tagPrefixList":["beta"],`+count(1)),
			rule(2, `"tagStatus":"tagged","tagPrefixList":["prod"],`+count(1))),
		images: ecrMulti,
		want:   "A/1 B/1",
	}, {
		// Images must match every prefix: C and F; C is older than 5 days.
		name:   "ECR multiple tags in one rule, example A",
		policy: policy(rule(1, `"tagStatus":"tagged","tagPrefixList":["alpha","beta"],`+age(5))),
		images: ecrMultiTag,
		want:   "C/1",
	}, {
		// Tags are not exclusive: all three match alpha and beta; keep one.
		name:   "ECR multiple tags in one rule, example B",
		policy: policy(rule(1, `"tagStatus":"tagged","tagPrefixList":["alpha","beta"],`+count(1))),
		images: []Image{img("A", 10, "alpha-1", "beta-1", "gamma-1"), img("B", 9, "alpha-2", "beta-2"), img("C", 8, "alpha-3", "beta-3", "gamma-2")},
		want:   "A/1 B/1",
	}, {
		name:   "ECR image count: keep one untagged image",
		policy: policy(rule(1, `"tagStatus":"untagged",`+count(1))),
		images: []Image{img("u1", 3), img("u2", 2), img("u3", 1), img("t", 9, "v1")},
		want:   "u1/1 u2/1",
	}, {
		name:   "ECR image age: prod* older than 14 days",
		policy: policy(rule(1, `"tagStatus":"tagged","tagPatternList":["prod*"],`+age(14))),
		images: []Image{img("old", 15, "prod"), img("young", 13, "prod1"), img("other", 30, "dev")},
		want:   "old/1",
	}, {
		// Exactly countNumber days old is not "older than".
		name:   "age boundary",
		policy: policy(rule(1, `"tagStatus":"any",`+age(7))),
		images: []Image{img("edge", 7), img("past", 7.0001)},
		want:   "past/1",
	}, {
		name:   "count keeps exactly N",
		policy: policy(rule(1, `"tagStatus":"any",`+count(3))),
		images: []Image{img("a", 1), img("b", 2), img("c", 3)},
		want:   "",
	}, {
		// Untagged images are owned by the untagged rule; the any rule
		// still counts them, but only expires the tagged ones.
		name: "untagged then any",
		policy: policy(
			rule(1, `"tagStatus":"untagged",`+age(30)),
			rule(2, `"tagStatus":"any",`+count(2))),
		images: []Image{img("u-new", 1), img("t1", 2, "v3"), img("t2", 3, "v2"), img("t3", 4, "v1"), img("u-old", 40)},
		want:   "u-old/1 t3/2 t2/2",
	}, {
		// A rule protecting releases (huge count) keeps them from the any rule.
		name: "keep rule protects from later rules",
		policy: policy(
			rule(1, `"tagStatus":"tagged","tagPatternList":["v*.*.*"],`+count(9999)),
			rule(2, `"tagStatus":"any",`+age(1))),
		images: []Image{img("rel", 100, "v1.2.3"), img("dev", 100, "main-abc"), img("u", 100)},
		want:   "dev/2 u/2",
	}, {
		name:   "pattern wildcards in the middle",
		policy: policy(rule(1, `"tagStatus":"tagged","tagPatternList":["*-rc*"],`+count(1))),
		images: []Image{img("a", 3, "1.0-rc1"), img("b", 2, "2.0-rc2"), img("c", 1, "rc3"), img("d", 4, "1.0")},
		want:   "a/1",
	}, {
		// Every pattern must match some tag of the image.
		name:   "patterns all must match",
		policy: policy(rule(1, `"tagStatus":"tagged","tagPatternList":["prod*","*-amd64"],`+age(1))),
		images: []Image{img("both", 5, "prod-1", "x-amd64"), img("one", 5, "prod-2"), img("single", 5, "prod-amd64")},
		want:   "both/1 single/1",
	}, {
		name:   "pattern without wildcard is exact",
		policy: policy(rule(1, `"tagStatus":"tagged","tagPatternList":["latest"],`+age(1))),
		images: []Image{img("exact", 5, "latest"), img("longer", 5, "latest-1")},
		want:   "exact/1",
	}, {
		name:   "tagged never selects untagged",
		policy: policy(rule(1, `"tagStatus":"tagged","tagPatternList":["*"],`+count(1))),
		images: []Image{img("u1", 9), img("u2", 8), img("t1", 2, "a"), img("t2", 1, "b")},
		want:   "t1/1",
	}, {
		// Same push time: the digest breaks the tie, whatever the order.
		name:   "tie broken by digest",
		policy: policy(rule(1, `"tagStatus":"any",`+count(1))),
		images: []Image{img("b", 1), img("a", 1), img("c", 1)},
		want:   "a/1 b/1",
	}, {
		// Last pulled more than 30 days ago, or never pulled and pushed
		// more than 30 days ago; pushed long ago but pulled last week
		// stays, and so does an image pushed yesterday, never pulled.
		name:   "sinceImagePulled",
		policy: policy(rule(1, `"tagStatus":"any",`+pulled(30))),
		images: []Image{
			pulledAt(img("stale", 90, "v1"), 31), pulledAt(img("used", 90, "v2"), 7),
			img("never-old", 40), img("never-new", 1, "v3"), pulledAt(img("edge", 60), 29.9),
		},
		want: "stale/1 never-old/1",
	}, {
		// Rules of both kinds: the first that selects an image owns it.
		// Releases are kept while pulled in the last 90 days, other tagged
		// images while pulled in the last 14, untagged ones for 7 days.
		name: "sinceImagePulled with other rules",
		policy: policy(
			rule(1, `"tagStatus":"tagged","tagPatternList":["v*"],`+pulled(90)),
			rule(2, `"tagStatus":"untagged",`+age(7)),
			rule(3, `"tagStatus":"any",`+pulled(14))),
		images: []Image{
			pulledAt(img("old-release", 400, "v1"), 60), pulledAt(img("dead-release", 400, "v0"), 100),
			pulledAt(img("branch", 30, "main-1"), 20), pulledAt(img("hot-branch", 30, "main-2"), 1),
			pulledAt(img("untagged-pulled", 10), 1),
		},
		want: "dead-release/1 branch/3 untagged-pulled/2",
	}, {
		name:   "empty repository",
		policy: policy(rule(1, `"tagStatus":"any",`+count(1))),
		images: nil,
		want:   "",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustParse(t, tc.policy)
			if got := expired(p, tc.images); got != tc.want {
				t.Errorf("expired %q, want %q", got, tc.want)
			}
			rev := slices.Clone(tc.images)
			slices.Reverse(rev)
			if got := expired(p, rev); got != tc.want {
				t.Errorf("reversed input: expired %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMatchPattern(t *testing.T) {
	for _, tc := range []struct {
		tag, pattern string
		want         bool
	}{
		{"prod", "prod*", true},
		{"prod1", "prod*", true},
		{"pro", "prod*", false},
		{"x-prod", "prod*", false},
		{"x-prod", "*prod", true},
		{"abc", "a*b*c", true},
		{"ac", "a*b*c", false},
		{"abbc", "a*b*c", true},
		{"abc", "a*bc*c", false},
		{"abcc", "a*bc*c", true},
		{"anything", "*", true},
		{"", "*", true},
		{"v1.2.3", "v*.*.*", true},
		{"v1.2", "v*.*.*", false},
		{"test-1-2-3", "*test*1*2*3", true},
		{"a", "**", true},
	} {
		if got := matchPattern(tc.tag, tc.pattern); got != tc.want {
			t.Errorf("matchPattern(%q, %q) = %v, want %v", tc.tag, tc.pattern, got, tc.want)
		}
	}
}

func BenchmarkEvaluate(b *testing.B) {
	p, err := Parse([]byte(policy(
		rule(1, `"tagStatus":"tagged","tagPatternList":["v*.*.*"],"countType":"imageCountMoreThan","countNumber":50`),
		rule(2, `"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7`),
		rule(3, `"tagStatus":"any","countType":"imageCountMoreThan","countNumber":200`))))
	if err != nil {
		b.Fatal(err)
	}
	images := make([]Image, 10000)
	for i := range images {
		images[i] = img(fmt.Sprintf("sha256:%064d", i), float64(i)/100)
		if i%3 == 0 {
			images[i].Tags = []string{fmt.Sprintf("v1.%d.0", i), fmt.Sprintf("main-%d", i)}
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		Evaluate(p, images, now)
	}
}
