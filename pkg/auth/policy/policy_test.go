package policy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
)

const gha = "https://token.actions.githubusercontent.com"

const yamlDoc = `
version: "1"
rules:
  - repositories: ["public/**"]
    principals: [anonymous]
    actions: [pull]
  - repositories: ["team-a/**"]
    principals:
      - iam: "arn:aws:iam::111122223333:role/team-a-*"
      - oidc:
          issuer: https://token.actions.githubusercontent.com
          claims: {repository: "org/team-a-*", ref: "refs/heads/main"}
    actions: [pull, push]
  - repositories: ["**"]
    principals: [{iam: "arn:aws:iam::111122223333:role/admin"}]
    actions: ["*", catalog]
  - effect: deny
    repositories: ["team-a/frozen"]
    principals: [{iam: "arn:aws:iam::111122223333:role/*"}]
    actions: [push, delete]
`

const jsonDoc = `{"version":"1","rules":[
 {"repositories":["public/**"],"principals":["anonymous"],"actions":["pull"]},
 {"repositories":["team-a/**"],"principals":[{"iam":"arn:aws:iam::111122223333:role/team-a-*"},
   {"oidc":{"issuer":"https://token.actions.githubusercontent.com","claims":{"repository":"org/team-a-*","ref":"refs/heads/main"}}}],"actions":["pull","push"]},
 {"repositories":["**"],"principals":[{"iam":"arn:aws:iam::111122223333:role/admin"}],"actions":["*","catalog"]},
 {"effect":"deny","repositories":["team-a/frozen"],"principals":[{"iam":"arn:aws:iam::111122223333:role/*"}],"actions":["push","delete"]}]}`

