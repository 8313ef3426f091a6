// Command berth is the Berth CLI: `berth serve` runs a registry on this
// machine, `berth login` sets up registry credentials from AWS credentials,
// `berth version` prints the build version and commit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time: -ldflags "-X main.version=$(git describe)"
// (make build). "dev" means unset: `berth version` then reports the module
// version from the build info, as `go install …@vX` leaves it.
var version = "dev"

const usage = `usage: berth <command> [flags]

commands:
  serve     run a registry (embedded store by default; see berth serve -h)
  login     log in to a registry with this shell's AWS credentials (see berth login -h)
  push      push an OCI layout, OCI archive or docker save tar to a registry (see berth push -h)
  copy      copy an image with its referrers from any registry (see berth copy -h)
  ls        list a repository's images: tags, size, pushed at/by, last pulled (see berth ls -h)
  scan      print the vulnerability report of an image; gate CI on it (see berth scan -h)
  gc        run one garbage collection pass (see berth gc -h)
  retention preview what a retention policy would expire (see berth retention preview -h)
  version   print the version
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command and returns the process exit code: 0 on
// success, 2 on a usage error, 1 on any other failure, or the code of an
// *exitError (berth scan's verdicts).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = runServe(ctx, args[1:], stdout, stderr)
	case "login":
		err = runLogin(ctx, args[1:], stdout, stderr)
	case "push":
		err = runPush(ctx, args[1:], stdout, stderr)
	case "copy":
		err = runCopy(ctx, args[1:], stdout, stderr)
	case "ls":
		err = runLs(ctx, args[1:], stdout, stderr)
	case "scan":
		err = runScan(ctx, args[1:], stdout, stderr)
	case "gc":
		err = runGC(ctx, args[1:], stdout, stderr)
	case "retention":
		err = runRetention(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		_, err = fmt.Fprintln(stdout, versionString(version, buildInfo()))
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "berth: unknown command %q\n%s", args[0], usage)
		return 2
	}
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ee.msg != "" {
			fmt.Fprintln(stderr, ee.msg)
		}
		return ee.code
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "berth %s: %v\n", args[0], err)
		return 1
	}
}

// errUsage marks a command-line error the flag package has already reported.
var errUsage = errors.New("usage error")
