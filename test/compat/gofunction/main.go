// Command gofunction is a Lambda function built on github.com/aws/aws-lambda-go, used by
// the compatibility tests (build it with -tags lambda.norpc). The event's "op" field picks
// the behaviour; without one it echoes the event.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type event struct {
	Op   string `json:"op"`
	Ms   int    `json:"ms"`
	N    int    `json:"n"`
	Gate string `json:"gate"`
}

func handle(ctx context.Context, raw json.RawMessage) (any, error) {
	var ev event
	_ = json.Unmarshal(raw, &ev) // not every event is an object
	var url events.LambdaFunctionURLRequest
	if json.Unmarshal(raw, &url) == nil && url.Version == "2.0" && url.RequestContext.RequestID != "" {
		_ = json.Unmarshal([]byte(url.Body), &ev) // through a function URL: the event is the body
	}
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
	case "stream", "streamfail":
		return stream(ev), nil
	case "urlstream", "urlstreamfail":
		// A RESPONSE_STREAM function URL's answer: aws-lambda-go writes the
		// HttpResponseStream prelude (status, headers, cookies, 8 NUL bytes), then the body.
		ev.Op = strings.TrimPrefix(ev.Op, "url")
		return &events.LambdaFunctionURLStreamingResponse{StatusCode: 201, Cookies: []string{"a=1"},
			Headers: map[string]string{"Content-Type": "text/plain", "X-Custom": "yes"}, Body: stream(ev)}, nil
	}
	return raw, nil
}

// stream answers with an io.Reader, which aws-lambda-go streams to the Runtime API as
// it is written (chunked, with the error trailers): N chunks, each "<i> <the wall clock
// in Unix ns when it was written>\n"; before each chunk after the first it waits for GET
// <gate>/<i> to answer when a gate is given, then Ms ms. "streamfail" ends with an error.
func stream(ev event) io.Reader {
	r, w := io.Pipe()
	go func() {
		for i := 0; i < ev.N; i++ {
			if i > 0 && ev.Gate != "" {
				resp, err := http.Get(ev.Gate + "/" + strconv.Itoa(i))
				if err != nil || resp.StatusCode != http.StatusOK {
					w.CloseWithError(fmt.Errorf("gate %d never opened", i))
					return
				}
				resp.Body.Close()
			}
			if i > 0 && ev.Ms > 0 {
				time.Sleep(time.Duration(ev.Ms) * time.Millisecond)
			}
			if _, err := fmt.Fprintf(w, "%d %d\n", i, time.Now().UnixNano()); err != nil {
				return
			}
		}
		if ev.Op == "streamfail" {
			w.CloseWithError(errors.New("the stream broke"))
			return
		}
		w.Close()
	}()
	return r
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--init-fail" {
		log.Fatal("init failed: missing configuration")
	}
	lambda.Start(handle)
}
