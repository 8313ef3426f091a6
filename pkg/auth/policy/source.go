package policy

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// Current makes a fixed policy usable where a source is expected.
func (p *Policy) Current(context.Context) (*Policy, error) { return p, nil }

// SSMAPI is the part of the SSM client SSMSource uses.
type SSMAPI interface {
	GetParameter(ctx context.Context, in *ssm.GetParameterInput, optFns ...func(*ssm.Options)) (*ssm.GetParameterOutput, error)
}

// SSMSource reads the policy from an SSM parameter (String or
// SecureString) and caches it for TTL. When a refresh fails it keeps
// serving the last policy it compiled (and retries after another TTL); a
// parameter that never loaded fails every request (fail closed). A document
// that does not compile is a failed refresh.
type SSMSource struct {
	client SSMAPI
	name   string
	ttl    time.Duration
	now    func() time.Time
	log    *slog.Logger

	mu      sync.Mutex
	cur     *Policy
	version int64
	next    time.Time
}

// NewSSMSource returns a source for parameter name; ttl defaults to 1m.
func NewSSMSource(client SSMAPI, name string, ttl time.Duration, log *slog.Logger) *SSMSource {
	if ttl <= 0 {
		ttl = time.Minute
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SSMSource{client: client, name: name, ttl: ttl, now: time.Now, log: log}
}

// Current returns the cached policy, refreshing it when older than TTL.
func (s *SSMSource) Current(ctx context.Context) (*Policy, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.cur != nil && now.Before(s.next) {
		return s.cur, nil
	}
	p, version, err := s.load(ctx)
	s.next = now.Add(s.ttl)
	if err != nil {
		if s.cur != nil {
			s.log.WarnContext(ctx, "policy refresh failed; serving the previous version", "parameter", s.name, "version", s.version, "err", err)
			return s.cur, nil
		}
		s.next = time.Time{} // nothing to serve: retry on the next request
		return nil, err
	}
	if version != s.version {
		s.log.InfoContext(ctx, "policy loaded", "parameter", s.name, "version", version)
	}
	s.cur, s.version = p, version
	return p, nil
}

func (s *SSMSource) load(ctx context.Context) (*Policy, int64, error) {
	out, err := s.client.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(s.name), WithDecryption: aws.Bool(true)})
	if err != nil {
		return nil, 0, fmt.Errorf("policy: ssm GetParameter %s: %w", s.name, err)
	}
	if out.Parameter == nil || out.Parameter.Value == nil {
		return nil, 0, fmt.Errorf("policy: ssm parameter %s has no value", s.name)
	}
	p, err := Parse([]byte(*out.Parameter.Value))
	if err != nil {
		return nil, 0, fmt.Errorf("ssm parameter %s: %w", s.name, err)
	}
	return p, out.Parameter.Version, nil
}
