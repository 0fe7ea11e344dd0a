package invoke_test

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/klambda/klambda/activator/testrig"
)

// nextEvent waits for the stream's next event.
func nextEvent(t *testing.T, out *lambda.InvokeWithResponseStreamOutput) types.InvokeWithResponseStreamResponseEvent {
	t.Helper()
	select {
	case ev, ok := <-out.GetStream().Events():
		if !ok {
			t.Fatalf("the event stream ended early: %v", out.GetStream().Err())
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
	}
	return nil
}

func expect(t *testing.T, what string, got, want any) {
	t.Helper()
	if got != want {
		t.Fatalf("%s = %#v, want %#v", what, got, want)
	}
}

func expectChunk(t *testing.T, out *lambda.InvokeWithResponseStreamOutput, want string) {
	t.Helper()
	ev := nextEvent(t, out)
	c, ok := ev.(*types.InvokeWithResponseStreamResponseEventMemberPayloadChunk)
	if !ok {
		t.Fatalf("event %T, want a PayloadChunk %q", ev, want)
	}
	if got := string(c.Value.Payload); got != want {
		t.Fatalf("chunk %q, want %q", got, want)
	}
}

func expectComplete(t *testing.T, out *lambda.InvokeWithResponseStreamOutput) types.InvokeWithResponseStreamCompleteEvent {
	t.Helper()
	ev := nextEvent(t, out)
	c, ok := ev.(*types.InvokeWithResponseStreamResponseEventMemberInvokeComplete)
	if !ok {
		t.Fatalf("event %T, want InvokeComplete", ev)
	}
	if _, more := <-out.GetStream().Events(); more {
		t.Fatal("an event after InvokeComplete")
	}
	if err := out.GetStream().Err(); err != nil {
		t.Fatalf("stream error: %v", err)
	}
	return c.Value
}

// aws-sdk-go-v2's InvokeWithResponseStream receives each piece the function streams
// before the function writes the next (the fake environment writes the next piece
// only once the test has received the previous one), and the environment stays leased
// until the stream ends.
func TestInvokeWithResponseStreamSDK(t *testing.T) {
	r := testrig.New(testrig.Options{Auth: testrig.Tokens{"good": "system:serviceaccount:default:caller", "nope": "denied"}})
	t.Cleanup(r.Close)
	r.Function("f", -1, 0)
	shims := r.Environments("f", "$LATEST", 1)
	gate := make(chan struct{})
	shims[0].StreamGate = gate
	ctx := context.Background()
	c := sdkClient(r.URL()+"/namespaces/default", "good")

	out, err := c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("f"),
		Payload: []byte(`{"stream":["one ","two ","three"]}`), LogType: types.LogTypeTail})
	if err != nil {
		t.Fatal(err)
	}
	defer out.GetStream().Close()
	expect(t, "status", out.StatusCode, int32(200))
	expect(t, "executed version", aws.ToString(out.ExecutedVersion), "$LATEST")
	expect(t, "content type", aws.ToString(out.ResponseStreamContentType), "text/plain")
	expectChunk(t, out, "one ")
	// The only environment is still held by this stream: another invocation finds none. It
	// goes through a client of its own, bounded, so that its failure (or a slow refusal on
	// a loaded machine) cannot touch the stream's connection (CI once saw the stream's
	// connection closed while this call took 15 s).
	other := sdkClient(r.URL()+"/namespaces/default", "good")
	octx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = other.Invoke(octx, &lambda.InvokeInput{FunctionName: aws.String("f"), Payload: []byte(`{}`)})
	cancel()
	if err == nil {
		t.Fatal("an invocation ran on the environment leased by a stream")
	}
	gate <- struct{}{}
	expectChunk(t, out, "two ")
	gate <- struct{}{}
	expectChunk(t, out, "three")
	done := expectComplete(t, out)
	expect(t, "error code", aws.ToString(done.ErrorCode), "")
	log, _ := base64.StdEncoding.DecodeString(aws.ToString(done.LogResult))
	if !strings.Contains(string(log), "START RequestId") {
		t.Fatalf("log result %q", log)
	}
	// Freed once the stream ended.
	if o, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("f"), Payload: []byte(`{"a":1}`)}); err != nil || string(o.Payload) != `{"a":1}` {
		t.Fatalf("after the stream: %v", err)
	}
}

func TestInvokeWithResponseStreamErrors(t *testing.T) {
	r := compatRig(t)
	ctx := context.Background()
	c := sdkClient(r.URL()+"/namespaces/default", "good")

	// An error mid-stream: what was streamed, then InvokeComplete with the error.
	out, err := c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("f"),
		Payload: []byte(`{"stream":["partial"],"fail":"it broke"}`)})
	if err != nil {
		t.Fatal(err)
	}
	expectChunk(t, out, "partial")
	done := expectComplete(t, out)
	expect(t, "error code", aws.ToString(done.ErrorCode), "errorString")
	expect(t, "error details", aws.ToString(done.ErrorDetails), "it broke")
	out.GetStream().Close()

	// A function that does not stream: its response in one chunk; its error in InvokeComplete.
	out, err = c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("f"), Qualifier: aws.String("prod"), Payload: []byte(`{"x":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, "alias version", aws.ToString(out.ExecutedVersion), "2")
	expectChunk(t, out, `{"x":1}`)
	expect(t, "no error", aws.ToString(expectComplete(t, out).ErrorCode), "")
	out.GetStream().Close()
	out, err = c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("f"), Payload: []byte(`{"fail":"buffered no"}`)})
	if err != nil {
		t.Fatal(err)
	}
	done = expectComplete(t, out)
	expect(t, "buffered error details", aws.ToString(done.ErrorDetails), "buffered no")
	out.GetStream().Close()

	// Errors before the stream are the Invoke API's.
	var nf *types.ResourceNotFoundException
	if _, err := c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("nope"), Payload: []byte(`{}`)}); !errors.As(err, &nf) {
		t.Fatalf("unknown function: %v", err)
	}
	var bad *types.InvalidRequestContentException
	if _, err := c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("f"), Payload: []byte(`{nope`)}); !errors.As(err, &bad) {
		t.Fatalf("not JSON: %v", err)
	}
	var api smithy.APIError
	if _, err := sdkClient(r.URL()+"/namespaces/default", "made-up").InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("f")}); !errors.As(err, &api) || api.ErrorCode() != "UnrecognizedClientException" {
		t.Fatalf("bad token: %v", err)
	}
	if _, err := c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("f"), InvocationType: "Event"}); err == nil || !strings.Contains(err.Error(), "[RequestResponse, DryRun]") {
		t.Fatalf("Event: %v", err)
	}
}
