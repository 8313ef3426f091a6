package registry

import (
	"errors"
	"strconv"
	"strings"
)

var errContentRange = errors.New("invalid Content-Range")

// parseContentRange parses an upload chunk's Content-Range. The OCI form is
// "<start>-<end>" (inclusive); the HTTP forms "bytes <start>-<end>/<total|*>"
// and "bytes=<start>-<end>" are accepted too, since clients send them.
func parseContentRange(s string) (start, end int64, err error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, "bytes="):
		s = s[len("bytes="):]
	case strings.HasPrefix(s, "bytes "):
		s = s[len("bytes "):]
		if i := strings.IndexByte(s, '/'); i >= 0 {
			total := s[i+1:]
			if total != "*" {
				if _, err := strconv.ParseUint(total, 10, 63); err != nil {
					return 0, 0, errContentRange
				}
			}
			s = s[:i]
		}
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, errContentRange
	}
	start, err1 := parseNonNeg(a)
	end, err2 := parseNonNeg(b)
	if err1 != nil || err2 != nil || end < start {
		return 0, 0, errContentRange
	}
	return start, end, nil
}

func parseNonNeg(s string) (int64, error) {
	if s == "" || len(s) > 19 {
		return 0, errContentRange
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, errContentRange
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// rangeHeader is the Range response header for an upload holding n bytes.
func rangeHeader(n int64) string {
	if n <= 0 {
		return "0-0"
	}
	return "0-" + strconv.FormatInt(n-1, 10)
}
