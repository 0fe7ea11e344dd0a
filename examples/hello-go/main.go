// Command bootstrap is a Lambda function written with aws-lambda-go, unchanged from what runs
// on AWS: built for provided.al2023 as a static binary named bootstrap, zipped.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

// Event is what the function expects: {"name": "..."}.
type Event struct {
	Name string `json:"name"`
}

// Response is what it answers.
type Response struct {
	Message   string `json:"message"`
	RequestID string `json:"requestId"`
	Function  string `json:"function"`
	Version   string `json:"version"`
}

func handle(ctx context.Context, e Event) (Response, error) {
	name := e.Name
	if name == "" {
		name = "world"
	}
	r := Response{Message: fmt.Sprintf("Hello, %s!", name), Function: lambdacontext.FunctionName, Version: lambdacontext.FunctionVersion}
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		r.RequestID = lc.AwsRequestID
	}
	fmt.Fprintf(os.Stderr, "greeting %s\n", name) // goes to the function's log, like CloudWatch
	return r, nil
}

func main() {
	lambda.Start(handle)
}
