package meta_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/berth-registry/berth/pkg/meta"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

const (
	sigType  = "application/vnd.example.sig"
	junkType = "application/vnd.example.junk"
)

// referrerPut is a blob-less artifact manifest whose subject is subject.
// The body is what the digest covers; seed makes it unique.
func referrerPut(repo string, subject oci.Digest, artifactType, seed string, annotations map[string]string) meta.ManifestPut {
	body := []byte(fmt.Sprintf(`{"artifactType":%q,"seed":%q}`, artifactType, seed))
	return meta.ManifestPut{
		Repo: repo, Digest: oci.FromBytes(oci.SHA256, body), Body: body,
		Parsed: &oci.Manifest{
			MediaType: oci.MediaTypeImageManifest, ArtifactType: artifactType, Annotations: annotations,
			Subject: &oci.Descriptor{MediaType: oci.MediaTypeImageManifest, Digest: oci.FromBytes(oci.SHA256, []byte("subject")), Size: 7},
		},
	}
}

// allReferrers follows the pages of a referrers listing to the end and
// returns every descriptor and the number of pages it took.
func allReferrers(t *testing.T, s *meta.Store, repo string, subject oci.Digest, q meta.ReferrersQuery) ([]oci.Descriptor, int) {
	t.Helper()
	var out []oci.Descriptor
	for pages := 1; ; pages++ {
		page, err := s.Referrers(t.Context(), repo, subject, q)
		if err != nil {
			t.Fatalf("referrers page %d: %v", pages, err)
		}
		out = append(out, page.Descriptors...)
		if page.Next == "" {
			return out, pages
		}
		if page.Next == q.After {
			t.Fatalf("page %d did not advance past %q", pages, q.After)
		}
		q.After = page.Next
	}
}

// TestReferrersFilterBeforeLimit: 10,000 junk referrers whose digests sort
// before a real signature must not hide it from an artifactType query, and
// the query must read only the matching entries (one page, one entry).
func TestReferrersFilterBeforeLimit(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	subject := oci.FromBytes(oci.SHA256, []byte("subject"))
	// A signature whose digest sorts late, then junk that all sorts before it.
	var sig meta.ManifestPut
	for i := 0; ; i++ {
		sig = referrerPut("r", subject, sigType, fmt.Sprintf("sig-%d", i), nil)
		if strings.HasPrefix(string(sig.Digest), "sha256:ff") {
			break
		}
	}
	junk := 0
	for i := 0; junk < 10_000; i++ {
		p := referrerPut("r", subject, junkType, fmt.Sprintf("junk-%d", i), map[string]string{"n": fmt.Sprint(i)})
		if p.Digest >= sig.Digest {
			continue
		}
		if err := s.ManifestPut(ctx, p); err != nil {
			t.Fatal(err)
		}
		junk++
	}
	if err := s.ManifestPut(ctx, sig); err != nil {
		t.Fatal(err)
	}

	page, err := s.Referrers(ctx, "r", subject, meta.ReferrersQuery{ArtifactType: sigType})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Descriptors) != 1 || page.Descriptors[0].Digest != sig.Digest || page.Next != "" {
		t.Fatalf("artifactType query: %d descriptors, next %q; want the signature alone", len(page.Descriptors), page.Next)
	}
	// Unfiltered, every entry is listed exactly once across the pages.
	all, pages := allReferrers(t, s, "r", subject, meta.ReferrersQuery{Limit: 1000})
	seen := map[oci.Digest]bool{}
	for _, d := range all {
		if seen[d.Digest] {
			t.Fatalf("%s listed twice", d.Digest)
		}
		seen[d.Digest] = true
	}
	if len(all) != 10_001 || !seen[sig.Digest] || pages != 11 {
		t.Fatalf("unfiltered: %d descriptors in %d pages, signature seen %v", len(all), pages, seen[sig.Digest])
	}
}

