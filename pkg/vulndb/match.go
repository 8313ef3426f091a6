package vulndb

import (
	"cmp"
	"context"
	"slices"
	"strings"

	"github.com/berth-registry/berth/pkg/inventory"
	"github.com/google/osv-scalibr/semantic"
)

// Match returns the findings for the packages visible in img: one per
// (record, package, path, layer), ordered by severity (most severe
// first), then record ID, then package name, version, path and layer.
//
// Distro packages are matched in the release the image's os-release
// names (see distroOf) under their source package; language packages in
// their ecosystem as named. Versions compare with osv-scalibr's
// semantic package, i.e. each ecosystem's own ordering (dpkg, apk, rpm,
// PEP 440, Maven, semver). A package whose ecosystem or release has no
// OSV data, or whose version does not parse, is not matched.
//
// The only errors are ctx's and failures to read the data files.
func (db *DB) Match(ctx context.Context, img inventory.Image) ([]inventory.Finding, error) {
	d, haveDistro := distroOf(img.OSRelease)
	type key struct {
		id, name, version, path string
		layer                   string
	}
	seen := map[key]int{}
	var out []inventory.Finding
	for _, p := range img.Packages {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t, ok := targetOf(p, d, haveDistro)
		if !ok {
			continue
		}
		entries, err := db.lookup(ctx, t.base, t.name)
		if err != nil {
			return nil, err
		}
		if len(entries) == 0 {
			continue
		}
		inst := &installed{raw: t.version, base: t.base}
		for _, e := range entries {
			if !t.accept(e.ecosystem) {
				continue
			}
			hit, fixed := e.affects(inst)
			if !hit {
				continue
			}
			sev, score := e.rec.severity, e.rec.score
			if e.severity != "" {
				sev, score = e.severity, e.score
			}
			k := key{e.rec.id, p.Name, p.Version, p.Path, string(p.Layer)}
			if i, dup := seen[k]; dup {
				// The same record matched through a second affected
				// entry (or a second copy of the record): one finding,
				// with the worse severity and the nearer fix.
				f := &out[i]
				if sev.Rank() > f.Severity.Rank() {
					f.Severity, f.Score = sev, score
				}
				if fixed != "" && (f.Fixed == "" || inst.less(e.semverOnly(), fixed, f.Fixed)) {
					f.Fixed = fixed
				}
				continue
			}
			seen[k] = len(out)
			out = append(out, inventory.Finding{
				ID:        e.rec.id,
				Aliases:   slices.Clone(e.rec.aliases),
				Summary:   e.rec.summary,
				Severity:  sev,
				Score:     score,
				Fixed:     fixed,
				Package:   p,
				Ecosystem: e.ecosystem,
			})
		}
	}
	SortFindings(out)
	return out, nil
}

// SortFindings puts findings in Match's order: severity (most severe
// first), ID, package name, version, path, layer.
func SortFindings(fs []inventory.Finding) {
	slices.SortStableFunc(fs, func(a, b inventory.Finding) int {
		if c := cmp.Compare(b.Severity.Rank(), a.Severity.Rank()); c != 0 {
			return c
		}
		return cmp.Or(
			strings.Compare(a.ID, b.ID),
			strings.Compare(a.Package.Name, b.Package.Name),
			strings.Compare(a.Package.Version, b.Package.Version),
			strings.Compare(a.Package.Path, b.Package.Path),
			strings.Compare(string(a.Package.Layer), string(b.Package.Layer)),
		)
	})
}

// installed is an installed version, parsed on demand in the two ways a
// range can ask for: the ecosystem's ordering and plain semver.
type installed struct {
	raw, base string
	eco, sem  semantic.Version
	ecoTried  bool
	semTried  bool
	ecoUsable bool
	semUsable bool
}

func (i *installed) version(semver bool) (semantic.Version, bool) {
	if semver {
		if !i.semTried {
			i.semTried = true
			i.sem = semantic.ParseSemverVersion(strings.TrimPrefix(i.raw, "v"))
			i.semUsable = true
		}
		return i.sem, i.semUsable
	}
	if !i.ecoTried {
		i.ecoTried = true
		v, err := semantic.Parse(i.raw, i.base)
		i.eco, i.ecoUsable = v, err == nil
	}
	return i.eco, i.ecoUsable
}

