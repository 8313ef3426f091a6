package auth

import (
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RateLimit is a token bucket: Rate requests per second on average, up to
// Burst at once. The zero value means "use the default"; a negative Rate
// turns the limit off.
type RateLimit struct {
	Rate  float64
	Burst int
}

// Off is a RateLimit that never refuses.
var Off = RateLimit{Rate: -1}

// Limits bounds the token requests that cost a signature (a KMS Sign in
// AWS) or an identity check (an STS or OIDC issuer call). They are kept in
// memory, per process: in AWS each function instance has its own buckets,
// so the totals scale with the number of instances (bounded by the
// function's concurrency).
type Limits struct {
	// PerIP applies to each source address (IPv6: each /64).
	PerIP RateLimit
	// Global applies to the whole process.
	Global RateLimit
}

// DefaultLimits leave room for a fleet of CI jobs behind one NAT address
// starting at once (a burst of 100 from one address) while cutting a
// flood from one address to 10 signatures a second; one instance never
// signs more than 100 a second. KMS's shared ECC signing quota is a few
// hundred per second per account and region: the function's concurrency
// is what bounds the sum over instances.
var DefaultLimits = Limits{
	PerIP:  RateLimit{Rate: 10, Burst: 100},
	Global: RateLimit{Rate: 100, Burst: 200},
}

func (l Limits) withDefaults() Limits {
	if l.PerIP == (RateLimit{}) {
		l.PerIP = DefaultLimits.PerIP
	}
	if l.Global == (RateLimit{}) {
		l.Global = DefaultLimits.Global
	}
	return l
}

// ParseRateLimit reads "off" or "<rate>[/s|/m][:<burst>]", e.g. "5/s:20"
// or "120/m". The burst defaults to the rate per second, at least 1.
func ParseRateLimit(s string) (RateLimit, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return RateLimit{}, nil
	}
	if s == "off" {
		return Off, nil
	}
	rateStr, burstStr, hasBurst := strings.Cut(s, ":")
	per := 1.0
	if r, ok := strings.CutSuffix(rateStr, "/s"); ok {
		rateStr = r
	} else if r, ok := strings.CutSuffix(rateStr, "/m"); ok {
		rateStr, per = r, 60
	}
	rate, err := strconv.ParseFloat(rateStr, 64)
	if err != nil || rate <= 0 || math.IsInf(rate, 0) || math.IsNaN(rate) {
		return RateLimit{}, fmt.Errorf("rate limit %q: want off or <rate>[/s|/m][:<burst>] with a positive rate", s)
	}
	rl := RateLimit{Rate: rate / per, Burst: max(1, int(math.Ceil(rate/per)))}
	if hasBurst {
		b, err := strconv.Atoi(burstStr)
		if err != nil || b < 1 {
			return RateLimit{}, fmt.Errorf("rate limit %q: burst must be a positive integer", s)
		}
		rl.Burst = b
	}
	return rl, nil
}

// maxTrackedIPs bounds the per-address buckets one process keeps. Past it,
// full buckets (addresses that have been quiet) are dropped first; if that
// is not enough the table starts over, which at worst hands a fresh burst
// to addresses seen before (the global bucket still holds).
const maxTrackedIPs = 10000

type bucket struct {
	tokens float64
	last   time.Time
}

// refill adds the tokens earned since last (a new bucket starts full).
func (b *bucket) refill(l RateLimit, now time.Time) {
	if b.last.IsZero() {
		b.tokens = float64(l.Burst)
	} else if d := now.Sub(b.last).Seconds(); d > 0 {
		b.tokens = math.Min(float64(l.Burst), b.tokens+d*l.Rate)
	}
	b.last = now
}

// wait is how long until the bucket holds one token.
func (b *bucket) wait(l RateLimit) time.Duration {
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) / l.Rate * float64(time.Second))
}

// limiter applies Limits. It is safe for concurrent use.
type limiter struct {
	limits Limits
	now    func() time.Time
	mu     sync.Mutex
	global bucket
	ips    map[string]*bucket
}

func newLimiter(l Limits, now func() time.Time) *limiter {
	return &limiter{limits: l.withDefaults(), now: now, ips: map[string]*bucket{}}
}

// allow takes one token from the global bucket and remoteAddr's, or, when
// either is empty, none, and says how long to wait.
func (l *limiter) allow(remoteAddr string) (bool, time.Duration) {
	perIP, global := l.limits.PerIP.Rate >= 0, l.limits.Global.Rate >= 0
	if !perIP && !global {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	if global {
		l.global.refill(l.limits.Global, now)
		wait = l.global.wait(l.limits.Global)
	}
	var ipb *bucket
	if perIP {
		key := sourceKey(remoteAddr)
		ipb = l.ips[key]
		if ipb == nil {
			l.makeRoom(now)
			ipb = &bucket{}
			l.ips[key] = ipb
		}
		ipb.refill(l.limits.PerIP, now)
		wait = max(wait, ipb.wait(l.limits.PerIP))
	}
	if wait > 0 {
		return false, wait
	}
	if global {
		l.global.tokens--
	}
	if ipb != nil {
		ipb.tokens--
	}
	return true, 0
}

func (l *limiter) makeRoom(now time.Time) {
	if len(l.ips) < maxTrackedIPs {
		return
	}
	for k, b := range l.ips {
		b.refill(l.limits.PerIP, now)
		if b.tokens >= float64(l.limits.PerIP.Burst) {
			delete(l.ips, k)
		}
	}
	if len(l.ips) >= maxTrackedIPs {
		clear(l.ips)
	}
}

// sourceKey is the bucket key of a RemoteAddr ("ip:port" from net/http,
// "ip" from the API Gateway adapter): the address, or for IPv6 its /64,
// since one host commonly holds a whole /64.
func sourceKey(remoteAddr string) string {
	host := remoteAddr
	if h, _, err := net.SplitHostPort(remoteAddr); err == nil {
		host = h
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	if ip == nil {
		return host
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}