// TestReferrersPageBytes: a page never exceeds its byte budget, however
// large the annotations, and always makes progress.
func TestReferrersPageBytes(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	subject := oci.FromBytes(oci.SHA256, []byte("subject"))
	big := strings.Repeat("a", 60<<10) // under the per-entry cap: kept
	for i := 0; i < 40; i++ {
		if err := s.ManifestPut(ctx, referrerPut("r", subject, sigType, fmt.Sprint(i), map[string]string{"big": big})); err != nil {
			t.Fatal(err)
		}
	}
	const budget = 256 << 10
	q := meta.ReferrersQuery{MaxBytes: budget}
	total := 0
	for pages := 1; ; pages++ {
		page, err := s.Referrers(ctx, "r", subject, q)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(page.Descriptors)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > budget || len(page.Descriptors) == 0 {
			t.Fatalf("page %d: %d descriptors, %d bytes (budget %d)", pages, len(page.Descriptors), len(b), budget)
		}
		for _, d := range page.Descriptors {
			if d.Annotations["big"] != big {
				t.Fatalf("annotations of %s dropped", d.Digest)
			}
		}
		total += len(page.Descriptors)
		if page.Next == "" {
			break
		}
		q.After = page.Next
	}
	if total != 40 {
		t.Fatalf("listed %d of 40", total)
	}
}

