// Package osvsync copies OSV's per-ecosystem vulnerability exports
// (<base>/<Ecosystem>/all.zip, one OSV JSON record per file, as OSV
// publishes them) into the registry's bucket at osv/<Ecosystem>/all.zip,
// the layout pkg/vulndb reads. It is the body of the scheduled osvsync
// function (functions/osvsync).
//
// Each export is fetched conditionally: the source's ETag and
// Last-Modified are kept in the stored object's metadata, so an unchanged
// export costs one HEAD to S3 and one 304 from the source. A changed one
// is streamed from the HTTP response into a multipart upload (bounded
// memory: a few parts in flight, never the whole file), checked against
// the source's length and MD5 before the upload completes, so a truncated
// or corrupted download never replaces good data.
package osvsync

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// DefaultBaseURL is where OSV publishes its exports.
const DefaultBaseURL = "https://osv-vulnerabilities.storage.googleapis.com"

// DefaultPrefix is the bucket prefix the exports are stored under.
const DefaultPrefix = "osv/"

// DefaultEcosystems are the ecosystems synced unless configured: the
// distributions whose package databases the layer indexer reads (dpkg,
// apk, rpm) and the language ecosystems of its lockfile and binary
// extractors. OSV's names, spelled as in its exports' paths.
var DefaultEcosystems = []string{
	"Debian", "Ubuntu", "Alpine", "Red Hat", "Rocky Linux", "AlmaLinux",
	"Go", "PyPI", "npm", "Maven", "crates.io",
}

// DefaultMaxBytes bounds one export. The largest OSV exports are a few
// hundred MB; a source answering with more is broken, and the bound keeps
// it from filling the bucket and the scan function's /tmp.
const DefaultMaxBytes = 4 << 30

// Metadata keys of a stored export (S3 user metadata, x-amz-meta-*).
const (
	MetaSourceETag         = "source-etag"
	MetaSourceLastModified = "source-last-modified"
	MetaSourceURL          = "source-url"
)

// Store is the part of the S3 client a Syncer uses: the transfer
// manager's calls, HeadObject among them (the stored export's source
// ETag).
type Store = transfermanager.S3APIClient

// Config is a Syncer's configuration; zero values take the defaults.
type Config struct {
	Bucket string
	// Prefix of the stored exports; "" is DefaultPrefix.
	Prefix string
	// BaseURL of the exports; "" is DefaultBaseURL (tests point it at an
	// httptest server).
	BaseURL string
	// Ecosystems to sync; nil is DefaultEcosystems.
	Ecosystems []string
	// HTTP fetches the exports; nil is a client with a 30 s response
	// header timeout (the body may take minutes).
	HTTP *http.Client
	// MaxBytes bounds one export; 0 is DefaultMaxBytes.
	MaxBytes int64
	// PartSize and Concurrency of the multipart upload: memory use is
	// about (Concurrency+2) × PartSize. 0: 8 MiB and 2.
	PartSize    int64
	Concurrency int
	// Reserve: no new export is started with less than this left before
	// the context's deadline (a function's timeout); the next run picks
	// up where this one stopped. 0 is one minute.
	Reserve time.Duration
	Log     *slog.Logger
}

// Syncer copies the configured exports into the bucket.
type Syncer struct {
	cfg   Config
	store Store
	tm    *transfermanager.Client
}

// New returns a Syncer over store with cfg's defaults filled in.
func New(store Store, cfg Config) *Syncer {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if cfg.Ecosystems == nil {
		cfg.Ecosystems = DefaultEcosystems
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			ResponseHeaderTimeout: 30 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
		}}
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = 8 << 20
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 2
	}
	if cfg.Reserve == 0 {
		cfg.Reserve = time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	tm := transfermanager.New(store, func(o *transfermanager.Options) {
		// Parts from the first byte on: one part buffered before the
		// decision, not the default 16 MiB threshold.
		o.PartSizeBytes, o.MultipartUploadThreshold, o.Concurrency = cfg.PartSize, cfg.PartSize, cfg.Concurrency
		// An upload that failed (a bad download among them) is aborted
		// even when the failure was the context's.
		o.FailTimeout = 30 * time.Second
	})
	return &Syncer{cfg: cfg, store: store, tm: tm}
}

// Key is the bucket key of an ecosystem's export under prefix.
func Key(prefix, ecosystem string) string { return prefix + ecosystem + "/all.zip" }

// Result is what happened to one ecosystem.
type Result struct {
	Ecosystem string
	// Changed: a new export was stored.
	Changed bool
	// Bytes stored (0 when unchanged).
	Bytes int64
	// ETag of the source export now stored.
	ETag string
	Err  error
}

// Report is one run's results, in the configured order. Skipped lists the
// ecosystems not attempted because the deadline was near.
type Report struct {
	Results []Result
	Skipped []string
}

// Changed lists the ecosystems whose export was replaced.
func (r Report) Changed() []string {
	var out []string
	for _, res := range r.Results {
		if res.Changed {
			out = append(out, res.Ecosystem)
		}
	}
	return out
}

// Err joins every ecosystem's error.
func (r Report) Err() error {
	var errs []error
	for _, res := range r.Results {
		if res.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", res.Ecosystem, res.Err))
		}
	}
	return errors.Join(errs...)
}

