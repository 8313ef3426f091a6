package events

import "context"

// Deferrer runs work later: behind Lambda, after the invocation's response
// was sent (functions/internal/afterresponse).
type Deferrer interface {
	Defer(f func(ctx context.Context))
}

// Deferred is an emitter that hands each event to em through d, so that a
// synchronous delivery (EventBridge's PutEvents) happens after the
// response instead of before it. The event itself (its id and time) is
// made when the registry emits it, at the commit.
type Deferred struct {
	Emitter  Emitter
	Deferrer Deferrer
}

// Emit implements Emitter.
func (e Deferred) Emit(_ context.Context, ev Event) {
	e.Deferrer.Defer(func(ctx context.Context) { e.Emitter.Emit(ctx, ev) })
}
