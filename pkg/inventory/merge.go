package inventory

import (
	"path"
	"strings"
)

// Merge stacks layer indexes in manifest order (base first) into what the
// image holds, as a container runtime's overlay would: a package declared
// by layer i at path P is gone when a later layer
//   - has an entry at P itself (Files: the file was replaced, so whatever
//     the later file declares, if anything, is the truth),
//   - whites out P or a directory above it (Whiteouts), or
//   - makes a directory above P opaque (Opaque).
//
// Every visible package gets its layer's Digest. The image's OSRelease is
// the topmost layer's whose os-release file is still visible, and the
// distro packages (dpkg, apk, rpm) take their Ecosystem from it when it
// names a distro of their family: a layer that only ran `apt-get install`
// has no os-release of its own, so its indexer could not know whether it
// was Debian or Ubuntu. Layers lists every layer with the number of
// packages it declared and its error, so a layer that could not be indexed
// stays visible in the report. A nil entry stands for a layer with no
// index and is listed with an error.
func Merge(layers []*Layer) Image {
	img := Image{Packages: []Package{}, Layers: make([]LayerStatus, 0, len(layers))}
	// Walk from the top layer down, accumulating what the layers above
	// the current one hide; keep each layer's survivors, then reverse.
	replaced := map[string]bool{}
	whiteouts := map[string]bool{}
	opaque := map[string]bool{}
	visible := make([][]Package, len(layers))
	for i := len(layers) - 1; i >= 0; i-- {
		l := layers[i]
		if l == nil {
			continue
		}
		for _, p := range l.Packages {
			if hidden(cleanPath(p.Path), replaced, whiteouts, opaque) {
				continue
			}
			p.Layer = l.Digest
			visible[i] = append(visible[i], p)
		}
		if img.OSRelease == nil && len(l.OSRelease) > 0 &&
			(!hidden("etc/os-release", replaced, whiteouts, opaque) ||
				!hidden("usr/lib/os-release", replaced, whiteouts, opaque)) {
			img.OSRelease = l.OSRelease
		}
		for _, f := range l.Files {
			replaced[cleanPath(f)] = true
		}
		for _, w := range l.Whiteouts {
			whiteouts[cleanPath(w)] = true
		}
		for _, d := range l.Opaque {
			opaque[cleanPath(d)] = true
		}
	}
	for i, l := range layers {
		if l == nil {
			img.Layers = append(img.Layers, LayerStatus{Error: "layer has no index"})
			continue
		}
		img.Layers = append(img.Layers, LayerStatus{Digest: l.Digest, Packages: len(l.Packages), Error: l.Error})
		for _, p := range visible[i] {
			if eco := DistroEcosystemFor(p.Extractor, img.OSRelease); eco != "" {
				p.Ecosystem = eco
			}
			img.Packages = append(img.Packages, p)
		}
	}
	return img
}

// hidden reports whether a path from an earlier layer is gone given what
// the later layers replaced, whited out and made opaque.
func hidden(p string, replaced, whiteouts, opaque map[string]bool) bool {
	if p == "" {
		return false
	}
	if replaced[p] || whiteouts[p] {
		return true
	}
	for dir := path.Dir(p); dir != "." && dir != "/"; dir = path.Dir(dir) {
		if whiteouts[dir] || opaque[dir] {
			return true
		}
	}
	// An opaque root ("." after cleaning: ".wh..wh..opq" at the top of a
	// layer) hides everything below.
	return opaque["."]
}

// cleanPath puts a layer path in the form Layer's fields use: clean,
// relative, no leading "/" or "./".
func cleanPath(p string) string {
	p = strings.TrimLeft(path.Clean("/"+p), "/")
	if p == "" {
		return "."
	}
	return p
}

// DistroEcosystem names the OSV ecosystem (without release) of the distro
// an os-release describes, or "" when OSV has no ecosystem for it.
func DistroEcosystem(osRelease map[string]string) string {
	switch osRelease["ID"] {
	case "debian":
		return "Debian"
	case "ubuntu":
		return "Ubuntu"
	case "alpine":
		return "Alpine"
	case "wolfi":
		return "Wolfi"
	case "chainguard":
		return "Chainguard"
	case "rhel":
		return "Red Hat"
	case "rocky":
		return "Rocky Linux"
	case "almalinux":
		return "AlmaLinux"
	case "opensuse", "opensuse-leap", "opensuse-tumbleweed":
		return "openSUSE"
	case "sles":
		return "SUSE"
	case "mageia":
		return "Mageia"
	case "azurelinux", "mariner":
		return "Azure Linux"
	case "openEuler":
		return "openEuler"
	}
	return ""
}

// DistroEcosystemFor is DistroEcosystem when the distro is one whose
// packages the named extractor ("os/dpkg", "os/apk", "os/rpm") reads, and
// "" otherwise, so an Ubuntu os-release never relabels an rpm and a
// language package is never relabelled at all.
func DistroEcosystemFor(extractor string, osRelease map[string]string) string {
	ecosystem := DistroEcosystem(osRelease)
	if ecosystem != "" && sameFamily(extractor, ecosystem) {
		return ecosystem
	}
	return ""
}

func sameFamily(extractor, ecosystem string) bool {
	switch extractor {
	case "os/dpkg":
		return ecosystem == "Debian" || ecosystem == "Ubuntu"
	case "os/apk":
		return ecosystem == "Alpine" || ecosystem == "Wolfi" || ecosystem == "Chainguard"
	case "os/rpm":
		switch ecosystem {
		case "Red Hat", "Rocky Linux", "AlmaLinux", "openSUSE", "SUSE", "Mageia", "Azure Linux", "openEuler":
			return true
		}
	}
	return false
}
