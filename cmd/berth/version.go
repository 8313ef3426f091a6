package main

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// versionString is what `berth version` prints. set is the -X main.version
// value (make build sets `git describe`; "dev" when nothing set it). A
// binary from `go install github.com/berth-registry/berth/cmd/berth@vX`
// has no -X value, so the module version and what the build info knows
// about the commit stand in: the VCS stamp of a build inside a checkout
// (vcs.revision, vcs.modified), or the commit a pseudo-version names
// (@<commit> or @main installs). A tagged install has neither; its module
// checksum (h1:…, what sum.golang.org records for that tag) identifies
// the source instead.
func versionString(set string, info *debug.BuildInfo) string {
	v := set
	var details []string
	if info != nil {
		mod := info.Main.Version
		release := mod != "" && mod != "(devel)"
		if v == "dev" && release {
			v = mod
		}
		var rev string
		var modified bool
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		// Since Go 1.24 a build inside a checkout also derives a
		// pseudo-version from the VCS stamp; the module line then repeats
		// the commit, so it is printed only for module-mode installs.
		stamped := rev != ""
		if !stamped && release {
			rev = pseudoVersionCommit(mod)
		}
		if rev != "" {
			c := "commit " + rev
			if modified {
				c += " (modified)"
			}
			details = append(details, c)
		}
		if release && !stamped {
			m := "module " + info.Main.Path + "@" + mod
			if info.Main.Sum != "" {
				m += " " + info.Main.Sum
			}
			details = append(details, m)
		}
		if len(details) > 0 {
			details = append(details, info.GoVersion)
		}
	}
	if len(details) == 0 {
		return "berth " + v
	}
	return fmt.Sprintf("berth %s (%s)", v, strings.Join(details, ", "))
}

// pseudoVersionCommit returns the 12-hex-digit commit prefix a Go
// pseudo-version ends with (v0.0.0-20260101120000-abcdef123456, also
// with a +incompatible or +dirty suffix), or "" for a release version.
func pseudoVersionCommit(v string) string {
	v, _, _ = strings.Cut(v, "+")
	i := strings.LastIndexAny(v, "-.")
	if i < 0 || len(v)-i-1 != 12 {
		return ""
	}
	rev := v[i+1:]
	ts := v[:i]
	j := strings.LastIndexAny(ts, "-.")
	if j < 0 || len(ts)-j-1 != 14 {
		return ""
	}
	for _, c := range rev {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return ""
		}
	}
	for _, c := range ts[j+1:] {
		if c < '0' || c > '9' {
			return ""
		}
	}
	return rev
}

// buildInfo is debug.ReadBuildInfo's result, nil without one.
func buildInfo() *debug.BuildInfo {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	return info
}
