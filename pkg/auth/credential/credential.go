// Package credential is the client side of Berth's login: it turns the
// caller's AWS credentials (the SDK's default chain: environment,
// AWS_PROFILE, SSO, web identity, container and instance roles) into the
// Basic credential a Berth token endpoint accepts, and writes the docker
// and podman configuration that makes registry clients ask for it.
// cmd/docker-credential-berth and `berth login` are thin wrappers.
package credential

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/berth-registry/berth/pkg/auth/stsproof"
)

// Username is the Basic user name sent with a proof (the token endpoint
// ignores it; docker requires one).
const Username = "berth"

// Credential is what a credential helper returns.
type Credential struct {
	ServerURL string
	Username  string
	Secret    string
	// Audience is the STS audience the proof is signed for.
	Audience string
	// Expires is when the proof stops being accepted.
	Expires time.Time
}

// Options tune Get.
type Options struct {
	// AWSConfig signs the proof; nil loads the SDK's default chain.
	AWSConfig *aws.Config
	// Audience is the registry's STS audience, set explicitly by the user;
	// "" binds the proof to the host Get is asked about. It is never taken
	// from the registry: a registry that could name the audience could ask
	// for a proof another registry accepts and replay it there.
	Audience string
	// HTTPClient is used to read the registry's challenge (default: 10s
	// timeout).
	HTTPClient *http.Client
	// CacheDir holds proofs until shortly before they expire; "" disables
	// the cache.
	CacheDir string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// proofLifetime is how long a fresh proof is used from the cache: STS
// accepts it for 15 minutes; the margin covers clock skew and the time a
// client takes between `get` and the token request.
const proofLifetime = 10 * time.Minute

// Host normalizes a server URL as docker passes it ("host[:port]",
// "https://host/v1/", …) to host[:port].
func Host(serverURL string) string {
	s := strings.TrimSpace(serverURL)
	if strings.Contains(s, "://") {
		if u, err := url.Parse(s); err == nil {
			return strings.ToLower(u.Host)
		}
	}
	s, _, _ = strings.Cut(s, "/")
	return strings.ToLower(s)
}

// AudienceFor reads a user's audience setting (BERTH_STS_AUDIENCE) for
// host: a comma-separated list of host=audience pairs, of which only
// host's applies, or a single audience without "=", which applies to every
// registry (for environments that talk to one registry only). "" means
// none: the proof is bound to the host.
func AudienceFor(setting, host string) string {
	setting = strings.TrimSpace(setting)
	if setting == "" {
		return ""
	}
	if !strings.Contains(setting, "=") {
		return setting
	}
	for pair := range strings.SplitSeq(setting, ",") {
		h, aud, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if ok && sameHost(Host(h), Host(host)) {
			return strings.TrimSpace(aud)
		}
	}
	return ""
}

// sameHost compares two host[:port] values, ignoring case and an explicit
// default https port.
func sameHost(a, b string) bool {
	norm := func(h string) string { return strings.TrimSuffix(strings.ToLower(h), ":443") }
	return norm(a) == norm(b)
}

// ErrForeignService reports a registry whose challenge names another
// service than the audience the proof would be signed for.
var ErrForeignService = errors.New("credential: registry names a foreign service")

// Get returns a credential for serverURL, from the cache when a cached
// proof for the same audience is still fresh, else newly minted. The
// proof's audience is o.Audience, else the host of serverURL; a registry
// whose challenge names another service is refused (ErrForeignService).
func Get(ctx context.Context, serverURL string, o Options) (Credential, error) {
	host := Host(serverURL)
	if host == "" {
		return Credential{}, errors.New("credential: empty server URL")
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	audience := o.Audience
	if audience == "" {
		audience = host
	}
	if o.CacheDir != "" {
		if c, ok := readCache(o.CacheDir, host, audience, now()); ok {
			return c, nil
		}
	}
	if o.Audience == "" {
		// The audience is the host whatever the registry says; reading
		// its challenge only turns a mismatch into a clear refusal instead
		// of a proof the registry cannot use.
		if svc := Discover(ctx, o.client(), serverURL); !sameHost(svc, audience) {
			return Credential{}, foreignService(host, svc, audience)
		}
	}
	var awsCfg aws.Config
	if o.AWSConfig != nil {
		awsCfg = *o.AWSConfig
	} else {
		var err error
		if awsCfg, err = config.LoadDefaultConfig(ctx); err != nil {
			return Credential{}, fmt.Errorf("credential: load AWS configuration: %w", err)
		}
	}
	signedAt := now()
	proof, err := stsproof.Presign(ctx, awsCfg, audience)
	if err != nil {
		return Credential{}, fmt.Errorf("credential: %w (are AWS credentials configured? try `aws sts get-caller-identity`)", err)
	}
	c := Credential{ServerURL: host, Username: Username, Secret: proof, Audience: audience, Expires: signedAt.Add(stsproof.Lifetime * time.Second)}
	if o.CacheDir != "" {
		// A cache that cannot be written only costs a new proof next time.
		_ = writeCache(o.CacheDir, host, c, signedAt.Add(proofLifetime))
	}
	return c, nil
}

func foreignService(host, service, audience string) error {
	return fmt.Errorf("%w: %s names service %q in its challenge, but proofs for it are signed for %q; "+
		"if %s really is served under that name, set BERTH_STS_AUDIENCE=%s=%s (or berth login --audience)",
		ErrForeignService, host, service, audience, host, host, service)
}

func (o Options) client() *http.Client {
	if o.HTTPClient != nil {
		return o.HTTPClient
	}
	return &http.Client{Timeout: 10 * time.Second}
}

// Discover returns the service name in the registry's Bearer challenge
// (GET /v2/), or the host when the registry does not answer with one. Get
// compares it with the audience; it never becomes the audience. Plain http is tried only for
// loopback hosts or an explicit http:// URL.
func Discover(ctx context.Context, client *http.Client, serverURL string) string {
	host := Host(serverURL)
	var bases []string
	switch {
	case strings.HasPrefix(serverURL, "http://"):
		bases = []string{"http://" + host}
	case strings.HasPrefix(serverURL, "https://") || !isLoopback(host):
		bases = []string{"https://" + host}
	default:
		bases = []string{"https://" + host, "http://" + host}
	}
	for _, b := range bases {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, b+"/v2/", nil)
		if err != nil {
			continue
		}
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		resp.Body.Close()
		if svc := ChallengeParam(resp.Header.Get("WWW-Authenticate"), "service"); svc != "" {
			return svc
		}
		return host
	}
	return host
}

func isLoopback(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

// ChallengeParam extracts one parameter of a Bearer challenge.
func ChallengeParam(challenge, name string) string {
	scheme, rest, ok := strings.Cut(challenge, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	for rest != "" {
		rest = strings.TrimLeft(rest, " ,")
		k, v, ok := strings.Cut(rest, "=")
		if !ok {
			return ""
		}
		var val string
		if strings.HasPrefix(v, `"`) {
			end := 1
			for end < len(v) && v[end] != '"' {
				if v[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(v) {
				return ""
			}
			val, rest = strings.ReplaceAll(v[1:end], `\"`, `"`), v[end+1:]
		} else {
			val, rest, _ = strings.Cut(v, ",")
		}
		if strings.EqualFold(strings.TrimSpace(k), name) {
			return val
		}
	}
	return ""
}

type cacheEntry struct {
	ServerURL string    `json:"serverURL"`
	Audience  string    `json:"audience"`
	Secret    string    `json:"secret"`
	Expires   time.Time `json:"expires"`  // of the proof
	UseUntil  time.Time `json:"useUntil"` // of the cache entry
}

func cachePath(dir, host string) string {
	sum := sha256.Sum256([]byte(host))
	return filepath.Join(dir, hex.EncodeToString(sum[:12])+".json")
}

func readCache(dir, host, audience string, now time.Time) (Credential, bool) {
	b, err := os.ReadFile(cachePath(dir, host))
	if err != nil {
		return Credential{}, false
	}
	var e cacheEntry
	if json.Unmarshal(b, &e) != nil || e.ServerURL != host || e.Audience != audience || !now.Before(e.UseUntil) || e.Secret == "" {
		return Credential{}, false
	}
	return Credential{ServerURL: host, Username: Username, Secret: e.Secret, Audience: audience, Expires: e.Expires}, true
}

func writeCache(dir, host string, c Credential, useUntil time.Time) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(cacheEntry{ServerURL: host, Audience: c.Audience, Secret: c.Secret, Expires: c.Expires, UseUntil: useUntil})
	if err != nil {
		return err
	}
	return writeFileAtomic(cachePath(dir, host), b, 0o600)
}

// Erase drops the cached credential for serverURL.
func Erase(dir, serverURL string) error {
	err := os.Remove(cachePath(dir, Host(serverURL)))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// List returns the hosts with a cached credential.
func List(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, de := range ents {
		b, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if err != nil {
			continue
		}
		var e cacheEntry
		if json.Unmarshal(b, &e) == nil && e.ServerURL != "" {
			out = append(out, e.ServerURL)
		}
	}
	return out, nil
}

// DefaultCacheDir is <user cache dir>/berth/credentials.
func DefaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "berth", "credentials"), nil
}

// writeFileAtomic writes via a temporary file and a rename, so readers
// never see half a file, with mode perm from the start.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ErrNoAuth reports a registry that answers /v2/ without authentication.
var ErrNoAuth = errors.New("credential: registry does not require authentication")

// Probe asks the registry's /v2/ whether it wants credentials, the way
// clients start: nil for a Bearer challenge, ErrNoAuth for a 200, an error
// for anything else. berth login probes before it writes anything, so an
// open registry gets no credential helper its clients would then fail to
// run.
func Probe(ctx context.Context, client *http.Client, serverURL string) error {
	_, err := challenge(ctx, client, serverURL)
	return err
}

// challenge GETs /v2/ on the bases a client would try (plain http only
// for loopback hosts or an explicit http:// URL) and returns the Bearer
// challenge of the first base that answers.
func challenge(ctx context.Context, client *http.Client, serverURL string) (string, error) {
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	host := Host(serverURL)
	bases := []string{"https://" + host}
	if strings.HasPrefix(serverURL, "http://") {
		bases = []string{"http://" + host}
	} else if !strings.HasPrefix(serverURL, "https://") && isLoopback(host) {
		bases = append(bases, "http://"+host)
	}
	var lastErr error
	for _, base := range bases {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/", nil)
		if err != nil {
			return "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			lastErr = err
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return "", ErrNoAuth
		}
		ch := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != http.StatusUnauthorized || ChallengeParam(ch, "realm") == "" {
			return "", fmt.Errorf("credential: %s/v2/ answered %d without a Bearer challenge", base, resp.StatusCode)
		}
		return ch, nil
	}
	return "", fmt.Errorf("credential: %s unreachable: %w", host, lastErr)
}

// Check logs in with c the way registry clients do (GET /v2/, then the
// realm named in the challenge with Basic credentials) and returns the
// subject of the token the registry issued.
func Check(ctx context.Context, client *http.Client, serverURL string, c Credential) (string, error) {
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	host := Host(serverURL)
	ch, err := challenge(ctx, client, serverURL)
	if err != nil {
		return "", err
	}
	realm := ChallengeParam(ch, "realm")
	u, err := url.Parse(realm)
	if err != nil {
		return "", fmt.Errorf("credential: bad realm %q: %w", realm, err)
	}
	svc := ChallengeParam(ch, "service")
	if c.Audience != "" && svc != "" && !sameHost(svc, c.Audience) {
		// The registry is not the one the proof was made for: do not
		// hand it over.
		return "", foreignService(host, svc, c.Audience)
	}
	q := u.Query()
	if svc != "" {
		q.Set("service", svc)
	}
	u.RawQuery = q.Encode()
	treq, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	treq.SetBasicAuth(c.Username, c.Secret)
	tresp, err := client.Do(treq)
	if err != nil {
		return "", fmt.Errorf("credential: token endpoint: %w", err)
	}
	defer tresp.Body.Close()
	var body struct {
		Token  string `json:"token"`
		Errors []struct {
			Code, Message string
		} `json:"errors"`
	}
	_ = json.NewDecoder(io.LimitReader(tresp.Body, 1<<20)).Decode(&body)
	if tresp.StatusCode != http.StatusOK || body.Token == "" {
		msg := http.StatusText(tresp.StatusCode)
		if len(body.Errors) > 0 {
			msg = body.Errors[0].Code + ": " + body.Errors[0].Message
		}
		return "", fmt.Errorf("credential: login refused: %s", msg)
	}
	return tokenSubject(body.Token), nil
}

// tokenSubject reads sub from a token without verifying it (display only).
func tokenSubject(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Sub string `json:"sub"`
	}
	_ = json.Unmarshal(b, &c)
	return c.Sub
}
