package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/berth-registry/berth/internal/cloudfront"
	"github.com/berth-registry/berth/pkg/edge"
)

// `berth serve --edge`: the deployed edge upload path (docs/clients.md, "Upload paths")
// in one process. Clients talk to an emulated CloudFront distribution that
// runs the real CloudFront Function (pkg/edge/cffunc/upload.js) and the
// real Lambda@Edge function (pkg/edge/lambdaedge/oversize.js, the OCI 413
// for API Gateway's own) and sends /_upload/* PUTs straight to the bucket,
// everything else to the emulated API Gateway and Lambda.

// newEdgeKeys is the local CloudFront KeyValueStore with its first signing
// key: in AWS the cleanup function's hourly rotation keeps it; a local
// server lives far shorter than a key (30 days), so one rotation at start
// is all it needs.
func newEdgeKeys(ctx context.Context, log *slog.Logger) (*edge.MemoryStore, error) {
	store := edge.NewMemoryStore()
	rep, err := edge.Rotate(ctx, store, edge.Rotation{}, time.Now())
	if err != nil {
		return nil, fmt.Errorf("edge upload keys: %w", err)
	}
	log.Info("edge upload key", slog.String("kid", rep.Current))
	return store, nil
}

// withEdge puts the CloudFront emulator in front of api (the API Gateway
// emulator, /token included). Its S3 origin is the backend's bucket at the
// backend's S3 endpoint (AWS_ENDPOINT_URL_S3 or AWS), signed with the
// backend's credentials from awsCfg, as origin access control signs with
// the distribution's.
func withEdge(awsCfg aws.Config, bucket string, pathStyle bool, api http.Handler, keys edge.KeyStore, log *slog.Logger) (http.Handler, error) {
	endpoint := aws.ToString(s3.NewFromConfig(awsCfg).Options().BaseEndpoint)
	if endpoint == "" {
		endpoint = "https://s3." + awsCfg.Region + ".amazonaws.com"
	}
	return cloudfront.NewBerth(cloudfront.BerthOptions{
		Blobs: &cloudfront.S3Origin{
			Endpoint:    endpoint,
			Bucket:      bucket,
			PathStyle:   pathStyle,
			Region:      awsCfg.Region,
			Credentials: awsCfg.Credentials,
			Logger:      log,
		},
		API:    api,
		Keys:   keys,
		Logger: log,
	})
}
