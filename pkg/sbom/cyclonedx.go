package sbom

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/berth-registry/berth/pkg/inventory"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/vulndb"
)

// The CycloneDX 1.6 JSON document (https://cyclonedx.org/docs/1.6/json/),
// with only the fields berth fills.
type cdxBOM struct {
	BOMFormat       string             `json:"bomFormat"`
	SpecVersion     string             `json:"specVersion"`
	SerialNumber    string             `json:"serialNumber,omitempty"`
	Version         int                `json:"version"`
	Metadata        cdxMetadata        `json:"metadata"`
	Components      []cdxComponent     `json:"components"`
	Vulnerabilities []cdxVulnerability `json:"vulnerabilities"`
}

type cdxMetadata struct {
	Timestamp  string        `json:"timestamp"`
	Tools      *cdxTools     `json:"tools,omitempty"`
	Component  *cdxComponent `json:"component,omitempty"`
	Properties []cdxProperty `json:"properties,omitempty"`
}

type cdxTools struct {
	Components []cdxComponent `json:"components"`
}

type cdxComponent struct {
	Type       string        `json:"type"`
	BOMRef     string        `json:"bom-ref,omitempty"`
	Name       string        `json:"name"`
	Version    string        `json:"version,omitempty"`
	PURL       string        `json:"purl,omitempty"`
	Properties []cdxProperty `json:"properties,omitempty"`
}

type cdxProperty struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type cdxSource struct {
	Name string `json:"name,omitempty"`
	URL  string `json:"url,omitempty"`
}

type cdxReference struct {
	ID     string    `json:"id"`
	Source cdxSource `json:"source"`
}

type cdxRating struct {
	Source   *cdxSource `json:"source,omitempty"`
	Score    *float64   `json:"score,omitempty"`
	Severity string     `json:"severity,omitempty"`
	Method   string     `json:"method,omitempty"`
	Vector   string     `json:"vector,omitempty"`
}

type cdxAffect struct {
	Ref      string             `json:"ref"`
	Versions []cdxAffectVersion `json:"versions,omitempty"`
}

type cdxAffectVersion struct {
	Version string `json:"version"`
	Status  string `json:"status"`
}

type cdxVulnerability struct {
	BOMRef         string         `json:"bom-ref,omitempty"`
	ID             string         `json:"id"`
	Source         *cdxSource     `json:"source,omitempty"`
	References     []cdxReference `json:"references,omitempty"`
	Ratings        []cdxRating    `json:"ratings,omitempty"`
	Description    string         `json:"description,omitempty"`
	Recommendation string         `json:"recommendation,omitempty"`
	Affects        []cdxAffect    `json:"affects"`
	Properties     []cdxProperty  `json:"properties,omitempty"`
}

// Property names berth uses. Everything a Finding holds that CycloneDX
// has no field for travels as a property, so ParseReport gives back
// exactly what Report was given.
const (
	propLayer         = "berth:layer"
	propLayerError    = "berth:layerError"
	propPath          = "berth:path"
	propEcosystem     = "berth:ecosystem"
	propExtractor     = "berth:extractor"
	propSourceName    = "berth:sourceName"
	propSourceVersion = "berth:sourceVersion"
	propFixed         = "berth:fixed"
	propSeverity      = "berth:severity"
	propScore         = "berth:score"
)

func osvURL(id string) string { return "https://osv.dev/vulnerability/" + id }

