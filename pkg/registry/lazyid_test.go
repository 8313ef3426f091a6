package registry

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

func TestUploadID(t *testing.T) {
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	id := newUploadID("lib/app", now)
	if len(id) != 38 || !validUploadID(id) {
		t.Fatalf("id %q: %d characters, valid %v", id, len(id), validUploadID(id))
	}
	if got, ok := parseUploadID(id, "lib/app"); !ok || !got.Equal(now) {
		t.Fatalf("parse = %v, %v; want %v", got, ok, now)
	}
	if other := newUploadID("lib/app", now); other == id {
		t.Fatal("two ids minted at once are equal")
	}
	raw, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil {
		t.Fatal(err)
	}
	// Every byte counts: the random part, the time and the check.
	for i := range raw {
		b := append([]byte{}, raw...)
		b[i] ^= 0x01
		if _, ok := parseUploadID(base64.RawURLEncoding.EncodeToString(b), "lib/app"); ok {
			t.Errorf("id with byte %d changed still parses", i)
		}
	}
	for name, bad := range map[string]string{
		"another repository":     "lib/other",
		"a prefix of the name":   "lib/ap",
		"the name and one more":  "lib/appx",
		"no repository at all":   "",
		"the name in upper case": "LIB/APP",
	} {
		if _, ok := parseUploadID(id, bad); ok {
			t.Errorf("%s: parses", name)
		}
	}
	for name, bad := range map[string]string{
		"old form (18 random bytes)": base64.RawURLEncoding.EncodeToString(make([]byte, 18)),
		"one character short":        id[:len(id)-1],
		"one character more":         id + "A",
		"padded":                     base64.URLEncoding.EncodeToString(raw),
		"standard alphabet":          strings.NewReplacer("-", "+", "_", "/").Replace(id),
	} {
		if bad == id {
			continue // the id had no character the standard alphabet differs in
		}
		if _, ok := parseUploadID(bad, "lib/app"); ok {
			t.Errorf("%s (%q): parses", name, bad)
		}
	}
}
