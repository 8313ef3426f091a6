package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/exec"

	"github.com/berth-registry/berth/pkg/auth/credential"
)

// runLogin implements `berth login <registry>`: it checks that the
// caller's AWS credentials get a token from the registry, then points
// docker's config (read by docker, crane, oras, regctl, cosign) and
// podman's auth file (podman, skopeo, buildah) at docker-credential-berth
// for that registry. With --static it writes a proof valid for 15 minutes
// instead, for hosts where the helper cannot be installed.
func runLogin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("berth login", flag.ContinueOnError)
	fs.SetOutput(stderr)
	static := fs.Bool("static", false, "store a proof valid for 15 minutes instead of configuring docker-credential-berth")
	noPodman := fs.Bool("no-podman", false, "do not write podman's auth file")
	noCheck := fs.Bool("no-check", false, "do not log in to the registry before writing the configuration")
	audience := fs.String("audience", "", "STS audience the registry expects (default: the service in its /v2/ challenge)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: berth login [flags] <registry>\n\nLogs in with the AWS credentials of this shell (AWS_PROFILE, SSO, roles, web identity).\nFlags:\n")
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
	server := fs.Arg(0)
	host := credential.Host(server)
	opts := credential.Options{Audience: *audience}
	if !*static {
		if d, err := credential.DefaultCacheDir(); err == nil {
			opts.CacheDir = d
		}
	}
	cred, err := credential.Get(ctx, server, opts)
	if err != nil {
		return err
	}
	if !*noCheck {
		subject, err := credential.Check(ctx, nil, server, cred)
		switch {
		case errors.Is(err, credential.ErrNoAuth):
			fmt.Fprintf(stderr, "note: %s does not require authentication\n", host)
		case err != nil:
			return err
		default:
			fmt.Fprintf(stderr, "authenticated as %s\n", subject)
		}
	}
	dockerPath, err := credential.DockerConfigPath()
	if err != nil {
		return err
	}
	paths := []string{dockerPath}
	if !*noPodman {
		p, err := credential.PodmanAuthPath()
		if err != nil {
			return err
		}
		paths = append(paths, p)
	}
	for _, p := range paths {
		if *static {
			err = credential.SetStaticAuth(p, host, cred.Username, cred.Secret)
		} else {
			err = credential.SetCredHelper(p, host)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "updated %s\n", p)
	}
	if *static {
		fmt.Fprintf(stderr, "warning: the stored credential expires at %s\n", cred.Expires.Local().Format("15:04:05"))
	} else if _, err := exec.LookPath("docker-credential-" + credential.HelperName); err != nil {
		fmt.Fprintf(stderr, "warning: docker-credential-%s is not on PATH; clients will fail to get credentials until it is installed\n", credential.HelperName)
	}
	_, err = fmt.Fprintln(stdout, "Login Succeeded")
	return err
}
