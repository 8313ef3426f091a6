package meta

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

// Errors of the manifest logic, mapped to OCI codes by the HTTP layer.
var (
	ErrManifestUnknown = errors.New("manifest unknown")
	ErrTagUnknown      = errors.New("tag unknown")
	ErrNameUnknown     = errors.New("repository unknown")
	// ErrBlobUnknown: a referenced blob or child manifest is not in the repository.
	ErrBlobUnknown = errors.New("referenced blob unknown")
	// ErrBlobSize: a descriptor's size differs from the stored blob's.
	ErrBlobSize = errors.New("descriptor size does not match blob")
	// ErrConflict: a concurrent writer kept winning; the client may retry.
	ErrConflict = errors.New("concurrent modification")
)

// MissingError names what a manifest references but the repository lacks.
type MissingError struct {
	Digest oci.Digest
	Kind   string // "blob" or "manifest"
	Err    error  // ErrBlobUnknown or ErrBlobSize
}

func (e *MissingError) Error() string { return fmt.Sprintf("%s %s: %v", e.Kind, e.Digest, e.Err) }
func (e *MissingError) Unwrap() error { return e.Err }

// Manifest is a stored manifest record.
type Manifest struct {
	Digest       oci.Digest        `json:"-"`
	MediaType    string            `json:"mt"`
	Size         int64             `json:"size"`
	Body         []byte            `json:"body,omitempty"` // inline body; nil when External
	External     bool              `json:"ext,omitempty"`  // body stored as the blob Digest
	Subject      oci.Digest        `json:"subject,omitempty"`
	ArtifactType string            `json:"at,omitempty"`
	Annotations  map[string]string `json:"-"`                  // kept in the body and the referrer entry only
	Blobs        []oci.Digest      `json:"blobs,omitempty"`    // distinct referenced blobs (refcounted)
	Children     []oci.Digest      `json:"children,omitempty"` // index children
	PushedAt     int64             `json:"at_push"`
	// PushedBy is the principal that pushed it (an IAM principal ARN or an
	// OIDC subject; empty without authentication).
	PushedBy string `json:"by,omitempty"`
}

// InlineLimit is the largest manifest body kept in its metadata item; larger
// bodies are stored as blobs (docs/architecture.md). The body is base64 inside the
// item's JSON, so 200 KiB becomes ~267 KiB and, with up to a hundred
// referenced digests, stays below storage.MaxItemBytes.
const InlineLimit = 200 * 1024

// ManifestPut is what the HTTP layer hands over for a manifest PUT.
type ManifestPut struct {
	Repo     string
	Tag      string // optional
	Digest   oci.Digest
	Body     []byte // the exact bytes pushed
	External bool   // Body has already been stored as blob Digest (too big to inline)
	Parsed   *oci.Manifest
	// PushedBy is the pusher's principal, recorded with a new manifest (a
	// re-put keeps the first pusher, as it keeps the first push time).
	PushedBy string
}

// ManifestPut stores a manifest, its tag, its blob references and its
// referrer entry as one atomic unit. Re-putting an existing manifest only
// moves the tag. Every referenced blob must be linked into the repository
// with a matching size and every index child must exist there.
//
// Its reads are one batch (the manifest itself and everything it
// references), so a manifest put costs two round trips to the metadata
// store whatever its size: that batch and the transaction. When what it
// read changed before it wrote (the manifest was created or deleted
// concurrently, an immutable tag changed), it reads again and decides
// afresh; ErrConflict when that keeps happening.
func (s *Store) ManifestPut(ctx context.Context, p ManifestPut) error {
	var err error
	for range writeAttempts {
		if err = s.manifestPut(ctx, p); !errors.Is(err, errStale) {
			return err
		}
	}
	return fmt.Errorf("%w: %w", ErrConflict, err)
}

// writeAttempts bounds how often a manifest put or delete reads again
// after a concurrent change.
const writeAttempts = 5

// errStale: what a write was decided on changed before it committed (a
// transaction condition failed); the caller reads again.
var errStale = errors.New("read state changed before the write")

