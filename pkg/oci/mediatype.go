package oci

// Media types Berth understands as manifests.
const (
	MediaTypeImageManifest      = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeImageIndex         = "application/vnd.oci.image.index.v1+json"
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeEmptyJSON          = "application/vnd.oci.empty.v1+json"
	MediaTypeImageConfig        = "application/vnd.oci.image.config.v1+json"
)

// IsManifestMediaType reports whether mt is a manifest media type Berth stores.
func IsManifestMediaType(mt string) bool {
	switch mt {
	case MediaTypeImageManifest, MediaTypeImageIndex, MediaTypeDockerManifest, MediaTypeDockerManifestList:
		return true
	}
	return false
}

// IsIndexMediaType reports whether mt is an index or manifest list.
func IsIndexMediaType(mt string) bool {
	return mt == MediaTypeImageIndex || mt == MediaTypeDockerManifestList
}
