package push

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Conn says how to reach a registry. The zero value is right for a
// registry on the internet: HTTPS, docker config credentials.
type Conn struct {
	// PlainHTTP talks HTTP instead of HTTPS. 127.0.0.1, localhost and
	// private addresses use HTTP without it, as crane does.
	PlainHTTP bool
	// Insecure skips TLS certificate verification.
	Insecure bool
	// Keychain finds credentials; default authn.DefaultKeychain (docker
	// config and credential helpers, so `berth login` just works).
	Keychain authn.Keychain
	// Transport is the base HTTP transport; default a clone of
	// http.DefaultTransport.
	Transport http.RoundTripper
	// UserAgent is sent with every request; default "berth".
	UserAgent string
}

func (c Conn) keychain() authn.Keychain {
	if c.Keychain != nil {
		return c.Keychain
	}
	return authn.DefaultKeychain
}

func (c Conn) userAgent() string {
	if c.UserAgent != "" {
		return c.UserAgent
	}
	return "berth"
}

func (c Conn) baseTransport() http.RoundTripper {
	if c.Transport != nil {
		return c.Transport
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	// Layers go up in parallel to one registry and one S3 endpoint.
	t.MaxIdleConnsPerHost = 32
	// A request whose answer never comes fails and is retried; the timer
	// starts after the body was sent, so large uploads are not cut short.
	t.ResponseHeaderTimeout = 5 * time.Minute
	if c.Insecure {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the user asked for it with --insecure
	}
	return t
}

func parseRef(ref string, c Conn) (name.Reference, error) {
	var opts []name.Option
	if c.PlainHTTP || c.Insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("reference %q: %w", ref, err)
	}
	return r, nil
}

// scheme is http for --plain-http and for the hosts ggcr (and so crane)
// treats as local; https otherwise, also with --insecure.
func (c Conn) scheme(host string) string {
	if c.PlainHTTP {
		return "http"
	}
	if r, err := name.NewRegistry(host); err == nil {
		return r.Scheme()
	}
	return "https"
}

// RetryPolicy bounds retries of requests that failed on the network or
// with a 5xx/429: Attempts tries in all, waiting Base, 2×Base, … (at most
// Max, with jitter) between them.
type RetryPolicy struct {
	Attempts int
	Base     time.Duration
	Max      time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Attempts <= 0 {
		p.Attempts = 5
	}
	if p.Base <= 0 {
		p.Base = 500 * time.Millisecond
	}
	if p.Max <= 0 {
		p.Max = 10 * time.Second
	}
	return p
}

// Target is the registry and repository pushed to. It speaks the OCI API
// plus Berth's direct upload extension over a transport that ggcr has
// authorized (bearer token with push and pull scope), and sends presigned
// URL requests over a separate client that carries no registry
// credentials (S3 rejects a request that is signed twice).
type Target struct {
	ref    name.Reference
	base   string // scheme://host
	repo   string
	api    *http.Client
	direct *http.Client
	retry  RetryPolicy
}

// NewTarget resolves credentials for ref's registry and gets a token with
// push scope on its repository (and pull on mountFrom, a repository of the
// same registry blobs may be mounted from; "" for none).
func NewTarget(ctx context.Context, ref string, conn Conn, mountFrom string, retry RetryPolicy) (*Target, error) {
	r, err := parseRef(ref, conn)
	if err != nil {
		return nil, err
	}
	repo := r.Context()
	auth, err := conn.keychain().Resolve(repo.Registry)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", repo.RegistryStr(), err)
	}
	scopes := []string{repo.Scope(transport.PushScope)}
	if mountFrom != "" && mountFrom != repo.RepositoryStr() {
		scopes = append(scopes, repo.Registry.Repo(mountFrom).Scope(transport.PullScope))
	}
	base := conn.baseTransport()
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, base, scopes)
	if err != nil {
		return nil, fmt.Errorf("authenticate to %s: %w", repo.RegistryStr(), err)
	}
	rt = transport.NewUserAgent(rt, conn.userAgent())
	return &Target{
		ref:  r,
		base: conn.scheme(repo.RegistryStr()) + "://" + repo.RegistryStr(),
		repo: repo.RepositoryStr(),
		api:  &http.Client{Transport: rt},
		// Presigned URLs go to S3 (or an S3 server), never to the
		// registry; redirects are not followed because a presigned PUT
		// has no reason to move.
		direct: &http.Client{Transport: transport.NewUserAgent(base, conn.userAgent()),
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		retry: retry.withDefaults(),
	}, nil
}

// Registry is the host pushed to.
func (t *Target) Registry() string { return t.ref.Context().RegistryStr() }

// Repository is the repository pushed to.
func (t *Target) Repository() string { return t.repo }

// Reference is the tag or digest the root manifest is pushed as.
func (t *Target) Reference() string { return t.ref.Identifier() }

// String is the full destination reference.
func (t *Target) String() string { return t.ref.String() }

// url resolves a path or a (possibly relative) Location against the
// registry.
func (t *Target) url(loc string) (*url.URL, error) {
	base, err := url.Parse(t.base + "/")
	if err != nil {
		return nil, err
	}
	u, err := base.Parse(loc)
	if err != nil {
		return nil, fmt.Errorf("location %q: %w", loc, err)
	}
	return u, nil
}

// request is one HTTP request the retry loop can rebuild: body opens a
// fresh body for every attempt.
type request struct {
	method  string
	url     string
	header  http.Header
	body    func() (io.Reader, int64, error)
	onRetry func() // undo progress counted by the failed attempt
}