func (s *Store) manifestPut(ctx context.Context, p ManifestPut) error {
	self := storage.Key{PK: repoPK(p.Repo), SK: manifestSK(p.Digest)}
	found, err := s.getMany(ctx, referenceKeys(p, self))
	if err != nil {
		return err
	}
	// An existing manifest had its references verified and counted when it
	// was created: re-pushing it (a new tag) only moves the tag.
	if it, ok := found[self]; ok {
		if p.Tag == "" {
			return nil
		}
		return s.retag(ctx, p.Repo, p.Tag, p.Digest, it)
	}
	blobs, err := s.checkReferences(p, found)
	if err != nil {
		return err
	}
	m := Manifest{
		MediaType:    p.Parsed.MediaType,
		Size:         int64(len(p.Body)),
		External:     p.External,
		ArtifactType: p.Parsed.ArtifactType,
		Annotations:  p.Parsed.Annotations,
		Blobs:        blobs,
		PushedAt:     s.unix(),
		PushedBy:     p.PushedBy,
	}
	if !p.External {
		m.Body = p.Body
	}
	if p.Parsed.Subject != nil {
		m.Subject = p.Parsed.Subject.Digest
	}
	for _, c := range p.Parsed.Manifests {
		m.Children = append(m.Children, c.Digest)
	}
	return s.createManifest(ctx, p, m)
}

// referenceKeys are the items a manifest put reads: the manifest itself
// (self), the link of every referenced blob and every index child.
func referenceKeys(p ManifestPut, self storage.Key) []storage.Key {
	keys := []storage.Key{self}
	for _, d := range p.Parsed.Blobs() {
		keys = append(keys, storage.Key{PK: repoPK(p.Repo), SK: blobLinkSK(d.Digest)})
	}
	for _, c := range p.Parsed.Manifests {
		keys = append(keys, storage.Key{PK: repoPK(p.Repo), SK: manifestSK(c.Digest)})
	}
	return keys
}

// checkReferences checks, against the items found by referenceKeys, that
// every referenced blob is linked with the descriptor's size and every
// index child exists with its size. It returns the distinct blobs to count.
func (s *Store) checkReferences(p ManifestPut, found map[storage.Key]storage.Item) ([]oci.Digest, error) {
	seen := map[oci.Digest]bool{}
	var blobs []oci.Digest
	for _, d := range p.Parsed.Blobs() {
		if seen[d.Digest] {
			continue
		}
		seen[d.Digest] = true
		it, ok := found[storage.Key{PK: repoPK(p.Repo), SK: blobLinkSK(d.Digest)}]
		if !ok {
			return nil, &MissingError{Digest: d.Digest, Kind: "blob", Err: ErrBlobUnknown}
		}
		link, err := liveLink(it, p.Repo, d.Digest)
		if errors.Is(err, ErrBlobNotLinked) {
			return nil, &MissingError{Digest: d.Digest, Kind: "blob", Err: ErrBlobUnknown}
		}
		if err != nil {
			return nil, err
		}
		if link.Size != d.Size {
			return nil, &MissingError{Digest: d.Digest, Kind: "blob", Err: ErrBlobSize}
		}
		blobs = append(blobs, d.Digest)
	}
	for _, c := range p.Parsed.Manifests {
		it, ok := found[storage.Key{PK: repoPK(p.Repo), SK: manifestSK(c.Digest)}]
		if !ok {
			return nil, &MissingError{Digest: c.Digest, Kind: "manifest", Err: ErrBlobUnknown}
		}
		child, err := decode[Manifest](it)
		if err != nil {
			return nil, err
		}
		if child.Size != c.Size {
			return nil, &MissingError{Digest: c.Digest, Kind: "manifest", Err: ErrBlobSize}
		}
	}
	if p.External && !seen[p.Digest] {
		blobs = append(blobs, p.Digest)
	}
	sort.Slice(blobs, func(i, j int) bool { return blobs[i] < blobs[j] })
	return blobs, nil
}

