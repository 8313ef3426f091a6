package cloudfront

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
)

// TestS3OriginStreamsAndSigns: the S3 origin re-signs every request like
// OAC ("always") and streams the body: the bucket sees the first bytes of
// an upload before the viewer has sent the rest, which a buffering proxy
// could never show.
func TestS3OriginStreamsAndSigns(t *testing.T) {
	firstSeen := make(chan struct{})
	type seen struct {
		path, auth, payload, date string
		body                      string
	}
	got := make(chan seen, 1)
	bucket := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 5)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			t.Errorf("first bytes: %v", err)
		}
		close(firstSeen)
		rest, _ := io.ReadAll(r.Body)
		got <- seen{r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("X-Amz-Content-Sha256"), r.Header.Get("X-Amz-Date"), string(buf) + string(rest)}
		w.Header().Set("X-Amz-Checksum-Sha256", "c3VtCg==")
		w.WriteHeader(http.StatusOK)
	}))
	defer bucket.Close()
	origin := &S3Origin{
		Endpoint:    bucket.URL,
		Bucket:      "blobs-bucket",
		PathStyle:   true,
		Region:      "eu-west-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDORIGIN", "secret", ""),
	}
	d := distribution(t, `function handler(e) { return e.request; }`, "", origin, &recorder{})
	srv := httptest.NewServer(d)
	defer srv.Close()

	pr, pw := io.Pipe()
	go func() {
		_, _ = io.WriteString(pw, "first")
		select {
		case <-firstSeen:
			_, _ = io.WriteString(pw, "-second")
			pw.Close()
		case <-time.After(10 * time.Second):
			pw.CloseWithError(io.ErrUnexpectedEOF)
		}
	}()
	req, _ := http.NewRequest("PUT", srv.URL+"/f/key", pr)
	req.ContentLength = int64(len("first-second"))
	req.Header.Set("Authorization", "Bearer viewer-token")
	req.Header.Set("X-Amz-Date", "20000101T000000Z")
	req.Header.Set("X-Amz-Content-Sha256", "0000")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Amz-Checksum-Sha256") != "c3VtCg==" {
		t.Fatalf("status %d %v", resp.StatusCode, resp.Header)
	}
	s := <-got
	if s.body != "first-second" {
		t.Fatalf("bucket got %q (the body was not streamed through)", s.body)
	}
	if s.path != "/blobs-bucket/f/key" || !strings.HasPrefix(s.auth, "AWS4-HMAC-SHA256 Credential=AKIDORIGIN/") ||
		!strings.Contains(s.auth, "/eu-west-1/s3/aws4_request") || s.payload != "UNSIGNED-PAYLOAD" || s.date == "20000101T000000Z" {
		t.Fatalf("bucket got %+v", s)
	}
}
