package registry

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

func TestUploadID(t *testing.T) {
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	id := newUploadID("lib/app", now, false)
	if len(id) != 38 || !validUploadID(id) {
		t.Fatalf("id %q: %d characters, valid %v", id, len(id), validUploadID(id))
	}
	if got, stored, ok := parseUploadID(id, "lib/app"); !ok || stored || !got.Equal(now) {
		t.Fatalf("parse = %v, %v, %v; want %v, not stored", got, stored, ok, now)
	}
	if other := newUploadID("lib/app", now, false); other == id {
		t.Fatal("two ids minted at once are equal")
	}
	for range 20 { // the flag is one random bit, set or cleared
		if _, stored, ok := parseUploadID(newUploadID("lib/app", now, true), "lib/app"); !ok || !stored {
			t.Fatalf("id of a session stored when minted: stored %v, ok %v", stored, ok)
		}
		if _, stored, ok := parseUploadID(newUploadID("lib/app", now, false), "lib/app"); !ok || stored {
			t.Fatalf("id of a session not stored: stored %v, ok %v", stored, ok)
		}
	}
	raw, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil {
		t.Fatal(err)
	}
	// Every byte counts: the random part (with the stored flag), the time
	// and the check.
	for i := range raw {
		for _, bit := range []byte{0x01, 0x80} {
			b := append([]byte{}, raw...)
			b[i] ^= bit
			if _, _, ok := parseUploadID(base64.RawURLEncoding.EncodeToString(b), "lib/app"); ok {
				t.Errorf("id with bit %#x of byte %d changed still parses", bit, i)
			}
		}
	}
	for name, bad := range map[string]string{
		"another repository":     "lib/other",
		"a prefix of the name":   "lib/ap",
		"the name and one more":  "lib/appx",
		"no repository at all":   "",
		"the name in upper case": "LIB/APP",
	} {
		if _, _, ok := parseUploadID(id, bad); ok {
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
		if _, _, ok := parseUploadID(bad, "lib/app"); ok {
			t.Errorf("%s (%q): parses", name, bad)
		}
	}
}
