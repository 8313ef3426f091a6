package registry

import (
	"context"

	"github.com/berth-registry/berth/pkg/access"
	"github.com/berth-registry/berth/pkg/events"
	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
)

// Emitter receives the registry's events (docs/events.md). Emit is called
// after the metadata write committed, and only then; it must not fail the
// request: an emitter logs and counts what it could not deliver. It is
// called before the response is written, so an emitter that must deliver
// before a Lambda invocation ends (EventBridge) can; one that may deliver
// later (the webhook) queues and returns at once.
type Emitter interface {
	Emit(ctx context.Context, ev events.Event)
}

// emit stamps d with the caller's identity and hands it to the emitter.
func (g *Registry) emit(ctx context.Context, detailType string, d events.Detail) {
	if g.cfg.Events == nil {
		return
	}
	d.Actor = access.SubjectOf(ctx)
	g.cfg.Events.Emit(ctx, events.New(detailType, g.now(), d))
}

// emitPush: a manifest was stored (and tag pointed at it, when set).
func (g *Registry) emitPush(ctx context.Context, repo, tag string, d oci.Digest, m *oci.Manifest) {
	g.emit(ctx, events.DetailImageAction, events.Detail{
		ActionType: events.ActionPush, RepositoryName: repo, ImageDigest: string(d), ImageTag: tag,
		ManifestMediaType: m.MediaType, ArtifactMediaType: m.ArtifactType,
	})
}

// emitTagDelete: tag, which pointed at t, was deleted.
func (g *Registry) emitTagDelete(ctx context.Context, repo, tag string, t meta.Tag) {
	g.emit(ctx, events.DetailImageAction, events.Detail{
		ActionType: events.ActionDelete, RepositoryName: repo, ImageDigest: string(t.Digest), ImageTag: tag,
		ManifestMediaType: t.MediaType,
	})
}

// emitManifestDelete: a manifest and its tags were deleted.
func (g *Registry) emitManifestDelete(ctx context.Context, repo string, rm meta.Removed) {
	g.emit(ctx, events.DetailImageAction, events.Detail{
		ActionType: events.ActionDelete, RepositoryName: repo, ImageDigest: string(rm.Manifest.Digest),
		ManifestMediaType: rm.Manifest.MediaType, ArtifactMediaType: rm.Manifest.ArtifactType, ImageTags: rm.Tags,
	})
}
