package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-registry/berth/pkg/inventory"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/push"
	"github.com/berth-registry/berth/pkg/sbom"
	"github.com/berth-registry/berth/pkg/scan"
)

// Exit codes of `berth scan` beyond run's 0, 1 and 2 (docs/scanning.md).
const (
	// exitFindings: a finding at or above --fail-on.
	exitFindings = 3
	// exitNoReport: an image has no report (not scanned yet, or the
	// registry does not scan).
	exitNoReport = 4
)

// scanPollInterval is how often --wait asks again.
const scanPollInterval = 2 * time.Second

// maxReportBytes bounds a report read back.
const maxReportBytes = 64 << 20

// exitError ends a command with a specific exit code; msg, if any, is
// printed on stderr.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// imageReport is one image's report as `berth scan` prints it.
type imageReport struct {
	Digest      oci.Digest          `json:"digest"`
	Platform    string              `json:"platform,omitempty"`
	Report      oci.Digest          `json:"report,omitempty"`
	Created     string              `json:"created,omitempty"`
	DataVersion string              `json:"dataVersion,omitempty"`
	Findings    []inventory.Finding `json:"findings"`
	found       bool
}

// runScan implements `berth scan REF`: the vulnerability report the
// registry attached to an image (per platform for an index), as a table or
// JSON, with an exit code CI can gate on.
func runScan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("berth scan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	failOn := fs.String("fail-on", "", "exit 3 when a finding is at least this `severity` (LOW, MEDIUM, HIGH, CRITICAL; UNKNOWN: any finding)")
	format := fs.String("format", "table", "output `format`: table or json")
	wait := fs.Duration("wait", 0, "wait up to this `duration` for a report that is not there yet (right after a push)")
	insecure := fs.Bool("insecure", false, "skip TLS certificate verification (and allow plain HTTP)")
	plainHTTP := fs.Bool("plain-http", false, "talk HTTP, not HTTPS (127.0.0.1, localhost and private addresses use HTTP anyway)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: berth scan [flags] REF

Prints the vulnerability report a Berth registry attached to REF
(registry/repository[:tag|@digest]; an index: each platform's image).
Credentials come from the docker config and its credential helpers (berth login).
Exit codes: 0 ok, 1 error, 2 usage, 3 a finding at or above --fail-on,
4 no report for an image (yet: see --wait).
Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errUsage
	}
	threshold := -1
	if *failOn != "" {
		threshold = inventory.Severity(strings.ToUpper(*failOn)).Rank()
		if threshold < 0 {
			fmt.Fprintf(stderr, "berth scan: --fail-on %q: want UNKNOWN, LOW, MEDIUM, HIGH or CRITICAL\n", *failOn)
			return errUsage
		}
	}
	if *format != "table" && *format != "json" {
		fmt.Fprintf(stderr, "berth scan: --format %q: want table or json\n", *format)
		return errUsage
	}
	src, err := push.NewRemoteSource(fs.Arg(0), push.Conn{PlainHTTP: *plainHTTP, Insecure: *insecure, UserAgent: "berth/" + version})
	if err != nil {
		return err
	}
	reports, err := fetchReports(ctx, src, *wait)
	if err != nil {
		return err
	}
	switch *format {
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Reference string        `json:"reference"`
			Images    []imageReport `json:"images"`
		}{fs.Arg(0), reports}); err != nil {
			return err
		}
	default:
		if err := printReports(stdout, reports); err != nil {
			return err
		}
	}
	var missing []string
	worst := -1
	for _, r := range reports {
		if !r.found {
			missing = append(missing, string(r.Digest))
		}
		for _, f := range r.Findings {
			worst = max(worst, f.Severity.Rank())
		}
	}
	if len(missing) > 0 {
		return &exitError{code: exitNoReport, msg: fmt.Sprintf("berth scan: no vulnerability report for %s (not scanned yet, or the registry does not scan; --wait waits for one)", strings.Join(missing, ", "))}
	}
	if threshold >= 0 && worst >= threshold {
		return &exitError{code: exitFindings, msg: fmt.Sprintf("berth scan: findings at or above %s", strings.ToUpper(*failOn))}
	}
	return nil
}

// reportSource is what berth scan reads from a registry (push.RemoteSource).
type reportSource interface {
	Root(ctx context.Context) (v1.Descriptor, []byte, error)
	Manifest(ctx context.Context, d v1.Descriptor) ([]byte, error)
	Blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error)
	Referrers(ctx context.Context, d v1.Descriptor) ([]v1.Descriptor, error)
}

