package vulndb

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/berth-registry/berth/pkg/inventory"
	gocvss30 "github.com/pandatix/go-cvss/30"
	gocvss31 "github.com/pandatix/go-cvss/31"
	gocvss40 "github.com/pandatix/go-cvss/40"
)

// severityOf picks a severity from, in order: a textual severity in the
// database- or ecosystem-specific objects (GHSA's "database_specific":
// {"severity": "HIGH"}, Alpine/Red Hat style labels), then the highest
// CVSS score among the vectors in sev, then a distro's own rating
// (Ubuntu's {"type": "Ubuntu", "score": "medium"}).
//
// A curated label goes first because it is the publisher's own judgement
// for this ecosystem (a distro often rates a CVE lower than NVD's CVSS
// because of how it builds the package). The score is returned only when
// the severity came from a CVSS vector: it is that vector.
func severityOf(sev []osvSeverity, specific ...json.RawMessage) (inventory.Severity, string) {
	for _, raw := range specific {
		if s := labelIn(raw); s != inventory.SeverityUnknown {
			return s, ""
		}
	}
	best, bestScore, vector := inventory.SeverityUnknown, -1.0, ""
	for _, s := range sev {
		score, ok := cvssScore(s.Type, s.Score)
		if !ok {
			continue
		}
		if score > bestScore {
			best, bestScore, vector = cvssBand(score), score, s.Score
		}
	}
	if best != inventory.SeverityUnknown {
		return best, vector
	}
	for _, s := range sev {
		if l := label(s.Score); l != inventory.SeverityUnknown && !strings.HasPrefix(s.Type, "CVSS") {
			return l, ""
		}
	}
	return inventory.SeverityUnknown, ""
}

// labelIn reads {"severity": "..."} from a database_specific or
// ecosystem_specific object; anything else there is ignored.
func labelIn(raw json.RawMessage) inventory.Severity {
	if len(raw) == 0 {
		return inventory.SeverityUnknown
	}
	var obj struct {
		Severity json.RawMessage `json:"severity"`
	}
	if json.Unmarshal(raw, &obj) != nil || len(obj.Severity) == 0 {
		return inventory.SeverityUnknown
	}
	var s string
	if json.Unmarshal(obj.Severity, &s) != nil {
		return inventory.SeverityUnknown
	}
	return label(s)
}

// label maps the words advisory databases use to the four bands: GHSA's
// MODERATE, Red Hat's Important, Debian's and Ubuntu's negligible and
// unimportant (both mean "a vulnerability, but not worth a fix").
func label(s string) inventory.Severity {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "CRITICAL":
		return inventory.SeverityCritical
	case "HIGH", "IMPORTANT":
		return inventory.SeverityHigh
	case "MEDIUM", "MODERATE":
		return inventory.SeverityMedium
	case "LOW", "NEGLIGIBLE", "UNIMPORTANT":
		return inventory.SeverityLow
	}
	return inventory.SeverityUnknown
}

// ScoreVector computes the base score of a CVSS v3.0, v3.1 or v4.0
// vector ("CVSS:3.1/AV:N/…"); ok is false for anything else. Report
// writers use it to give a rating its number.
func ScoreVector(vector string) (score float64, ok bool) {
	if !strings.HasPrefix(vector, "CVSS:") {
		return 0, false
	}
	return cvssScore("CVSS_V3", vector)
}

// cvssScore computes the base score of a CVSS v3.0, v3.1 or v4.0 vector
// (OSV severity types CVSS_V3 and CVSS_V4); v2 vectors and anything
// unparsable are skipped. A bare number (some databases put the score
// itself) is accepted too.
func cvssScore(typ, vector string) (float64, bool) {
	switch typ {
	case "CVSS_V3", "CVSS_V4":
	default:
		return 0, false
	}
	switch {
	case strings.HasPrefix(vector, "CVSS:3.1/"):
		v, err := gocvss31.ParseVector(vector)
		if err != nil {
			return 0, false
		}
		return v.BaseScore(), true
	case strings.HasPrefix(vector, "CVSS:3.0/"):
		v, err := gocvss30.ParseVector(vector)
		if err != nil {
			return 0, false
		}
		return v.BaseScore(), true
	case strings.HasPrefix(vector, "CVSS:4.0/"):
		v, err := gocvss40.ParseVector(vector)
		if err != nil {
			return 0, false
		}
		return v.Score(), true
	}
	if f, err := strconv.ParseFloat(vector, 64); err == nil && f >= 0 && f <= 10 {
		return f, true
	}
	return 0, false
}

// cvssBand maps a score to its qualitative rating (CVSS v3.1 and v4.0
// specifications, same bands). 0.0 is "None" there; a published
// advisory with a zero score is still an advisory, so it reads as LOW
// rather than disappearing below the fail-on thresholds.
func cvssBand(score float64) inventory.Severity {
	switch {
	case score >= 9.0:
		return inventory.SeverityCritical
	case score >= 7.0:
		return inventory.SeverityHigh
	case score >= 4.0:
		return inventory.SeverityMedium
	default:
		return inventory.SeverityLow
	}
}
