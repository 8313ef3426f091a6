// Package policy decides which actions a principal may take on a
// repository. A policy document is a list of rules; each rule names
// repository patterns, principals and actions, with effect allow or deny.
// Nothing is allowed unless a rule allows it, and a matching deny always
// wins over any allow.
//
//	version: "1"
//	rules:
//	  - repositories: ["public/**"]
//	    principals: [anonymous]
//	    actions: [pull]
//	  - repositories: ["team-a/**"]
//	    principals:
//	      - iam: "arn:aws:iam::111122223333:role/team-a-ci"
//	      - oidc:
//	          issuer: https://token.actions.githubusercontent.com
//	          claims: {repository: "org/team-a-*", ref: "refs/heads/main"}
//	    actions: [pull, push]
//	  - repositories: ["**"]
//	    principals: [{iam: "arn:aws:iam::111122223333:role/registry-admin"}]
//	    actions: ["*", catalog]
//	  - effect: deny
//	    repositories: ["**"]
//	    principals: [{iam: "arn:aws:iam::111122223333:role/quarantined-*"}]
//	    actions: ["*"]
//
// Patterns: in repository names and OIDC claim values `*` matches within one
// `/`-separated segment, `**` across segments, `?` one character. In IAM
// ARN patterns `*` and `?` have IAM's meaning (`*` matches anything,
// slashes included). IAM principals are matched by their canonical ARN
// (assumed-role sessions become arn:aws:iam::<acct>:role/<name>).
//
// The `anonymous` principal means everyone, signed in or not: a rule that
// lets anonymous pull lets every caller pull. `catalog` (listing all
// repository names) is a registry-wide action granted only when named; `*`
// means pull, push and delete.
package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/berth-registry/berth/pkg/glob"
)

// Action is a permission.
type Action string

// Actions.
const (
	Pull    Action = "pull"
	Push    Action = "push"
	Delete  Action = "delete"
	Catalog Action = "catalog"
	All     Action = "*"
)

// repoActions in the order Evaluate returns them.
var repoActions = []Action{Pull, Push, Delete}

// Effect is allow or deny.
type Effect string

// Effects.
const (
	Allow Effect = "allow"
	Deny  Effect = "deny"
)

// Document is the wire form of a policy.
type Document struct {
	Version string `json:"version" yaml:"version"`
	Rules   []Rule `json:"rules" yaml:"rules"`
}

// Rule is one statement.
type Rule struct {
	Description  string      `json:"description,omitempty" yaml:"description,omitempty"`
	Effect       Effect      `json:"effect,omitempty" yaml:"effect,omitempty"` // default allow
	Repositories []string    `json:"repositories" yaml:"repositories"`
	Principals   []Principal `json:"principals" yaml:"principals"`
	Actions      []Action    `json:"actions" yaml:"actions"`
}

// Principal is a principal pattern: exactly one of its fields is set.
// In documents it is an object, or the string "anonymous".
type Principal struct {
	Anonymous bool       `json:"anonymous,omitempty" yaml:"anonymous,omitempty"`
	IAM       string     `json:"iam,omitempty" yaml:"iam,omitempty"`
	OIDC      *OIDCMatch `json:"oidc,omitempty" yaml:"oidc,omitempty"`
}

// OIDCMatch matches OIDC identities from one issuer whose claims match
// every pattern in Claims.
type OIDCMatch struct {
	Issuer string            `json:"issuer" yaml:"issuer"`
	Claims map[string]string `json:"claims,omitempty" yaml:"claims,omitempty"`
}

type principalFields Principal // no methods: plain decoding

// UnmarshalJSON accepts "anonymous" or an object.
func (p *Principal) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		return p.fromString(s)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode((*principalFields)(p))
}

// UnmarshalYAML accepts "anonymous" or a mapping.
func (p *Principal) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return p.fromString(n.Value)
	}
	return n.Decode((*principalFields)(p))
}

func (p *Principal) fromString(s string) error {
	if s != "anonymous" {
		return fmt.Errorf("principal %q: use \"anonymous\" or an object with iam or oidc", s)
	}
	*p = Principal{Anonymous: true}
	return nil
}

// Identity is who is asking, as the token service established it.
type Identity struct {
	Anonymous bool
	// ARN is the canonical IAM ARN of an IAM caller.
	ARN string
	// Issuer and Claims describe an OIDC caller (string claims only).
	Issuer string
	Claims map[string]string
}

