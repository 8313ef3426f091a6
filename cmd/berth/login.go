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
// instead, for hosts where the helper cannot be installed. It writes
// nothing for a registry that does not ask for credentials, and refuses to
// name a helper that is not on PATH.
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
	if !*noCheck {
		// Ask the registry first: an open registry needs no credentials,
		// and a helper entry written for it would only make every client
		// run a helper for nothing (and fail where it is not installed).
		err := credential.Probe(ctx, nil, server)
		if errors.Is(err, credential.ErrNoAuth) {
			_, err = fmt.Fprintf(stdout, "%s does not require authentication: nothing to configure\n", host)
			return err
		}
		if err != nil {
			return err
		}
	}
	if !*static {
		// Refuse before writing anything: a credHelpers entry naming a
		// helper that is not installed breaks every pull and push from
		// this registry with "executable file not found".
		if _, err := exec.LookPath("docker-credential-" + credential.HelperName); err != nil {
			return fmt.Errorf("docker-credential-%[1]s is not on PATH, so clients could not get credentials: "+
				"install it (go install github.com/berth-registry/berth/cmd/docker-credential-%[1]s@latest, or make build) "+
				"or use --static; nothing was written", credential.HelperName)
		}
	}
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
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "authenticated as %s\n", subject)
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
	}
	_, err = fmt.Fprintln(stdout, "Login Succeeded")
	return err
}
