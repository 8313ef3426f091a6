package push

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Media types of Berth's direct upload extension (docs/push.md).
const (
	directUploadType   = "application/vnd.berth.direct-upload.v1+json"
	directCompleteType = "application/vnd.berth.direct-complete.v1+json"
)

// smallBlob is the size up to which a blob goes up in one POST through the
// API (OCI monolithic single-request upload): one request instead of the
// three of a direct upload, and far below the Lambda body limit.
const smallBlob = 1 << 20

// defaultChunk is the chunk size of the OCI chunked fallback when the
// registry advertises no OCI-Chunk-Min-Length: it fits one Lambda
// invocation (4.4 MB of body).
const defaultChunk = 4 << 20

// Outcome is what happened to one blob.
type Outcome int

const (
	// Skipped: the repository already held the blob (HEAD).
	Skipped Outcome = iota
	// Mounted: the registry linked the blob from the source repository.
	Mounted
	// Uploaded: the bytes were sent.
	Uploaded
)

func (o Outcome) String() string {
	switch o {
	case Skipped:
		return "exists"
	case Mounted:
		return "mounted"
	}
	return "uploaded"
}

// Path names how an uploaded blob's bytes travelled, for the progress
// display and the tests.
const (
	PathDirect    = "direct"           // one presigned S3 PUT
	PathMultipart = "direct-multipart" // presigned S3 UploadPart URLs
	PathPost      = "post"             // one POST ?digest through the API
	PathPut       = "put"              // POST, then one PUT through the API
	PathChunked   = "chunked"          // POST, PATCHes, closing PUT through the API
)

// BlobResult reports one blob.
type BlobResult struct {
	Outcome Outcome
	Path    string // for Uploaded
	Took    time.Duration
}

// opener opens a blob's bytes; it is called again for every retry.
type opener func(ctx context.Context) (io.ReadCloser, error)

// directUpload is the API's answer to a direct upload request (§4).
type directUpload struct {
	Upload    string       `json:"upload"`
	Expires   time.Time    `json:"expires"`
	Parts     []directPart `json:"parts"`
	Multipart bool         `json:"multipart"`
}

type directPart struct {
	Number  int               `json:"number"`
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers"`
	Offset  int64             `json:"offset"`
	Size    int64             `json:"size"`
}

type completedPart struct {
	Number int    `json:"number"`
	ETag   string `json:"etag"`
}

// session is an upload session the registry opened with a 202.
type session struct {
	location string // absolute URL of the latest Location
	chunkMin int64  // OCI-Chunk-Min-Length, 0 when not sent
	direct   *directUpload
}

// UploadBlob makes the repository hold blob d: skipped when a HEAD finds
// it, mounted from mountFrom (a repository of the same registry; "" for
// none) when the registry can, otherwise uploaded straight to S3 when the
// registry hands out presigned URLs, or through the ordinary OCI upload API.
func (t *Target) UploadBlob(ctx context.Context, d v1.Descriptor, open opener, mountFrom string, p BlobProgress) (BlobResult, error) {
	start := time.Now()
	res := BlobResult{Outcome: Uploaded}
	done := func(err error) (BlobResult, error) {
		res.Took = time.Since(start)
		if err != nil {
			err = fmt.Errorf("blob %s: %w", d.Digest, err)
		}
		return res, err
	}
	if ok, err := t.HeadBlob(ctx, d.Digest); err != nil || ok {
		res.Outcome = Skipped
		return done(err)
	}
	q := url.Values{}
	if mountFrom != "" && mountFrom != t.repo {
		q.Set("mount", d.Digest.String())
		q.Set("from", mountFrom)
	} else if d.Size <= smallBlob {
		res.Path = PathPost
		created, s, err := t.postMonolithic(ctx, d, open, p)
		if err != nil || created {
			return done(err)
		}
		// The registry took the POST as an upload start (allowed by the
		// spec): finish with a PUT.
		res.Path = PathPut
		return done(t.putMonolithic(ctx, s, d, open, p))
	}
	q.Set("berth.direct", d.Digest.String())
	q.Set("berth.size", strconv.FormatInt(d.Size, 10))
	s, mounted, err := t.startUpload(ctx, q)
	if err != nil || mounted {
		if mounted {
			res.Outcome = Mounted
		}
		return done(err)
	}
	switch {
	case s.direct != nil && s.direct.Multipart:
		res.Path = PathMultipart
		return done(t.directMultipart(ctx, s, d, open, p))
	case s.direct != nil:
		res.Path = PathDirect
		return done(t.directSingle(ctx, s, d, open, p))
	}
	res.Path = PathPut
	err = t.putMonolithic(ctx, s, d, open, p)
	var se *StatusError
	if errors.As(err, &se) && se.Status == http.StatusRequestEntityTooLarge {
		// A body cap in front of the API (Lambda, the CloudFront
		// function): send the blob in chunks instead.
		res.Path = PathChunked
		err = t.putChunked(ctx, s, d, open, p)
	}
	return done(err)
}

