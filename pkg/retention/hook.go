package retention

import (
	"context"

	"github.com/berth-registry/berth/pkg/oci"
)

// Expired is one manifest a run deleted, as OnExpire reports it.
type Expired struct {
	Repo   string
	Digest oci.Digest
	// MediaType of the manifest, and the tags that went with it.
	MediaType string
	Tags      []string
	// Rule is the priority of the rule that expired it (or the manifest
	// it followed); Reason is one of the Reason constants.
	Rule   int
	Reason string
}

// Option adjusts Apply and ApplyRepo. Options keep their signatures
// stable for the callers that need none.
type Option func(*options)

type options struct {
	onExpire func(context.Context, Expired)
}

// OnExpire has fn told of each manifest deleted, after its delete
// committed (the registry's event hook, docs/events.md).
func OnExpire(fn func(context.Context, Expired)) Option {
	return func(o *options) { o.onExpire = fn }
}

func collect(opts []Option) options {
	var o options
	for _, f := range opts {
		f(&o)
	}
	return o
}
