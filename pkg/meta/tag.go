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

// TagGet returns the tag record.
func (s *Store) TagGet(ctx context.Context, repo, tag string) (Tag, error) {
	it, err := s.items.ItemGet(ctx, repoPK(repo), tagSK(tag))
	if errors.Is(err, storage.ErrNotFound) {
		return Tag{}, fmt.Errorf("%w: %s", ErrTagUnknown, tag)
	}
	if err != nil {
		return Tag{}, err
	}
	return decode[Tag](it)
}

// tagOp returns the write that points tag at d, honouring immutability.
func (s *Store) tagOp(ctx context.Context, repo, tag string, d oci.Digest, mediaType string) (storage.Op, error) {
	op := storage.Op{
		Kind: storage.OpPut,
		Item: storage.Item{PK: repoPK(repo), SK: tagSK(tag), Data: encode(Tag{Digest: d, MediaType: mediaType, PushedAt: s.unix()})},
	}
	if s.immutable == nil || !s.immutable(repo, tag) {
		return op, nil
	}
	cur, err := s.TagGet(ctx, repo, tag)
	switch {
	case errors.Is(err, ErrTagUnknown):
		op.Cond = storage.IfNotExists
	case err != nil:
		return op, err
	case cur.Digest != d:
		return op, fmt.Errorf("%w: %s:%s", ErrTagImmutable, repo, tag)
	default:
		// Same digest: rewrite only if unchanged (keeps the write idempotent).
		it, err := s.items.ItemGet(ctx, repoPK(repo), tagSK(tag))
		if err != nil {
			return op, err
		}
		op.Cond = storage.IfVersion(it.Version)
	}
	return op, nil
}

func (s *Store) putTag(ctx context.Context, repo, tag string, d oci.Digest, mediaType string) error {
	op, err := s.tagOp(ctx, repo, tag, d, mediaType)
	if err != nil {
		return err
	}
	err = s.items.ItemPut(ctx, op.Item, op.Cond)
	if errors.Is(err, storage.ErrConditionFailed) {
		return fmt.Errorf("%w: %s:%s", ErrTagImmutable, repo, tag)
	}
	return err
}

// TagDelete removes a tag (the manifest stays).
func (s *Store) TagDelete(ctx context.Context, repo, tag string) error {
	if _, err := s.TagGet(ctx, repo, tag); err != nil {
		return err
	}
	if s.immutable != nil && s.immutable(repo, tag) {
		return fmt.Errorf("%w: %s:%s", ErrTagImmutable, repo, tag)
	}
	return s.items.ItemDelete(ctx, repoPK(repo), tagSK(tag), storage.IfNone)
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