// startUpload POSTs to the upload-start route. mounted is true when the
// registry answered 201 (a mount).
func (t *Target) startUpload(ctx context.Context, q url.Values) (session, bool, error) {
	u, err := t.url("/v2/" + t.repo + "/blobs/uploads/?" + q.Encode())
	if err != nil {
		return session{}, false, err
	}
	resp, err := t.do(ctx, t.api, request{method: http.MethodPost, url: u.String(), body: bytesBody(nil)})
	if err != nil {
		return session{}, false, fmt.Errorf("start upload: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusCreated:
		drain(resp)
		return session{}, true, nil
	case http.StatusAccepted:
	default:
		return session{}, false, responseError(resp, "POST upload")
	}
	defer drain(resp)
	s, err := t.newSession(resp)
	if err != nil {
		return s, false, err
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == directUploadType {
		var du directUpload
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<22)).Decode(&du); err != nil {
			return s, false, fmt.Errorf("direct upload answer: %w", err)
		}
		if len(du.Parts) == 0 {
			return s, false, errors.New("direct upload answer has no parts")
		}
		s.direct = &du
	}
	return s, false, nil
}

func (t *Target) newSession(resp *http.Response) (session, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return session{}, errors.New("upload start: no Location")
	}
	u, err := resp.Request.URL.Parse(loc)
	if err != nil {
		return session{}, fmt.Errorf("upload Location %q: %w", loc, err)
	}
	s := session{location: u.String()}
	if v, err := strconv.ParseInt(resp.Header.Get("OCI-Chunk-Min-Length"), 10, 64); err == nil && v > 0 {
		s.chunkMin = v
	}
	return s, nil
}

// next moves the session to the Location of resp (clients must use the
// latest one).
func (s *session) next(resp *http.Response) {
	if loc := resp.Header.Get("Location"); loc != "" {
		if u, err := resp.Request.URL.Parse(loc); err == nil {
			s.location = u.String()
		}
	}
}

// withDigest adds ?digest= to an upload URL, keeping its own query.
func withDigest(loc string, d v1.Hash) (string, error) {
	u, err := url.Parse(loc)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("digest", d.String())
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// body returns a request body of the blob's bytes [off, off+n) that
// counts what it sends into p; the retry loop calls it once per attempt.
func blobBody(ctx context.Context, open opener, off, n int64, p BlobProgress) (func() (io.Reader, int64, error), func()) {
	var sent atomic.Int64 // written by the transport's goroutine
	body := func() (io.Reader, int64, error) {
		rc, err := open(ctx)
		if err != nil {
			return nil, 0, err
		}
		r, err := section(rc, off, n)
		if err != nil {
			_ = rc.Close()
			return nil, 0, err
		}
		sent.Store(0)
		return readCloser{Reader: &counting{r: r, add: func(k int64) { sent.Add(k); p.Add(k) }}, Closer: rc}, n, nil
	}
	undo := func() { p.Add(-sent.Swap(0)) }
	return body, undo
}

// section positions rc at off and limits it to n bytes: in place when rc
// reads at offsets, by skipping otherwise.
func section(rc io.ReadCloser, off, n int64) (io.Reader, error) {
	if ra, ok := rc.(io.ReaderAt); ok {
		return io.NewSectionReader(ra, off, n), nil
	}
	if off > 0 {
		if _, err := io.CopyN(io.Discard, rc, off); err != nil {
			return nil, fmt.Errorf("skip to offset %d: %w", off, err)
		}
	}
	return io.LimitReader(rc, n), nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

type counting struct {
	r   io.Reader
	add func(int64)
}

func (c *counting) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if n > 0 {
		c.add(int64(n))
	}
	return n, err
}

// postMonolithic sends a small blob in one POST ?digest. created is false
// when the registry answered 202 instead (an upload session in s).
func (t *Target) postMonolithic(ctx context.Context, d v1.Descriptor, open opener, p BlobProgress) (created bool, s session, err error) {
	u, err := t.url("/v2/" + t.repo + "/blobs/uploads/?digest=" + url.QueryEscape(d.Digest.String()))
	if err != nil {
		return false, s, err
	}
	body, undo := blobBody(ctx, open, 0, d.Size, p)
	resp, err := t.do(ctx, t.api, request{method: http.MethodPost, url: u.String(), body: body, onRetry: undo,
		header: http.Header{"Content-Type": {"application/octet-stream"}}})
	if err != nil {
		return false, s, err
	}
	switch resp.StatusCode {
	case http.StatusCreated:
		drain(resp)
		return true, s, nil
	case http.StatusAccepted:
		undo()
		defer drain(resp)
		s, err = t.newSession(resp)
		return false, s, err
	}
	return false, s, responseError(resp, "POST blob")
}

// putMonolithic sends the whole blob in the closing PUT to the session.
func (t *Target) putMonolithic(ctx context.Context, s session, d v1.Descriptor, open opener, p BlobProgress) error {
	u, err := withDigest(s.location, d.Digest)
	if err != nil {
		return err
	}
	body, undo := blobBody(ctx, open, 0, d.Size, p)
	resp, err := t.do(ctx, t.api, request{method: http.MethodPut, url: u, body: body, onRetry: undo,
		header: http.Header{"Content-Type": {"application/octet-stream"}}})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		undo()
		return responseError(resp, "PUT blob")
	}
	drain(resp)
	return nil
}

