package stsproof

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Errors. Every rejection wraps one of them, so callers can tell a malformed
// or disallowed proof (the client's fault) from STS being unreachable.
var (
	// ErrFormat: the proof breaks a rule before STS is called.
	ErrFormat = errors.New("stsproof: invalid proof")
	// ErrRejected: STS answered but did not accept the signature.
	ErrRejected = errors.New("stsproof: rejected by STS")
	// ErrUnavailable: STS could not be reached, throttled the request or
	// answered nonsense; the proof may be fine, so the caller should retry.
	ErrUnavailable = errors.New("stsproof: STS unavailable")
	// ErrThrottled: STS refused to answer for now (it always comes wrapped
	// together with ErrUnavailable).
	ErrThrottled = errors.New("stsproof: STS throttled the request")
)

// throttleCodes are the error codes AWS uses for "slow down": STS answers
// 400 Throttling; the others are the SDK's list of retryable throttling
// codes, in case STS or a regional endpoint uses them.
var throttleCodes = map[string]bool{
	"Throttling":                             true,
	"ThrottlingException":                    true,
	"ThrottledException":                     true,
	"RequestThrottledException":              true,
	"TooManyRequestsException":               true,
	"ProvisionedThroughputExceededException": true,
	"TransactionInProgressException":         true,
	"RequestLimitExceeded":                   true,
	"BandwidthLimitExceeded":                 true,
	"LimitExceededException":                 true,
	"RequestThrottled":                       true,
	"SlowDown":                               true,
	"PriorRequestNotComplete":                true,
	"EC2ThrottledException":                  true,
}

// allowedParams are the only query parameters a proof may carry (lower
// case; names are compared case-insensitively, as aws-iam-authenticator does).
var allowedParams = map[string]bool{
	"action":               true,
	"version":              true,
	"x-amz-algorithm":      true,
	"x-amz-credential":     true,
	"x-amz-date":           true,
	"x-amz-expires":        true,
	"x-amz-security-token": true,
	"x-amz-signature":      true,
	"x-amz-signedheaders":  true,
}

// Partition is an AWS partition's STS domain and the regions Berth accepts
// regional endpoints for.
type Partition struct {
	// Domain is the DNS suffix: "amazonaws.com", "amazonaws.com.cn".
	Domain string
	// Global, when true, also allows sts.<Domain> (the global endpoint).
	Global bool
	// Regions allowed as sts.<region>.<Domain>.
	Regions []string
}

// DefaultPartitions is the aws partition with its global endpoint and the
// commercial regions, and the China partition's two regions.
func DefaultPartitions() []Partition {
	return []Partition{
		{Domain: "amazonaws.com", Global: true, Regions: []string{
			"us-east-1", "us-east-2", "us-west-1", "us-west-2",
			"af-south-1", "ap-east-1", "ap-east-2", "ap-south-1", "ap-south-2",
			"ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
			"ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4",
			"ap-southeast-5", "ap-southeast-7",
			"ca-central-1", "ca-west-1",
			"eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2",
			"eu-west-1", "eu-west-2", "eu-west-3",
			"il-central-1", "me-central-1", "me-south-1", "mx-central-1",
			"sa-east-1",
			"us-gov-east-1", "us-gov-west-1",
		}},
		{Domain: "amazonaws.com.cn", Regions: []string{"cn-north-1", "cn-northwest-1"}},
	}
}

// Identity is who signed a proof.
type Identity struct {
	// ARN as STS returned it, e.g. arn:aws:sts::1:assumed-role/ci/session.
	ARN string
	// CanonicalARN is ARN with assumed-role sessions mapped to their role:
	// arn:aws:iam::1:role/ci. Policies match this.
	CanonicalARN string
	Account      string
	UserID       string
	// AccessKeyID is the signing key's ID (for audit, not secret).
	AccessKeyID string
}

// Verifier checks proofs for one audience.
type Verifier struct {
	audience string
	hosts    map[string]bool
	client   *http.Client
	now      func() time.Time
}

// Option configures a Verifier.
type Option func(*verifierOptions)

