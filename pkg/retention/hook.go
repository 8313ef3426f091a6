package retention

import "context"

// Option adjusts Apply and ApplyRepo. Options keep their signatures
// stable for the callers that need none.
type Option func(*options)

type options struct {
	onExpire func(context.Context, Expired)
}

// OnExpire has fn told of each manifest deleted, after its delete
// committed (the registry's event hook, docs/events.md), with Repo set.
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
