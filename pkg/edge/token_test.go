package edge

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTokenRoundTrip(t *testing.T) {
	k := Key{ID: "k1", Secret: strings.Repeat("s", 43)}
	now := time.Unix(1_800_000_000, 0)
	tok, err := Sign(k, Claims{Repo: "team/app", Upload: "abc_-1", Expires: now.Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(tok, "/%?#+=") {
		t.Fatalf("token %q is not path-safe", tok)
	}
	lookup := func(kid string) (string, error) {
		if kid == "k1" {
			return k.Secret, nil
		}
		return "", errors.New("no key")
	}
	c, err := Verify(tok, lookup, now)
	if err != nil || c.Repo != "team/app" || c.Upload != "abc_-1" {
		t.Fatalf("Verify = %+v, %v", c, err)
	}
	if _, err := Verify(tok, lookup, now.Add(2*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: %v", err)
	}
	parts := strings.Split(tok, ".")
	forged := parts[0] + "." + parts[1] + "x." + parts[2]
	if _, err := Verify(forged, lookup, now); !errors.Is(err, ErrSignature) {
		t.Fatalf("forged: %v", err)
	}
	if _, err := Verify("k2."+parts[1]+"."+parts[2], lookup, now); err == nil {
		t.Fatal("unknown kid accepted")
	}
	for _, bad := range []string{"", "a.b", "a.b.c.d", "../x.y.z", "k1..sig"} {
		if _, err := Verify(bad, lookup, now); err == nil {
			t.Errorf("Verify(%q) accepted", bad)
		}
	}
}

func TestSignRefusesBadInput(t *testing.T) {
	good := Key{ID: "k1", Secret: strings.Repeat("s", 32)}
	exp := time.Now().Add(time.Hour).Unix()
	cases := []struct {
		k Key
		c Claims
	}{
		{Key{ID: "k/1", Secret: good.Secret}, Claims{Repo: "a", Upload: "u", Expires: exp}},
		{Key{ID: "k1", Secret: "short"}, Claims{Repo: "a", Upload: "u", Expires: exp}},
		{good, Claims{Repo: "A", Upload: "u", Expires: exp}},
		{good, Claims{Repo: "a", Upload: "u/1", Expires: exp}},
		{good, Claims{Repo: "a", Upload: "", Expires: exp}},
	}
	for _, c := range cases {
		if _, err := Sign(c.k, c.c); err == nil {
			t.Errorf("Sign(%+v, %+v) accepted", c.k, c.c)
		}
	}
}

func TestRotate(t *testing.T) {
	ctx := t.Context()
	st := NewMemoryStore()
	rot := Rotation{Every: 24 * time.Hour, Propagate: 10 * time.Minute, Keep: 2 * time.Hour}
	t0 := time.Unix(1_800_000_000, 0)
	rep, err := Rotate(ctx, st, rot, t0)
	if err != nil || rep.Added == "" || rep.Current != rep.Added {
		t.Fatalf("first run: %+v %v", rep, err)
	}
	first := rep.Current
	kr := NewKeyring(st, time.Nanosecond)
	tok, err := kr.Token(ctx, "app", "u1", t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// Nothing to do until Every has passed.
	if rep, _ = Rotate(ctx, st, rot, t0.Add(time.Hour)); rep.Added != "" || rep.Current != first {
		t.Fatalf("early run: %+v", rep)
	}
	// A new key is added but not current yet.
	t1 := t0.Add(25 * time.Hour)
	rep, _ = Rotate(ctx, st, rot, t1)
	if rep.Added == "" || rep.Current != first {
		t.Fatalf("add run: %+v", rep)
	}
	second := rep.Added
	// After propagation it becomes current; the old key stays for Keep.
	rep, _ = Rotate(ctx, st, rot, t1.Add(11*time.Minute))
	if rep.Current != second || len(rep.Removed) != 0 {
		t.Fatalf("promote run: %+v", rep)
	}
	if _, err := Verify(tok, Lookup(ctx, st), t0.Add(30*time.Minute)); err != nil {
		t.Fatalf("old token after promotion: %v", err)
	}
	rep, _ = Rotate(ctx, st, rot, t1.Add(3*time.Hour))
	if len(rep.Removed) != 1 || rep.Removed[0] != first {
		t.Fatalf("retire run: %+v", rep)
	}
	if _, err := st.KeyGet(ctx, KeyPrefix+first); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("retired key still there: %v", err)
	}
	if k, err := kr.Current(ctx); err != nil || k.ID != second {
		t.Fatalf("Current = %+v, %v", k, err)
	}
}

func TestKeyringWithoutKey(t *testing.T) {
	kr := NewKeyring(NewMemoryStore(), 0)
	if _, err := kr.Token(t.Context(), "app", "u", time.Now().Add(time.Hour)); !errors.Is(err, ErrNoKey) {
		t.Fatalf("Token on empty store: %v", err)
	}
}
