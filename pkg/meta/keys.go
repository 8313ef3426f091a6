package meta

import (
	"fmt"
	"hash/fnv"

	"github.com/berth-registry/berth/pkg/oci"
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
	keySep         = "#"
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