type verifierOptions struct {
	partitions []Partition
	extraHost  string
	extraRoots *x509.CertPool
	now        func() time.Time
}

// WithPartitions replaces DefaultPartitions.
func WithPartitions(p ...Partition) Option {
	return func(o *verifierOptions) { o.partitions = p }
}

// WithTestEndpoint allows one more host (host:port) and trusts roots for
// it. It exists for tests that run an in-process STS; configuration never
// reaches it.
func WithTestEndpoint(hostport string, roots *x509.CertPool) Option {
	return func(o *verifierOptions) { o.extraHost, o.extraRoots = hostport, roots }
}

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option {
	return func(o *verifierOptions) { o.now = now }
}

// NewVerifier returns a verifier that accepts proofs signed for audience.
func NewVerifier(audience string, opts ...Option) (*Verifier, error) {
	if audience == "" {
		return nil, errors.New("stsproof: empty audience")
	}
	o := verifierOptions{partitions: DefaultPartitions(), now: time.Now}
	for _, fn := range opts {
		fn(&o)
	}
	hosts := map[string]bool{}
	for _, p := range o.partitions {
		if p.Global {
			hosts["sts."+p.Domain] = true
		}
		for _, r := range p.Regions {
			hosts["sts."+r+"."+p.Domain] = true
		}
	}
	if o.extraHost != "" {
		hosts[strings.ToLower(o.extraHost)] = true
	}
	v := &Verifier{audience: audience, hosts: hosts, now: o.now}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: o.extraRoots}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	v.client = &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			// Defence in depth: the dial itself refuses hosts that are not
			// allowed, whatever the URL checks above it decided.
			DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if !v.hosts[strings.ToLower(addr)] && !v.hosts[strings.ToLower(strings.TrimSuffix(addr, ":443"))] {
					return nil, fmt.Errorf("stsproof: host %q not allowed", addr)
				}
				host, _, err := net.SplitHostPort(addr)
				if err != nil {
					return nil, err
				}
				cfg := tlsCfg.Clone()
				cfg.ServerName = host
				return (&tls.Dialer{NetDialer: dialer, Config: cfg}).DialContext(ctx, network, addr)
			},
			DialContext: func(context.Context, string, string) (net.Conn, error) {
				return nil, errors.New("stsproof: plain-text connections refused")
			},
			Proxy:                 nil,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: 10 * time.Second,
			MaxIdleConnsPerHost:   4,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return v, nil
}

// Check applies every local rule to a proof and returns the URL to call.
// It makes no network call.
func (v *Verifier) Check(proof string) (*url.URL, error) {
	raw, err := Decode(proof)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: url: %v", ErrFormat, err)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("%w: scheme %q is not https", ErrFormat, u.Scheme)
	}
	if u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("%w: unexpected URL parts", ErrFormat)
	}
	if !v.hosts[strings.ToLower(u.Host)] {
		return nil, fmt.Errorf("%w: host %q is not an allowed STS endpoint", ErrFormat, u.Host)
	}
	if u.Path != "/" {
		return nil, fmt.Errorf("%w: path %q is not /", ErrFormat, u.Path)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("%w: query: %v", ErrFormat, err)
	}
	lower := make(map[string]string, len(q))
	for k, vs := range q {
		lk := strings.ToLower(k)
		if !allowedParams[lk] {
			return nil, fmt.Errorf("%w: query parameter %q not allowed", ErrFormat, k)
		}
		if _, dup := lower[lk]; dup || len(vs) != 1 {
			return nil, fmt.Errorf("%w: query parameter %q repeated", ErrFormat, k)
		}
		lower[lk] = vs[0]
	}
	if lower["action"] != "GetCallerIdentity" {
		return nil, fmt.Errorf("%w: action %q is not GetCallerIdentity", ErrFormat, lower["action"])
	}
	signed := false
	for h := range strings.SplitSeq(lower["x-amz-signedheaders"], ";") {
		if strings.EqualFold(h, AudienceHeader) {
			signed = true
		}
	}
	if !signed {
		return nil, fmt.Errorf("%w: %s is not a signed header", ErrFormat, AudienceHeader)
	}
	exp, err := strconv.Atoi(lower["x-amz-expires"])
	if err != nil || exp < 0 || exp > Lifetime {
		return nil, fmt.Errorf("%w: X-Amz-Expires %q not in [0,%d]", ErrFormat, lower["x-amz-expires"], Lifetime)
	}
	date, err := time.Parse("20060102T150405Z", lower["x-amz-date"])
	if err != nil {
		return nil, fmt.Errorf("%w: X-Amz-Date %q", ErrFormat, lower["x-amz-date"])
	}
	now := v.now()
	if now.After(date.Add(Lifetime * time.Second)) {
		return nil, fmt.Errorf("%w: signed at %s, older than 15 minutes", ErrFormat, date.Format(time.RFC3339))
	}
	if date.After(now.Add(5 * time.Minute)) {
		return nil, fmt.Errorf("%w: signed at %s, in the future", ErrFormat, date.Format(time.RFC3339))
	}
	return u, nil
}

