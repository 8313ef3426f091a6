package meta

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

// Referrer entries live in the repository's partition, one item per
// referrer, keyed so that both listings are a prefix query:
//
//	REFERRER#<subject>#T<type>#<digest>   written by this version
//	REFERRER#<subject>#<digest>           written before it (legacy)
//
// <type> is the first 16 bytes of the SHA-256 of the artifact type, in hex:
// a media type may contain '#' (RFC 6838), and may be long, so the key
// holds a fixed-size, separator-free stand-in instead; the descriptor keeps
// the real value and the listing compares it (a collision costs a read,
// never a wrong answer). An artifactType query therefore reads only the
// entries of that type, whatever their digests and however many others the
// subject has. Legacy entries keep working: digests start with "sha", after
// every "T", so they are the tail of the unfiltered listing and a second,
// filtered segment of the typed one. No new legacy entries are written, so
// that segment only shrinks.
const (
	referrerTypeTag = "T"
	// legacyReferrerStart begins every legacy entry's suffix: each digest
	// Berth accepts is sha256 or sha512.
	legacyReferrerStart = "sha"
)

// MaxReferrerAnnotations bounds the JSON of the annotations copied into one
// referrer entry; an entry whose annotations are larger is stored without
// them (clients fetch the manifest), so each entry stays small whatever the
// manifest carries, and a page's byte budget always holds at least one.
const MaxReferrerAnnotations = 64 * 1024

// Defaults of a referrers page when the query leaves them zero.
const (
	// DefaultReferrersPage is the most entries in one page: the old single
	// response's cap, so clients that ignore Link see what they saw before
	// for all but very large or very heavy listings.
	DefaultReferrersPage = 10000
	// DefaultReferrersPageBytes bounds the encoded descriptors of a page.
	// Behind Lambda a response is at most 6 MB (6291456 bytes) including
	// its headers, and a body may be base64-encoded (4/3): 4 MiB becomes
	// 5.6 MB, leaving ~700 KB for the headers and the index envelope.
	DefaultReferrersPageBytes = 4 << 20
	// referrersScanBudget bounds the entries one page examines (only the
	// legacy segment of a filtered listing can examine entries it does not
	// return); past it the page ends early with a cursor, so no request
	// reads without bound.
	referrersScanBudget = 10000
)

// ReferrersQuery selects a page of a subject's referrers.
type ReferrersQuery struct {
	ArtifactType string // only entries of this artifact type; "" for all
	After        string // a cursor from a previous page's Next; "" to start
	Limit        int    // the most entries; <= 0 means DefaultReferrersPage
	MaxBytes     int    // the most encoded descriptor bytes; <= 0 means DefaultReferrersPageBytes
}

// ReferrersPage is one page of a referrers listing.
type ReferrersPage struct {
	Descriptors []oci.Descriptor
	// Next is the cursor of the following page, "" when this is the last.
	Next string
}

// errReferrerCursor: a cursor the listing never handed out.
var errReferrerCursor = errors.New("invalid referrers cursor")

// ValidReferrerCursor reports whether s can be a ReferrersPage.Next: empty,
// a digest (legacy entry) or T<32 hex>#<digest>. The HTTP layer checks it
// before asking, since the cursor arrives in the request.
func ValidReferrerCursor(s string) bool {
	if s == "" {
		return true
	}
	if rest, ok := strings.CutPrefix(s, referrerTypeTag); ok {
		h, d, found := strings.Cut(rest, keySep)
		if !found || len(h) != 32 || strings.ToLower(h) != h {
			return false
		}
		if _, err := hex.DecodeString(h); err != nil {
			return false
		}
		s = d
	}
	_, err := oci.ParseDigest(s)
	return err == nil
}

// artifactTypeKey is the key stand-in for an artifact type.
func artifactTypeKey(artifactType string) string {
	h := sha256.Sum256([]byte(artifactType))
	return referrerTypeTag + hex.EncodeToString(h[:16])
}

// referrerTypePrefix starts every entry of subject with artifactType.
func referrerTypePrefix(subject oci.Digest, artifactType string) string {
	return referrerPrefix(subject) + artifactTypeKey(artifactType) + keySep
}

// referrerTypedSK is the key of the entry this version writes for d. (The
// legacy key, which deletes still remove, is referrerSK in keys.go.)
func referrerTypedSK(subject oci.Digest, artifactType string, d oci.Digest) string {
	return referrerTypePrefix(subject, artifactType) + string(d)
}