// less compares two fix versions in the installed version's ordering.
func (i *installed) less(semver bool, a, b string) bool {
	va, err := parseIn(i.base, semver, a)
	if err != nil {
		return false
	}
	c, err := va.CompareStr(b)
	return err == nil && c < 0
}

func parseIn(base string, semver bool, s string) (semantic.Version, error) {
	if semver {
		return semantic.ParseSemverVersion(strings.TrimPrefix(s, "v")), nil
	}
	return semantic.Parse(s, base)
}

// semverOnly says whether every range of e is a SEMVER range, i.e. its
// fix versions compare as semver.
func (e *entry) semverOnly() bool {
	for _, r := range e.ranges {
		if !r.semver {
			return false
		}
	}
	return len(e.ranges) > 0
}

// affects evaluates e for an installed version: its enumerated versions
// first, then each range. fixed is the lowest fix above the installed
// version in the range that matched ("" when there is none or the match
// came from the versions list alone).
func (e *entry) affects(inst *installed) (hit bool, fixed string) {
	for _, r := range e.ranges {
		v, ok := inst.version(r.semver)
		if !ok {
			continue
		}
		if in, fix := r.includes(inst.base, v); in {
			return true, fix
		}
	}
	for _, s := range e.versions {
		if s == inst.raw {
			return true, ""
		}
		if v, ok := inst.version(false); ok {
			if c, err := v.CompareStr(s); err == nil && c == 0 {
				return true, ""
			}
		}
	}
	return false, ""
}

// includes evaluates one range per the OSV schema's algorithm: sort the
// events by version ("introduced: 0" first), walk them, and let each
// event at or below the installed version set the state (introduced →
// affected; fixed → not; last_affected → not, for versions above it).
// limit events bound the range from above. A range with an event whose
// version does not parse in the ecosystem is not evaluated: guessing
// could report a fixed package or hide a vulnerable one.
func (r rangeSpec) includes(base string, v semantic.Version) (bool, string) {
	type parsed struct {
		event
		v    semantic.Version
		zero bool
	}
	evs := make([]parsed, 0, len(r.events))
	var limits []semantic.Version
	for _, ev := range r.events {
		if ev.kind == evIntroduced && ev.version == "0" {
			evs = append(evs, parsed{event: ev, zero: true})
			continue
		}
		if ev.kind == evLimit && ev.version == "*" {
			continue
		}
		pv, err := parseIn(base, r.semver, ev.version)
		if err != nil {
			return false, ""
		}
		if ev.kind == evLimit {
			limits = append(limits, pv)
			continue
		}
		evs = append(evs, parsed{event: ev, v: pv})
	}
	slices.SortStableFunc(evs, func(a, b parsed) int {
		switch {
		case a.zero && b.zero:
			return 0
		case a.zero:
			return -1
		case b.zero:
			return 1
		}
		c, err := a.v.Compare(b.v)
		if err != nil {
			return 0
		}
		return c
	})
	affected := false
	fixed := ""
	for _, ev := range evs {
		var c int
		if !ev.zero {
			var err error
			if c, err = v.Compare(ev.v); err != nil {
				return false, ""
			}
		}
		switch ev.kind {
		case evIntroduced:
			if ev.zero || c >= 0 {
				affected = true
			}
		case evFixed:
			if c >= 0 {
				affected = false
			} else if fixed == "" {
				// The first fix above the installed version, in sorted
				// order: the lowest one.
				fixed = ev.version
			}
		case evLastAffected:
			if c > 0 {
				affected = false
			}
		}
		// Events above the installed version set no state; the walk goes
		// on only to find the nearest fix.
		if !ev.zero && c < 0 {
			break
		}
	}
	if !affected {
		return false, ""
	}
	if len(limits) > 0 {
		below := false
		for _, l := range limits {
			if c, err := v.Compare(l); err == nil && c < 0 {
				below = true
			}
		}
		if !below {
			return false, ""
		}
	}
	return true, fixed
}
