package vulndb

import (
	"encoding/json"
	"strings"

	"github.com/berth-registry/berth/pkg/inventory"
)

// osvRecord is the part of an OSV record (https://ossf.github.io/osv-schema/)
// that matching needs. Everything else (references, credits, details
// beyond the first line) is left undecoded so a record costs only what a
// finding can show.
type osvRecord struct {
	ID               string          `json:"id"`
	Withdrawn        string          `json:"withdrawn"`
	Aliases          []string        `json:"aliases"`
	Summary          string          `json:"summary"`
	Details          string          `json:"details"`
	Severity         []osvSeverity   `json:"severity"`
	Affected         []osvAffected   `json:"affected"`
	DatabaseSpecific json.RawMessage `json:"database_specific"`
}

type osvSeverity struct {
	Type  string `json:"type"`
	Score string `json:"score"`
}

type osvAffected struct {
	Package struct {
		Ecosystem string `json:"ecosystem"`
		Name      string `json:"name"`
		PURL      string `json:"purl"`
	} `json:"package"`
	Severity          []osvSeverity   `json:"severity"`
	Ranges            []osvRange      `json:"ranges"`
	Versions          []string        `json:"versions"`
	EcosystemSpecific json.RawMessage `json:"ecosystem_specific"`
	DatabaseSpecific  json.RawMessage `json:"database_specific"`
}

type osvRange struct {
	Type   string     `json:"type"`
	Events []osvEvent `json:"events"`
}

type osvEvent struct {
	Introduced   string `json:"introduced"`
	Fixed        string `json:"fixed"`
	LastAffected string `json:"last_affected"`
	Limit        string `json:"limit"`
}

// record is what the index keeps of one OSV record, shared by all its
// affected entries.
type record struct {
	id       string
	aliases  []string
	summary  string
	severity inventory.Severity
	score    string
}

// entry is one affected[] element of a record, as indexed under its
// package.
type entry struct {
	rec *record
	// ecosystem is the entry's full ecosystem ("Debian:12").
	ecosystem string
	ranges    []rangeSpec
	versions  []string
	// severity and score override the record's when the entry carries
	// its own (ecosystem_specific.severity, affected[].severity).
	severity inventory.Severity
	score    string
}

type eventKind uint8

const (
	evIntroduced eventKind = iota
	evFixed
	evLastAffected
	evLimit
)

type event struct {
	kind    eventKind
	version string
}

type rangeSpec struct {
	semver bool // SEMVER range: versions compare as semver whatever the ecosystem
	events []event
}

// maxSummary bounds the summary kept when a record has none and the first
// line of its details stands in (Debian's records have only details).
const maxSummary = 200

// compact turns a decoded record into the index's form. It returns nil for
// a record that cannot match anything (withdrawn, no affected entries).
func compact(r *osvRecord, intern func(string) string) (*record, []osvAffectedEntry) {
	if r.Withdrawn != "" || len(r.Affected) == 0 {
		return nil, nil
	}
	rec := &record{id: r.ID, summary: r.Summary}
	if len(r.Aliases) > 0 {
		rec.aliases = r.Aliases
	}
	if rec.summary == "" && r.Details != "" {
		line, _, _ := strings.Cut(strings.TrimSpace(r.Details), "\n")
		rec.summary = truncate(strings.TrimSpace(line), maxSummary)
	}
	rec.severity, rec.score = severityOf(r.Severity, r.DatabaseSpecific, nil)
	out := make([]osvAffectedEntry, 0, len(r.Affected))
	for i := range r.Affected {
		a := &r.Affected[i]
		if a.Package.Ecosystem == "" || a.Package.Name == "" {
			continue
		}
		e := &entry{rec: rec, ecosystem: intern(a.Package.Ecosystem)}
		if len(a.Versions) > 0 {
			// Enumerated versions repeat across an ecosystem's records
			// ("1.0.0" in thousands of them): one copy each.
			e.versions = make([]string, len(a.Versions))
			for i, v := range a.Versions {
				e.versions[i] = intern(v)
			}
		}
		for _, rg := range a.Ranges {
			var semver bool
			switch rg.Type {
			case "ECOSYSTEM":
			case "SEMVER":
				semver = true
			default:
				// GIT ranges name commits, which an installed package
				// does not carry.
				continue
			}
			spec := rangeSpec{semver: semver, events: make([]event, 0, len(rg.Events))}
			for _, ev := range rg.Events {
				switch {
				case ev.Introduced != "":
					spec.events = append(spec.events, event{evIntroduced, intern(ev.Introduced)})
				case ev.Fixed != "":
					spec.events = append(spec.events, event{evFixed, intern(ev.Fixed)})
				case ev.LastAffected != "":
					spec.events = append(spec.events, event{evLastAffected, intern(ev.LastAffected)})
				case ev.Limit != "":
					spec.events = append(spec.events, event{evLimit, intern(ev.Limit)})
				}
			}
			if len(spec.events) > 0 {
				e.ranges = append(e.ranges, spec)
			}
		}
		if len(e.ranges) == 0 && len(e.versions) == 0 {
			continue
		}
		if len(a.Severity) > 0 || len(a.EcosystemSpecific) > 0 || len(a.DatabaseSpecific) > 0 {
			s, sc := severityOf(a.Severity, a.EcosystemSpecific, a.DatabaseSpecific)
			if s != inventory.SeverityUnknown {
				e.severity, e.score = s, sc
			}
		}
		out = append(out, osvAffectedEntry{name: a.Package.Name, entry: e})
	}
	if len(out) == 0 {
		return nil, nil
	}
	return rec, out
}

type osvAffectedEntry struct {
	name  string
	entry *entry
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary.
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
