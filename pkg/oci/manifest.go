package oci

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
)

// Descriptor is an OCI content descriptor.
type Descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       Digest            `json:"digest"`
	Size         int64             `json:"size"`
	URLs         []string          `json:"urls,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Data         []byte            `json:"data,omitempty"`
	Platform     *Platform         `json:"platform,omitempty"`
	ArtifactType string            `json:"artifactType,omitempty"`
}

// Platform describes the platform of an index entry.
type Platform struct {
	Architecture string   `json:"architecture"`
	OS           string   `json:"os"`
	OSVersion    string   `json:"os.version,omitempty"`
	OSFeatures   []string `json:"os.features,omitempty"`
	Variant      string   `json:"variant,omitempty"`
}

// Index is the OCI image index used as the referrers response body.
type Index struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	Manifests     []Descriptor      `json:"manifests"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// ErrManifestInvalid wraps every reason a manifest is rejected.
var ErrManifestInvalid = errors.New("manifest invalid")

// Manifest is what Berth needs to know of a pushed manifest. The raw bytes
// are kept by the caller; this is only the parsed view.
type Manifest struct {
	MediaType    string
	ArtifactType string // artifactType, or the config media type for image manifests
	Config       *Descriptor
	Layers       []Descriptor
	Manifests    []Descriptor // index / manifest list children
	Subject      *Descriptor
	Annotations  map[string]string
}

// IsIndex reports whether the manifest is an index or manifest list.
func (m *Manifest) IsIndex() bool { return IsIndexMediaType(m.MediaType) }

// Blobs returns the descriptors of blobs that must exist in the repository for
// the manifest to be accepted: the config and every layer, except layers that
// carry external URLs (non-distributable content, fetched from elsewhere).
func (m *Manifest) Blobs() []Descriptor {
	var out []Descriptor
	if m.Config != nil {
		out = append(out, *m.Config)
	}
	for _, l := range m.Layers {
		if len(l.URLs) > 0 {
			continue
		}
		out = append(out, l)
	}
	return out
}

type rawManifest struct {
	SchemaVersion *int              `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *Descriptor       `json:"config"`
	Layers        []Descriptor      `json:"layers"`
	Manifests     []Descriptor      `json:"manifests"`
	Subject       *Descriptor       `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrManifestInvalid, fmt.Sprintf(format, args...))
}

// ParseManifest validates body as a manifest sent with the given Content-Type
// header value (which may be empty) and returns its parsed view.
func ParseManifest(contentType string, body []byte) (*Manifest, error) {
	ct := ""
	if contentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			return nil, invalid("bad Content-Type %q", contentType)
		}
		ct = mt
	}
	if !json.Valid(body) {
		return nil, invalid("body is not valid JSON")
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, invalid("body is not a JSON object")
	}
	var raw rawManifest
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, invalid("%v", err)
	}
	mt := raw.MediaType
	switch {
	case mt != "" && ct != "" && mt != ct:
		return nil, invalid("mediaType %q does not match Content-Type %q", mt, ct)
	case mt == "":
		mt = ct
	}
	if mt == "" {
		// Neither says: infer from the shape, as the image spec allows.
		switch {
		case raw.Manifests != nil:
			mt = MediaTypeImageIndex
		case raw.Config != nil:
			mt = MediaTypeImageManifest
		}
	}
	if !IsManifestMediaType(mt) {
		return nil, invalid("unsupported manifest media type %q", mt)
	}
	if raw.SchemaVersion == nil || *raw.SchemaVersion != 2 {
		return nil, invalid("schemaVersion must be 2")
	}
	m := &Manifest{MediaType: mt, ArtifactType: raw.ArtifactType, Subject: raw.Subject, Annotations: raw.Annotations}
	if raw.Subject != nil {
		if err := validDescriptor(*raw.Subject, "subject"); err != nil {
			return nil, err
		}
	}
	if IsIndexMediaType(mt) {
		if raw.Config != nil || raw.Layers != nil {
			return nil, invalid("an index has no config or layers")
		}
		for i, d := range raw.Manifests {
			if err := validDescriptor(d, fmt.Sprintf("manifests[%d]", i)); err != nil {
				return nil, err
			}
		}
		m.Manifests = raw.Manifests
		return m, nil
	}
	if raw.Manifests != nil {
		return nil, invalid("an image manifest has no manifests list")
	}
	if raw.Config == nil {
		return nil, invalid("config is required")
	}
	if err := validDescriptor(*raw.Config, "config"); err != nil {
		return nil, err
	}
	for i, d := range raw.Layers {
		if err := validDescriptor(d, fmt.Sprintf("layers[%d]", i)); err != nil {
			return nil, err
		}
	}
	m.Config = raw.Config
	m.Layers = raw.Layers
	if m.ArtifactType == "" && mt == MediaTypeImageManifest {
		m.ArtifactType = raw.Config.MediaType
	}
	return m, nil
}

func validDescriptor(d Descriptor, where string) error {
	if d.MediaType == "" {
		return invalid("%s: mediaType is required", where)
	}
	if _, _, err := mime.ParseMediaType(d.MediaType); err != nil {
		return invalid("%s: bad mediaType %q", where, d.MediaType)
	}
	if _, err := ParseDigest(string(d.Digest)); err != nil {
		return invalid("%s: %v", where, err)
	}
	if d.Size < 0 {
		return invalid("%s: negative size", where)
	}
	if d.Data != nil {
		if int64(len(d.Data)) != d.Size || d.Digest.Algorithm().FromBytes(d.Data) != d.Digest {
			return invalid("%s: embedded data does not match digest and size", where)
		}
	}
	return nil
}