// Sync fetches every configured ecosystem in turn. A failed ecosystem does
// not stop the others: its error is in its Result (Report.Err joins them)
// and the stored copy, if any, stays as it was.
func (s *Syncer) Sync(ctx context.Context) Report {
	var rep Report
	for i, eco := range s.cfg.Ecosystems {
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < s.cfg.Reserve {
			rep.Skipped = s.cfg.Ecosystems[i:]
			s.cfg.Log.LogAttrs(ctx, slog.LevelWarn, "osvsync: deadline near, stopping", slog.Any("skipped", rep.Skipped))
			break
		}
		if ctx.Err() != nil {
			rep.Skipped = s.cfg.Ecosystems[i:]
			break
		}
		start := time.Now()
		res := s.one(ctx, eco)
		attrs := []slog.Attr{slog.String("ecosystem", eco), slog.Bool("changed", res.Changed),
			slog.Int64("bytes", res.Bytes), slog.String("etag", res.ETag), slog.Duration("took", time.Since(start))}
		if res.Err != nil {
			s.cfg.Log.LogAttrs(ctx, slog.LevelError, "osvsync: ecosystem", append(attrs, slog.Any("error", res.Err))...)
		} else {
			s.cfg.Log.LogAttrs(ctx, slog.LevelInfo, "osvsync: ecosystem", attrs...)
		}
		rep.Results = append(rep.Results, res)
	}
	return rep
}

// one syncs one ecosystem.
func (s *Syncer) one(ctx context.Context, eco string) Result {
	res := Result{Ecosystem: eco}
	key := Key(s.cfg.Prefix, eco)
	src := s.cfg.BaseURL + "/" + url.PathEscape(eco) + "/all.zip"

	etag, modified, err := s.stored(ctx, key)
	if err != nil {
		res.Err = err
		return res
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		res.Err = err
		return res
	}
	// The bytes as stored at the source: with transparent decompression
	// the length and MD5 checks would see other bytes.
	req.Header.Set("Accept-Encoding", "identity")
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	} else if modified != "" {
		// Only without an ETag: a server must ignore If-Modified-Since
		// when If-None-Match is present (RFC 9110 13.1.3).
		req.Header.Set("If-Modified-Since", modified)
	}
	resp, err := s.cfg.HTTP.Do(req)
	if err != nil {
		res.Err = fmt.Errorf("GET %s: %w", src, err)
		return res
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		res.ETag = etag
		return res
	case http.StatusOK:
	default:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		res.Err = fmt.Errorf("GET %s: %s", src, resp.Status)
		return res
	}
	if resp.ContentLength > s.cfg.MaxBytes {
		res.Err = fmt.Errorf("GET %s: %d bytes, more than the limit of %d", src, resp.ContentLength, s.cfg.MaxBytes)
		return res
	}
	newETag := resp.Header.Get("ETag")
	if newETag != "" && newETag == etag {
		// A server that ignored If-None-Match: the stored copy is this one.
		res.ETag = etag
		return res
	}
	body := &checked{r: resp.Body, want: resp.ContentLength, max: s.cfg.MaxBytes, md5: googMD5(resp.Header)}
	if body.md5 != nil {
		body.h = md5.New()
	}
	meta := map[string]string{MetaSourceURL: src}
	if newETag != "" {
		meta[MetaSourceETag] = newETag
	}
	if lm := resp.Header.Get("Last-Modified"); lm != "" {
		meta[MetaSourceLastModified] = lm
	}
	if _, err := s.tm.UploadObject(ctx, &transfermanager.UploadObjectInput{
		Bucket:      aws.String(s.cfg.Bucket),
		Key:         aws.String(key),
		Body:        body,
		ContentType: aws.String("application/zip"),
		Metadata:    meta,
	}); err != nil {
		res.Err = fmt.Errorf("store %s: %w", key, err)
		return res
	}
	res.Changed, res.Bytes, res.ETag = true, body.n, newETag
	return res
}

// stored returns the source ETag and Last-Modified of the stored export,
// empty when there is none.
func (s *Syncer) stored(ctx context.Context, key string) (etag, modified string, err error) {
	out, err := s.store.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(key)})
	if err != nil {
		var re *awshttp.ResponseError
		if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound {
			return "", "", nil
		}
		return "", "", fmt.Errorf("head %s: %w", key, err)
	}
	return out.Metadata[MetaSourceETag], out.Metadata[MetaSourceLastModified], nil
}

// googMD5 is the MD5 from Google Cloud Storage's x-goog-hash header
// ("crc32c=…, md5=…", base64), or nil when absent (a composite object
// has no MD5).
func googMD5(h http.Header) []byte {
	for _, v := range h.Values("X-Goog-Hash") {
		for part := range strings.SplitSeq(v, ",") {
			if b64, ok := strings.CutPrefix(strings.TrimSpace(part), "md5="); ok {
				if sum, err := base64.StdEncoding.DecodeString(b64); err == nil && len(sum) == md5.Size {
					return sum
				}
			}
		}
	}
	return nil
}

// checked passes a response body through, counting and hashing it. At
// the end it returns an error instead of io.EOF when the length or the
// MD5 is not what the source announced, and it fails once more than max
// bytes arrived: the uploader then aborts, and the stored export stays.
type checked struct {
	r    io.Reader
	n    int64
	want int64 // -1: unknown
	max  int64
	md5  []byte
	h    hash.Hash
}

var (
	errTruncated = errors.New("download length differs from Content-Length")
	errDigest    = errors.New("download MD5 differs from x-goog-hash")
	errTooLarge  = errors.New("download exceeds the size limit")
)

func (c *checked) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.h != nil {
		c.h.Write(p[:n])
	}
	if c.n > c.max {
		return n, errTooLarge
	}
	if err == io.EOF {
		if c.want >= 0 && c.n != c.want {
			return n, errTruncated
		}
		if c.h != nil && string(c.h.Sum(nil)) != string(c.md5) {
			return n, errDigest
		}
	}
	return n, err
}