// createManifest writes a new manifest. Reference counts go up in the same
// transaction when they fit; otherwise they are raised in batches first
// (an over-count only delays GC, never loses data) and compensated if the
// final transaction fails.
func (s *Store) createManifest(ctx context.Context, p ManifestPut, m Manifest) error {
	now := s.unix()
	core := []storage.Op{{
		Kind: storage.OpPut,
		// Touched is the last recorded pull (PullRecord). A manifest never
		// pulled counts from its push, as in ECR, and starting there means
		// the pulls of its first day (a CI push, then its deploy) write
		// nothing.
		Item: storage.Item{PK: repoPK(p.Repo), SK: manifestSK(p.Digest), Data: encode(m), Touched: now},
		Cond: storage.IfNotExists,
	}, {
		// The catalog entry counts the repository's manifests.
		Kind:  storage.OpAdd,
		Item:  storage.Item{PK: pkCatalog, SK: catalogSK(p.Repo), Data: encode(catalogRec{Name: p.Repo}), Touched: now},
		Delta: 1,
	}}
	if m.Subject != "" {
		core = append(core, referrerOp(p.Repo, m, p.Digest))
	}
	if p.Tag != "" {
		// The tag carries a copy of m: written in the transaction that
		// creates the manifest, it cannot point at a manifest that is not there.
		tagOp, err := s.tagOp(ctx, p.Repo, p.Tag, p.Digest, m)
		if err != nil {
			return err
		}
		// Marked pulled today like its manifest: a pull through it today
		// has nothing to record. (A re-tag leaves the mark at 0, so the
		// first pull through the tag records its manifest.)
		tagOp.Item.Touched = now
		core = append(core, tagOp)
	}
	refs := make([]storage.Op, 0, len(m.Blobs))
	for _, d := range m.Blobs {
		op := storage.Op{
			Kind:  storage.OpAdd,
			Item:  storage.Item{PK: blobPK(d), SK: skMeta, Touched: now},
			Delta: 1,
			Cond:  storage.IfExists, // a blob GC removed cannot be referenced
		}
		if p.External && d == p.Digest {
			// The manifest's own body blob: created here if new, unless
			// garbage collection is deleting that digest's bytes.
			op.Item.Data = encode(blobRec{Size: m.Size})
			op.Cond = storage.IfNone
			core = append(core, storage.Op{Kind: storage.OpCheck, Item: storage.Item{PK: blobPK(d), SK: skGone}, Cond: storage.IfNotExists})
		}
		refs = append(refs, op)
	}
	if len(core)+len(refs) <= storage.MaxTransactOps {
		err := s.items.Transact(ctx, append(core, refs...))
		return s.unlinkStale(ctx, p.Repo, s.explainTx(err, p, core, refs))
	}
	// Too many references for one transaction: raise the counts first.
	var done []storage.Op
	for start := 0; start < len(refs); start += storage.MaxTransactOps {
		end := min(start+storage.MaxTransactOps, len(refs))
		batch := refs[start:end]
		if err := s.items.Transact(ctx, batch); err != nil {
			s.compensate(ctx, done)
			return s.unlinkStale(ctx, p.Repo, s.explainTx(err, p, nil, batch))
		}
		done = append(done, batch...)
	}
	if err := s.items.Transact(ctx, core); err != nil {
		s.compensate(ctx, done)
		return s.explainTx(err, p, core, nil)
	}
	return nil
}

func (s *Store) explainTx(err error, p ManifestPut, core, refs []storage.Op) error {
	if err == nil {
		return nil
	}
	ok, idx := isCond(err)
	if !ok || idx < 0 {
		return err
	}
	if idx < len(core) {
		op := core[idx]
		switch {
		case op.Item.SK == manifestSK(p.Digest):
			// Created concurrently: ours is now a tag move.
			return fmt.Errorf("%w: manifest created concurrently: %w", errStale, err)
		case op.Item.SK == tagSK(p.Tag):
			// An immutable tag changed since tagOp read it.
			return fmt.Errorf("%w: tag %q: %w", errStale, p.Tag, err)
		case op.Item.SK == skGone:
			return fmt.Errorf("%w: manifest body %s: %w", ErrBlobCollecting, p.Digest, err)
		}
		return err
	}
	d := oci.Digest(refs[idx-len(core)].Item.PK[len(pfxBlob):])
	return &MissingError{Digest: d, Kind: "blob", Err: ErrBlobUnknown}
}

// unlinkStale removes the link of a blob a manifest put found linked but
// without a global record: links are written with the record and garbage
// collection removes them with it, so only a link written before links
// had reverse entries can be left so. Dropping it makes the client's next
// HEAD miss and upload the blob again instead of failing the same way
// forever. err is returned unchanged.
func (s *Store) unlinkStale(ctx context.Context, repo string, err error) error {
	var miss *MissingError
	if errors.As(err, &miss) && miss.Kind == "blob" && errors.Is(miss.Err, ErrBlobUnknown) {
		_ = s.items.ItemDelete(ctx, repoPK(repo), blobLinkSK(miss.Digest), storage.IfNone)
	}
	return err
}