// Report writes a CycloneDX 1.6 JSON vulnerability report for the image
// subject: metadata.component is the image (its oci purl), components are
// img's packages (purl, layer and path as properties) and vulnerabilities
// are the findings, one per finding, each affecting its package's
// component, with its OSV source, aliases as references, a rating
// (severity, and the CVSS vector, score and method when the severity came
// from one) and the fix as "Upgrade to X". A finding's package that is
// not among img's packages is added as a component. The serial number is
// a urn:uuid derived from the subject digest and the document's content.
func Report(img inventory.Image, findings []inventory.Finding, subject oci.Descriptor, name string, created time.Time) ([]byte, error) {
	if subject.Digest == "" {
		return nil, fmt.Errorf("sbom: subject has no digest")
	}
	repo, _ := splitName(name)
	if repo == "" {
		repo = string(subject.Digest)
	}
	bom := cdxBOM{
		BOMFormat:   "CycloneDX",
		SpecVersion: "1.6",
		Version:     1,
		Metadata: cdxMetadata{
			Timestamp: created.UTC().Format(timeFormat),
			Tools:     &cdxTools{Components: []cdxComponent{{Type: "application", Name: ToolName, Version: ToolVersion}}},
			Component: &cdxComponent{
				Type: "container", BOMRef: "image", Name: repo, Version: string(subject.Digest), PURL: imagePURL(name, subject),
			},
		},
		Components:      []cdxComponent{},
		Vulnerabilities: []cdxVulnerability{},
	}
	for _, l := range img.Layers {
		bom.Metadata.Properties = append(bom.Metadata.Properties, cdxProperty{propLayer, string(l.Digest)})
		if l.Error != "" {
			bom.Metadata.Properties = append(bom.Metadata.Properties, cdxProperty{propLayerError, string(l.Digest) + ": " + l.Error})
		}
	}
	if id := img.OSRelease["ID"]; id != "" {
		bom.Components = append(bom.Components, cdxComponent{
			Type: "operating-system", BOMRef: "os", Name: id, Version: img.OSRelease["VERSION_ID"],
		})
	}
	refs := map[inventory.Package]string{}
	used := map[string]bool{"image": true, "os": true}
	addComponent := func(p inventory.Package) string {
		if ref, ok := refs[p]; ok {
			return ref
		}
		ref := "component-" + packageKey(p)
		for n := 1; used[ref]; n++ {
			ref = fmt.Sprintf("component-%s-%d", packageKey(p), n)
		}
		used[ref] = true
		refs[p] = ref
		bom.Components = append(bom.Components, component(p, ref))
		return ref
	}
	for _, p := range img.Packages {
		addComponent(p)
	}
	for i, f := range findings {
		ref := addComponent(f.Package)
		bom.Vulnerabilities = append(bom.Vulnerabilities, vulnerability(f, ref, i))
	}
	// The serial number is derived from everything else, so it changes
	// exactly when the report does.
	body, err := marshal(bom)
	if err != nil {
		return nil, err
	}
	bom.SerialNumber = "urn:uuid:" + uuidFrom("cyclonedx", string(subject.Digest), string(body))
	return marshal(bom)
}

func component(p inventory.Package, ref string) cdxComponent {
	c := cdxComponent{Type: "library", BOMRef: ref, Name: p.Name, Version: p.Version, PURL: p.PURL}
	for _, pr := range []cdxProperty{
		{propEcosystem, p.Ecosystem},
		{propLayer, string(p.Layer)},
		{propPath, p.Path},
		{propExtractor, p.Extractor},
		{propSourceName, p.SourceName},
		{propSourceVersion, p.SourceVersion},
	} {
		if pr.Value != "" {
			c.Properties = append(c.Properties, pr)
		}
	}
	return c
}

func vulnerability(f inventory.Finding, ref string, i int) cdxVulnerability {
	v := cdxVulnerability{
		BOMRef:      fmt.Sprintf("vuln-%d", i+1),
		ID:          f.ID,
		Source:      &cdxSource{Name: "OSV", URL: osvURL(f.ID)},
		Description: f.Summary,
		Affects: []cdxAffect{{Ref: ref, Versions: []cdxAffectVersion{{
			Version: f.Package.Version, Status: "affected",
		}}}},
	}
	if f.Package.Version == "" {
		v.Affects[0].Versions = nil
	}
	for _, a := range f.Aliases {
		v.References = append(v.References, cdxReference{ID: a, Source: cdxSource{Name: "OSV", URL: osvURL(a)}})
	}
	rating := cdxRating{Source: &cdxSource{Name: "OSV", URL: osvURL(f.ID)}, Severity: cdxSeverity(f.Severity)}
	if strings.HasPrefix(f.Score, "CVSS:") {
		rating.Vector = f.Score
		rating.Method = cvssMethod(f.Score)
		if s, ok := vulndb.ScoreVector(f.Score); ok {
			rating.Score = &s
		}
	}
	v.Ratings = []cdxRating{rating}
	if f.Fixed != "" {
		v.Recommendation = "Upgrade to " + f.Fixed
	}
	for _, pr := range []cdxProperty{
		{propEcosystem, f.Ecosystem},
		{propFixed, f.Fixed},
		{propSeverity, string(f.Severity)},
	} {
		if pr.Value != "" {
			v.Properties = append(v.Properties, pr)
		}
	}
	if f.Score != "" && rating.Vector == "" {
		v.Properties = append(v.Properties, cdxProperty{propScore, f.Score})
	}
	return v
}

