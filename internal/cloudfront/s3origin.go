package cloudfront

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// unsignedPayload is what the S3 origin puts in x-amz-content-sha256: the
// body streams through, so no hash of it exists when the request is
// signed. (What real OAC sends is not documented: research §8.)
const unsignedPayload = "UNSIGNED-PAYLOAD"

// S3Origin is an S3 bucket behind origin access control with signing
// behaviour "always": every request is re-signed with the distribution's
// credentials (SigV4), replacing whatever Authorization, x-amz-date,
// x-amz-security-token and x-amz-content-sha256 the viewer sent. The body
// is streamed to S3, never buffered.
type S3Origin struct {
	Endpoint    string // e.g. http://127.0.0.1:7070
	Bucket      string
	PathStyle   bool
	Region      string
	Credentials aws.CredentialsProvider
	Client      *http.Client // default http.DefaultClient
	Logger      *slog.Logger
}

// target is the object URL of uri in the bucket.
func (o *S3Origin) target(uri string) (*url.URL, error) {
	u, err := url.Parse(o.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("s3 origin endpoint: %w", err)
	}
	if o.PathStyle {
		u.Path = "/" + o.Bucket + uri
	} else {
		u.Host = o.Bucket + "." + u.Host
		u.Path = uri
	}
	return u, nil
}

// ServeHTTP forwards the origin request to S3.
func (o *S3Origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := o.serve(w, r); err != nil {
		if o.Logger != nil {
			o.Logger.Warn("cloudfront s3 origin", slog.Any("error", err))
		}
		// CloudFront's answer when it cannot reach or sign for the origin.
		http.Error(w, "502 ERROR: the request could not be satisfied", http.StatusBadGateway)
	}
}

func (o *S3Origin) serve(w http.ResponseWriter, r *http.Request) error {
	u, err := o.target(r.URL.EscapedPath())
	if err != nil {
		return err
	}
	u.RawQuery = r.URL.RawQuery
	var body io.Reader = r.Body
	if r.ContentLength == 0 || r.Body == nil {
		body = http.NoBody
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), body)
	if err != nil {
		return err
	}
	out.ContentLength = r.ContentLength
	for n, vs := range r.Header {
		switch strings.ToLower(n) {
		case "authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256":
			continue // OAC replaces them
		}
		out.Header[n] = vs
	}
	creds, err := o.Credentials.Retrieve(r.Context())
	if err != nil {
		return fmt.Errorf("s3 origin credentials: %w", err)
	}
	out.Header.Set("X-Amz-Content-Sha256", unsignedPayload)
	signer := v4.NewSigner(func(so *v4.SignerOptions) { so.DisableURIPathEscaping = true })
	if err := signer.SignHTTP(r.Context(), creds, out, unsignedPayload, "s3", o.Region, time.Now()); err != nil {
		return fmt.Errorf("s3 origin signing: %w", err)
	}
	client := o.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(out)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	for n, vs := range resp.Header {
		w.Header()[n] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
	return nil
}
