// Command gofunction is a Lambda function built on github.com/aws/aws-lambda-go, used by
// the compatibility tests (build it with -tags lambda.norpc). The event's "op" field picks
// the behaviour; without one it echoes the event.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type event struct {
	Op string `json:"op"`
	Ms int    `json:"ms"`
	N  int    `json:"n"`
}

func handle(ctx context.Context, raw json.RawMessage) (any, error) {
	var ev event
	_ = json.Unmarshal(raw, &ev) // not every event is an object
	lc, _ := lambdacontext.FromContext(ctx)
	switch ev.Op {
	case "error":
		return nil, errors.New("something went wrong!")
	case "panic":
		panic("boom")
	case "sleep":
		time.Sleep(time.Duration(ev.Ms) * time.Millisecond)
		return map[string]string{"slept": "yes"}, nil
	case "context":
		dl, _ := ctx.Deadline()
		return map[string]any{
			"deadlineMs":    dl.UnixMilli(),
			"requestId":     lc.AwsRequestID,
			"invokedArn":    lc.InvokedFunctionArn,
			"clientContext": lc.ClientContext,
			"identity":      lc.Identity,
			"functionName":  lambdacontext.FunctionName,
			"version":       lambdacontext.FunctionVersion,
			"memory":        lambdacontext.MemoryLimitInMB,
			"traceId":       os.Getenv("_X_AMZN_TRACE_ID"),
		}, nil
	case "big":
		return strings.Repeat("x", ev.N), nil
	case "log":
		fmt.Println("a line from the function")
		fmt.Fprintln(os.Stderr, "a line on stderr")
		return "logged", nil
	case "exit":
		os.Exit(3)
	}
	return raw, nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--init-fail" {
		log.Fatal("init failed: missing configuration")
	}
	lambda.Start(handle)
}