// fetchReports reads the report of each image REF names, waiting up to
// wait for those that have none yet.
func fetchReports(ctx context.Context, src reportSource, wait time.Duration) ([]imageReport, error) {
	root, body, err := src.Root(ctx)
	if err != nil {
		return nil, err
	}
	images := []imageReport{{Digest: oci.Digest(root.Digest.String())}}
	m, err := oci.ParseManifest(string(root.MediaType), body)
	if err != nil {
		return nil, err
	}
	if m.IsIndex() {
		images = images[:0]
		for _, c := range m.Manifests {
			if !scan.PlatformImage(c) {
				continue
			}
			r := imageReport{Digest: c.Digest}
			if c.Platform != nil {
				r.Platform = platformString(*c.Platform)
			}
			images = append(images, r)
		}
	}
	deadline := time.Now().Add(wait)
	for {
		pending := 0
		for i := range images {
			if images[i].found {
				continue
			}
			if err := readReport(ctx, src, &images[i]); err != nil {
				return nil, err
			}
			if !images[i].found {
				pending++
			}
		}
		if pending == 0 || !time.Now().Before(deadline) {
			return images, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(scanPollInterval, time.Until(deadline))):
		}
	}
}

func platformString(p oci.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// readReport looks for the scanner's latest report among the image's
// referrers and reads its findings into r.
func readReport(ctx context.Context, src reportSource, r *imageReport) error {
	h, err := v1.NewHash(string(r.Digest))
	if err != nil {
		return err
	}
	refs, err := src.Referrers(ctx, v1.Descriptor{Digest: h})
	if err != nil {
		return err
	}
	var reports []oci.Descriptor
	for _, ref := range refs {
		if ref.ArtifactType != sbom.ArtifactTypeReport {
			continue
		}
		d, err := toOCI(ref)
		if err != nil {
			return err
		}
		reports = append(reports, d)
	}
	own := scan.OwnArtifacts(reports)
	if len(own) == 0 {
		return nil
	}
	latest := own[0]
	mh, err := v1.NewHash(string(latest.Digest))
	if err != nil {
		return err
	}
	body, err := src.Manifest(ctx, v1.Descriptor{Digest: mh, MediaType: "application/vnd.oci.image.manifest.v1+json", Size: latest.Size})
	if err != nil {
		return err
	}
	m, err := oci.ParseManifest("", body)
	if err != nil {
		return fmt.Errorf("report %s: %w", latest.Digest, err)
	}
	if len(m.Layers) != 1 {
		return fmt.Errorf("report %s: %d layers, want 1", latest.Digest, len(m.Layers))
	}
	lh, err := v1.NewHash(string(m.Layers[0].Digest))
	if err != nil {
		return err
	}
	rc, err := src.Blob(ctx, v1.Descriptor{Digest: lh, Size: m.Layers[0].Size, MediaType: "application/octet-stream"})
	if err != nil {
		return err
	}
	defer rc.Close()
	raw, err := io.ReadAll(io.LimitReader(rc, maxReportBytes+1))
	if err != nil {
		return fmt.Errorf("report %s: %w", latest.Digest, err)
	}
	if len(raw) > maxReportBytes {
		return fmt.Errorf("report %s: larger than %d bytes", latest.Digest, maxReportBytes)
	}
	findings, err := sbom.ParseReport(raw)
	if err != nil {
		return fmt.Errorf("report %s: %w", latest.Digest, err)
	}
	sortFindings(findings)
	r.found, r.Report, r.Findings = true, latest.Digest, findings
	r.Created, r.DataVersion = latest.Annotations[scan.AnnotationCreated], latest.Annotations[scan.AnnotationDataVersion]
	if r.Findings == nil {
		r.Findings = []inventory.Finding{}
	}
	return nil
}

// toOCI converts a ggcr descriptor (same JSON) to ours.
func toOCI(d v1.Descriptor) (oci.Descriptor, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return oci.Descriptor{}, err
	}
	var out oci.Descriptor
	return out, json.Unmarshal(b, &out)
}

// sortFindings orders findings most severe first, then by package and id.
func sortFindings(fs []inventory.Finding) {
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if ra, rb := a.Severity.Rank(), b.Severity.Rank(); ra != rb {
			return ra > rb
		}
		if a.Package.Name != b.Package.Name {
			return a.Package.Name < b.Package.Name
		}
		return a.ID < b.ID
	})
}

// printReports writes one table per image.
func printReports(w io.Writer, reports []imageReport) error {
	for i, r := range reports {
		if i > 0 {
			fmt.Fprintln(w)
		}
		title := string(r.Digest)
		if r.Platform != "" {
			title = r.Platform + " " + title
		}
		if !r.found {
			fmt.Fprintf(w, "%s: no vulnerability report\n", title)
			continue
		}
		fmt.Fprintf(w, "%s: %d findings (report %s, created %s, data %s)\n", title, len(r.Findings), shortHex(r.Report), r.Created, r.DataVersion)
		if len(r.Findings) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PACKAGE\tINSTALLED\tFIXED\tID\tSEVERITY\tLAYER")
		for _, f := range r.Findings {
			fixed := f.Fixed
			if fixed == "" {
				fixed = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.Package.Name, f.Package.Version, fixed, f.ID, f.Severity, shortHex(f.Package.Layer))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// shortHex is the first 12 hex digits of a digest, as docker prints
// layer ids.
func shortHex(d oci.Digest) string {
	_, hex, ok := strings.Cut(string(d), ":")
	if !ok || len(hex) < 12 {
		return string(d)
	}
	return hex[:12]
}