// Referrers returns one page of the descriptors of manifests in repo whose
// subject is subject. The filter applies before the page is cut, and the
// page ends at whichever comes first: q.Limit entries, q.MaxBytes of
// encoded descriptors (at least one entry), or the scan budget.
func (s *Store) Referrers(ctx context.Context, repo string, subject oci.Digest, q ReferrersQuery) (ReferrersPage, error) {
	if !ValidReferrerCursor(q.After) {
		return ReferrersPage{}, fmt.Errorf("%w: %q", errReferrerCursor, q.After)
	}
	limit, maxBytes := q.Limit, q.MaxBytes
	if limit <= 0 {
		limit = DefaultReferrersPage
	}
	if maxBytes <= 0 {
		maxBytes = DefaultReferrersPageBytes
	}
	base := referrerPrefix(subject)
	// The segments to read, in key order. A cursor is a key suffix, and a
	// query started from a cursor that sorts before its prefix starts at
	// the prefix, one that sorts after it returns nothing: so one cursor
	// serves every segment.
	segments := []string{base}
	if q.ArtifactType != "" {
		segments = []string{referrerTypePrefix(subject, q.ArtifactType), base + legacyReferrerStart}
	}
	after := ""
	if q.After != "" {
		after = base + q.After
	}
	var (
		page     ReferrersPage
		bytes    = len(`[]`)
		examined = 0
	)
	pk := repoPK(repo)
	for _, prefix := range segments {
		if after != "" && after >= prefix && !strings.HasPrefix(after, prefix) {
			continue // the cursor is past this segment
		}
		for {
			// One more than the page needs, so "is there more" is known.
			n := min(1000, limit-len(page.Descriptors)+1, referrersScanBudget-examined+1)
			items, more, err := s.items.ItemQuery(ctx, pk, prefix, after, n)
			if err != nil {
				return ReferrersPage{}, err
			}
			for _, it := range items {
				if len(page.Descriptors) == limit || examined == referrersScanBudget {
					page.Next = strings.TrimPrefix(after, base)
					return page, nil
				}
				d, err := decode[oci.Descriptor](it)
				if err != nil {
					return ReferrersPage{}, err
				}
				if q.ArtifactType != "" && d.ArtifactType != q.ArtifactType {
					examined++
					after = it.SK
					continue
				}
				size := len(encode(d)) + 1 // and its comma
				if bytes+size > maxBytes && len(page.Descriptors) > 0 {
					page.Next = strings.TrimPrefix(after, base)
					return page, nil
				}
				examined++
				bytes += size
				page.Descriptors = append(page.Descriptors, d)
				after = it.SK
			}
			if !more || len(items) == 0 {
				break
			}
		}
	}
	return page, nil
}

// referrerOp is the write of d's referrer entry.
func referrerOp(repo string, m Manifest, d oci.Digest) storage.Op {
	return storage.Op{
		Kind: storage.OpPut,
		Item: storage.Item{PK: repoPK(repo), SK: referrerTypedSK(m.Subject, m.ArtifactType, d), Data: encode(referrerDescriptor(m, d))},
	}
}

// referrerDeletes remove every entry a referrer may have: the one this
// version writes and the one an earlier version wrote (deleting an absent
// item is not an error, and a manifest has only one of them).
func referrerDeletes(repo string, m Manifest, d oci.Digest) []storage.Op {
	return []storage.Op{
		{Kind: storage.OpDelete, Item: storage.Item{PK: repoPK(repo), SK: referrerTypedSK(m.Subject, m.ArtifactType, d)}},
		{Kind: storage.OpDelete, Item: storage.Item{PK: repoPK(repo), SK: referrerSK(m.Subject, d)}},
	}
}

// referrerDescriptor is the entry's record: the manifest's descriptor with
// its annotations when they fit MaxReferrerAnnotations.
func referrerDescriptor(m Manifest, d oci.Digest) oci.Descriptor {
	desc := oci.Descriptor{
		MediaType:    m.MediaType,
		Digest:       d,
		Size:         m.Size,
		ArtifactType: m.ArtifactType,
		Annotations:  m.Annotations,
	}
	if len(encode(desc.Annotations)) > MaxReferrerAnnotations {
		desc.Annotations = nil
	}
	return desc
}