// Subject names the identity in tokens and audit logs.
func (id Identity) Subject() string {
	switch {
	case id.ARN != "":
		return id.ARN
	case id.Issuer != "":
		return id.Issuer + "#" + id.Claims["sub"]
	default:
		return "anonymous"
	}
}

// Policy is a compiled, validated document. It is immutable and safe for
// concurrent use.
type Policy struct {
	rules []rule
}

type rule struct {
	deny       bool
	repos      []glob.Pattern
	principals []principal
	actions    map[Action]bool
}

type principal struct {
	anonymous bool
	arn       *glob.Pattern
	issuer    string
	claims    map[string]glob.Pattern
}

// Compile validates d and returns its policy.
func Compile(d Document) (*Policy, error) {
	if d.Version != "" && d.Version != "1" {
		return nil, fmt.Errorf("policy: unsupported version %q", d.Version)
	}
	p := &Policy{}
	for i, r := range d.Rules {
		cr, err := compileRule(r)
		if err != nil {
			return nil, fmt.Errorf("policy: rule %d: %w", i+1, err)
		}
		p.rules = append(p.rules, cr)
	}
	return p, nil
}

func compileRule(r Rule) (rule, error) {
	var cr rule
	switch r.Effect {
	case "", Allow:
	case Deny:
		cr.deny = true
	default:
		return cr, fmt.Errorf("effect %q is not allow or deny", r.Effect)
	}
	if len(r.Repositories) == 0 || len(r.Principals) == 0 || len(r.Actions) == 0 {
		return cr, errors.New("repositories, principals and actions are required")
	}
	for _, s := range r.Repositories {
		g, err := glob.Path(s)
		if err != nil {
			return cr, fmt.Errorf("repository pattern %q: %w", s, err)
		}
		cr.repos = append(cr.repos, g)
	}
	cr.actions = map[Action]bool{}
	for _, a := range r.Actions {
		switch a {
		case Pull, Push, Delete, Catalog:
			cr.actions[a] = true
		case All:
			for _, x := range repoActions {
				cr.actions[x] = true
			}
		default:
			return cr, fmt.Errorf("unknown action %q", a)
		}
	}
	for _, p := range r.Principals {
		cp, err := compilePrincipal(p)
		if err != nil {
			return cr, err
		}
		cr.principals = append(cr.principals, cp)
	}
	return cr, nil
}

func compilePrincipal(p Principal) (principal, error) {
	n := 0
	if p.Anonymous {
		n++
	}
	if p.IAM != "" {
		n++
	}
	if p.OIDC != nil {
		n++
	}
	if n != 1 {
		return principal{}, errors.New("a principal sets exactly one of anonymous, iam, oidc")
	}
	switch {
	case p.Anonymous:
		return principal{anonymous: true}, nil
	case p.IAM != "":
		if !strings.HasPrefix(p.IAM, "arn:") {
			return principal{}, fmt.Errorf("iam principal %q is not an ARN pattern", p.IAM)
		}
		g, err := glob.ARN(p.IAM)
		if err != nil {
			return principal{}, fmt.Errorf("iam principal %q: %w", p.IAM, err)
		}
		return principal{arn: &g}, nil
	default:
		if !strings.HasPrefix(p.OIDC.Issuer, "https://") {
			return principal{}, fmt.Errorf("oidc issuer %q is not an https URL", p.OIDC.Issuer)
		}
		if err := checkIdentifying(p.OIDC.Claims); err != nil {
			return principal{}, fmt.Errorf("oidc principal for %s: %w", p.OIDC.Issuer, err)
		}
		cp := principal{issuer: p.OIDC.Issuer, claims: map[string]glob.Pattern{}}
		for k, v := range p.OIDC.Claims {
			g, err := glob.Path(v)
			if err != nil {
				return principal{}, fmt.Errorf("oidc claim %s pattern %q: %w", k, v, err)
			}
			cp.claims[k] = g
		}
		return cp, nil
	}
}

// Identifying claims: those that say whose workload a token belongs to.
// Every other claim (ref, environment, workflow, job_workflow_ref, …) has
// values any GitHub repository can produce, so a principal naming only
// those trusts every repository on GitHub. The IDs and the owner name are
// single values: a wildcard in them (my-org-*) trusts whoever registers a
// matching name, so they must be exact. repository and sub
// (repo:<owner>/<repo>:…) must name the owner, everything up to the first
// "/", without wildcards.
var (
	exactClaims       = []string{"repository_owner", "repository_owner_id", "repository_id"}
	ownerPinnedClaims = []string{"repository", "sub"}
)

