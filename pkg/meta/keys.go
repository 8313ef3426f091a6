package meta

import (
	"fmt"
	"hash/fnv"

	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

// Single-table keys (docs/dynamodb.md documents every access pattern).
const (
	skMeta    = "META"
	pkCatalog = "CATALOG"
	pfxRepo   = "REPO#"
	pfxTag    = "TAG#"
	pfxMan    = "MANIFEST#"
	pfxRef    = "REFERRER#"
	pfxBlob   = "BLOB#"
	pfxUpload = "UPLOAD#"
	// pfxUploadIndex partitions list live sessions (see uploadIndexPK).
	pfxUploadIndex = "UPLOADS#"
	// skGone marks a blob garbage collection is deleting or has deleted
	// (BLOB#<d>/GONE); pfxLinkRev lists the repositories that link a blob
	// (BLOB#<d>/LINK#<repo>) so that GC can remove their links.
	skGone     = "GONE"
	pfxLinkRev = "LINK#"
	// pfxGC partitions hold GC candidates (see gcShardPK).
	pfxGC  = "GC#"
	keySep = "#"
)

func repoPK(repo string) string                { return pfxRepo + repo }
func tagSK(tag string) string                  { return pfxTag + tag }
func manifestSK(d oci.Digest) string           { return pfxMan + string(d) }
func referrerPrefix(subject oci.Digest) string { return pfxRef + string(subject) + keySep }
func referrerSK(subject, d oci.Digest) string  { return referrerPrefix(subject) + string(d) }
func blobLinkSK(d oci.Digest) string           { return pfxBlob + string(d) }
func blobPK(d oci.Digest) string               { return pfxBlob + string(d) }
func uploadPK(id string) string                { return pfxUpload + id }
func catalogSK(repo string) string             { return pfxRepo + repo }
func linkRevSK(repo string) string             { return pfxLinkRev + repo }

// uploadShards spreads the live-session index over partitions so that a
// burst of uploads does not make one hot partition.
const uploadShards = 16

// uploadIndexPK is the index partition that lists session id: the sweep
// reads these few partitions instead of scanning the table.
func uploadIndexPK(id string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return uploadShardPK(int(h.Sum32() % uploadShards))
}

// uploadShardPK is the index partition number shard.
func uploadShardPK(shard int) string { return fmt.Sprintf("%s%02d", pfxUploadIndex, shard) }

// gcShards spreads GC candidates over partitions, as uploadShards does for
// sessions: every link and every reference-count decrement writes one.
const gcShards = 16

// gcShardPK is the candidate partition number shard.
func gcShardPK(shard int) string { return fmt.Sprintf("%s%02d", pfxGC, shard) }

// gcCandidateKey is blob d's candidate entry for time at (unix seconds).
// The time leads the sort key, zero-padded, so a pass reads each shard
// in due order and stops at the first entry that is not due yet.
func gcCandidateKey(d oci.Digest, at int64) storage.Key {
	h := fnv.New32a()
	_, _ = h.Write([]byte(d))
	return storage.Key{PK: gcShardPK(int(h.Sum32() % gcShards)), SK: fmt.Sprintf("%012d%s%s", at, keySep, d)}
}
