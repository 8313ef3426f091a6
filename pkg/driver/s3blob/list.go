package s3blob

import (
	"context"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berth-registry/berth/pkg/oci"
	"github.com/berth-registry/berth/pkg/storage"
)

var _ storage.BlobLister = (*Store)(nil)

// BlobList implements storage.BlobLister with one ListObjectsV2 page
// (up to 1000 keys) per call, starting after the key of after: S3 lists
// keys in byte order, which for blobs/<alg>/<hex> is digest order.
func (s *Store) BlobList(ctx context.Context, after oci.Digest, limit int) ([]storage.BlobObject, bool, error) {
	in := &s3.ListObjectsV2Input{
		Bucket:  aws.String(s.bucket),
		Prefix:  aws.String(blobsPrefix),
		MaxKeys: aws.Int32(int32(min(max(limit, 1), 1000))),
	}
	if after != "" {
		in.StartAfter = aws.String(blobsPrefix + strings.Replace(string(after), ":", "/", 1))
	}
	for {
		objs, truncated, last, err := s.listPage(ctx, in)
		if err != nil || len(objs) > 0 || !truncated {
			return objs, truncated, err
		}
		in.StartAfter = aws.String(last) // a page of foreign keys only
	}
}

func (s *Store) listPage(ctx context.Context, in *s3.ListObjectsV2Input) ([]storage.BlobObject, bool, string, error) {
	ctx2, cancel := s.deadline(ctx, 0)
	defer cancel()
	out, err := s.client.ListObjectsV2(ctx2, in, s.callOpts)
	if err != nil {
		return nil, false, "", mapErr(ctx, "list "+blobsPrefix, err)
	}
	objs := make([]storage.BlobObject, 0, len(out.Contents))
	last := ""
	for _, o := range out.Contents {
		last = aws.ToString(o.Key)
		alg, hex, ok := strings.Cut(strings.TrimPrefix(last, blobsPrefix), "/")
		if !ok {
			continue
		}
		d, err := oci.ParseDigest(alg + ":" + hex)
		if err != nil {
			continue
		}
		objs = append(objs, storage.BlobObject{Digest: d, Size: aws.ToInt64(o.Size), Modified: aws.ToTime(o.LastModified)})
	}
	return objs, aws.ToBool(out.IsTruncated) && last != "", last, nil
}
