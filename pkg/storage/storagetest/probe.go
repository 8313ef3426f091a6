package storagetest

import (
	"context"
	"sync"

	"github.com/berth-registry/berth/pkg/storage"
)

// Probe wraps an Items driver for tests of the logic above it: it counts
// the calls by method and can run a hook before the nth call of a method
// (another writer's change, landing exactly between what the logic read
// and what it writes). A driver's batch read stays visible through it
// (ItemGetBatch, counted as such); both drivers have one.
type Probe struct {
	storage.Items
	mu    sync.Mutex
	calls map[string]int
	hook  func(method string, n int)
}

// NewProbe wraps items.
func NewProbe(items storage.Items) *Probe { return &Probe{Items: items, calls: map[string]int{}} }

func (p *Probe) note(method string) {
	p.mu.Lock()
	p.calls[method]++
	n, hook := p.calls[method], p.hook
	p.mu.Unlock()
	if hook != nil {
		hook(method, n)
	}
}

// Hook arms fn to run before every call, with the method and how many
// calls of it there were counted from now (the counts restart).
func (p *Probe) Hook(fn func(method string, n int)) {
	p.Reset()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hook = fn
}

// Before arms the hook: fn runs before the nth call of method counted from
// now (the counts restart).
func (p *Probe) Before(method string, n int, fn func()) {
	p.Hook(func(m string, i int) {
		if m == method && i == n {
			fn()
		}
	})
}

// Disarm removes the hook.
func (p *Probe) Disarm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hook = nil
}

// Reset clears the counts and returns what they were.
func (p *Probe) Reset() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.calls
	p.calls = map[string]int{}
	return old
}

// ItemGet implements storage.Items.
func (p *Probe) ItemGet(ctx context.Context, pk, sk string) (storage.Item, error) {
	p.note("ItemGet")
	return p.Items.ItemGet(ctx, pk, sk)
}

// ItemPut implements storage.Items.
func (p *Probe) ItemPut(ctx context.Context, it storage.Item, c storage.Cond) error {
	p.note("ItemPut")
	return p.Items.ItemPut(ctx, it, c)
}

// ItemAdd implements storage.Items.
func (p *Probe) ItemAdd(ctx context.Context, it storage.Item, d int64, c storage.Cond) (storage.Item, error) {
	p.note("ItemAdd")
	return p.Items.ItemAdd(ctx, it, d, c)
}

// ItemDelete implements storage.Items.
func (p *Probe) ItemDelete(ctx context.Context, pk, sk string, c storage.Cond) error {
	p.note("ItemDelete")
	return p.Items.ItemDelete(ctx, pk, sk, c)
}

// ItemQuery implements storage.Items.
func (p *Probe) ItemQuery(ctx context.Context, pk, prefix, after string, limit int) ([]storage.Item, bool, error) {
	p.note("ItemQuery")
	return p.Items.ItemQuery(ctx, pk, prefix, after, limit)
}

// Transact implements storage.Items.
func (p *Probe) Transact(ctx context.Context, ops []storage.Op) error {
	p.note("Transact")
	return p.Items.Transact(ctx, ops)
}

// ItemGetBatch implements storage.ItemBatchGetter when the wrapped driver
// does (both drivers do).
func (p *Probe) ItemGetBatch(ctx context.Context, keys []storage.Key) ([]storage.Item, error) {
	p.note("ItemGetBatch")
	return p.Items.(storage.ItemBatchGetter).ItemGetBatch(ctx, keys)
}
