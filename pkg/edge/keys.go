package edge

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrNoKey: the key store holds no current signing key (yet): the registry
// then hands out its own upload URLs instead of edge ones.
var ErrNoKey = errors.New("no current upload token key")

// ErrKeyNotFound is what a KeyStore returns for an absent key.
var ErrKeyNotFound = errors.New("key not found")

// KeyStore reads the key-value store the CloudFront Function reads
// (CloudFront KeyValueStore in AWS, MemoryStore locally).
type KeyStore interface {
	// KeyGet returns the value of key, or an error wrapping ErrKeyNotFound.
	KeyGet(ctx context.Context, key string) (string, error)
}

// KeyAdmin also writes it: only the key rotation needs this.
type KeyAdmin interface {
	KeyStore
	KeyPut(ctx context.Context, key, value string) error
	KeyDelete(ctx context.Context, key string) error
	// KeyList returns every key with the given prefix and its value.
	KeyList(ctx context.Context, prefix string) (map[string]string, error)
}

// Keyring mints upload tokens with the current key. It caches the key for
// a while so a busy API function reads the store rarely.
type Keyring struct {
	store KeyStore
	ttl   time.Duration
	now   func() time.Time

	mu      sync.Mutex
	key     Key
	fetched time.Time
}

// NewKeyring returns a Keyring over store that re-reads the current key
// after cacheFor (default 5 minutes).
func NewKeyring(store KeyStore, cacheFor time.Duration) *Keyring {
	if cacheFor <= 0 {
		cacheFor = 5 * time.Minute
	}
	return &Keyring{store: store, ttl: cacheFor, now: time.Now}
}

// Current returns the key new tokens are signed with, or ErrNoKey.
func (k *Keyring) Current(ctx context.Context) (Key, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.key.ID != "" && k.now().Sub(k.fetched) < k.ttl {
		return k.key, nil
	}
	kid, err := k.store.KeyGet(ctx, KeyCurrent)
	if errors.Is(err, ErrKeyNotFound) {
		return Key{}, ErrNoKey
	}
	if err != nil {
		return Key{}, fmt.Errorf("upload token key: %w", err)
	}
	secret, err := k.store.KeyGet(ctx, KeyPrefix+kid)
	if errors.Is(err, ErrKeyNotFound) {
		return Key{}, fmt.Errorf("%w: current key %q is missing", ErrNoKey, kid)
	}
	if err != nil {
		return Key{}, fmt.Errorf("upload token key: %w", err)
	}
	k.key, k.fetched = Key{ID: kid, Secret: secret}, k.now()
	return k.key, nil
}

// Token signs an upload token for repo's session upload, valid until expires.
func (k *Keyring) Token(ctx context.Context, repo, upload string, expires time.Time) (string, error) {
	key, err := k.Current(ctx)
	if err != nil {
		return "", err
	}
	return Sign(key, Claims{Repo: repo, Upload: upload, Expires: expires.Unix()})
}

// Lookup returns the secret of kid, for Verify.
func Lookup(ctx context.Context, store KeyStore) func(kid string) (string, error) {
	return func(kid string) (string, error) { return store.KeyGet(ctx, KeyPrefix+kid) }
}

// NewSecret returns a fresh random signing secret (256 bits, base64url).
func NewSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Rotation says when keys change: a new key is added every Every, becomes
// current once it has been in the store for Propagate (so every edge
// location has it before a token names it), and a retired key is deleted
// once no token signed with it can still be valid (Keep after it stopped
// being current, at least the token lifetime).
type Rotation struct {
	Every     time.Duration // default 30 days
	Propagate time.Duration // default 10 minutes
	Keep      time.Duration // default 2 hours
}

func (r *Rotation) setDefaults() {
	if r.Every <= 0 {
		r.Every = 30 * 24 * time.Hour
	}
	if r.Propagate <= 0 {
		r.Propagate = 10 * time.Minute
	}
	if r.Keep <= 0 {
		r.Keep = 2 * time.Hour
	}
}

