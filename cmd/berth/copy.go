package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-registry/berth/pkg/push"
)

// runCopy implements `berth copy SRC-REF DST-REF`: an image (index,
// children, referrers) from any registry into another, or into another
// repository of the same registry, where blobs are mounted, not copied.
func runCopy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("berth copy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var tf transferFlags
	tf.register(fs)
	platform := fs.String("platform", "", "copy only this platform's image of an index (os/arch[/variant]), tagged as DST-REF")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: berth copy [flags] SRC-REF DST-REF

Copies an image, or a multi-platform index with its images, and its referrers
(signatures, SBOMs) from any registry. Credentials for both come from the docker
config and its credential helpers (berth login, docker login).
Flags:
`)
		fs.PrintDefaults()
	}
	srcArg, dstArg, err := parseTransfer(fs, args)
	if err != nil {
		return err
	}
	opts := tf.options(stderr)
	if *platform != "" {
		p, err := v1.ParsePlatform(*platform)
		if err != nil {
			return fmt.Errorf("--platform: %w", err)
		}
		opts.Platform = p
	}
	src, err := push.NewRemoteSource(srcArg, tf.conn())
	if err != nil {
		return err
	}
	// Blobs are mounted only within one registry.
	reg, from := src.MountFrom()
	if !strings.HasPrefix(dstArg, reg+"/") {
		from = ""
	}
	return transfer(ctx, src, dstArg, from, tf, opts, stdout, stderr)
}
