package lambda_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/berth-registry/berth/internal/apigwemu"
	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/apigw"
	"github.com/berth-registry/berth/pkg/driver/dynamo"
	"github.com/berth-registry/berth/pkg/driver/s3blob"
	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/pkg/registry/registrytest"
)

// TestConformanceThroughLambdaAWS runs the HTTP conformance suite, the
// concurrency test included, through the API Gateway and Lambda emulation
// on the AWS drivers (DynamoDB Local, versitygw), as functions/api is
// configured. Every invocation is a cold start (new drivers and handler),
// so no request can lean on state another one left in memory.
func TestConformanceThroughLambdaAWS(t *testing.T) {
	registrytest.Run(t, func(t *testing.T) registrytest.Env {
		ddb := testenv.DynamoDB(t)
		s3c, presign := testenv.S3(t)
		table, bucket := testenv.FreshTable(t, ddb), testenv.FreshBucket(t, s3c)
		cfg := registry.Config{MaxBodyBytes: maxBodyBytes, ChunkMinLength: 4 << 20, Logger: testLogger(t)}
		cold := apigwemu.Func(func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
			reg := registry.New(cfg, dynamo.New(ddb, table), s3blob.New(s3c, presign, bucket))
			return apigw.Handler(reg)(ctx, ev)
		})
		newHandler := func() http.Handler { return apigwemu.NewEmulator(cold, apigwemu.WithRoutes(apiRoutes...)) }
		return registrytest.Env{
			Handler:      newHandler(),
			MaxBodyBytes: maxBodyBytes,
			Restart:      func(*testing.T) http.Handler { return newHandler() },
			Leftovers:    func(t *testing.T) []string { return testenv.Staged(t, s3c, bucket) },
		}
	})
}
