package cloudfront

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/berth-registry/berth/pkg/edge"
	"github.com/berth-registry/berth/pkg/edge/cffunc"
)

// BlobsOriginID is the S3 origin's id in a Berth distribution.
const BlobsOriginID = "berth-blobs"

// BerthOptions describe the distribution a Berth deployment puts in front
// of its API and bucket (the CDK construct in infra/ builds the real one).
type BerthOptions struct {
	Blobs http.Handler // the S3 origin (*S3Origin)
	API   http.Handler // API Gateway (the internal/apigwemu emulator), also /token
	Keys  edge.KeyStore
	// Source of the function; default cffunc.Source.
	Source                            string
	ViewerResponseSeesOriginalRequest bool
	FunctionTimeout                   time.Duration
	Observer                          func(Exchange)
	Logger                            *slog.Logger
}

// NewBerth builds the distribution of a Berth deployment: /_upload/* with
// the upload function on viewer request and viewer response, S3 by
// default and the API when the function selects it; /v2/* with the
// function on viewer request, to the API; everything else to the API.
func NewBerth(o BerthOptions) (*Distribution, error) {
	src := o.Source
	if src == "" {
		src = cffunc.Source
	}
	fn, err := NewFunction("upload.js", src)
	if err != nil {
		return nil, err
	}
	return New(Config{
		Behaviors: []Behavior{
			{PathPattern: edge.PathPrefix + "*", Origin: BlobsOriginID, ViewerRequest: fn, ViewerResponse: fn},
			{PathPattern: "/v2/*", Origin: cffunc.APIOriginID, ViewerRequest: fn},
		},
		Default:                           Behavior{Origin: cffunc.APIOriginID},
		Origins:                           map[string]http.Handler{BlobsOriginID: o.Blobs, cffunc.APIOriginID: o.API},
		KeyValueStore:                     o.Keys,
		FunctionTimeout:                   o.FunctionTimeout,
		ViewerResponseSeesOriginalRequest: o.ViewerResponseSeesOriginalRequest,
		Observer:                          o.Observer,
		Logger:                            o.Logger,
	})
}
