// Package oci is the OCI vocabulary Berth speaks: digests, repository names
// and tags, media types, descriptors and manifest parsing. It imports nothing
// of Berth's.
package oci
