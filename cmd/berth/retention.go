package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/retention"
)

const retentionUsage = `usage: berth retention preview [flags] POLICY [REPO]

commands:
  preview   print what an Amazon ECR lifecycle policy would expire, deleting nothing
            (see berth retention preview -h)
`

// runRetention is `berth retention`.
func runRetention(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, retentionUsage)
		return errUsage
	}
	switch args[0] {
	case "preview":
		return runPreview(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, retentionUsage)
		return nil
	default:
		fmt.Fprintf(stderr, "berth retention: unknown command %q\n%s", args[0], retentionUsage)
		return errUsage
	}
}

// previewReport is what `berth retention preview --json` prints and the
// admin socket answers.
type previewReport struct {
	Repositories []retention.RepoPreview `json:"repositories"`
	Summary      previewSummary          `json:"summary"`
	Error        string                  `json:"error,omitempty"`
}

type previewSummary struct {
	Repositories int `json:"repositories"`
	Images       int `json:"images"`    // top-level manifests the policy looked at
	Manifests    int `json:"manifests"` // all manifests, children and referrers included
	Expired      int `json:"expired"`   // manifests a run would delete
	ByRule       int `json:"byRule"`    // of those, expired by a rule (the rest go with them)
}

func summarize(repos []retention.RepoPreview) previewSummary {
	s := previewSummary{Repositories: len(repos)}
	for _, r := range repos {
		s.Images += r.Images
		s.Manifests += r.Manifests
		s.Expired += len(r.Expired)
		for _, x := range r.Expired {
			if x.Reason == retention.ReasonRule {
				s.ByRule++
			}
		}
	}
	return s
}

// runPreview is `berth retention preview`: evaluate a policy on every
// repository, or on one, and print what a run would delete.
func runPreview(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		c      serveConfig
		asJSON bool
	)
	fs := flag.NewFlagSet("berth retention preview", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: berth retention preview [flags] POLICY [REPO]\n\n"+
			"Evaluates the Amazon ECR lifecycle policy in the file POLICY on every repository, or on REPO,\n"+
			"as the hourly retention run would now, and prints what it would delete; deletes nothing\n"+
			"(docs/retention.md). On the embedded backend a running berth serve on the same --data\n"+
			"evaluates it. Flags:\n")
		fs.PrintDefaults()
	}
	c.storeFlags(fs)
	fs.BoolVar(&asJSON, "json", false, "print the preview as JSON")
	// Flags may follow the arguments (berth retention preview p.json app --json).
	var pos []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos, rest = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	if len(pos) < 1 || len(pos) > 2 {
		fmt.Fprintln(stderr, "berth retention preview: want POLICY [REPO] (see berth retention preview -h)")
		return errUsage
	}
	c.setDefaults()
	if err := c.validate(); err != nil {
		fmt.Fprintf(stderr, "berth retention preview: %v\n", err)
		return errUsage
	}
	raw, err := os.ReadFile(pos[0])
	if err != nil {
		return err
	}
	if _, err := retention.Parse(raw); err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	repo := ""
	if len(pos) == 2 {
		repo = pos[1]
	}
	rep, err := viaServerOrDirect(c,
		func() (previewReport, error) { return previewViaServer(ctx, c.Data, raw, repo) },
		func() (previewReport, error) { return previewDirect(ctx, c, raw, repo) })
	if err != nil {
		return err
	}
	if asJSON {
		if err := json.NewEncoder(stdout).Encode(rep); err != nil {
			return err
		}
	} else {
		printPreview(stdout, rep)
	}
	if rep.Error != "" {
		return errors.New(rep.Error)
	}
	return nil
}

// preview evaluates the policy raw on store: every repository, or repo.
// A failing repository ends the preview with what came before it.
func preview(ctx context.Context, store *meta.Store, raw []byte, repo string) (previewReport, error) {
	policy, err := retention.Parse(raw)
	if err != nil {
		return previewReport{}, err
	}
	var repos []string
	if repo != "" {
		repos = []string{repo}
	}
	res, err := retention.Preview(ctx, store, policy, repos, time.Now())
	rep := previewReport{Repositories: res, Summary: summarize(res)}
	if err != nil {
		rep.Error = err.Error()
	}
	return rep, nil
}

// previewAdmin answers POST /retention/preview on the admin socket: the
// body is the policy, the query's repo the repository (all when absent).
func previewAdmin(store *meta.Store) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		raw, err := io.ReadAll(io.LimitReader(r.Body, retention.MaxPolicyBytes+1))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rep, err := preview(r.Context(), store, raw, r.URL.Query().Get("repo"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rep)
	}
}

// previewViaServer asks the berth serve running on dir for the preview.
func previewViaServer(ctx context.Context, dir string, raw []byte, repo string) (previewReport, error) {
	path := "/retention/preview"
	if repo != "" {
		path += "?repo=" + url.QueryEscape(repo)
	}
	var rep previewReport
	err := adminCall(ctx, dir, path, bytes.NewReader(raw), &rep)
	return rep, err
}

// previewDirect opens the backend and evaluates in this process. It only
// reads, so against AWS it may run beside the cleanup function.
func previewDirect(ctx context.Context, c serveConfig, raw []byte, repo string) (previewReport, error) {
	be, err := openBackend(ctx, c, slog.New(slog.DiscardHandler))
	if err != nil {
		return previewReport{}, err
	}
	defer be.close()
	return preview(ctx, meta.New(be.items), raw, repo)
}

func printPreview(w io.Writer, rep previewReport) {
	day := func(t time.Time) string { return t.UTC().Format("2006-01-02") }
	for _, r := range rep.Repositories {
		if len(r.Expired) == 0 {
			fmt.Fprintf(w, "%s: nothing expires (%d images, %d manifests)\n", r.Repository, r.Images, r.Manifests)
			continue
		}
		fmt.Fprintf(w, "%s: %d of %d manifests would be deleted (%d images looked at)\n", r.Repository, len(r.Expired), r.Manifests, r.Images)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  DIGEST\tTAGS\tRULE\tREASON\tPUSHED\tPULLED")
		for _, x := range r.Expired {
			rule := fmt.Sprint(x.Rule)
			if x.Description != "" {
				rule += " (" + x.Description + ")"
			}
			reason := x.Reason
			if x.Cause != "" {
				reason += " " + string(x.Cause)
			}
			tags := "-"
			if len(x.Tags) > 0 {
				tags = strings.Join(x.Tags, ",")
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", x.Digest, tags, rule, reason, day(x.Pushed), day(x.Pulled))
		}
		tw.Flush()
	}
	s := rep.Summary
	fmt.Fprintf(w, "preview: %d manifests would be deleted (%d expired by a rule, %d with them) in %d repositories holding %d images, %d manifests; nothing was deleted\n",
		s.Expired, s.ByRule, s.Expired-s.ByRule, s.Repositories, s.Images, s.Manifests)
}
