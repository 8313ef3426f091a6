// Package push copies images into a registry the way `berth push` and
// `berth copy` do (docs/clients.md, "Upload paths"): it walks the source's manifest graph,
// uploads the blobs the repository lacks in parallel — straight to S3 with
// presigned URLs when the registry offers Berth's direct upload API, through
// the ordinary OCI upload API otherwise — and then pushes the manifests
// children first, the tagged one, and the referrers after their subject.
//
// Every step is idempotent: a blob already in the repository is skipped
// after a HEAD, so running a push again after an interruption resumes it.
package push

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Options tune a push.
type Options struct {
	// Jobs bounds the blobs uploaded at once. Default 4.
	Jobs int
	// Platform, when the root is an index, pushes only the child image for
	// this platform (as the tagged manifest), like `crane copy --platform`.
	Platform *v1.Platform
	// NoReferrers skips the source's referrers.
	NoReferrers bool
	// Progress displays what happens. Default Quiet.
	Progress Progress
	// Logger receives debug logs. Default: discard.
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Jobs <= 0 {
		o.Jobs = 4
	}
	if o.Progress == nil {
		o.Progress = Quiet{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Summary is what a push did.
type Summary struct {
	Reference     string  // destination as pushed: registry/repo:tag
	Digest        v1.Hash // of the root manifest
	Uploaded      int     // blobs whose bytes were sent
	UploadedBytes int64
	Skipped       int // blobs the repository held already (or mounted)
	SkippedBytes  int64
	Mounted       int // of Skipped: blobs mounted from the source repository
	Manifests     int // manifests pushed (not counting ones that existed)
	Took          time.Duration
	Paths         map[string]int // uploaded blobs per upload path
}

// String is the one-line summary the CLI prints.
func (s Summary) String() string {
	return fmt.Sprintf("%s@%s: uploaded %d blobs (%s), skipped %d (%s), %d manifests, %s, %s",
		s.Reference, s.Digest, s.Uploaded, Bytes(s.UploadedBytes), s.Skipped, Bytes(s.SkippedBytes),
		s.Manifests, s.Took.Round(time.Millisecond), Rate(s.UploadedBytes, s.Took))
}

// manifestItem is one manifest of the plan.
type manifestItem struct {
	desc v1.Descriptor
	body []byte
	root bool
}

// plan is everything a push sends, in order.
type plan struct {
	blobs     []v1.Descriptor // unique by digest
	manifests []manifestItem  // children before parents; referrers after subjects
	seenBlob  map[v1.Hash]bool
	seenMan   map[v1.Hash]bool
}

// Push copies src's root (and everything it references, and its
// referrers) into dst, tagging the root as dst's reference.
func Push(ctx context.Context, src Source, dst *Target, opts Options) (Summary, error) {
	opts.setDefaults()
	start := time.Now()
	sum := Summary{Reference: dst.String(), Paths: map[string]int{}}
	root, body, err := src.Root(ctx)
	if err != nil {
		return sum, err
	}
	if root, body, err = selectPlatform(ctx, src, root, body, opts.Platform); err != nil {
		return sum, err
	}
	sum.Digest = root.Digest
	pl, err := buildPlan(ctx, src, root, body, !opts.NoReferrers)
	if err != nil {
		return sum, err
	}
	opts.Logger.DebugContext(ctx, "push plan", slog.Int("blobs", len(pl.blobs)), slog.Int("manifests", len(pl.manifests)))

	mountFrom := ""
	if m, ok := src.(Mounter); ok {
		if reg, repo := m.MountFrom(); reg == dst.Registry() {
			mountFrom = repo
		}
	}
	err = uploadBlobs(ctx, src, dst, pl.blobs, mountFrom, opts, &sum)
	if err == nil {
		err = pushManifests(ctx, dst, pl.manifests, opts, &sum)
	}
	opts.Progress.Wait()
	sum.Took = time.Since(start)
	return sum, err
}

// selectPlatform replaces an index root by its child for platform p.
func selectPlatform(ctx context.Context, src Source, root v1.Descriptor, body []byte, p *v1.Platform) (v1.Descriptor, []byte, error) {
	if p == nil {
		return root, body, nil
	}
	m, err := parseManifest(body)
	if err != nil {
		return root, body, err
	}
	if !isIndex(root.MediaType, m) {
		return root, body, nil
	}
	for _, c := range m.Manifests {
		if c.Platform != nil && c.Platform.Satisfies(*p) {
			b, err := src.Manifest(ctx, c)
			if err != nil {
				return root, body, err
			}
			c.Platform, c.Annotations = nil, nil
			return c, b, nil
		}
	}
	return root, body, fmt.Errorf("index %s has no image for platform %s", root.Digest, p)
}

func buildPlan(ctx context.Context, src Source, root v1.Descriptor, body []byte, referrers bool) (*plan, error) {
	pl := &plan{seenBlob: map[v1.Hash]bool{}, seenMan: map[v1.Hash]bool{}}
	if err := pl.walk(ctx, src, root, body, true); err != nil {
		return nil, err
	}
	if !referrers {
		return pl, nil
	}
	// Referrers of every manifest pushed, and theirs in turn (a signature
	// of an SBOM): the list grows while it is read.
	for i := 0; i < len(pl.manifests); i++ {
		refs, err := src.Referrers(ctx, pl.manifests[i].desc)
		if err != nil {
			return nil, err
		}
		for _, r := range refs {
			if pl.seenMan[r.Digest] {
				continue
			}
			b, err := src.Manifest(ctx, r)
			if err != nil {
				return nil, fmt.Errorf("referrer %s: %w", r.Digest, err)
			}
			r.Annotations, r.ArtifactType, r.Platform = nil, "", nil
			if err := pl.walk(ctx, src, r, b, false); err != nil {
				return nil, err
			}
		}
	}
	return pl, nil
}

// walk adds a manifest, its blobs and (for an index) its children.
func (pl *plan) walk(ctx context.Context, src Source, d v1.Descriptor, body []byte, root bool) error {
	if pl.seenMan[d.Digest] {
		return nil
	}
	if err := verify(d, body); err != nil {
		return err
	}
	pl.seenMan[d.Digest] = true
	m, err := parseManifest(body)
	if err != nil {
		return fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	d.MediaType = mediaTypeOf(d, m)
	if isIndex(d.MediaType, m) {
		for _, c := range m.Manifests {
			b, err := src.Manifest(ctx, c)
			if err != nil {
				return fmt.Errorf("child %s of %s: %w", c.Digest, d.Digest, err)
			}
			if err := pl.walk(ctx, src, c, b, false); err != nil {
				return err
			}
		}
	} else {
		var blobs []v1.Descriptor
		if m.Config != nil {
			blobs = append(blobs, *m.Config)
		}
		blobs = append(blobs, m.Layers...)
		blobs = append(blobs, m.Blobs...)
		for _, b := range blobs {
			// Foreign layers (Windows base images) live elsewhere and are
			// not pushed, as in every registry client.
			if len(b.URLs) > 0 || pl.seenBlob[b.Digest] {
				continue
			}
			pl.seenBlob[b.Digest] = true
			pl.blobs = append(pl.blobs, b)
		}
	}
	pl.manifests = append(pl.manifests, manifestItem{desc: d, body: body, root: root})
	return nil
}

// verify checks manifest bytes against their descriptor, so a corrupt
// source fails here instead of as a registry error.
func verify(d v1.Descriptor, body []byte) error {
	if d.Size != 0 && d.Size != int64(len(body)) {
		return fmt.Errorf("manifest %s: %d bytes, descriptor says %d", d.Digest, len(body), d.Size)
	}
	if d.Digest.Algorithm != "sha256" {
		return nil // the registry checks the others
	}
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != d.Digest.Hex {
		return fmt.Errorf("manifest %s: content does not match its digest", d.Digest)
	}
	return nil
}

// uploadBlobs uploads blobs with at most opts.Jobs at once; the first
// failure cancels the others.
func uploadBlobs(ctx context.Context, src Source, dst *Target, blobs []v1.Descriptor, mountFrom string, opts Options, sum *Summary) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		sem = make(chan struct{}, opts.Jobs)
	)
	for _, d := range blobs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			p := opts.Progress.Blob(d)
			open := func(ctx context.Context) (io.ReadCloser, error) { return src.Blob(ctx, d) }
			r, err := dst.UploadBlob(ctx, d, open, mountFrom, p)
			p.Done(r, err)
			if err != nil {
				cancel(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			switch r.Outcome {
			case Uploaded:
				sum.Uploaded++
				sum.UploadedBytes += d.Size
				sum.Paths[r.Path]++
			case Mounted:
				sum.Mounted++
				fallthrough
			default:
				sum.Skipped++
				sum.SkippedBytes += d.Size
			}
		}()
	}
	wg.Wait()
	return context.Cause(ctx)
}

// pushManifests pushes in plan order: children by digest (skipped when
// present), the root as the destination's reference, referrers by digest.
func pushManifests(ctx context.Context, dst *Target, items []manifestItem, opts Options, sum *Summary) error {
	for _, it := range items {
		ref := it.desc.Digest.String()
		if it.root {
			ref = dst.Reference()
		} else if ok, err := dst.HeadManifest(ctx, it.desc); err != nil {
			return err
		} else if ok {
			opts.Progress.Manifest(it.desc, ref, true)
			continue
		}
		if err := dst.PutManifest(ctx, ref, string(it.desc.MediaType), it.body); err != nil {
			return err
		}
		sum.Manifests++
		opts.Progress.Manifest(it.desc, ref, false)
	}
	return nil
}

// bytesReader is a blob held in memory that reads at offsets.
func bytesReader(b []byte) io.ReadCloser {
	return sectionReadCloser{io.NewSectionReader(bytes.NewReader(b), 0, int64(len(b)))}
}
