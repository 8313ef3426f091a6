package cloudfront

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/berth-registry/berth/pkg/edge"
	"github.com/berth-registry/berth/pkg/edge/cffunc"
	"github.com/berth-registry/berth/pkg/edge/lambdaedge"
)

// BlobsOriginID is the S3 origin's id in a Berth distribution.
const BlobsOriginID = "berth-blobs"

// BerthOptions describe the distribution a Berth deployment puts in front
// of its API and bucket (the CDK construct in infra/ builds the real one).
type BerthOptions struct {
	Blobs http.Handler // the S3 origin (*S3Origin)
	API   http.Handler // API Gateway (the internal/apigwemu emulator), also /token
	Keys  edge.KeyStore
	// Source of the CloudFront Function; default cffunc.Source.
	Source string
	// OversizeSource of the Lambda@Edge function; default
	// lambdaedge.Source.
	OversizeSource string
	// NoLambdaEdge leaves the Lambda@Edge function out, as the CDK
	// construct does in a stack without an explicit region: a chunked
	// upload body too big for Lambda then gets API Gateway's plain 413.
	NoLambdaEdge                      bool
	ViewerResponseSeesOriginalRequest bool
	FunctionTimeout                   time.Duration
	Observer                          func(Exchange)
	Logger                            *slog.Logger
}

// NewBerth builds the distribution of a Berth deployment, in CloudFront's
// order of precedence:
//
//   - /_upload/*: the upload function on viewer request and viewer
//     response, S3 by default and the API when the function selects it;
//     the Lambda@Edge function oversize.js on origin response;
//   - /v2/*/blobs/uploads/*: the upload function on viewer request and
//     oversize.js on origin response, to the API;
//   - /v2/*: the upload function on viewer request, to the API;
//   - everything else to the API.
func NewBerth(o BerthOptions) (*Distribution, error) {
	src := o.Source
	if src == "" {
		src = cffunc.Source
	}
	fn, err := NewFunction("upload.js", src)
	if err != nil {
		return nil, err
	}
	var oversize *EdgeFunction
	if !o.NoLambdaEdge {
		src := o.OversizeSource
		if src == "" {
			src = lambdaedge.Source
		}
		if oversize, err = NewEdgeFunction("oversize.js", src); err != nil {
			return nil, err
		}
	}
	behaviors := []Behavior{
		{PathPattern: lambdaedge.EdgeUploadPathPattern, Origin: BlobsOriginID, ViewerRequest: fn, ViewerResponse: fn, OriginResponse: oversize},
	}
	if oversize != nil {
		behaviors = append(behaviors, Behavior{PathPattern: lambdaedge.UploadsPathPattern, Origin: cffunc.APIOriginID, ViewerRequest: fn, OriginResponse: oversize})
	}
	behaviors = append(behaviors, Behavior{PathPattern: "/v2/*", Origin: cffunc.APIOriginID, ViewerRequest: fn})
	return New(Config{
		Behaviors:                         behaviors,
		Default:                           Behavior{Origin: cffunc.APIOriginID},
		Origins:                           map[string]http.Handler{BlobsOriginID: o.Blobs, cffunc.APIOriginID: o.API},
		KeyValueStore:                     o.Keys,
		FunctionTimeout:                   o.FunctionTimeout,
		ViewerResponseSeesOriginalRequest: o.ViewerResponseSeesOriginalRequest,
		Observer:                          o.Observer,
		Logger:                            o.Logger,
	})
}