// TestReferrerAnnotationCap: an entry whose annotations exceed the cap is
// stored without them (clients fetch the manifest), others keep theirs.
func TestReferrerAnnotationCap(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	subject := oci.FromBytes(oci.SHA256, []byte("subject"))
	huge := referrerPut("r", subject, sigType, "huge", map[string]string{"x": strings.Repeat("x", meta.MaxReferrerAnnotations)})
	small := referrerPut("r", subject, sigType, "small", map[string]string{"x": "y"})
	for _, p := range []meta.ManifestPut{huge, small} {
		if err := s.ManifestPut(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	page, err := s.Referrers(ctx, "r", subject, meta.ReferrersQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Descriptors) != 2 {
		t.Fatalf("%d descriptors", len(page.Descriptors))
	}
	for _, d := range page.Descriptors {
		switch d.Digest {
		case huge.Digest:
			if d.Annotations != nil {
				t.Fatalf("over-cap annotations stored (%d keys)", len(d.Annotations))
			}
		case small.Digest:
			if d.Annotations["x"] != "y" {
				t.Fatalf("small annotations %v", d.Annotations)
			}
		}
	}
}

// referrerItems lists every item in repo's partition that belongs to the
// referrers listing of any subject.
func referrerItems(t *testing.T, s *meta.Store, repo string) []string {
	t.Helper()
	items, _, err := meta.ItemsOf(s).ItemQuery(t.Context(), "REPO#"+repo, "REFERRER", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	var sks []string
	for _, it := range items {
		sks = append(sks, it.SK)
	}
	return sks
}

// TestReferrerDeleteRemovesEntries: deleting a referrer removes every item
// its push wrote, and it leaves the listings, filtered or not.
func TestReferrerDeleteRemovesEntries(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	subject := oci.FromBytes(oci.SHA256, []byte("subject"))
	sig := referrerPut("r", subject, sigType, "sig", nil)
	other := referrerPut("r", subject, junkType, "other", nil)
	for _, p := range []meta.ManifestPut{sig, other} {
		if err := s.ManifestPut(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.ManifestDelete(ctx, "r", sig.Digest); err != nil {
		t.Fatal(err)
	}
	for _, sk := range referrerItems(t, s, "r") {
		if strings.HasSuffix(sk, string(sig.Digest)) {
			t.Fatalf("item %s left after delete", sk)
		}
	}
	if page, err := s.Referrers(ctx, "r", subject, meta.ReferrersQuery{ArtifactType: sigType}); err != nil || len(page.Descriptors) != 0 {
		t.Fatalf("filtered after delete: %v %v", page.Descriptors, err)
	}
	if page, err := s.Referrers(ctx, "r", subject, meta.ReferrersQuery{}); err != nil || len(page.Descriptors) != 1 || page.Descriptors[0].Digest != other.Digest {
		t.Fatalf("unfiltered after delete: %v %v", page.Descriptors, err)
	}
	if err := s.ManifestDelete(ctx, "r", other.Digest); err != nil {
		t.Fatal(err)
	}
	if left := referrerItems(t, s, "r"); len(left) != 0 {
		t.Fatalf("items left after deleting every referrer: %v", left)
	}
}

// TestReferrersLegacyEntries: entries stored by an earlier Berth
// (REFERRER#<subject>#<digest>, no artifact type in the key) are listed,
// filtered and deleted like new ones.
func TestReferrersLegacyEntries(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	items := meta.ItemsOf(s)
	subject := oci.FromBytes(oci.SHA256, []byte("subject"))
	legacy := referrerPut("r", subject, sigType, "legacy", map[string]string{"a": "b"})
	legacyJunk := referrerPut("r", subject, junkType, "legacy-junk", nil)
	fresh := referrerPut("r", subject, sigType, "fresh", nil)
	for _, p := range []meta.ManifestPut{legacy, legacyJunk, fresh} {
		if err := s.ManifestPut(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// Rewrite the first two entries as the earlier layout stored them.
	for _, sk := range referrerItems(t, s, "r") {
		for _, p := range []meta.ManifestPut{legacy, legacyJunk} {
			if !strings.HasSuffix(sk, string(p.Digest)) {
				continue
			}
			it, err := items.ItemGet(ctx, "REPO#r", sk)
			if err != nil {
				t.Fatal(err)
			}
			if err := items.ItemDelete(ctx, it.PK, sk, storage.IfNone); err != nil {
				t.Fatal(err)
			}
			it.SK = "REFERRER#" + string(subject) + "#" + string(p.Digest)
			if err := items.ItemPut(ctx, it, storage.IfNone); err != nil {
				t.Fatal(err)
			}
		}
	}
	all, _ := allReferrers(t, s, "r", subject, meta.ReferrersQuery{})
	if len(all) != 3 {
		t.Fatalf("unfiltered with legacy entries: %d", len(all))
	}
	sigs, _ := allReferrers(t, s, "r", subject, meta.ReferrersQuery{ArtifactType: sigType})
	got := map[oci.Digest]bool{}
	for _, d := range sigs {
		got[d.Digest] = true
	}
	if len(sigs) != 2 || !got[legacy.Digest] || !got[fresh.Digest] {
		t.Fatalf("filtered with legacy entries: %v", sigs)
	}
	// Page by page (one entry each), across both layouts.
	one, pages := allReferrers(t, s, "r", subject, meta.ReferrersQuery{ArtifactType: sigType, Limit: 1})
	if len(one) != 2 || pages < 2 {
		t.Fatalf("paged filter: %d descriptors in %d pages", len(one), pages)
	}
	for _, p := range []meta.ManifestPut{legacy, legacyJunk, fresh} {
		if err := s.ManifestDelete(ctx, "r", p.Digest); err != nil {
			t.Fatal(err)
		}
	}
	if left := referrerItems(t, s, "r"); len(left) != 0 {
		t.Fatalf("items left: %v", left)
	}
}

// TestReferrerCursor: only cursors the listing hands out are accepted.
func TestReferrerCursor(t *testing.T) {
	s := newStore(t)
	subject := oci.FromBytes(oci.SHA256, []byte("subject"))
	d := oci.FromBytes(oci.SHA256, []byte("x"))
	for _, c := range []string{"", string(d), "T" + strings.Repeat("0", 32) + "#" + string(d)} {
		if !meta.ValidReferrerCursor(c) {
			t.Errorf("cursor %q refused", c)
		}
	}
	for _, c := range []string{"x", "sha256:zz", strings.Repeat("a", 2000), "T00#" + string(d), "T" + strings.Repeat("g", 32) + "#" + string(d)} {
		if meta.ValidReferrerCursor(c) {
			t.Errorf("cursor %q accepted", c)
		}
		if _, err := s.Referrers(context.Background(), "r", subject, meta.ReferrersQuery{After: c}); err == nil {
			t.Errorf("Referrers accepted cursor %q", c)
		}
	}
}