// checkIdentifying refuses claim patterns that identify no owner.
func checkIdentifying(claims map[string]string) error {
	for _, k := range exactClaims {
		if v, ok := claims[k]; ok && !strings.ContainsAny(v, "*?") {
			return nil
		}
	}
	for _, k := range ownerPinnedClaims {
		v, ok := claims[k]
		if !ok {
			continue
		}
		owner, _, _ := strings.Cut(v, "/")
		if owner != "" && !strings.ContainsAny(owner, "*?") {
			return nil
		}
	}
	return errors.New("needs an identifying claim, or any repository on the issuer would match: " +
		"repository_owner, repository_owner_id or repository_id without wildcards, " +
		"or repository or sub whose owner (the part before the first /) has no wildcards, " +
		`for example repository: "my-org/app" or repository_owner: "my-org"`)
}

func (p principal) matches(id Identity) bool {
	switch {
	case p.anonymous:
		return true
	case p.arn != nil:
		return id.ARN != "" && p.arn.Match(id.ARN)
	default:
		if id.Issuer != p.issuer {
			return false
		}
		for k, g := range p.claims {
			v, ok := id.Claims[k]
			if !ok || !g.Match(v) {
				return false
			}
		}
		return true
	}
}

func (r rule) applies(id Identity) bool {
	return slices.ContainsFunc(r.principals, func(p principal) bool { return p.matches(id) })
}

// Evaluate returns the repository actions id may take on repo, in the
// order pull, push, delete.
func (p *Policy) Evaluate(id Identity, repo string) []Action {
	allow, deny := map[Action]bool{}, map[Action]bool{}
	for _, r := range p.rules {
		if !slices.ContainsFunc(r.repos, func(g glob.Pattern) bool { return g.Match(repo) }) || !r.applies(id) {
			continue
		}
		for a := range r.actions {
			if r.deny {
				deny[a] = true
			} else {
				allow[a] = true
			}
		}
	}
	var out []Action
	for _, a := range repoActions {
		if allow[a] && !deny[a] {
			out = append(out, a)
		}
	}
	return out
}

// AllowsCatalog reports whether id may list every repository name. Only
// rules naming the catalog action count; their repository patterns do not.
func (p *Policy) AllowsCatalog(id Identity) bool {
	allowed := false
	for _, r := range p.rules {
		if !r.actions[Catalog] || !r.applies(id) {
			continue
		}
		if r.deny {
			return false
		}
		allowed = true
	}
	return allowed
}

// Parse decodes a JSON or YAML document (JSON when the first non-blank
// byte is '{') and compiles it. Unknown fields are errors.
func Parse(data []byte) (*Policy, error) {
	var d Document
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(t))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&d); err != nil {
			return nil, fmt.Errorf("policy: json: %w", err)
		}
	} else {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&d); err != nil {
			return nil, fmt.Errorf("policy: yaml: %w", err)
		}
	}
	return Compile(d)
}

// LoadFile reads and compiles a policy file.
func LoadFile(path string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	p, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// Readable is the part of a policy that says where one identity may pull:
// the repository patterns of the rules that apply to it and name pull (or
// `*`), allow and deny. Readable(id).Allows(repo) equals
// Evaluate(id, repo) containing Pull, without the policy: a token carries
// it so that the registry can tell where its holder may read beyond the
// repositories the token names (mounting a blob another repository holds).
type Readable struct {
	Allow []string `json:"allow,omitempty"`
	Deny  []string `json:"deny,omitempty"`
}

// Readable returns where id may pull.
func (p *Policy) Readable(id Identity) Readable {
	var out Readable
	for _, r := range p.rules {
		if !r.actions[Pull] || !r.applies(id) {
			continue
		}
		for _, g := range r.repos {
			if r.deny {
				out.Deny = append(out.Deny, g.String())
			} else {
				out.Allow = append(out.Allow, g.String())
			}
		}
	}
	return out
}

// Allows reports whether repo matches an allow pattern and no deny
// pattern. A pattern that does not compile matches nothing (deny: fails
// closed, the caller may not pull anywhere).
func (r Readable) Allows(repo string) bool {
	for _, p := range r.Deny {
		g, err := glob.Path(p)
		if err != nil || g.Match(repo) {
			return false
		}
	}
	for _, p := range r.Allow {
		if g, err := glob.Path(p); err == nil && g.Match(repo) {
			return true
		}
	}
	return false
}
