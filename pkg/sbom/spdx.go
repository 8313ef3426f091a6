package sbom

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/berth-registry/berth/pkg/inventory"
	"github.com/berth-registry/berth/pkg/oci"
)

// The SPDX 2.3 JSON document (https://spdx.github.io/spdx-spec/v2.3/),
// with only the fields berth fills. Field order is the spec's.
type spdxDocument struct {
	SPDXVersion       string             `json:"spdxVersion"`
	DataLicense       string             `json:"dataLicense"`
	SPDXID            string             `json:"SPDXID"`
	Name              string             `json:"name"`
	DocumentNamespace string             `json:"documentNamespace"`
	CreationInfo      spdxCreationInfo   `json:"creationInfo"`
	Packages          []spdxPackage      `json:"packages"`
	Relationships     []spdxRelationship `json:"relationships"`
}

type spdxCreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
	Comment  string   `json:"comment,omitempty"`
}

type spdxPackage struct {
	SPDXID                string            `json:"SPDXID"`
	Name                  string            `json:"name"`
	VersionInfo           string            `json:"versionInfo,omitempty"`
	DownloadLocation      string            `json:"downloadLocation"`
	FilesAnalyzed         bool              `json:"filesAnalyzed"`
	SourceInfo            string            `json:"sourceInfo,omitempty"`
	PrimaryPackagePurpose string            `json:"primaryPackagePurpose,omitempty"`
	ExternalRefs          []spdxExternalRef `json:"externalRefs,omitempty"`
	Comment               string            `json:"comment,omitempty"`
}

type spdxExternalRef struct {
	ReferenceCategory string `json:"referenceCategory"`
	ReferenceType     string `json:"referenceType"`
	ReferenceLocator  string `json:"referenceLocator"`
}

type spdxRelationship struct {
	SPDXElementID      string `json:"spdxElementId"`
	RelationshipType   string `json:"relationshipType"`
	RelatedSPDXElement string `json:"relatedSpdxElement"`
}

const spdxImageID = "SPDXRef-Image"

// SPDX writes img's packages as an SPDX 2.3 JSON document describing the
// image subject. name is the image's repository (optionally ":tag"); it
// names the document and the image package. The document namespace is a
// urn:uuid derived from the subject digest, the packages and created, so
// it is the same for the same inputs and differs when the SBOM does.
// Each package carries its purl, the layer and file it was found in
// (sourceInfo), and is CONTAINed by the image package the document
// DESCRIBES. Layers whose indexing failed are named in the image
// package's comment, so an incomplete SBOM says so.
func SPDX(img inventory.Image, subject oci.Descriptor, name string, created time.Time) ([]byte, error) {
	if subject.Digest == "" {
		return nil, fmt.Errorf("sbom: subject has no digest")
	}
	repo, _ := splitName(name)
	if repo == "" {
		repo = string(subject.Digest)
	}
	doc := spdxDocument{
		SPDXVersion: "SPDX-2.3",
		DataLicense: "CC0-1.0",
		SPDXID:      "SPDXRef-DOCUMENT",
		Name:        repo + "@" + string(subject.Digest),
		CreationInfo: spdxCreationInfo{
			Created:  created.UTC().Format(timeFormat),
			Creators: []string{"Tool: " + ToolName + "-" + ToolVersion},
		},
	}
	image := spdxPackage{
		SPDXID:                spdxImageID,
		Name:                  repo,
		VersionInfo:           string(subject.Digest),
		DownloadLocation:      "NOASSERTION",
		PrimaryPackagePurpose: "CONTAINER",
		ExternalRefs: []spdxExternalRef{{
			ReferenceCategory: "PACKAGE-MANAGER", ReferenceType: "purl", ReferenceLocator: imagePURL(name, subject),
		}},
		Comment: layerComment(img.Layers),
	}
	doc.Packages = append(doc.Packages, image)
	doc.Relationships = append(doc.Relationships, spdxRelationship{"SPDXRef-DOCUMENT", "DESCRIBES", spdxImageID})
	ids := map[string]int{}
	keys := make([]string, 0, len(img.Packages))
	for _, p := range img.Packages {
		k := packageKey(p)
		keys = append(keys, k)
		id := "SPDXRef-Package-" + k
		// Identical packages (the same file listed twice) keep distinct
		// ids, numbered in order.
		if n := ids[k]; n > 0 {
			id = fmt.Sprintf("%s-%d", id, n)
		}
		ids[k]++
		sp := spdxPackage{
			SPDXID:           id,
			Name:             p.Name,
			VersionInfo:      p.Version,
			DownloadLocation: "NOASSERTION",
			SourceInfo:       sourceInfo(p),
			Comment:          packageComment(p),
		}
		if p.PURL != "" {
			sp.ExternalRefs = []spdxExternalRef{{ReferenceCategory: "PACKAGE-MANAGER", ReferenceType: "purl", ReferenceLocator: p.PURL}}
		}
		doc.Packages = append(doc.Packages, sp)
		doc.Relationships = append(doc.Relationships, spdxRelationship{spdxImageID, "CONTAINS", id})
	}
	doc.DocumentNamespace = "urn:uuid:" + uuidFrom(append([]string{"spdx", string(subject.Digest), doc.CreationInfo.Created}, keys...)...)
	return marshal(doc)
}

func sourceInfo(p inventory.Package) string {
	var parts []string
	if p.Layer != "" {
		parts = append(parts, "layer "+string(p.Layer))
	}
	if p.Path != "" {
		parts = append(parts, "path /"+strings.TrimPrefix(p.Path, "/"))
	}
	if len(parts) == 0 {
		return ""
	}
	return "found in " + strings.Join(parts, ", ")
}

func packageComment(p inventory.Package) string {
	var parts []string
	if p.Ecosystem != "" {
		parts = append(parts, "ecosystem "+p.Ecosystem)
	}
	if p.SourceName != "" {
		src := "source package " + p.SourceName
		if p.SourceVersion != "" {
			src += " " + p.SourceVersion
		}
		parts = append(parts, src)
	}
	if p.Extractor != "" {
		parts = append(parts, "extractor "+p.Extractor)
	}
	return strings.Join(parts, "; ")
}

func layerComment(layers []inventory.LayerStatus) string {
	var errs []string
	for _, l := range layers {
		if l.Error != "" {
			errs = append(errs, fmt.Sprintf("layer %s: %s", l.Digest, l.Error))
		}
	}
	if len(errs) == 0 {
		return ""
	}
	return "incomplete: indexing failed for " + strings.Join(errs, "; ")
}

// marshal writes indented JSON without HTML escaping (summaries hold
// '<' and '&'), newline-terminated.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("sbom: %w", err)
	}
	return buf.Bytes(), nil
}
