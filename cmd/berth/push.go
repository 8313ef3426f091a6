package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/berth-registry/berth/pkg/push"
)

// transferFlags are the flags `berth push` and `berth copy` share.
type transferFlags struct {
	jobs      int
	insecure  bool
	plainHTTP bool
	quiet     bool
	noRefs    bool
}

func (f *transferFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&f.jobs, "jobs", 4, "blobs uploaded at once")
	fs.BoolVar(&f.insecure, "insecure", false, "skip TLS certificate verification (and allow plain HTTP)")
	fs.BoolVar(&f.plainHTTP, "plain-http", false, "talk HTTP, not HTTPS (127.0.0.1, localhost and private addresses use HTTP anyway)")
	fs.BoolVar(&f.quiet, "q", false, "print only the pushed reference with its digest")
	fs.BoolVar(&f.noRefs, "no-referrers", false, "do not copy the source's referrers (signatures, SBOMs)")
}

func (f *transferFlags) conn() push.Conn {
	return push.Conn{PlainHTTP: f.plainHTTP, Insecure: f.insecure, UserAgent: "berth/" + version}
}

func (f *transferFlags) options(stderr io.Writer) push.Options {
	o := push.Options{Jobs: f.jobs, NoReferrers: f.noRefs, Progress: push.Quiet{}}
	if !f.quiet {
		o.Progress = push.NewProgress(stderr, ciEnv())
	}
	return o
}

// ciEnv reports CI=true (GitHub Actions, GitLab, most CI systems): logs
// get one line per event instead of redrawn bars.
func ciEnv() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v != "" && v != "false" && v != "0"
}

// parseTransfer parses the flags and the two positional arguments.
func parseTransfer(fs *flag.FlagSet, args []string) (string, string, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", "", err
		}
		return "", "", errUsage
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return "", "", errUsage
	}
	return fs.Arg(0), fs.Arg(1), nil
}

// runPush implements `berth push SOURCE REF`: an OCI layout directory, an
// OCI archive or a docker save tar into a registry, layers straight to S3
// when the registry offers Berth's direct upload API.
func runPush(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("berth push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var tf transferFlags
	tf.register(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: berth push [flags] SOURCE REF

SOURCE is an OCI layout directory, an OCI archive tar (docker buildx --output type=oci,
podman save --format oci-archive) or a docker save tar; append :NAME to pick one image
when it holds several. REF is registry/repository[:tag|@digest].
Credentials come from the docker config and its credential helpers (berth login).
Flags:
`)
		fs.PrintDefaults()
	}
	srcArg, dstArg, err := parseTransfer(fs, args)
	if err != nil {
		return err
	}
	src, closeSrc, err := push.Open(srcArg)
	if err != nil {
		return err
	}
	defer closeSrc()
	return transfer(ctx, src, dstArg, "", tf, tf.options(stderr), stdout, stderr)
}

// transfer pushes src to dst and prints the outcome.
func transfer(ctx context.Context, src push.Source, dst, mountFrom string, tf transferFlags, opts push.Options, stdout, stderr io.Writer) error {
	target, err := push.NewTarget(ctx, dst, tf.conn(), mountFrom, push.RetryPolicy{})
	if err != nil {
		return err
	}
	sum, err := push.Push(ctx, src, target, opts)
	if err != nil {
		return err
	}
	if !tf.quiet {
		fmt.Fprintln(stderr, sum)
	}
	_, err = fmt.Fprintf(stdout, "%s@%s\n", target.String(), sum.Digest)
	return err
}