// putChunked sends the blob as OCI chunks (PATCH with Content-Range) and
// closes the session with an empty PUT ?digest.
func (t *Target) putChunked(ctx context.Context, s session, d v1.Descriptor, open opener, p BlobProgress) error {
	chunk := s.chunkMin
	if chunk <= 0 {
		chunk = defaultChunk
	}
	for off := int64(0); off < d.Size; off += chunk {
		n := min(chunk, d.Size-off)
		body, undo := blobBody(ctx, open, off, n, p)
		resp, err := t.do(ctx, t.api, request{method: http.MethodPatch, url: s.location, body: body, onRetry: undo,
			header: http.Header{
				"Content-Type":  {"application/octet-stream"},
				"Content-Range": {fmt.Sprintf("%d-%d", off, off+n-1)},
			}})
		if err != nil {
			return fmt.Errorf("PATCH at %d: %w", off, err)
		}
		if resp.StatusCode != http.StatusAccepted {
			return responseError(resp, fmt.Sprintf("PATCH chunk at %d", off))
		}
		s.next(resp)
		drain(resp)
	}
	u, err := withDigest(s.location, d.Digest)
	if err != nil {
		return err
	}
	resp, err := t.do(ctx, t.api, request{method: http.MethodPut, url: u, body: bytesBody(nil)})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		return responseError(resp, "closing PUT")
	}
	drain(resp)
	return nil
}

// directSingle PUTs the blob to the presigned URL with exactly the headers
// the API signed (S3 checks the sha256 itself), then closes the session
// with an empty PUT ?digest, which makes the API claim the object.
func (t *Target) directSingle(ctx context.Context, s session, d v1.Descriptor, open opener, p BlobProgress) error {
	part := s.direct.Parts[0]
	if len(s.direct.Parts) != 1 || part.Offset != 0 || part.Size != d.Size {
		return fmt.Errorf("direct upload: single PUT of %d bytes expected, got %d parts", d.Size, len(s.direct.Parts))
	}
	body, undo := blobBody(ctx, open, 0, d.Size, p)
	if _, err := t.sendPart(ctx, part, body, undo); err != nil {
		return err
	}
	return t.closeDirect(ctx, s, d, nil)
}

