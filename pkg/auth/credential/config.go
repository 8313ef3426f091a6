package credential

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// HelperName is the credHelpers value that makes clients run
// docker-credential-berth.
const HelperName = "berth"

// DockerConfigPath is $DOCKER_CONFIG/config.json, else
// ~/.docker/config.json. docker, crane, oras, regctl and cosign read it.
func DockerConfigPath() (string, error) {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".docker", "config.json"), nil
}

// PodmanAuthPath is where podman, skopeo and buildah read credentials:
// $REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json, else
// ~/.config/containers/auth.json.
func PodmanAuthPath() (string, error) {
	if f := os.Getenv("REGISTRY_AUTH_FILE"); f != "" {
		return f, nil
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "containers", "auth.json"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".config", "containers", "auth.json"), nil
}

// SetCredHelper makes the config file at path send host's credential
// requests to docker-credential-berth, dropping any static entry for host.
// Every other setting in the file is kept.
func SetCredHelper(path, host string) error {
	return editConfig(path, func(cfg map[string]json.RawMessage) error {
		if err := editMap(cfg, "credHelpers", func(m map[string]json.RawMessage) {
			m[host], _ = json.Marshal(HelperName)
		}); err != nil {
			return err
		}
		return editMap(cfg, "auths", func(m map[string]json.RawMessage) { delete(m, host) })
	})
}

// SetStaticAuth writes a static auths entry (user:secret) for host and
// drops a credHelpers entry for it. A proof expires after 15 minutes, so
// this suits one-off jobs only.
func SetStaticAuth(path, host, user, secret string) error {
	return editConfig(path, func(cfg map[string]json.RawMessage) error {
		if err := editMap(cfg, "auths", func(m map[string]json.RawMessage) {
			m[host], _ = json.Marshal(map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + secret))})
		}); err != nil {
			return err
		}
		return editMap(cfg, "credHelpers", func(m map[string]json.RawMessage) { delete(m, host) })
	})
}

func editConfig(path string, fn func(map[string]json.RawMessage) error) error {
	cfg := map[string]json.RawMessage{}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("credential: read %s: %w", path, err)
	case len(b) > 0:
		if err := json.Unmarshal(b, &cfg); err != nil {
			return fmt.Errorf("credential: %s is not a JSON object: %w", path, err)
		}
	}
	if err := fn(cfg); err != nil {
		return fmt.Errorf("credential: %s: %w", path, err)
	}
	out, err := json.MarshalIndent(cfg, "", "\t")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("credential: %w", err)
	}
	if err := writeFileAtomic(path, append(out, '\n'), 0o600); err != nil {
		return fmt.Errorf("credential: write %s: %w", path, err)
	}
	return nil
}

func editMap(cfg map[string]json.RawMessage, key string, fn func(map[string]json.RawMessage)) error {
	m := map[string]json.RawMessage{}
	if raw, ok := cfg[key]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &m); err != nil {
			return fmt.Errorf("%s is not an object: %w", key, err)
		}
	}
	fn(m)
	if len(m) == 0 {
		delete(cfg, key)
		return nil
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	cfg[key] = raw
	return nil
}
