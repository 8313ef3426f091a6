package oidc_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/berth-registry/berth/pkg/auth/oidc"
)

// TestFailedFetchIsCached: a failing issuer is asked again only after a
// backoff, not on every token (issue 11, point 9); the backoff grows while
// it keeps failing and a success clears it.
func TestFailedFetchIsCached(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	iss, v := setup(t, oidc.WithClock(clock))
	raw := iss.Sign(iss.GitHubClaims("registry.example", "org/app", "refs/heads/main"), false)
	iss.SetFailure(http.StatusInternalServerError)
	for range 5 {
		if _, err := v.Verify(context.Background(), raw); !errors.Is(err, oidc.ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
	}
	if n := iss.DiscoveryCalls(); n != 1 {
		t.Fatalf("issuer asked %d times during the backoff, want 1", n)
	}
	advance(oidc.InitialBackoff + time.Millisecond)
	if _, err := v.Verify(context.Background(), raw); !errors.Is(err, oidc.ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if n := iss.DiscoveryCalls(); n != 2 {
		t.Fatalf("issuer asked %d times after the first backoff, want 2", n)
	}
	// The second failure doubles the backoff.
	advance(oidc.InitialBackoff + time.Millisecond)
	if _, err := v.Verify(context.Background(), raw); !errors.Is(err, oidc.ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if n := iss.DiscoveryCalls(); n != 2 {
		t.Fatalf("issuer asked %d times within the doubled backoff, want 2", n)
	}
	iss.SetFailure(0)
	advance(oidc.InitialBackoff)
	if _, err := v.Verify(context.Background(), raw); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	if n := iss.DiscoveryCalls(); n != 3 {
		t.Fatalf("issuer asked %d times, want 3", n)
	}
}

// TestSlowIssuerDoesNotStall: while a refresh waits on a slow issuer,
// tokens signed with cached keys verify at once, concurrent refreshes share
// one fetch, and the fetch is bounded by the fetch timeout.
func TestSlowIssuerDoesNotStall(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	iss, v := setup(t, oidc.WithClock(clock), oidc.WithRefreshInterval(time.Minute), oidc.WithFetchTimeout(time.Second))
	claims := iss.GitHubClaims("registry.example", "org/app", "refs/heads/main")
	known := iss.Sign(claims, false)
	if _, err := v.Verify(context.Background(), known); err != nil {
		t.Fatal(err)
	}
	// A token with a key ID the cache does not know, once the refresh
	// interval has passed, makes the verifier ask the (now hanging) issuer.
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	iss.Rotate()
	unknown := iss.Sign(claims, true)
	iss.SetDelay(time.Minute)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	start := time.Now()
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = v.Verify(context.Background(), unknown)
		}()
	}
	time.Sleep(100 * time.Millisecond)
	t0 := time.Now()
	if _, err := v.Verify(context.Background(), known); err != nil {
		t.Fatalf("cached key: %v", err)
	}
	if d := time.Since(t0); d > 200*time.Millisecond {
		t.Fatalf("a token with a cached key waited %s for another token's refresh", d)
	}
	// A caller that gives up does not wait for the fetch.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if _, err := v.Verify(ctx, unknown); !errors.Is(err, oidc.ErrUnavailable) {
		t.Fatalf("cancelled caller: %v", err)
	}
	cancel()
	wg.Wait()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("refresh took %s, not bounded by the fetch timeout", d)
	}
	for _, err := range errs {
		if !errors.Is(err, oidc.ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
	}
	if n := iss.DiscoveryCalls(); n != 2 {
		t.Fatalf("discovery asked %d times, want 2 (one initial, one shared refresh)", n)
	}
}
