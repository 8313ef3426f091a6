package meta

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

// ErrTagImmutable: the tag exists, points elsewhere, and may not move.
var ErrTagImmutable = errors.New("tag is immutable")

// WithImmutableTags makes tags for which immutable returns true write-once
// (re-pushing the same digest stays allowed).
func WithImmutableTags(immutable func(repo, tag string) bool) Option {
	return func(s *Store) { s.immutable = immutable }
}

// Tag is a stored tag record.
//
// Manifest is a copy of the record of the manifest the tag points at, so
// that a pull by tag reads one item instead of two. The copy is exact for
// as long as the manifest exists (manifest records never change), and no
// tag outlives its manifest (docs/architecture.md, invariant 6): every tag
// write is one transaction with a write to the manifest item, and a
// manifest is deleted in one transaction with its tags. Manifest is nil in
// tags written before the copy existed and in tags whose copy would not fit
// the item (tagData); those resolve with a second read.
type Tag struct {
	Digest    oci.Digest `json:"d"`
	MediaType string     `json:"mt"`
	PushedAt  int64      `json:"at_push"`
	Manifest  *Manifest  `json:"m,omitempty"`
}

// tagHead is the part of a tag record that listings need: decoding only
// the digest skips the copy of the manifest (its body is base64).
type tagHead struct {
	Digest oci.Digest `json:"d"`
}

// tagData encodes t with a copy of m, or without one when the item would
// exceed storage.MaxItemBytes: a manifest record close to the limit (an
// inline body near InlineLimit and a thousand referenced blobs) leaves no
// room for the tag's own fields.
func tagData(t Tag, m Manifest) []byte {
	t.Manifest = &m
	if b := encode(t); len(b) <= storage.MaxItemBytes {
		return b
	}
	t.Manifest = nil
	return encode(t)
}

// TagGet returns the tag record, with the copy of its manifest when it
// holds one.
func (s *Store) TagGet(ctx context.Context, repo, tag string) (Tag, error) {
	t, _, err := s.tagGet(ctx, repo, tag)
	return t, err
}

// tagGet is TagGet that also returns the item read (its Touched and
// Version decide PullRecord's write).
func (s *Store) tagGet(ctx context.Context, repo, tag string) (Tag, storage.Item, error) {
	it, err := s.items.ItemGet(ctx, repoPK(repo), tagSK(tag))
	if errors.Is(err, storage.ErrNotFound) {
		return Tag{}, it, fmt.Errorf("%w: %s", ErrTagUnknown, tag)
	}
	if err != nil {
		return Tag{}, it, err
	}
	t, err := decode[Tag](it)
	if err != nil {
		return Tag{}, it, err
	}
	if t.Manifest != nil {
		t.Manifest.Digest = t.Digest
	}
	return t, it, nil
}

// tagOp returns the write that points tag at manifest d, whose record m
// it copies, honouring immutability. The caller puts it in one transaction
// with a write to the manifest item (createManifest, retag).
func (s *Store) tagOp(ctx context.Context, repo, tag string, d oci.Digest, m Manifest) (storage.Op, error) {
	op := storage.Op{
		Kind: storage.OpPut,
		Item: storage.Item{PK: repoPK(repo), SK: tagSK(tag), Data: tagData(Tag{Digest: d, MediaType: m.MediaType, PushedAt: s.unix()}, m)},
	}
	if s.immutable == nil || !s.immutable(repo, tag) {
		return op, nil
	}
	it, err := s.items.ItemGet(ctx, repoPK(repo), tagSK(tag))
	switch {
	case errors.Is(err, storage.ErrNotFound):
		op.Cond = storage.IfNotExists
	case err != nil:
		return op, err
	default:
		cur, err := decode[tagHead](it)
		if err != nil {
			return op, err
		}
		if cur.Digest != d {
			return op, fmt.Errorf("%w: %s:%s", ErrTagImmutable, repo, tag)
		}
		// Same digest: rewrite only if unchanged, so a tag deleted or
		// rewritten meanwhile is decided again on a fresh read.
		op.Cond = storage.IfVersion(it.Version)
	}
	return op, nil
}

// retag points tag at the existing manifest whose item is it. The tag
// write and a zero add on the manifest item are one transaction: the add
// requires the manifest to exist and raises its version, so a concurrent
// ManifestDelete, conditioned on the version it read, fails and reads the
// tags again instead of leaving this one behind. It returns errStale when
// the manifest went away or the tag changed under an immutability
// condition: the caller reads again and decides afresh.
func (s *Store) retag(ctx context.Context, repo, tag string, d oci.Digest, it storage.Item) error {
	m, err := decode[Manifest](it)
	if err != nil {
		return err
	}
	op, err := s.tagOp(ctx, repo, tag, d, m)
	if err != nil {
		return err
	}
	err = s.items.Transact(ctx, []storage.Op{op, {
		Kind: storage.OpAdd,
		Item: storage.Item{PK: it.PK, SK: it.SK},
		Cond: storage.IfExists,
	}})
	if ok, _ := isCond(err); ok {
		return fmt.Errorf("%w: tag %q: %w", errStale, tag, err)
	}
	return err
}

// TagDelete removes a tag (the manifest stays).
func (s *Store) TagDelete(ctx context.Context, repo, tag string) error {
	_, err := s.TagRemove(ctx, repo, tag)
	return err
}

// TagRemove is TagDelete returning the record it removed (what the tag
// pointed at, for the registry's delete event).
func (s *Store) TagRemove(ctx context.Context, repo, tag string) (Tag, error) {
	t, err := s.TagGet(ctx, repo, tag)
	if err != nil {
		return Tag{}, err
	}
	if s.immutable != nil && s.immutable(repo, tag) {
		return Tag{}, fmt.Errorf("%w: %s:%s", ErrTagImmutable, repo, tag)
	}
	return t, s.items.ItemDelete(ctx, repoPK(repo), tagSK(tag), storage.IfNone)
}

// TagList returns up to n tags of repo sorted lexically after last, and
// whether more follow. n <= 0 means no limit. ErrNameUnknown when the
// repository has no manifests.
func (s *Store) TagList(ctx context.Context, repo, last string, n int) ([]string, bool, error) {
	if ok, err := s.RepoExists(ctx, repo); err != nil {
		return nil, false, err
	} else if !ok {
		return nil, false, fmt.Errorf("%w: %s", ErrNameUnknown, repo)
	}
	after := ""
	if last != "" {
		after = tagSK(last)
	}
	items, more, err := s.queryN(ctx, repoPK(repo), pfxTag, after, n)
	if err != nil {
		return nil, false, err
	}
	tags := make([]string, 0, len(items))
	for _, it := range items {
		tags = append(tags, strings.TrimPrefix(it.SK, pfxTag))
	}
	return tags, more, nil
}

// tagsOf returns the tag items of repo that point at d (keys and
// versions; their data is dropped), paging through the repository's tags.
func (s *Store) tagsOf(ctx context.Context, repo string, d oci.Digest) ([]storage.Item, error) {
	var out []storage.Item
	after := ""
	for {
		items, more, err := s.items.ItemQuery(ctx, repoPK(repo), pfxTag, after, 500)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			t, err := decode[tagHead](it)
			if err != nil {
				return nil, err
			}
			if t.Digest == d {
				out = append(out, storage.Item{PK: it.PK, SK: it.SK, Version: it.Version})
			}
		}
		if !more || len(items) == 0 {
			return out, nil
		}
		after = items[len(items)-1].SK
	}
}
