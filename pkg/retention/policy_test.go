package retention

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rule renders one rule's JSON for the tables below.
func rule(prio int, selection string) string {
	return `{"rulePriority":` + strconv.Itoa(prio) + `,"selection":{` + selection + `},"action":{"type":"expire"}}`
}

func policy(rules ...string) string { return `{"rules":[` + strings.Join(rules, ",") + `]}` }

func TestParseValid(t *testing.T) {
	for name, doc := range map[string]string{
		"ECR age example":   `{"rules":[{"rulePriority":1,"description":"Expire images older than 14 days","selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":14},"action":{"type":"expire"}}]}`,
		"ECR count example": `{"rules":[{"rulePriority":1,"description":"Keep only one untagged image, expire all others","selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}`,
		"pattern, untagged and any": policy(
			rule(10, `"tagStatus":"tagged","tagPatternList":["prod*","*-rc*"],"countType":"imageCountMoreThan","countNumber":5`),
			rule(20, `"tagStatus":"tagged","tagPrefixList":["dev-"],"countType":"sinceImagePushed","countUnit":"days","countNumber":7`),
			rule(990, `"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":1`),
			rule(1000, `"tagStatus":"any","storageClass":"standard","countType":"imageCountMoreThan","countNumber":100`),
		),
		"four wildcards": policy(rule(1, `"tagStatus":"tagged","tagPatternList":["*test*1*2*3","test*1*2*3*"],"countType":"imageCountMoreThan","countNumber":1`)),
	} {
		t.Run(name, func(t *testing.T) {
			p, err := Parse([]byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			// What String renders parses back to the same policy.
			q, err := Parse([]byte(p.String()))
			if err != nil || q.String() != p.String() {
				t.Errorf("round trip: %v\n%s\n%s", err, p, q)
			}
		})
	}
}

func TestParseSortsByPriority(t *testing.T) {
	p, err := Parse([]byte(policy(
		rule(7, `"tagStatus":"any","countType":"imageCountMoreThan","countNumber":3`),
		rule(2, `"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1`),
		rule(5, `"tagStatus":"tagged","tagPrefixList":["v"],"countType":"imageCountMoreThan","countNumber":2`),
	)))
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, r := range p.Rules {
		got = append(got, r.RulePriority)
	}
	if len(got) != 3 || got[0] != 2 || got[1] != 5 || got[2] != 7 {
		t.Errorf("priorities %v, want [2 5 7]", got)
	}
}

func TestParseInvalid(t *testing.T) {
	count := `"countType":"imageCountMoreThan","countNumber":1`
	for _, tc := range []struct {
		name, doc, want string
		unsupported     bool
	}{
		{"not JSON", `{"rules":`, "unexpected EOF", false},
		{"trailing data", policy(rule(1, `"tagStatus":"any",`+count)) + `{}`, "data after", false},
		{"no rules", `{"rules":[]}`, "at least one rule", false},
		{"rules missing", `{}`, "at least one rule", false},
		{"unknown field", `{"rules":[],"x":1}`, `unknown field "x"`, false},
		{"misspelt selection field", policy(rule(1, `"tagStatus":"any","countTyp":"imageCountMoreThan","countNumber":1`)), `unknown field "countTyp"`, false},
		{"priority missing", `{"rules":[{"selection":{"tagStatus":"any",` + count + `},"action":{"type":"expire"}}]}`, "rulePriority is required", false},
		{"priority zero", policy(rule(0, `"tagStatus":"any",`+count)), "rulePriority must be a positive integer", false},
		{"priority duplicate", policy(rule(1, `"tagStatus":"untagged",`+count), rule(1, `"tagStatus":"tagged","tagPrefixList":["a"],`+count)), "rulePriority 1 is used by more than one rule", false},
		{"selection missing", `{"rules":[{"rulePriority":1,"action":{"type":"expire"}}]}`, "selection is required", false},
		{"action missing", `{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any",` + count + `}}]}`, "action is required", false},
		{"action unknown", `{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any",` + count + `},"action":{"type":"delete"}}]}`, `action.type "delete"`, false},
		{"action transition", `{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any",` + count + `},"action":{"type":"transition","targetStorageClass":"archive"}}]}`, "transition", true},
		{"tagStatus missing", policy(rule(1, count)), "tagStatus is required", false},
		{"tagStatus unknown", policy(rule(1, `"tagStatus":"TAGGED",`+count)), `tagStatus "TAGGED"`, false},
		{"tagged without list", policy(rule(1, `"tagStatus":"tagged",`+count)), "needs a tagPrefixList or a tagPatternList", false},
		{"tagged with both lists", policy(rule(1, `"tagStatus":"tagged","tagPrefixList":["a"],"tagPatternList":["a*"],`+count)), "cannot both be set", false},
		{"tagged empty list", policy(rule(1, `"tagStatus":"tagged","tagPrefixList":[],`+count)), "tagPrefixList is empty", false},
		{"empty prefix", policy(rule(1, `"tagStatus":"tagged","tagPrefixList":[""],`+count)), "empty prefix", false},
		{"untagged with list", policy(rule(1, `"tagStatus":"untagged","tagPrefixList":["a"],`+count)), `only allowed with tagStatus "tagged"`, false},
		{"any with pattern", policy(rule(1, `"tagStatus":"any","tagPatternList":["a*"],`+count)), `only allowed with tagStatus "tagged"`, false},
		{"five wildcards", policy(rule(1, `"tagStatus":"tagged","tagPatternList":["test*1*2*3*4*5*6"],`+count)), "at most 4", false},
		{"countType missing", policy(rule(1, `"tagStatus":"any","countNumber":1`)), "countType is required", false},
		{"countType unknown", policy(rule(1, `"tagStatus":"any","countType":"imageCountLessThan","countNumber":1`)), `countType "imageCountLessThan"`, false},
		// ECR's own form of a pull rule (archive it) is not Berth's.
		{"sinceImagePulled transition", `{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"sinceImagePulled","countUnit":"days","countNumber":90},"action":{"type":"transition","targetStorageClass":"archive"}}]}`, "transition", true},
		{"sinceImagePulled without unit", policy(rule(1, `"tagStatus":"any","countType":"sinceImagePulled","countNumber":30`)), "countUnit is required with countType sinceImagePulled", false},
		{"sinceImageTransitioned", policy(rule(1, `"tagStatus":"any","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":30`)), "sinceImageTransitioned", true},
		{"archive storage class", policy(rule(1, `"tagStatus":"any","storageClass":"archive",`+count)), "storageClass archive", true},
		{"countUnit missing", policy(rule(1, `"tagStatus":"any","countType":"sinceImagePushed","countNumber":1`)), "countUnit is required", false},
		{"countUnit hours", policy(rule(1, `"tagStatus":"any","countType":"sinceImagePushed","countUnit":"hours","countNumber":1`)), `countUnit "hours"`, false},
		{"countUnit with count", policy(rule(1, `"tagStatus":"any","countType":"imageCountMoreThan","countUnit":"days","countNumber":1`)), "countUnit is only allowed", false},
		{"countNumber missing", policy(rule(1, `"tagStatus":"any","countType":"imageCountMoreThan"`)), "countNumber is required", false},
		{"countNumber zero", policy(rule(1, `"tagStatus":"any","countType":"imageCountMoreThan","countNumber":0`)), "countNumber must be a positive integer", false},
		{"countNumber fraction", policy(rule(1, `"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1.5`)), "cannot unmarshal", false},
		{"any not last", policy(rule(1, `"tagStatus":"any",`+count), rule(2, `"tagStatus":"untagged",`+count)), `"any" must have the highest rulePriority`, false},
		{"two untagged rules", policy(rule(1, `"tagStatus":"untagged",`+count), rule(2, `"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":3`)), "only one rule may select untagged", false},
		{"same prefixes twice", policy(rule(1, `"tagStatus":"tagged","tagPrefixList":["a","b"],`+count), rule(2, `"tagStatus":"tagged","tagPrefixList":["b","a"],`+count)), "selects the same tags as rule 1", false},
		{"too large", `{"rules":[` + strings.Repeat(" ", MaxPolicyBytes) + `]}`, "ECR's limit", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.doc))
			if err == nil {
				t.Fatalf("accepted: %s", p)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			if errors.Is(err, ErrUnsupported) != tc.unsupported {
				t.Errorf("errors.Is(ErrUnsupported) = %v, want %v: %v", !tc.unsupported, tc.unsupported, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// Every problem is reported at once, each naming its rule.
func TestParseReportsAll(t *testing.T) {
	_, err := Parse([]byte(policy(
		rule(3, `"tagStatus":"tagged","countType":"imageCountMoreThan","countNumber":0`),
		rule(4, `"tagStatus":"any","countType":"sinceImageTransitioned","countUnit":"days","countNumber":9`),
	)))
	for _, want := range []string{"rule 3: tagStatus \"tagged\" needs", "rule 3: selection.countNumber must be", "rule 4: countType sinceImageTransitioned"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(policy(rule(1, `"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"sinceImagePushed","countUnit":"days","countNumber":14`)))
	f.Add(policy(rule(1, `"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1`), rule(2, `"tagStatus":"any","countType":"imageCountMoreThan","countNumber":3`)))
	f.Add(`{"rules":[{"rulePriority":-1}]}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, doc string) {
		p, err := Parse([]byte(doc))
		if err != nil {
			if p != nil || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) = %v, %v", doc, p, err)
			}
			return
		}
		// An accepted policy keeps the invariants Evaluate relies on, and
		// its rendering is accepted again.
		for i, r := range p.Rules {
			if r.RulePriority < 1 || r.Selection.CountNumber < 1 || (i > 0 && p.Rules[i-1].RulePriority >= r.RulePriority) {
				t.Fatalf("accepted %q with rule %+v", doc, r)
			}
			if r.Selection.TagStatus == TagStatusAny && i != len(p.Rules)-1 {
				t.Fatalf("accepted %q with an any rule before the last", doc)
			}
		}
		if _, err := Parse([]byte(p.String())); err != nil {
			t.Fatalf("rendering of accepted %q rejected: %v", doc, err)
		}
		Evaluate(p, []Image{{Digest: "a", Tags: []string{"prod-1"}}, {Digest: "b"}}, time.Unix(0, 0))
	})
}