// compensate undoes reference increments after a failed multi-step create.
// A failure here leaves counts too high, which only delays garbage
// collection of those blobs.
func (s *Store) compensate(ctx context.Context, ops []storage.Op) {
	for _, op := range ops {
		_, _ = s.items.ItemAdd(ctx, storage.Item{PK: op.Item.PK, SK: op.Item.SK}, -op.Delta, storage.IfExists)
	}
}

// ManifestGet returns the manifest stored under digest in repo.
func (s *Store) ManifestGet(ctx context.Context, repo string, d oci.Digest) (Manifest, error) {
	m, _, err := s.manifestGet(ctx, repo, d)
	return m, err
}

// manifestGet is ManifestGet that also returns the item read (its Touched
// is the manifest's last recorded pull, see PullRecord).
func (s *Store) manifestGet(ctx context.Context, repo string, d oci.Digest) (Manifest, storage.Item, error) {
	it, err := s.items.ItemGet(ctx, repoPK(repo), manifestSK(d))
	if errors.Is(err, storage.ErrNotFound) {
		return Manifest{}, it, fmt.Errorf("%w: %s", ErrManifestUnknown, d)
	}
	if err != nil {
		return Manifest{}, it, err
	}
	m, err := decode[Manifest](it)
	m.Digest = d
	return m, it, err
}

// ManifestResolve returns the manifest a reference names. By tag it is one
// read when the tag carries a copy of the manifest's record, two otherwise
// (see Tag).
func (s *Store) ManifestResolve(ctx context.Context, repo string, ref oci.Reference) (Manifest, error) {
	m, _, err := s.ManifestPull(ctx, repo, ref)
	return m, err
}

// ManifestPull is ManifestResolve for a pull: it also returns what
// PullRecord needs to record the pull, taken from the item the resolve
// read anyway, so recording costs no read.
func (s *Store) ManifestPull(ctx context.Context, repo string, ref oci.Reference) (Manifest, Pull, error) {
	if ref.IsDigest() {
		m, it, err := s.manifestGet(ctx, repo, ref.Digest)
		return m, Pull{repo: repo, digest: ref.Digest, touched: it.Touched}, err
	}
	t, it, err := s.tagGet(ctx, repo, ref.Tag)
	if err != nil {
		return Manifest{}, Pull{}, err
	}
	pull := Pull{repo: repo, digest: t.Digest, tag: ref.Tag, touched: it.Touched, version: it.Version}
	if t.Manifest != nil {
		return *t.Manifest, pull, nil
	}
	m, err := s.ManifestGet(ctx, repo, t.Digest)
	if errors.Is(err, ErrManifestUnknown) {
		// Deleted between the two reads, or an old-format tag that a delete
		// of earlier versions left behind (they removed tags afterwards).
		return Manifest{}, Pull{}, fmt.Errorf("%w: %s", ErrManifestUnknown, ref.Tag)
	}
	return m, pull, err
}

// ManifestDelete deletes a manifest by digest: its item, its referrer
// entry, its reference counts and every tag that points at it, the tags in
// the same transaction as the manifest, each conditioned on the version
// read, so that no tag outlives its manifest (docs/architecture.md,
// invariant 6). A tag moved, deleted or added meanwhile fails the
// transaction, and the delete reads again.
func (s *Store) ManifestDelete(ctx context.Context, repo string, d oci.Digest) error {
	_, err := s.ManifestRemove(ctx, repo, d)
	return err
}

// Removed is what ManifestRemove deleted: the manifest's record and the
// tags that went with it (sorted).
type Removed struct {
	Manifest Manifest
	Tags     []string
}

// ManifestRemove is ManifestDelete returning what it removed (for the
// registry's delete event).
func (s *Store) ManifestRemove(ctx context.Context, repo string, d oci.Digest) (Removed, error) {
	var (
		rm  Removed
		err error
	)
	for range writeAttempts {
		if rm, err = s.manifestDelete(ctx, repo, d); !errors.Is(err, errStale) {
			return rm, err
		}
	}
	return Removed{}, fmt.Errorf("%w: %w", ErrConflict, err)
}

