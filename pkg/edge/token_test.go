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
