package scan

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"time"

	"github.com/berth-registry/berth/pkg/inventory"
	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

// Record is what the scanner remembers of one image manifest's scan: an
// item SCAN#<shard> / <repo>@<digest> (docs/dynamodb.md). Rematch reads
// them back shard by shard, so a re-match pass costs what was scanned,
// never a table scan.
type Record struct {
	Repo      string     `json:"repo"`
	Digest    oci.Digest `json:"digest"`
	MediaType string     `json:"mt"`
	Size      int64      `json:"size"`
	// Layers are the image's layer digests in order: a re-match stacks
	// their stored indexes without reading the manifest or the layers.
	Layers []oci.Digest `json:"layers,omitempty"`
	// Status is StatusComplete or StatusFailed (Error says why).
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
	// DataVersion is the Matcher.Version the findings were matched with.
	DataVersion string `json:"data,omitempty"`
	// Counts are the findings by severity; Findings their fingerprint, so
	// a re-match can tell whether anything changed.
	Counts   map[inventory.Severity]int `json:"counts,omitempty"`
	Findings string                     `json:"findings,omitempty"`
	// SBOM and Report are the digests of the artifact manifests attached
	// to the image.
	SBOM   oci.Digest `json:"sbom,omitempty"`
	Report oci.Digest `json:"report,omitempty"`
	// ScannedAt is when the report was written; MatchedAt when the
	// findings were last confirmed against DataVersion.
	ScannedAt time.Time `json:"scannedAt"`
	MatchedAt time.Time `json:"matchedAt"`

	version int64 // the item's, for conditional updates
}

// Key layout of scan records.
const (
	pfxScan    = "SCAN#"
	scanShards = 16
)

func recordShardPK(shard int) string { return fmt.Sprintf("%s%02d", pfxScan, shard) }

// recordKey is the item key of repo's manifest d's record.
func recordKey(repo string, d oci.Digest) storage.Key {
	sk := repo + "@" + string(d)
	h := fnv.New32a()
	_, _ = h.Write([]byte(sk))
	return storage.Key{PK: recordShardPK(int(h.Sum32() % scanShards)), SK: sk}
}

// Record returns the record of repo's manifest d, or an error wrapping
// storage.ErrNotFound when it was never scanned.
func (s *Scanner) Record(ctx context.Context, repo string, d oci.Digest) (Record, error) {
	if s.cfg.Items == nil {
		return Record{}, errors.New("scan: Config.Items is required")
	}
	k := recordKey(repo, d)
	it, err := s.cfg.Items.ItemGet(ctx, k.PK, k.SK)
	if err != nil {
		return Record{}, fmt.Errorf("scan record %s@%s: %w", repo, d, err)
	}
	return decodeRecord(it)
}

func decodeRecord(it storage.Item) (Record, error) {
	var r Record
	if err := json.Unmarshal(it.Data, &r); err != nil {
		return Record{}, fmt.Errorf("scan record %s: %w", it.SK, err)
	}
	r.version = it.Version
	return r, nil
}

// putRecord writes r: created if absent, else replacing the version it
// read (prev), so two scans of one image cannot both win with stale
// reads; a lost race is not an error, the other writer's record stands.
func (s *Scanner) putRecord(ctx context.Context, r Record, prev *Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	k := recordKey(r.Repo, r.Digest)
	cond := storage.IfNotExists
	if prev != nil {
		cond = storage.IfVersion(prev.version)
	}
	err = s.cfg.Items.ItemPut(ctx, storage.Item{PK: k.PK, SK: k.SK, Data: b}, cond)
	if errors.Is(err, storage.ErrConditionFailed) {
		// A concurrent scan wrote first: write over it only if ours is
		// later (the artifacts of the later scan are the ones kept).
		cur, gerr := s.Record(ctx, r.Repo, r.Digest)
		switch {
		case errors.Is(gerr, storage.ErrNotFound):
			return s.putRecord(ctx, r, nil)
		case gerr != nil:
			return gerr
		case cur.ScannedAt.After(r.ScannedAt):
			return nil
		}
		return s.putRecord(ctx, r, &cur)
	}
	return err
}

// deleteRecord removes repo's manifest d's record (the manifest is gone).
func (s *Scanner) deleteRecord(ctx context.Context, repo string, d oci.Digest) error {
	k := recordKey(repo, d)
	return s.cfg.Items.ItemDelete(ctx, k.PK, k.SK, storage.IfNone)
}

// records calls fn for every record, shard by shard.
func (s *Scanner) records(ctx context.Context, fn func(Record) error) error {
	for shard := range scanShards {
		pk, after := recordShardPK(shard), ""
		for {
			items, more, err := s.cfg.Items.ItemQuery(ctx, pk, "", after, 100)
			if err != nil {
				return err
			}
			for _, it := range items {
				r, err := decodeRecord(it)
				if err != nil {
					s.log.Warn("scan record unreadable", "key", it.SK, "error", err)
					continue
				}
				if err := fn(r); err != nil {
					return err
				}
			}
			if !more || len(items) == 0 {
				break
			}
			after = items[len(items)-1].SK
		}
	}
	return nil
}

// counts returns the findings by severity.
func counts(fs []inventory.Finding) map[inventory.Severity]int {
	out := map[inventory.Severity]int{}
	for _, f := range fs {
		out[f.Severity]++
	}
	return out
}

// fingerprint is a digest of what a report says about findings: which
// vulnerability in which package where, how severe, fixed in what. Two
// matches with the same fingerprint need no new report.
func fingerprint(fs []inventory.Finding) string {
	lines := make([]string, 0, len(fs))
	for _, f := range fs {
		p := f.Package
		lines = append(lines, strings.Join([]string{
			f.ID, string(f.Severity), f.Fixed, f.Ecosystem, f.Score, strings.Join(f.Aliases, ","),
			p.Ecosystem, p.Name, p.Version, p.Path, string(p.Layer),
		}, "\x00"))
	}
	sort.Strings(lines)
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func isNotFound(err error) bool { return errors.Is(err, storage.ErrNotFound) }