func TestEvaluate(t *testing.T) {
	anon := Identity{Anonymous: true}
	ci := Identity{ARN: "arn:aws:iam::111122223333:role/team-a-ci"}
	admin := Identity{ARN: "arn:aws:iam::111122223333:role/admin"}
	other := Identity{ARN: "arn:aws:iam::999999999999:role/team-a-ci"}
	gh := func(repo, ref string) Identity {
		return Identity{Issuer: gha, Claims: map[string]string{"repository": repo, "ref": ref, "sub": "repo:" + repo}}
	}
	cases := []struct {
		name string
		id   Identity
		repo string
		want []Action
	}{
		{"anonymous public", anon, "public/base", []Action{Pull}},
		{"anonymous private", anon, "team-a/app", nil},
		{"iam pull push", ci, "team-a/app", []Action{Pull, Push}},
		{"iam plus anonymous", ci, "public/base", []Action{Pull}},
		{"iam other account", other, "team-a/app", nil},
		{"iam other repo", ci, "team-b/app", nil},
		{"deny wins", ci, "team-a/frozen", []Action{Pull}},
		{"deny wins over admin", admin, "team-a/frozen", []Action{Pull}},
		{"admin all", admin, "team-b/x/y", []Action{Pull, Push, Delete}},
		{"oidc main", gh("org/team-a-svc", "refs/heads/main"), "team-a/svc", []Action{Pull, Push}},
		{"oidc branch", gh("org/team-a-svc", "refs/heads/dev"), "team-a/svc", nil},
		{"oidc other org", gh("evil/team-a-svc", "refs/heads/main"), "team-a/svc", nil},
		{"oidc other issuer", Identity{Issuer: "https://evil", Claims: map[string]string{"repository": "org/team-a-x", "ref": "refs/heads/main"}}, "team-a/svc", nil},
		{"oidc missing claim", Identity{Issuer: gha, Claims: map[string]string{"repository": "org/team-a-x"}}, "team-a/svc", nil},
	}
	for _, doc := range []string{yamlDoc, jsonDoc} {
		p, err := Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			if got := p.Evaluate(c.id, c.repo); !slices.Equal(got, c.want) {
				t.Errorf("%s: got %v, want %v", c.name, got, c.want)
			}
		}
		if !p.AllowsCatalog(admin) || p.AllowsCatalog(ci) || p.AllowsCatalog(anon) {
			t.Error("catalog decisions wrong")
		}
	}
	empty, err := Parse([]byte(`{"rules":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := empty.Evaluate(admin, "x"); got != nil {
		t.Errorf("empty policy allowed %v", got)
	}
}

func TestParseErrors(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown field":      `{"rules":[],"extra":1}`,
		"yaml unknown field": "rules: []\nextra: 1\n",
		"bad effect":         `{"rules":[{"effect":"maybe","repositories":["a"],"principals":["anonymous"],"actions":["pull"]}]}`,
		"bad action":         `{"rules":[{"repositories":["a"],"principals":["anonymous"],"actions":["write"]}]}`,
		"no principals":      `{"rules":[{"repositories":["a"],"principals":[],"actions":["pull"]}]}`,
		"two kinds":          `{"rules":[{"repositories":["a"],"principals":[{"anonymous":true,"iam":"arn:x"}],"actions":["pull"]}]}`,
		"string principal":   `{"rules":[{"repositories":["a"],"principals":["everyone"],"actions":["pull"]}]}`,
		"iam not arn":        `{"rules":[{"repositories":["a"],"principals":[{"iam":"role/ci"}],"actions":["pull"]}]}`,
		"oidc no claims":     `{"rules":[{"repositories":["a"],"principals":[{"oidc":{"issuer":"https://x"}}],"actions":["pull"]}]}`,
		"oidc http":          `{"rules":[{"repositories":["a"],"principals":[{"oidc":{"issuer":"http://x","claims":{"sub":"a"}}}],"actions":["pull"]}]}`,
		"version":            `{"version":"2","rules":[]}`,
		"empty yaml":         ``,
		"bad pattern":        `{"rules":[{"repositories":["a/***"],"principals":["anonymous"],"actions":["pull"]}]}`,
	} {
		if _, err := Parse([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLoadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(yamlDoc), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Evaluate(Identity{Anonymous: true}, "public/x"); !slices.Equal(got, []Action{Pull}) {
		t.Fatalf("got %v", got)
	}
	if _, err := LoadFile(path + ".missing"); err == nil {
		t.Fatal("missing file loaded")
	}
}

// ssmFake stands in for SSM (no emulator here) and injects failures.
type ssmFake struct {
	value   string
	version int64
	err     error
	calls   int
}

func (f *ssmFake) GetParameter(_ context.Context, in *ssm.GetParameterInput, _ ...func(*ssm.Options)) (*ssm.GetParameterOutput, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	if !aws.ToBool(in.WithDecryption) {
		return nil, errors.New("expected WithDecryption")
	}
	return &ssm.GetParameterOutput{Parameter: &ssmtypes.Parameter{Value: aws.String(f.value), Version: f.version}}, nil
}

func TestSSMSource(t *testing.T) {
	f := &ssmFake{err: errors.New("AccessDenied")}
	s := NewSSMSource(f, "/berth/policy", time.Minute, nil)
	now := time.Unix(1_800_000_000, 0)
	s.now = func() time.Time { return now }
	ctx := context.Background()
	if _, err := s.Current(ctx); err == nil {
		t.Fatal("no policy yet, but no error (must fail closed)")
	}
	f.err, f.value, f.version = nil, yamlDoc, 1
	p1, err := s.Current(ctx)
	if err != nil || p1 == nil {
		t.Fatalf("%v", err)
	}
	if _, _ = s.Current(ctx); f.calls != 2 {
		t.Fatalf("cached policy refetched: %d calls", f.calls)
	}
	now = now.Add(2 * time.Minute)
	f.value, f.version = `{"rules":[`, 2 // broken document: keep the old one
	if p, err := s.Current(ctx); err != nil || p != p1 {
		t.Fatalf("broken refresh: %v %p", err, p)
	}
	now = now.Add(2 * time.Minute)
	f.value, f.version = `{"rules":[]}`, 3
	p3, err := s.Current(ctx)
	if err != nil || p3 == p1 || p3.Evaluate(Identity{Anonymous: true}, "public/x") != nil {
		t.Fatalf("new version not served: %v", err)
	}
}

// TestOIDCNeedsIdentifyingClaim: a rule that names only claims every
// GitHub repository can satisfy (ref, environment, workflow, …) trusts
// every repository on GitHub, so the policy is refused with a message
// saying which claim to add (issue 11, point 6). An identifying claim
// whose pattern leaves the owner open (repository: "*/app",
// repository_owner: "my-org-*") is the same hole and refused too.
func TestOIDCNeedsIdentifyingClaim(t *testing.T) {
	doc := func(claims string) string {
		return `{"rules":[{"repositories":["a"],"principals":[{"oidc":{"issuer":"https://token.actions.githubusercontent.com","claims":` + claims + `}}],"actions":["pull"]}]}`
	}
	for _, claims := range []string{
		`{"ref":"refs/heads/main"}`,
		`{"ref":"refs/heads/main","environment":"prod","workflow":"release"}`,
		`{"job_workflow_ref":"my-org/wf/.github/workflows/r.yml@refs/heads/main"}`,
		`{"repository":"**"}`,
		`{"repository":"*/app","ref":"refs/heads/main"}`,
		`{"repository":"my-*/app"}`,
		`{"repository_owner":"*"}`,
		`{"repository_owner":"my-org-*"}`,
		`{"repository_owner_id":"12?4"}`,
		`{"repository_id":"**"}`,
		`{"sub":"**"}`,
		`{"sub":"repo:*/app:ref:refs/heads/main"}`,
	} {
		_, err := Parse([]byte(doc(claims)))
		if err == nil {
			t.Errorf("%s: accepted", claims)
			continue
		}
		if !strings.Contains(err.Error(), "repository_owner") || !strings.Contains(err.Error(), "sub") {
			t.Errorf("%s: message does not name the identifying claims: %v", claims, err)
		}
	}
	for _, claims := range []string{
		`{"repository":"my-org/app","ref":"refs/heads/main"}`,
		`{"repository":"my-org/team-a-*"}`,
		`{"repository":"my-org/**"}`,
		`{"repository_owner":"my-org","ref":"refs/heads/main"}`,
		`{"repository_owner_id":"1234"}`,
		`{"repository_id":"5678","environment":"prod"}`,
		`{"sub":"repo:my-org/app:ref:refs/heads/main"}`,
		`{"sub":"repo:my-org/*:environment:prod"}`,
		`{"repository":"**","repository_owner":"my-org"}`,
	} {
		if _, err := Parse([]byte(doc(claims))); err != nil {
			t.Errorf("%s: refused: %v", claims, err)
		}
	}
}

// TestReadable: the patterns a token carries for an identity allow pull
// exactly where Evaluate does, for every identity and repository of the
// example policy, deny rules included.
func TestReadable(t *testing.T) {
	p, err := Parse([]byte(yamlDoc))
	if err != nil {
		t.Fatal(err)
	}
	ids := []Identity{
		{Anonymous: true},
		{ARN: "arn:aws:iam::111122223333:role/team-a-ci"},
		{ARN: "arn:aws:iam::111122223333:role/admin"},
		{ARN: "arn:aws:iam::999999999999:role/team-a-ci"},
		{Issuer: gha, Claims: map[string]string{"repository": "org/team-a-svc", "ref": "refs/heads/main", "sub": "repo:org/team-a-svc"}},
	}
	repos := []string{"public/base", "team-a/app", "team-a/frozen", "team-a/x/y", "team-b/app", "team-b/x/y", "other"}
	for _, id := range ids {
		r := p.Readable(id)
		for _, repo := range repos {
			want := slices.Contains(p.Evaluate(id, repo), Pull)
			if got := r.Allows(repo); got != want {
				t.Errorf("%s on %s: Readable %v (%+v), Evaluate %v", id.Subject(), repo, got, r, want)
			}
		}
	}
	if (Readable{Allow: []string{"**"}, Deny: []string{"bad***"}}).Allows("x") {
		t.Error("a deny pattern that does not compile must deny everything")
	}
}