// Key ids are the unix second they were created at, in base 36: they sort
// by age and say when to rotate without any other bookkeeping.
func newKeyID(now time.Time) string { return strconv.FormatInt(now.Unix(), 36) }

func keyAge(kid string, now time.Time) (time.Duration, bool) {
	s, err := strconv.ParseInt(kid, 36, 64)
	if err != nil {
		return 0, false
	}
	return now.Sub(time.Unix(s, 0)), true
}

// RotateReport says what Rotate did.
type RotateReport struct {
	Current string
	Added   string
	Removed []string
}

// Rotate brings the store to the state the rotation asks for at now. It is
// idempotent and safe to run on a schedule (the cleanup function runs it
// every hour). On a store without keys it creates one and makes it current
// at once: no token exists yet that another key could have signed.
func Rotate(ctx context.Context, store KeyAdmin, rot Rotation, now time.Time) (RotateReport, error) {
	rot.setDefaults()
	var rep RotateReport
	keys, err := store.KeyList(ctx, KeyPrefix)
	if err != nil {
		return rep, err
	}
	current := keys[KeyCurrent]
	delete(keys, KeyCurrent)
	var ids []string
	for k := range keys {
		ids = append(ids, strings.TrimPrefix(k, KeyPrefix))
	}
	sort.Slice(ids, func(i, j int) bool { return len(ids[i]) < len(ids[j]) || len(ids[i]) == len(ids[j]) && ids[i] < ids[j] })
	if current == "" || keys[KeyPrefix+current] == "" {
		kid := newKeyID(now)
		if len(ids) > 0 {
			kid = ids[len(ids)-1]
		} else {
			if err := store.KeyPut(ctx, KeyPrefix+kid, NewSecret()); err != nil {
				return rep, err
			}
			rep.Added = kid
			ids = append(ids, kid)
		}
		if err := store.KeyPut(ctx, KeyCurrent, kid); err != nil {
			return rep, err
		}
		current = kid
	}
	rep.Current = current
	newest := ids[len(ids)-1]
	age, _ := keyAge(newest, now)
	switch {
	case newest == current && age >= rot.Every:
		// Time for a new key: add it now, promote it on a later run.
		kid := newKeyID(now)
		if err := store.KeyPut(ctx, KeyPrefix+kid, NewSecret()); err != nil {
			return rep, err
		}
		rep.Added = kid
	case newest != current && age >= rot.Propagate:
		if err := store.KeyPut(ctx, KeyCurrent, newest); err != nil {
			return rep, err
		}
		rep.Current = newest
	}
	// Retire keys older than the current one once no token they signed can
	// still be valid: a key stopped being current no earlier than its
	// successor was created, so Propagate+Keep after that is enough.
	ci := slices.Index(ids, rep.Current)
	for i := 0; i < ci; i++ {
		if succ, ok := keyAge(ids[i+1], now); !ok || succ < rot.Propagate+rot.Keep {
			continue
		}
		if err := store.KeyDelete(ctx, KeyPrefix+ids[i]); err != nil {
			return rep, err
		}
		rep.Removed = append(rep.Removed, ids[i])
	}
	return rep, nil
}

// MemoryStore is an in-process key store: the local stand-in for the
// CloudFront KeyValueStore (berth serve --edge, tests).
type MemoryStore struct {
	mu sync.Mutex
	m  map[string]string
}

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore { return &MemoryStore{m: map[string]string{}} }

// KeyGet implements KeyStore.
func (s *MemoryStore) KeyGet(_ context.Context, key string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	if !ok {
		return "", fmt.Errorf("%w: %s", ErrKeyNotFound, key)
	}
	return v, nil
}

// KeyPut implements KeyAdmin.
func (s *MemoryStore) KeyPut(_ context.Context, key, value string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = value
	return nil
}

// KeyDelete implements KeyAdmin.
func (s *MemoryStore) KeyDelete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}

// KeyList implements KeyAdmin.
func (s *MemoryStore) KeyList(_ context.Context, prefix string) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for k, v := range s.m {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out, nil
}
