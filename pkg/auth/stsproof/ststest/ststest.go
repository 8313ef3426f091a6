// Package ststest is an in-process STS that answers presigned
// GetCallerIdentity requests the way AWS does: it recomputes the SigV4 query
// signature with aws-sdk-go-v2's signer from the keys it was given and
// rejects anything that does not match, has expired or names another
// action. No open-source emulator validates presigned STS requests, so
// Berth's verifier and clients are tested against this.
package ststest

import (
	"context"
	"crypto/hmac"
	"crypto/x509"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// emptySHA256 is the payload hash of a presigned GET.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// Key is a known credential and the identity STS reports for it.
type Key struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string // required in the request when set
	ARN             string // e.g. arn:aws:sts::111122223333:assumed-role/ci/run-1
	Account         string
	UserID          string
}

// Server is the fake STS.
type Server struct {
	*httptest.Server
	mu    sync.Mutex
	keys  map[string]Key
	calls int
	now   func() time.Time
	// failStatus and failCode, when set, answer every request with that
	// STS error (throttling, outages).
	failStatus int
	failCode   string
}

// Fail makes the server answer every request with an STS error of the
// given HTTP status and code, as STS does when it throttles (400
// Throttling) or fails (500 InternalFailure). Status 0 restores normal
// answers.
func (s *Server) Fail(status int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failStatus, s.failCode = status, code
}

// New starts a TLS STS with the given keys. Close it when done.
func New(keys ...Key) *Server {
	s := &Server{keys: map[string]Key{}, now: time.Now}
	for _, k := range keys {
		s.keys[k.AccessKeyID] = k
	}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	return s
}

// Host is the server's host:port, to allow it in a verifier.
func (s *Server) Host() string { return strings.TrimPrefix(s.URL, "https://") }

// Roots is a pool that trusts the server's certificate.
func (s *Server) Roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.Certificate())
	return p
}

// Calls is how many requests reached the server.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// AWSConfig returns an SDK config whose STS calls and presigns go to this
// server with the given key.
func (s *Server) AWSConfig(k Key) aws.Config {
	return aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider(k.AccessKeyID, k.SecretAccessKey, k.SessionToken),
		BaseEndpoint: aws.String(s.URL),
		HTTPClient:   s.Client(),
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.calls++
	status, code, msg := s.failStatus, s.failCode, "Rate exceeded"
	s.mu.Unlock()
	if status == 0 {
		status = http.StatusForbidden
		code, msg = s.check(r)
	}
	if code != "" {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>fake</RequestId></ErrorResponse>`, code, xmlEscape(msg))
		return
	}
	k := s.keys[strings.SplitN(r.URL.Query().Get("X-Amz-Credential"), "/", 2)[0]]
	type result struct {
		Arn     string `xml:"Arn"`
		UserID  string `xml:"UserId"`
		Account string `xml:"Account"`
	}
	type response struct {
		XMLName xml.Name `xml:"https://sts.amazonaws.com/doc/2011-06-15/ GetCallerIdentityResponse"`
		Result  result   `xml:"GetCallerIdentityResult"`
		Request string   `xml:"ResponseMetadata>RequestId"`
	}
	body, _ := xml.Marshal(response{Result: result{k.ARN, k.UserID, k.Account}, Request: "fake"})
	w.Header().Set("Content-Type", "text/xml")
	_, _ = w.Write(body)
}

// check returns an STS error code and message, or "" when the request is a
// valid presigned GetCallerIdentity.
func (s *Server) check(r *http.Request) (string, string) {
	if r.Method != http.MethodGet {
		return "InvalidAction", "only presigned GET is served"
	}
	q := r.URL.Query()
	if q.Get("Action") != "GetCallerIdentity" {
		return "InvalidAction", "unsupported action"
	}
	cred := strings.Split(q.Get("X-Amz-Credential"), "/")
	if len(cred) != 5 || cred[3] != "sts" || cred[4] != "aws4_request" {
		return "IncompleteSignature", "bad credential scope"
	}
	k, ok := s.keys[cred[0]]
	if !ok {
		return "InvalidClientTokenId", "The security token included in the request is invalid."
	}
	if k.SessionToken != "" && q.Get("X-Amz-Security-Token") != k.SessionToken {
		return "InvalidClientTokenId", "The security token included in the request is invalid."
	}
	signedAt, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if err != nil {
		return "IncompleteSignature", "bad X-Amz-Date"
	}
	exp, err := strconv.Atoi(q.Get("X-Amz-Expires"))
	if err != nil || exp > 900 {
		exp = 900
	}
	if s.now().After(signedAt.Add(time.Duration(exp) * time.Second)) {
		return "ExpiredToken", "Signature expired"
	}
	got := q.Get("X-Amz-Signature")
	q.Del("X-Amz-Signature")
	u := url.URL{Scheme: "https", Host: r.Host, Path: r.URL.Path, RawQuery: q.Encode()}
	req, _ := http.NewRequest(http.MethodGet, u.String(), nil)
	for _, h := range strings.Split(q.Get("X-Amz-SignedHeaders"), ";") {
		if h == "host" {
			continue
		}
		for _, v := range r.Header.Values(h) {
			req.Header.Add(h, v)
		}
	}
	creds := aws.Credentials{AccessKeyID: k.AccessKeyID, SecretAccessKey: k.SecretAccessKey, SessionToken: q.Get("X-Amz-Security-Token")}
	signed, _, err := v4.NewSigner().PresignHTTP(context.Background(), creds, req, emptySHA256, "sts", cred[2], signedAt)
	if err != nil {
		return "InternalFailure", err.Error()
	}
	su, err := url.Parse(signed)
	if err != nil {
		return "InternalFailure", err.Error()
	}
	want := su.Query().Get("X-Amz-Signature")
	if got == "" || !hmac.Equal([]byte(got), []byte(want)) {
		return "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided."
	}
	// The recomputed signature covers the signed-headers list only if the
	// client's list equals the one the signer derived from the headers sent.
	if su.Query().Get("X-Amz-SignedHeaders") != q.Get("X-Amz-SignedHeaders") {
		return "SignatureDoesNotMatch", "signed headers differ"
	}
	return "", ""
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
