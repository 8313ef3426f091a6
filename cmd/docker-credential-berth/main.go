// Command docker-credential-berth is a Docker credential helper for Berth
// registries. `get` answers with a fresh IAM identity proof minted from the
// caller's AWS credentials (the SDK's default chain: environment,
// AWS_PROFILE, SSO, web identity, container and instance roles), cached
// under the user cache dir until shortly before it expires. Nothing
// long-lived is ever stored: `store` accepts and discards what docker
// hands it, `erase` drops the cached proof.
//
// Configure it with `berth login <registry>`, or by hand in
// ~/.docker/config.json: {"credHelpers": {"<registry>": "berth"}}.
// A proof is signed for the registry host docker asks about, never for the
// service a registry names in its challenge (a registry that could choose
// the audience could obtain a proof another registry accepts); a registry
// whose challenge names another service is refused. BERTH_STS_AUDIENCE sets
// the audience for registries served under another name
// ("host=audience,host2=audience2", or one audience for every registry);
// BERTH_CREDENTIAL_CACHE=off disables the cache.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/berth-registry/berth/pkg/auth/credential"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout)
	cancel()
	if err != nil {
		// The protocol reads errors from stdout.
		fmt.Fprintln(os.Stdout, err)
		os.Exit(1)
	}
}

func options() credential.Options {
	o := credential.Options{}
	if os.Getenv("BERTH_CREDENTIAL_CACHE") != "off" {
		if d, err := credential.DefaultCacheDir(); err == nil {
			o.CacheDir = d
		}
	}
	return o
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: docker-credential-berth get|store|erase|list|version")
	}
	o := options()
	switch args[0] {
	case "get":
		server, err := readLine(stdin)
		if err != nil {
			return err
		}
		// The audience is the host docker asked about unless the user set
		// one for it: never what the registry's challenge names.
		o.Audience = credential.AudienceFor(os.Getenv("BERTH_STS_AUDIENCE"), server)
		c, err := credential.Get(ctx, server, o)
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(map[string]string{"ServerURL": server, "Username": c.Username, "Secret": c.Secret})
	case "store":
		// Proofs are minted on demand; nothing handed to us is kept.
		var in struct{ ServerURL, Username, Secret string }
		if err := json.NewDecoder(io.LimitReader(stdin, 1<<20)).Decode(&in); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		return nil
	case "erase":
		server, err := readLine(stdin)
		if err != nil {
			return err
		}
		if o.CacheDir == "" {
			return nil
		}
		return credential.Erase(o.CacheDir, server)
	case "list":
		out := map[string]string{}
		if o.CacheDir != "" {
			hosts, err := credential.List(o.CacheDir)
			if err != nil {
				return err
			}
			for _, h := range hosts {
				out[h] = credential.Username
			}
		}
		return json.NewEncoder(stdout).Encode(out)
	case "version":
		_, err := fmt.Fprintln(stdout, "docker-credential-berth (Berth IAM identity proofs, format berth-sts-v1)")
		return err
	default:
		return fmt.Errorf("unknown action %q", args[0])
	}
}

func readLine(r io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, 4096))
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("no server URL on stdin")
	}
	return s, nil
}
