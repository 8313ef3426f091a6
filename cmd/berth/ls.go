package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/berth-registry/berth/pkg/errcode"
	"github.com/berth-registry/berth/pkg/push"
	"github.com/berth-registry/berth/pkg/registry"
)

// maxListingBytes bounds one page of the listing read from a registry.
const maxListingBytes = 64 << 20

// runLs implements `berth ls REGISTRY/REPOSITORY`: the repository's
// images with their tags, size, pusher and last recorded pull, newest
// push first, from Berth's image listing (GET /v2/<name>/_berth/images).
func runLs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("berth ls", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		asJSON, all, insecure, plainHTTP bool
	)
	fs.BoolVar(&asJSON, "json", false, "print the listing as JSON (the registry's images, all pages)")
	fs.BoolVar(&all, "a", false, "also list referrers (signatures, SBOMs, scan reports)")
	fs.BoolVar(&insecure, "insecure", false, "skip TLS certificate verification (and allow plain HTTP)")
	fs.BoolVar(&plainHTTP, "plain-http", false, "talk HTTP, not HTTPS (127.0.0.1, localhost and private addresses use HTTP anyway)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: berth ls [flags] REGISTRY/REPOSITORY

Lists a repository's images: tags, digest, size (manifest, config and
layers), when and by whom each was pushed, and its last recorded pull
(recorded once per image and UTC day). Newest push first.

flags:
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
	conn := push.Conn{PlainHTTP: plainHTTP, Insecure: insecure, UserAgent: "berth/" + version}
	repo, err := conn.Open(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	images, err := listImages(ctx, repo)
	if err != nil {
		return err
	}
	if !all {
		images = slices.DeleteFunc(images, func(im registry.Image) bool { return im.Subject != "" })
	}
	sort.SliceStable(images, func(i, j int) bool { return images[i].PushedAt > images[j].PushedAt })
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(registry.Images{Name: repo.Name, Images: images})
	}
	return printImages(stdout, images, all)
}

// listImages reads every page of the listing.
func listImages(ctx context.Context, repo *push.Repo) ([]registry.Image, error) {
	next := "/v2/" + repo.Name + "/_berth/images"
	var out []registry.Image
	for pages := 0; next != ""; pages++ {
		if pages == 1000 {
			return nil, fmt.Errorf("listing of %s: more than 1000 pages", repo.Name)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, repo.Base+next, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", registry.ImagesType)
		resp, err := repo.Client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", repo.Name, err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxListingBytes))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", repo.Name, err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, listingError(repo.Name, resp.StatusCode, body)
		}
		var page registry.Images
		if err := json.Unmarshal(body, &page); err != nil {
			return nil, fmt.Errorf("list %s: the registry's answer is not an image listing: %w", repo.Name, err)
		}
		out = append(out, page.Images...)
		next, err = nextPage(resp.Header.Get("Link"))
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", repo.Name, err)
		}
	}
	return out, nil
}

// nextPage returns the path and query of a Link: <...>; rel="next"
// header, or "" when there is none. Only a path on the same registry is
// followed.
func nextPage(link string) (string, error) {
	if link == "" {
		return "", nil
	}
	target, _, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(link), "<"), ">")
	if !ok {
		return "", fmt.Errorf("malformed Link header %q", link)
	}
	u, err := url.Parse(target)
	if err != nil || u.Host != "" || !strings.HasPrefix(u.Path, "/v2/") {
		return "", fmt.Errorf("link header %q does not point into /v2/ of this registry", link)
	}
	return u.RequestURI(), nil
}

// listingError explains a failed listing: the registry's OCI error, or a
// registry that is not Berth (or an older one) when the route is unknown.
func listingError(repo string, status int, body []byte) error {
	var oci errcode.Body
	if json.Unmarshal(body, &oci) == nil && len(oci.Errors) > 0 {
		e := oci.Errors[0]
		if e.Code == errcode.NameUnknown {
			return fmt.Errorf("repository %s not found", repo)
		}
		return fmt.Errorf("list %s: %d %s: %s", repo, status, e.Code, e.Message)
	}
	if status == http.StatusNotFound {
		return fmt.Errorf("list %s: the registry has no image listing (berth ls needs a Berth registry)", repo)
	}
	return fmt.Errorf("list %s: HTTP %d", repo, status)
}

// printImages writes the table: one row per tag, "<none>" for an untagged
// image, and with -a the referrers' artifact type and subject.
func printImages(w io.Writer, images []registry.Image, all bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := "TAG\tDIGEST\tSIZE\tPUSHED\tPUSHED BY\tLAST PULLED"
	if all {
		head += "\tARTIFACT TYPE\tSUBJECT"
	}
	fmt.Fprintln(tw, head)
	for _, im := range images {
		tags := im.Tags
		if len(tags) == 0 {
			tags = []string{"<none>"}
		}
		for _, tag := range tags {
			row := strings.Join([]string{tag, shortDigest(im.Digest), humanSize(im.Size), stamp(im.PushedAt), orDash(im.PushedBy), stamp(im.LastPulledAt)}, "\t")
			if all {
				row += "\t" + orDash(im.ArtifactType) + "\t" + orDash(shortDigest(im.Subject))
			}
			fmt.Fprintln(tw, row)
		}
	}
	return tw.Flush()
}

// shortDigest is the algorithm and the first 12 hex digits.
func shortDigest(d string) string {
	alg, hex, ok := strings.Cut(d, ":")
	if !ok || len(hex) <= 12 {
		return d
	}
	return alg + ":" + hex[:12]
}

// stamp shows an RFC 3339 time as "2006-01-02 15:04 UTC".
func stamp(s string) string {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return orDash(s)
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// humanSize prints bytes in binary units, as docker does.
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