// do sends req, retrying network errors, 429 and 5xx with backoff. The
// caller closes the response body.
func (t *Target) do(ctx context.Context, c *http.Client, req request) (*http.Response, error) {
	var last error
	for attempt := 0; attempt < t.retry.Attempts; attempt++ {
		if attempt > 0 {
			if req.onRetry != nil {
				req.onRetry()
			}
			if err := sleep(ctx, t.backoff(attempt)); err != nil {
				return nil, errors.Join(err, last)
			}
		}
		resp, err := t.once(ctx, c, req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			last = err
			continue
		}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented {
			last = responseError(resp, req.method+" "+redact(req.url))
			continue
		}
		return resp, nil
	}
	return nil, fmt.Errorf("after %d attempts: %w", t.retry.Attempts, last)
}

func (t *Target) once(ctx context.Context, c *http.Client, req request) (*http.Response, error) {
	var body io.Reader = http.NoBody
	var size int64
	if req.body != nil {
		b, n, err := req.body()
		if err != nil {
			return nil, err
		}
		body, size = b, n
		if c, ok := b.(io.Closer); ok {
			defer c.Close()
		}
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, req.url, body)
	if err != nil {
		return nil, err
	}
	if req.body != nil {
		hr.ContentLength = size
		if size == 0 {
			hr.Body = http.NoBody
		}
	}
	for k, vs := range req.header {
		hr.Header[k] = vs
	}
	return c.Do(hr)
}

func (t *Target) backoff(attempt int) time.Duration {
	d := t.retry.Base << (attempt - 1)
	if d > t.retry.Max || d <= 0 {
		d = t.retry.Max
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

// responseError reads an unexpected response into an error and closes it.
func responseError(resp *http.Response, what string) error {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	msg := strings.TrimSpace(string(b))
	// S3 answers in XML: its code and message say it all (BadDigest: the
	// bytes do not match the signed sha256).
	if m := s3Error.FindStringSubmatch(msg); m != nil {
		msg = m[1] + ": " + m[2]
	}
	if len(msg) > 512 {
		msg = msg[:512] + "…"
	}
	return &StatusError{What: what, Status: resp.StatusCode, Body: msg}
}

var s3Error = regexp.MustCompile(`(?s)<Code>([^<]*)</Code>.*?<Message>([^<]*)</Message>`)

// StatusError is an unexpected HTTP answer.
type StatusError struct {
	What   string
	Status int
	Body   string
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("%s: %d %s", e.What, e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("%s: %d %s: %s", e.What, e.Status, http.StatusText(e.Status), e.Body)
}

// redact drops a URL's query: presigned URLs carry signatures that must
// not end up in logs.
func redact(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	_ = resp.Body.Close()
}

// HeadBlob reports whether the repository already holds d.
func (t *Target) HeadBlob(ctx context.Context, d v1.Hash) (bool, error) {
	return t.head(ctx, "/v2/"+t.repo+"/blobs/"+d.String())
}

// HeadManifest reports whether the repository already holds manifest d.
func (t *Target) HeadManifest(ctx context.Context, d v1.Descriptor) (bool, error) {
	return t.head(ctx, "/v2/"+t.repo+"/manifests/"+d.Digest.String(), "Accept", string(d.MediaType))
}

func (t *Target) head(ctx context.Context, path string, hdr ...string) (bool, error) {
	u, err := t.url(path)
	if err != nil {
		return false, err
	}
	h := http.Header{}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Set(hdr[i], hdr[i+1])
	}
	resp, err := t.do(ctx, t.api, request{method: http.MethodHead, url: u.String(), header: h})
	if err != nil {
		return false, err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, responseError(resp, "HEAD "+path)
}

// PutManifest pushes a manifest as ref (a tag or its digest).
func (t *Target) PutManifest(ctx context.Context, ref string, mediaType string, body []byte) error {
	u, err := t.url("/v2/" + t.repo + "/manifests/" + ref)
	if err != nil {
		return err
	}
	resp, err := t.do(ctx, t.api, request{
		method: http.MethodPut, url: u.String(),
		header: http.Header{"Content-Type": {mediaType}},
		body:   bytesBody(body),
	})
	if err != nil {
		return fmt.Errorf("put manifest %s: %w", ref, err)
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return responseError(resp, "PUT manifest "+ref)
	}
	drain(resp)
	return nil
}

func bytesBody(b []byte) func() (io.Reader, int64, error) {
	return func() (io.Reader, int64, error) { return bytes.NewReader(b), int64(len(b)), nil }
}

// Repo is an authorized connection to one repository for requests that
// are not transfers (berth ls, berth scan): the client carries a token
// with the scopes asked for, and paths are relative to Base.
type Repo struct {
	// Base is scheme://host of the registry.
	Base string
	// Name is the repository's name.
	Name string
	// Client sends requests with the registry's credentials.
	Client *http.Client
}

// Open resolves credentials for repository's registry and gets a token
// with pull scope on it.
func (c Conn) Open(ctx context.Context, repository string) (*Repo, error) {
	var opts []name.Option
	if c.PlainHTTP || c.Insecure {
		opts = append(opts, name.Insecure)
	}
	repo, err := name.NewRepository(repository, opts...)
	if err != nil {
		return nil, fmt.Errorf("repository %q: %w", repository, err)
	}
	auth, err := c.keychain().Resolve(repo.Registry)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", repo.RegistryStr(), err)
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, c.baseTransport(), []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, fmt.Errorf("authenticate to %s: %w", repo.RegistryStr(), err)
	}
	return &Repo{
		Base:   c.scheme(repo.RegistryStr()) + "://" + repo.RegistryStr(),
		Name:   repo.RepositoryStr(),
		Client: &http.Client{Transport: transport.NewUserAgent(rt, c.userAgent())},
	}, nil
}