// Verify checks a proof and asks STS who signed it.
func (v *Verifier) Verify(ctx context.Context, proof string) (*Identity, error) {
	u, err := v.Check(proof)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	req.Header.Set(AudienceHeader, v.audience)
	resp, err := v.client.Do(req)
	if err != nil {
		// The url.Error holds the presigned URL: keep it out of logs.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("%w: read: %v", ErrUnavailable, err)
	}
	switch code := stsErrorCode(body); {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusTooManyRequests || (resp.StatusCode >= 400 && resp.StatusCode < 500 && throttleCodes[code]):
		// Throttling says nothing about the proof: a 401 would make the
		// client report a failed login instead of retrying.
		return nil, fmt.Errorf("%w: %w: status %d: %s", ErrUnavailable, ErrThrottled, resp.StatusCode, code)
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return nil, fmt.Errorf("%w: status %d: %s", ErrRejected, resp.StatusCode, code)
	default:
		return nil, fmt.Errorf("%w: status %d", ErrUnavailable, resp.StatusCode)
	}
	var out struct {
		Result struct {
			Arn     string `xml:"Arn"`
			UserID  string `xml:"UserId"`
			Account string `xml:"Account"`
		} `xml:"GetCallerIdentityResult"`
	}
	if err := xml.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("%w: response: %v", ErrUnavailable, err)
	}
	canon, err := CanonicalARN(out.Result.Arn)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	id := &Identity{ARN: out.Result.Arn, CanonicalARN: canon, Account: out.Result.Account, UserID: out.Result.UserID}
	id.AccessKeyID, _, _ = strings.Cut(u.Query().Get("X-Amz-Credential"), "/")
	return id, nil
}

func stsErrorCode(body []byte) string {
	var e struct {
		Code string `xml:"Error>Code"`
	}
	if xml.Unmarshal(body, &e) != nil || e.Code == "" {
		return "unknown error"
	}
	return e.Code
}

// CanonicalARN maps an STS caller ARN to the principal policies name:
// arn:<p>:sts::<acct>:assumed-role/<role>/<session> becomes
// arn:<p>:iam::<acct>:role/<role> (an assumed-role ARN has no role path, so
// neither has the result); IAM users, roles and the account root are kept;
// federated users are kept as they are.
func CanonicalARN(arn string) (string, error) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[1] == "" || parts[4] == "" {
		return "", fmt.Errorf("malformed ARN %q", arn)
	}
	partition, service, account, resource := parts[1], parts[2], parts[4], parts[5]
	switch service {
	case "iam":
		if strings.HasPrefix(resource, "user/") || strings.HasPrefix(resource, "role/") || resource == "root" {
			return arn, nil
		}
	case "sts":
		if role, ok := strings.CutPrefix(resource, "assumed-role/"); ok {
			name, session, ok := strings.Cut(role, "/")
			if !ok || name == "" || session == "" {
				return "", fmt.Errorf("malformed assumed-role ARN %q", arn)
			}
			return "arn:" + partition + ":iam::" + account + ":role/" + name, nil
		}
		if strings.HasPrefix(resource, "federated-user/") {
			return arn, nil
		}
	}
	return "", fmt.Errorf("unsupported ARN %q", arn)
}
