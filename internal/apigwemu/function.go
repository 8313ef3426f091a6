package apigwemu

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-lambda-go/events"

	"github.com/berth-registry/berth/pkg/apigw"
)

// The limits the Lambda service enforces on a synchronous invocation
// (docs/lambda.md cites the sources).
const (
	// MaxInvokeBytes is Lambda's synchronous invocation request limit on the
	// serialized event ("Request must be smaller than 6291456 bytes for the
	// InvokeFunction operation", RequestEntityTooLargeException).
	MaxInvokeBytes = 6291456
	// MaxResponseBytes is Lambda's synchronous response limit ("Response
	// payload size exceeded maximum allowed payload size (6291556 bytes)",
	// Function.ResponseSizeTooLarge).
	MaxResponseBytes = 6291556
)

// Function is a Lambda function as the Lambda service sees it: JSON in, JSON
// out. A function error (the handler returned an error or panicked) is a
// *FunctionError.
type Function interface {
	Invoke(ctx context.Context, payload []byte) ([]byte, error)
}

// FunctionError is an error the function reported instead of a response:
// Lambda answers the invoke with X-Amz-Function-Error and this body.
type FunctionError struct {
	Type    string `json:"errorType"`
	Message string `json:"errorMessage"`
}

func (e *FunctionError) Error() string { return e.Type + ": " + e.Message }

// Func runs an in-process handler as a Function, through the same JSON round
// trip the Lambda runtime does, so anything that does not survive
// serialization fails here too.
func Func(h apigw.HandlerFunc) Function { return inProcess(h) }

type inProcess apigw.HandlerFunc

func (f inProcess) Invoke(ctx context.Context, payload []byte) (out []byte, err error) {
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(payload, &ev); err != nil {
		return nil, &FunctionError{Type: "Runtime.UnmarshalError", Message: err.Error()}
	}
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, &FunctionError{Type: "Runtime.Panic", Message: fmt.Sprint(p)}
		}
	}()
	resp, err := f(ctx, ev)
	if err != nil {
		return nil, &FunctionError{Type: fmt.Sprintf("%T", err), Message: err.Error()}
	}
	return json.Marshal(resp)
}