func (s *Store) manifestDelete(ctx context.Context, repo string, d oci.Digest) (Removed, error) {
	it, err := s.items.ItemGet(ctx, repoPK(repo), manifestSK(d))
	if errors.Is(err, storage.ErrNotFound) {
		return Removed{}, fmt.Errorf("%w: %s", ErrManifestUnknown, d)
	}
	if err != nil {
		return Removed{}, err
	}
	m, err := decode[Manifest](it)
	if err != nil {
		return Removed{}, err
	}
	m.Digest = d
	// Read after the manifest: a tag written since then raised the
	// manifest's version (retag), so the condition below catches it.
	tags, err := s.tagsOf(ctx, repo, d)
	if err != nil {
		return Removed{}, err
	}
	rm := Removed{Manifest: m}
	for _, t := range tags {
		rm.Tags = append(rm.Tags, strings.TrimPrefix(t.SK, pfxTag))
	}
	sort.Strings(rm.Tags)
	now := s.unix()
	ops := []storage.Op{
		{Kind: storage.OpDelete, Item: storage.Item{PK: it.PK, SK: it.SK}, Cond: storage.IfVersion(it.Version)},
		{Kind: storage.OpAdd, Item: storage.Item{PK: pkCatalog, SK: catalogSK(repo), Touched: now}, Delta: -1, Cond: storage.IfExists},
	}
	if m.Subject != "" {
		ops = append(ops, referrerDeletes(repo, m, d)...)
	}
	tagDels := make([]storage.Op, 0, len(tags))
	for _, t := range tags {
		tagDels = append(tagDels, storage.Op{Kind: storage.OpDelete, Item: storage.Item{PK: t.PK, SK: t.SK}, Cond: storage.IfVersion(t.Version)})
	}
	var refs, cands []storage.Op
	for _, b := range m.Blobs {
		refs = append(refs, storage.Op{Kind: storage.OpAdd, Item: storage.Item{PK: blobPK(b), SK: skMeta, Touched: now}, Delta: -1, Cond: storage.IfExists})
		cands = append(cands, candidateOp(b, now))
	}
	// Tags that do not fit beside the manifest (and its blobs' decrements
	// and GC candidates, when those fit) go first, in transactions of their
	// own. Should the final transaction fail, the manifest stays with fewer
	// tags, never a tag without its manifest.
	room := storage.MaxTransactOps - len(ops)
	if blobOps := len(refs) + len(cands); blobOps <= room {
		room -= blobOps
	}
	if excess := len(tagDels) - room; excess > 0 {
		for start := 0; start < excess; start += storage.MaxTransactOps {
			if err := s.items.Transact(ctx, tagDels[start:min(start+storage.MaxTransactOps, excess)]); err != nil {
				return Removed{}, staleIfCond(err)
			}
		}
		tagDels = tagDels[excess:]
	}
	ops = append(ops, tagDels...)
	// Every decremented blob becomes a GC candidate: in the delete's
	// transaction when everything fits, else written first, so that no
	// crash can leave a blob unreferenced without its candidate (an entry
	// for a blob still referenced is simply dropped by the pass).
	if len(ops)+len(refs)+len(cands) <= storage.MaxTransactOps {
		ops = append(ops, cands...)
	} else if err := s.putAll(ctx, cands); err != nil {
		return Removed{}, err
	}
	if len(ops)+len(refs) <= storage.MaxTransactOps {
		ops = append(ops, refs...)
		refs = nil
	}
	if err := s.items.Transact(ctx, ops); err != nil {
		return Removed{}, staleIfCond(err)
	}
	// Decrements that did not fit: lowering counts after the manifest is
	// gone can only leave them too high, never too low.
	for _, op := range refs {
		if _, err := s.items.ItemAdd(ctx, op.Item, op.Delta, op.Cond); err != nil && !errors.Is(err, storage.ErrConditionFailed) {
			return rm, err
		}
	}
	return rm, nil
}

// staleIfCond turns a failed condition into errStale: something changed
// since it was read.
func staleIfCond(err error) error {
	if ok, _ := isCond(err); ok {
		return fmt.Errorf("%w: %w", errStale, err)
	}
	return err
}

// putAll writes unconditional puts in transactions of at most
// storage.MaxTransactOps.
func (s *Store) putAll(ctx context.Context, ops []storage.Op) error {
	for start := 0; start < len(ops); start += storage.MaxTransactOps {
		if err := s.items.Transact(ctx, ops[start:min(start+storage.MaxTransactOps, len(ops))]); err != nil {
			return err
		}
	}
	return nil
}