// cdxSeverity maps to CycloneDX's severity enum (critical, high, medium,
// low, info, none, unknown).
func cdxSeverity(s inventory.Severity) string {
	switch s {
	case inventory.SeverityCritical, inventory.SeverityHigh, inventory.SeverityMedium, inventory.SeverityLow:
		return strings.ToLower(string(s))
	}
	return "unknown"
}

func cvssMethod(vector string) string {
	switch {
	case strings.HasPrefix(vector, "CVSS:3.1/"):
		return "CVSSv31"
	case strings.HasPrefix(vector, "CVSS:3.0/"):
		return "CVSSv3"
	case strings.HasPrefix(vector, "CVSS:4.0/"):
		return "CVSSv4"
	}
	return "other"
}

// ErrNotReport is returned by ParseReport for a document that is not a
// CycloneDX BOM.
var ErrNotReport = errors.New("sbom: not a CycloneDX report")

// ParseReport reads the findings back from a CycloneDX report, in
// document order: one finding per affected component of each
// vulnerability. For a report written by Report it returns exactly the
// findings Report was given. Reports of other tools are read from the
// standard fields (severity from the highest rating, fix from a
// "Upgrade to X" recommendation).
func ParseReport(data []byte) ([]inventory.Finding, error) {
	var bom cdxBOM
	if err := json.Unmarshal(data, &bom); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotReport, err)
	}
	if bom.BOMFormat != "CycloneDX" || !strings.HasPrefix(bom.SpecVersion, "1.") {
		return nil, fmt.Errorf("%w: bomFormat %q specVersion %q", ErrNotReport, bom.BOMFormat, bom.SpecVersion)
	}
	pkgs := map[string]inventory.Package{}
	for _, c := range bom.Components {
		if c.BOMRef == "" {
			continue
		}
		p := inventory.Package{Name: c.Name, Version: c.Version, PURL: c.PURL}
		for _, pr := range c.Properties {
			switch pr.Name {
			case propEcosystem:
				p.Ecosystem = pr.Value
			case propLayer:
				p.Layer = oci.Digest(pr.Value)
			case propPath:
				p.Path = pr.Value
			case propExtractor:
				p.Extractor = pr.Value
			case propSourceName:
				p.SourceName = pr.Value
			case propSourceVersion:
				p.SourceVersion = pr.Value
			}
		}
		pkgs[c.BOMRef] = p
	}
	var out []inventory.Finding
	for _, v := range bom.Vulnerabilities {
		f := inventory.Finding{ID: v.ID, Summary: v.Description, Severity: inventory.SeverityUnknown}
		for _, r := range v.References {
			f.Aliases = append(f.Aliases, r.ID)
		}
		best := -1
		for _, r := range v.Ratings {
			s := fromCDXSeverity(r.Severity)
			if s.Rank() > best {
				best, f.Severity = s.Rank(), s
			}
			if f.Score == "" && r.Vector != "" {
				f.Score = r.Vector
			}
		}
		if after, ok := strings.CutPrefix(v.Recommendation, "Upgrade to "); ok {
			f.Fixed = after
		}
		for _, pr := range v.Properties {
			switch pr.Name {
			case propEcosystem:
				f.Ecosystem = pr.Value
			case propFixed:
				f.Fixed = pr.Value
			case propSeverity:
				f.Severity = inventory.Severity(pr.Value)
			case propScore:
				f.Score = pr.Value
			}
		}
		for _, a := range v.Affects {
			p, ok := pkgs[a.Ref]
			if !ok {
				return nil, fmt.Errorf("%w: vulnerability %s affects unknown component %q", ErrNotReport, v.ID, a.Ref)
			}
			g := f
			g.Package = p
			g.Aliases = append([]string(nil), f.Aliases...)
			out = append(out, g)
		}
	}
	return out, nil
}

func fromCDXSeverity(s string) inventory.Severity {
	switch strings.ToLower(s) {
	case "critical":
		return inventory.SeverityCritical
	case "high":
		return inventory.SeverityHigh
	case "medium":
		return inventory.SeverityMedium
	case "low", "info":
		return inventory.SeverityLow
	}
	return inventory.SeverityUnknown
}
