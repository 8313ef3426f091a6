package registry

import "testing"

func TestParseContentRange(t *testing.T) {
	ok := map[string][2]int64{
		"0-0":           {0, 0},
		"0-1023":        {0, 1023},
		"1024-2047":     {1024, 2047},
		"bytes 5-9/*":   {5, 9},
		"bytes 5-9/100": {5, 9},
		"bytes=5-9":     {5, 9},
		" 7-7 ":         {7, 7},
	}
	for s, want := range ok {
		a, b, err := parseContentRange(s)
		if err != nil || a != want[0] || b != want[1] {
			t.Errorf("%q: %d-%d %v", s, a, b, err)
		}
	}
	for _, s := range []string{"", "-", "5-", "-5", "9-5", "a-b", "1-2-3", "+1-2", "0x1-2", "bytes 1-2/x", "99999999999999999999-1", "-1-2"} {
		if _, _, err := parseContentRange(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	if rangeHeader(0) != "0-0" || rangeHeader(1) != "0-0" || rangeHeader(10) != "0-9" {
		t.Error("rangeHeader")
	}
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"0-0", "0-1023", "bytes 5-9/*", "bytes=1-2", "9-5", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, b, err := parseContentRange(s)
		if err == nil && (a < 0 || b < a) {
			t.Fatalf("%q parsed to %d-%d", s, a, b)
		}
	})
}