// directMultipart PUTs every part to its presigned UploadPart URL, then
// completes with the parts' ETags and waits while the API verifies the
// digest.
func (t *Target) directMultipart(ctx context.Context, s session, d v1.Descriptor, open opener, p BlobProgress) error {
	var covered int64
	for _, part := range s.direct.Parts {
		if part.Offset != covered || part.Size <= 0 {
			return fmt.Errorf("direct upload: part %d at %d+%d leaves a gap or overlap", part.Number, part.Offset, part.Size)
		}
		covered += part.Size
	}
	if covered != d.Size {
		return fmt.Errorf("direct upload: parts cover %d of %d bytes", covered, d.Size)
	}
	// A source that cannot read at an offset (a registry) is read once,
	// one part at a time through a spool file, so a retried part does not
	// download the blob again from the start.
	var seq io.ReadCloser
	if rc, err := open(ctx); err != nil {
		return err
	} else if _, ok := rc.(io.ReaderAt); ok {
		_ = rc.Close()
	} else {
		seq = rc
		defer seq.Close()
	}
	parts := make([]completedPart, 0, len(s.direct.Parts))
	for _, part := range s.direct.Parts {
		partOpen, off, cleanup := open, part.Offset, func() {}
		if seq != nil {
			name, err := spool(seq, part.Size)
			if err != nil {
				return fmt.Errorf("part %d: %w", part.Number, err)
			}
			partOpen, off = func(context.Context) (io.ReadCloser, error) { return os.Open(name) }, 0
			cleanup = func() { _ = os.Remove(name) }
		}
		body, undo := blobBody(ctx, partOpen, off, part.Size, p)
		etag, err := t.sendPart(ctx, part, body, undo)
		cleanup()
		if err != nil {
			return err
		}
		if etag == "" {
			return fmt.Errorf("part %d: S3 answered without an ETag", part.Number)
		}
		parts = append(parts, completedPart{Number: part.Number, ETag: etag})
	}
	return t.closeDirect(ctx, s, d, parts)
}

// spool copies the next n bytes of r into a temporary file and returns its
// name.
func spool(r io.Reader, n int64) (string, error) {
	f, err := os.CreateTemp("", "berth-part-")
	if err != nil {
		return "", err
	}
	_, err = io.CopyN(f, r, n)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", fmt.Errorf("read source: %w", err)
	}
	return f.Name(), nil
}

// sendPart PUTs one part to its presigned URL with the headers the API
// signed, retrying 5xx answers and network errors (timeouts included) with
// backoff. It returns S3's ETag.
func (t *Target) sendPart(ctx context.Context, part directPart, body func() (io.Reader, int64, error), undo func()) (string, error) {
	method := part.Method
	if method == "" {
		method = http.MethodPut
	}
	h := http.Header{}
	for k, v := range part.Headers {
		h.Set(k, v)
	}
	resp, err := t.do(ctx, t.direct, request{method: method, url: part.URL, header: h, body: body, onRetry: undo})
	if err != nil {
		return "", fmt.Errorf("part %d: %w", part.Number, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusNoContent {
		return "", responseError(resp, fmt.Sprintf("part %d %s %s", part.Number, method, redact(part.URL)))
	}
	drain(resp)
	return resp.Header.Get("ETag"), nil
}

// closeDirect ends a direct upload with PUT <Location>?digest: empty for a
// single PUT (the API claims the object), the parts' ETags for multipart.
// A multipart close may answer 202 while the API verifies the digest; it
// is polled until it answers 201 or refuses the blob.
func (t *Target) closeDirect(ctx context.Context, s session, d v1.Descriptor, parts []completedPart) error {
	u, err := withDigest(s.location, d.Digest)
	if err != nil {
		return err
	}
	req := request{method: http.MethodPut, url: u, body: bytesBody(nil)}
	if parts != nil {
		b, err := json.Marshal(map[string]any{"parts": parts})
		if err != nil {
			return err
		}
		req.body = bytesBody(b)
		req.header = http.Header{"Content-Type": {directCompleteType}}
	}
	resp, err := t.do(ctx, t.api, req)
	if err != nil {
		return fmt.Errorf("close upload: %w", err)
	}
	for {
		switch resp.StatusCode {
		case http.StatusCreated:
			drain(resp)
			return nil
		case http.StatusAccepted, http.StatusNoContent:
			if !strings.EqualFold(resp.Header.Get("Berth-Upload-State"), "verifying") {
				return responseError(resp, "close upload")
			}
			s.next(resp)
			drain(resp)
		default:
			return responseError(resp, "close upload")
		}
		if err := sleep(ctx, t.retry.Base); err != nil {
			return err
		}
		resp, err = t.do(ctx, t.api, request{method: http.MethodGet, url: s.location})
		if err != nil {
			return fmt.Errorf("poll verification: %w", err)
		}
	}
}
