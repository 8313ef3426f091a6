package retention

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"time"

	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
)

// Reserve is how much of the context's deadline Apply leaves unused: it
// starts no repository, and no delete, with less than this left, so a
// Lambda invocation ends cleanly and the next scheduled run carries on.
const Reserve = 15 * time.Second

// Report summarises one Apply.
type Report struct {
	Repositories int  // repositories evaluated (and their expiries carried out)
	Expired      int  // manifests deleted
	Remaining    int  // repositories not reached before the deadline
	Failed       int  // repositories whose evaluation or deletes failed
	Stopped      bool // the deadline stopped the run; the next run continues
}

// Reasons a manifest is deleted, as logged.
const (
	ReasonRule     = "rule"                           // the policy expired it
	ReasonChild    = "child of an expired index"      // untagged, no other parent stays
	ReasonReferrer = "referrer of an expired subject" // its subject goes
)

// Apply applies policy to every repository in the catalog. Each run lists
// the catalog (repository names only), starts at a position derived from
// the hour of now so that a deadline does not always starve the same
// repositories, and stops starting work when ctx's deadline is less than
// Reserve away. A failing repository is logged and counted; the others
// still run, and the joined errors are returned. A nil policy does nothing.
func Apply(ctx context.Context, store *meta.Store, policy *Policy, now time.Time, log *slog.Logger, opts ...Option) (Report, error) {
	var rep Report
	if policy == nil {
		return rep, nil
	}
	repos, _, err := store.Catalog(ctx, "", 0)
	if err != nil {
		return rep, fmt.Errorf("retention: catalog: %w", err)
	}
	if len(repos) > 1 {
		h := fnv.New64a()
		fmt.Fprint(h, now.UTC().Truncate(time.Hour).Unix())
		start := int(h.Sum64() % uint64(len(repos)))
		repos = append(repos[start:], repos[:start]...)
	}
	var errs []error
	for i, repo := range repos {
		if late(ctx) {
			rep.Stopped, rep.Remaining = true, len(repos)-i
			break
		}
		n, err := ApplyRepo(ctx, store, policy, repo, now, log, opts...)
		rep.Expired += n
		if errors.Is(err, errDeadline) {
			rep.Stopped, rep.Remaining = true, len(repos)-i
			break
		}
		if err != nil {
			rep.Failed++
			log.LogAttrs(ctx, slog.LevelError, "retention: repository", slog.String("repo", repo), slog.Any("error", err))
			errs = append(errs, fmt.Errorf("retention: %s: %w", repo, err))
			continue
		}
		rep.Repositories++
	}
	return rep, errors.Join(errs...)
}

// errDeadline: ApplyRepo stopped between deletes because of the deadline.
var errDeadline = errors.New("retention: deadline near, stopped")

func late(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ctx.Err() != nil || ok && time.Until(dl) < Reserve
}

// doomed is a manifest to delete and why.
type doomed struct {
	info   meta.ManifestInfo
	rule   *Rule
	reason string
	cause  oci.Digest // the expired manifest a cascade follows from
}

// plan is what a policy expires in one repository, with the cascades.
type plan struct {
	repo     string
	byDigest map[oci.Digest]meta.ManifestInfo
	doom     map[oci.Digest]*doomed
	order    []oci.Digest // discovery order: the rule's expiries, then cascades
	images   int          // top-level manifests the policy looked at
}

// planRepo lists repo's manifests and decides what policy expires.
//
// The images the policy sees are the repository's top-level manifests:
// those without a subject (referrers are not images of their own) and not
// referenced as a child by another manifest of the repository (a platform
// manifest is part of its index). What the policy expires goes with:
//   - every referrer of an expired manifest (signatures, SBOMs), recursively;
//   - the children of an expired index that carry no tag and are not
//     children of a manifest that stays.
//
// A child of a kept index is never deleted.
func planRepo(ctx context.Context, store *meta.Store, policy *Policy, repo string, now time.Time) (*plan, error) {
	list, err := store.ManifestList(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("list manifests: %w", err)
	}
	pl := &plan{repo: repo, byDigest: make(map[oci.Digest]meta.ManifestInfo, len(list)), doom: map[oci.Digest]*doomed{}}
	parents := map[oci.Digest][]oci.Digest{}
	referrers := map[oci.Digest][]oci.Digest{}
	for _, m := range list {
		pl.byDigest[m.Digest] = m
	}
	for _, m := range list {
		for _, c := range m.Children {
			if _, ok := pl.byDigest[c]; ok && !slices.Contains(parents[c], m.Digest) {
				parents[c] = append(parents[c], m.Digest)
			}
		}
		if m.Subject != "" {
			referrers[m.Subject] = append(referrers[m.Subject], m.Digest)
		}
	}
	var images []Image
	for _, m := range list {
		if m.Subject == "" && len(parents[m.Digest]) == 0 {
			images = append(images, Image{
				Digest: string(m.Digest), Tags: m.Tags,
				PushedAt: time.Unix(m.PushedAt, 0), LastPulledAt: time.Unix(pl.lastPulled(m.Digest, map[oci.Digest]bool{}), 0),
			})
		}
	}
	pl.images = len(images)
	add := func(d oci.Digest, x *doomed) bool {
		if _, seen := pl.doom[d]; seen {
			return false
		}
		pl.doom[d] = x
		pl.order = append(pl.order, d)
		return true
	}
	for _, e := range Evaluate(policy, images, now) {
		r := e.Rule
		add(oci.Digest(e.Digest), &doomed{info: pl.byDigest[oci.Digest(e.Digest)], rule: &r, reason: ReasonRule})
	}
	// Cascade to a fixed point: referrers of doomed manifests, and untagged
	// children whose parents are all doomed.
	for changed := true; changed; {
		changed = false
		for _, d := range slices.Clone(pl.order) {
			x := pl.doom[d]
			for _, r := range referrers[d] {
				if !allIn(parents[r], pl.doom) {
					continue // also a child of a manifest that stays
				}
				changed = add(r, &doomed{info: pl.byDigest[r], rule: x.rule, reason: ReasonReferrer, cause: d}) || changed
			}
			for _, c := range x.info.Children {
				child, ok := pl.byDigest[c]
				if !ok || len(child.Tags) > 0 {
					continue
				}
				if !allIn(parents[c], pl.doom) {
					continue
				}
				changed = add(c, &doomed{info: child, rule: x.rule, reason: ReasonChild, cause: d}) || changed
			}
		}
	}
	return pl, nil
}

// lastPulled is the last recorded pull of d or of any manifest below it:
// a client that pins a platform manifest by digest pulls that child
// alone, and the index it belongs to is in use all the same.
func (pl *plan) lastPulled(d oci.Digest, seen map[oci.Digest]bool) int64 {
	if seen[d] {
		return 0 // a corrupt cycle; ApplyRepo reports it
	}
	seen[d] = true
	m := pl.byDigest[d]
	last := m.LastPulled
	for _, c := range m.Children {
		if _, ok := pl.byDigest[c]; ok {
			last = max(last, pl.lastPulled(c, seen))
		}
	}
	return last
}

// Expired is one manifest a policy deletes, and why: what Preview
// returns and what Apply logs.
type Expired struct {
	// Repo is set for OnExpire; Preview groups by repository instead.
	Repo        string     `json:"-"`
	Digest      oci.Digest `json:"digest"`
	Tags        []string   `json:"tags"`
	MediaType   string     `json:"mediaType,omitempty"`
	Rule        int        `json:"rule"` // rulePriority of the rule that expires it (or its cause)
	Description string     `json:"description,omitempty"`
	Reason      string     `json:"reason"`          // ReasonRule, ReasonChild or ReasonReferrer
	Cause       oci.Digest `json:"cause,omitempty"` // the expired manifest a cascade follows from
	Pushed      time.Time  `json:"pushed"`
	// Pulled is the last recorded pull, or the push when none was
	// recorded (meta.ManifestInfo.LastPulled).
	Pulled time.Time `json:"pulled"`
}

func (x *doomed) expired(d oci.Digest) Expired {
	return Expired{
		Digest: d, Tags: append([]string{}, x.info.Tags...), MediaType: x.info.MediaType,
		Rule: x.rule.RulePriority, Description: x.rule.Description, Reason: x.reason, Cause: x.cause,
		Pushed: time.Unix(x.info.PushedAt, 0).UTC(), Pulled: time.Unix(x.info.LastPulled, 0).UTC(),
	}
}

// RepoPreview is what a policy would expire in one repository.
type RepoPreview struct {
	Repository string    `json:"repository"`
	Images     int       `json:"images"` // top-level manifests the policy looked at
	Manifests  int       `json:"manifests"`
	Expired    []Expired `json:"expired"` // in the order Apply finds them: the rules' expiries, oldest first, then cascades
}

// PreviewRepo evaluates policy on repo as ApplyRepo does at now, and
// deletes nothing.
func PreviewRepo(ctx context.Context, store *meta.Store, policy *Policy, repo string, now time.Time) (RepoPreview, error) {
	pl, err := planRepo(ctx, store, policy, repo, now)
	if err != nil {
		return RepoPreview{}, err
	}
	out := RepoPreview{Repository: repo, Images: pl.images, Manifests: len(pl.byDigest), Expired: []Expired{}}
	for _, d := range pl.order {
		out.Expired = append(out.Expired, pl.doom[d].expired(d))
	}
	return out, nil
}

// Preview evaluates policy on every repository of the catalog (repos
// nil) or on the repositories named, and deletes nothing.
func Preview(ctx context.Context, store *meta.Store, policy *Policy, repos []string, now time.Time) ([]RepoPreview, error) {
	if repos == nil {
		var err error
		if repos, _, err = store.Catalog(ctx, "", 0); err != nil {
			return nil, fmt.Errorf("retention: catalog: %w", err)
		}
	} else {
		for _, repo := range repos {
			if ok, err := store.RepoExists(ctx, repo); err != nil {
				return nil, fmt.Errorf("retention: %s: %w", repo, err)
			} else if !ok {
				return nil, fmt.Errorf("retention: %w: %s", meta.ErrNameUnknown, repo)
			}
		}
	}
	out := make([]RepoPreview, 0, len(repos))
	for _, repo := range repos {
		p, err := PreviewRepo(ctx, store, policy, repo, now)
		if err != nil {
			return out, fmt.Errorf("retention: %s: %w", repo, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// ApplyRepo applies policy to one repository and returns how many
// manifests it deleted: what PreviewRepo lists (planRepo decides it).
//
// Deletes run parents and referrers first, so a run cut short never leaves
// an index whose child is gone. If a tag of a manifest about to be deleted
// changed since the evaluation (a push re-tagged it), the repository is
// left for the next run. Each delete is meta.ManifestDelete: the manifest,
// its tags and referrer entry go, blob reference counts drop, and the blob
// GC reclaims bytes later.
func ApplyRepo(ctx context.Context, store *meta.Store, policy *Policy, repo string, now time.Time, log *slog.Logger, opts ...Option) (int, error) {
	o := collect(opts)
	pl, err := planRepo(ctx, store, policy, repo, now)
	if err != nil {
		return 0, err
	}
	doom, order, byDigest := pl.doom, pl.order, pl.byDigest
	if len(doom) == 0 {
		return 0, nil
	}
	// Re-read the tags just before deleting: a manifest re-tagged since the
	// listing is not what the policy decided on.
	fresh, err := store.TagsByDigest(ctx, repo)
	if err != nil {
		return 0, fmt.Errorf("re-read tags: %w", err)
	}
	for d, x := range doom {
		if !slices.Equal(fresh[d], x.info.Tags) {
			log.LogAttrs(ctx, slog.LevelWarn, "retention: repository changed during evaluation; next run",
				slog.String("repo", repo), slog.String("digest", string(d)),
				slog.Any("tags_before", x.info.Tags), slog.Any("tags_now", fresh[d]))
			return 0, nil
		}
	}
	// waiting[d]: pending manifests that still refer to d (as an index
	// child or as their subject); d is deleted only when none do.
	waiting := map[oci.Digest]int{}
	for p := range doom {
		for _, r := range refsOf(byDigest[p]) {
			if _, ok := doom[r]; ok {
				waiting[r]++
			}
		}
	}
	deleted := 0
	for len(doom) > 0 {
		progress := false
		for _, d := range order {
			x, pending := doom[d]
			if !pending || waiting[d] > 0 {
				continue
			}
			if late(ctx) {
				return deleted, errDeadline
			}
			err := store.ManifestDelete(ctx, repo, d)
			if err != nil && !errors.Is(err, meta.ErrManifestUnknown) {
				return deleted, fmt.Errorf("delete %s: %w", d, err)
			}
			delete(doom, d)
			for _, r := range refsOf(x.info) {
				if _, ok := doom[r]; ok {
					waiting[r]--
				}
			}
			progress = true
			if err != nil {
				continue // deleted concurrently
			}
			deleted++
			e := x.expired(d)
			attrs := []slog.Attr{
				slog.String("repo", repo), slog.String("digest", string(d)), slog.Any("tags", e.Tags),
				slog.Int("rule", e.Rule), slog.String("reason", e.Reason),
				slog.Time("pushed", e.Pushed), slog.Time("pulled", e.Pulled),
			}
			if e.Description != "" {
				attrs = append(attrs, slog.String("description", e.Description))
			}
			if e.Cause != "" {
				attrs = append(attrs, slog.String("cause", string(e.Cause)))
			}
			log.LogAttrs(ctx, slog.LevelInfo, "retention: expired", attrs...)
			if o.onExpire != nil {
				e.Repo = repo
				o.onExpire(ctx, e)
			}
		}
		if !progress {
			// Content addressing makes references acyclic; a cycle here
			// means corrupt records, so stop rather than loop.
			return deleted, fmt.Errorf("reference cycle among %d manifests", len(doom))
		}
	}
	return deleted, nil
}

// refsOf lists the manifests m refers to: its children and its subject.
func refsOf(m meta.ManifestInfo) []oci.Digest {
	refs := slices.Clone(m.Children)
	if m.Subject != "" {
		refs = append(refs, m.Subject)
	}
	return slices.Compact(refs)
}

func allIn(ds []oci.Digest, set map[oci.Digest]*doomed) bool {
	for _, d := range ds {
		if _, ok := set[d]; !ok {
			return false
		}
	}
	return true
}
