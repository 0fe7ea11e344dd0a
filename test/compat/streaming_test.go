package compat

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/klambda/klambda/activator/functionurl"
	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"

	"github.com/klambda/klambda/internal/sdkbody"
)

// gates is the test's side of the streaming function's gate: the function asks for
// GET /<i> before it writes chunk i, and the answer comes once the test received chunk i-1.
type gates struct {
	mu   sync.Mutex
	open map[int]chan struct{}
	srv  *httptest.Server
}

func newGates(t *testing.T) *gates {
	g := &gates{open: map[int]chan struct{}{}}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		select {
		case <-g.ch(i):
		case <-time.After(5 * time.Second): // the test never received chunk i-1
			w.WriteHeader(http.StatusGatewayTimeout)
		}
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *gates) ch(i int) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.open[i]
	if !ok {
		c = make(chan struct{})
		g.open[i] = c
	}
	return c
}

// release lets the function write chunk i.
func (g *gates) release(i int) { close(g.ch(i)) }

// streamReader reads an InvokeWithResponseStream answer event by event.
type streamReader struct {
	t    *testing.T
	out  *lambda.InvokeWithResponseStreamOutput
	text strings.Builder
	done *types.InvokeWithResponseStreamCompleteEvent
}

// until reads PayloadChunk events until the text received contains want (false when
// the stream completed first).
func (s *streamReader) until(want string) bool {
	s.t.Helper()
	for !strings.Contains(s.text.String(), want) {
		select {
		case ev, ok := <-s.out.GetStream().Events():
			if !ok {
				s.t.Fatalf("stream ended without InvokeComplete (%v) after %q", s.out.GetStream().Err(), s.text.String())
			}
			switch v := ev.(type) {
			case *types.InvokeWithResponseStreamResponseEventMemberPayloadChunk:
				s.text.Write(v.Value.Payload)
			case *types.InvokeWithResponseStreamResponseEventMemberInvokeComplete:
				s.done = &v.Value
				return false
			default:
				s.t.Fatalf("unexpected event %T", ev)
			}
		case <-time.After(60 * time.Second):
			s.t.Fatalf("waited 30 s for %q; got %q", want, s.text.String())
		}
	}
	return true
}

func (s *streamReader) complete() *types.InvokeWithResponseStreamCompleteEvent {
	s.t.Helper()
	if s.done == nil && s.until("\x00never\x00") {
		s.t.Fatal("unreachable")
	}
	return s.done
}

// aws-lambda-ric's streamifyResponse through runtime-shim and the activator to
// aws-sdk-go-v2's InvokeWithResponseStream: each chunk reaches the SDK before the
// function writes the next one (the function waits for the test's gate, which opens
// only once the SDK delivered the previous chunk), and an error thrown mid-stream
// reaches the SDK as InvokeComplete.ErrorCode after the chunks written before it.
func TestNodeStreamingResponseThroughActivator(t *testing.T) {
	cmd := ricCommand(t)
	dir, _ := filepath.Abs("testdata/nodestream")
	p := startPeer(t, peerShim, "10", []string{"LAMBDA_TASK_ROOT=" + dir, "_HANDLER=index.handler", "KLAMBDA_INVOKE_SECRET=" + testrig.Secret}, dir, cmd...)
	rig := testrig.New(testrig.Options{WaitDeadline: 20 * time.Second})
	t.Cleanup(rig.Close)
	rig.Function("streamer", -1, 0)
	rig.Endpoints("streamer", "$LATEST", strings.TrimPrefix(p.url, "http://"))
	c := lambda.New(lambda.Options{BaseEndpoint: aws.String(rig.URL()), Region: "us-east-1", HTTPClient: sdkbody.Client(0),
		Credentials: credentials.NewStaticCredentialsProvider("k", "unused", ""), RetryMaxAttempts: 1})
	ctx := context.Background()
	invoke := func(payload string) *streamReader {
		t.Helper()
		out, err := c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("streamer"), Payload: []byte(payload), LogType: types.LogTypeTail})
		if err != nil {
			t.Fatalf("InvokeWithResponseStream: %v", err)
		}
		t.Cleanup(func() { out.GetStream().Close() })
		return &streamReader{t: t, out: out}
	}

	g := newGates(t)
	const n = 4
	s := invoke(fmt.Sprintf(`{"chunks":%d,"gate":%q}`, n, g.srv.URL))
	expect(t, "content type", aws.ToString(s.out.ResponseStreamContentType), "text/plain")
	for i := 0; i < n; i++ {
		if !s.until(fmt.Sprintf("chunk %d\n", i)) {
			t.Fatalf("completed before chunk %d: %q", i, s.text.String())
		}
		if strings.Contains(s.text.String(), fmt.Sprintf("chunk %d", i+1)) {
			t.Fatalf("chunk %d came before its gate opened", i+1)
		}
		if i+1 < n {
			g.release(i + 1)
		}
	}
	done := s.complete()
	expect(t, "body", s.text.String(), "chunk 0\nchunk 1\nchunk 2\nchunk 3\n")
	expect(t, "error code", aws.ToString(done.ErrorCode), "")
	if aws.ToString(done.LogResult) == "" {
		t.Fatal("InvokeComplete carries no LogResult although LogType Tail was asked")
	}

	// Mid-stream error.
	g = newGates(t)
	s = invoke(fmt.Sprintf(`{"chunks":2,"gate":%q,"fail":true}`, g.srv.URL))
	s.until("chunk 0\n")
	g.release(1)
	done = s.complete()
	expect(t, "partial body", s.text.String(), "chunk 0\nchunk 1\n")
	expect(t, "error code", aws.ToString(done.ErrorCode), "Error")
	expect(t, "error details", aws.ToString(done.ErrorDetails), "the stream broke")

	// awslambda.HttpResponseStream.from: the prelude and its 8 NUL bytes pass through
	// with the function's content type.
	s = invoke(`{"chunks":1,"http":true}`)
	s.complete()
	expect(t, "http content type", aws.ToString(s.out.ResponseStreamContentType), "application/vnd.awslambda.http-integration-response")
	expect(t, "prelude", s.text.String(), `{"statusCode":201,"headers":{"x-custom":"yes"}}`+"\x00\x00\x00\x00\x00\x00\x00\x00chunk 0\n")

	// The buffered Invoke API gets a streaming function's whole response, and its error
	// as a function error.
	out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("streamer"), Payload: []byte(`{"chunks":3}`)})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, "buffered body", string(out.Payload), "chunk 0\nchunk 1\nchunk 2\n")
	out, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("streamer"), Payload: []byte(`{"chunks":1,"fail":true}`)})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, "buffered function error", aws.ToString(out.FunctionError), "Unhandled")
	if m := decode(t, out.Payload); m["errorType"] != "Error" || m["errorMessage"] != "the stream broke" {
		t.Fatalf("buffered error body %s", out.Payload)
	}
}

// streamingRig is the activator in-process (testrig) in front of the shim at addr
// (invoke secret testrig.Secret), and an aws-sdk-go-v2 client of it.
func streamingRig(t *testing.T, addr string) *lambda.Client {
	rig := testrig.New(testrig.Options{WaitDeadline: 20 * time.Second})
	t.Cleanup(rig.Close)
	rig.Function("streamer", -1, 0)
	rig.Endpoints("streamer", "$LATEST", addr)
	return lambda.New(lambda.Options{BaseEndpoint: aws.String(rig.URL()), Region: "us-east-1", HTTPClient: sdkbody.Client(0),
		Credentials: credentials.NewStaticCredentialsProvider("k", "unused", ""), RetryMaxAttempts: 1})
}

// goStreaming checks aws-lambda-go's streamed io.Reader (chunked, error trailers, no
// streaming-mode header) through the shim and the activator, chunk by chunk.
func goStreaming(t *testing.T, c *lambda.Client) {
	ctx := context.Background()
	invoke := func(payload string) *streamReader {
		t.Helper()
		out, err := c.InvokeWithResponseStream(ctx, &lambda.InvokeWithResponseStreamInput{FunctionName: aws.String("streamer"), Payload: []byte(payload)})
		if err != nil {
			t.Fatalf("InvokeWithResponseStream: %v", err)
		}
		t.Cleanup(func() { out.GetStream().Close() })
		return &streamReader{t: t, out: out}
	}
	g := newGates(t)
	s := invoke(fmt.Sprintf(`{"op":"stream","n":3,"gate":%q}`, g.srv.URL))
	for i := 0; i < 3; i++ {
		if !s.until(fmt.Sprintf("%d ", i)) {
			t.Fatalf("completed before chunk %d: %q", i, s.text.String())
		}
		if strings.Contains(s.text.String(), fmt.Sprintf("\n%d ", i+1)) {
			t.Fatalf("chunk %d came before its gate opened", i+1)
		}
		if i < 2 {
			g.release(i + 1)
		}
	}
	expect(t, "error code", aws.ToString(s.complete().ErrorCode), "")
	expect(t, "lines", strings.Count(s.text.String(), "\n"), 3)

	s = invoke(`{"op":"streamfail","n":2}`)
	done := s.complete()
	expect(t, "lines before the error", strings.Count(s.text.String(), "\n"), 2)
	expect(t, "error code", aws.ToString(done.ErrorCode), "errorString")
	expect(t, "error details", aws.ToString(done.ErrorDetails), "the stream broke")
}

// aws-lambda-go's streaming, with runtime-shim in exec mode (the one-container pod).
func TestGoStreamingResponseExec(t *testing.T) {
	p := startPeer(t, peerShim, "10", []string{"KLAMBDA_INVOKE_SECRET=" + testrig.Secret}, t.TempDir(), goFuncBin)
	goStreaming(t, streamingRig(t, strings.TrimPrefix(p.url, "http://")))
}

// The same with runtime-shim as a sidecar and the function in its own "container"
// (wrapped by `runtime-shim pipe`), as in a sidecar pod.
func TestGoStreamingResponseSidecar(t *testing.T) {
	marker := fmt.Sprintf("KLAMBDA_COMPAT_STREAM=%d", time.Now().UnixNano())
	invokeAddr, apiAddr, _, _ := startSidecarShim(t, marker, testrig.Secret, "AWS_LAMBDA_FUNCTION_TIMEOUT=10", "AWS_LAMBDA_FUNCTION_NAME=side")
	waitListenAddr(t, invokeAddr)
	startKubelet(t, []string{marker, "AWS_LAMBDA_RUNTIME_API=" + apiAddr}, shimBin, "pipe", "--", goFuncBin)
	goStreaming(t, streamingRig(t, invokeAddr))
}

// aws-lambda-ric's streamifyResponse through runtime-shim and the activator to an HTTP
// client of a RESPONSE_STREAM function URL: each chunk reaches the client before the
// function writes the next (the gate opens only once the client has read the previous
// one); HttpResponseStream.from's prelude becomes the status and headers (and is not in
// the body); an error thrown mid-stream aborts the answer after the chunks written before
// it; one thrown before any write answers 502.
func TestNodeStreamingFunctionURL(t *testing.T) {
	cmd := ricCommand(t)
	dir, _ := filepath.Abs("testdata/nodestream")
	p := startPeer(t, peerShim, "10", []string{"LAMBDA_TASK_ROOT=" + dir, "_HANDLER=index.handler", "KLAMBDA_INVOKE_SECRET=" + testrig.Secret}, dir, cmd...)
	u := streamingURL(t, strings.TrimPrefix(p.url, "http://"))
	post := func(event string) *http.Response { return postURL(t, u, event) }
	line := func(br *bufio.Reader) string { return readChunk(t, br) }

	g := newGates(t)
	const n = 4
	resp := post(fmt.Sprintf(`{"chunks":%d,"gate":%q}`, n, g.srv.URL))
	expect(t, "status", resp.StatusCode, 200)
	expect(t, "content type", resp.Header.Get("Content-Type"), "text/plain")
	br := bufio.NewReader(resp.Body)
	for i := 0; i < n; i++ {
		expect(t, "chunk", line(br), fmt.Sprintf("chunk %d\n", i))
		if br.Buffered() > 0 {
			t.Fatalf("more than chunk %d came before its gate opened", i)
		}
		if i+1 < n {
			g.release(i + 1)
		}
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after the last chunk: %q %v", rest, err)
	}

	// HttpResponseStream.from: its status and headers; the body without the prelude.
	resp = post(`{"chunks":2,"http":true}`)
	b, err := io.ReadAll(resp.Body)
	expect(t, "prelude status", resp.StatusCode, 201)
	expect(t, "prelude header", resp.Header.Get("X-Custom"), "yes")
	if err != nil || string(b) != "chunk 0\nchunk 1\n" {
		t.Fatalf("body after the prelude: %q %v", b, err)
	}

	// Thrown mid-stream: the chunks before it, then an aborted answer.
	g = newGates(t)
	resp = post(fmt.Sprintf(`{"chunks":2,"gate":%q,"fail":true}`, g.srv.URL))
	br = bufio.NewReader(resp.Body)
	expect(t, "chunk before the error", line(br), "chunk 0\n")
	g.release(1)
	expect(t, "chunk before the error", line(br), "chunk 1\n")
	if rest, err := io.ReadAll(br); err == nil {
		t.Fatalf("a mid-stream error ended the answer as complete (after %q)", rest)
	}

	// Thrown before any write: 502.
	resp = post(`{"chunks":0,"fail":true}`)
	b, _ = io.ReadAll(resp.Body)
	expect(t, "error before any write", resp.StatusCode, 502)
	expect(t, "502 body", string(b), functionurl.MsgInternalServerError)
}

// streamingURL is the activator in-process (testrig) in front of the shim at addr, and
// the path-based address of a RESPONSE_STREAM function URL of its function.
func streamingURL(t *testing.T, addr string) string {
	rig := testrig.New(testrig.Options{WaitDeadline: 20 * time.Second})
	t.Cleanup(rig.Close)
	rig.Function("streamer", -1, 0)
	rig.Endpoints("streamer", "$LATEST", addr)
	f := &lambdav1alpha1.Function{ObjectMeta: metav1.ObjectMeta{Namespace: testrig.Namespace, Name: "streamer", UID: "uid-streamer"}}
	f.Spec.FunctionURLConfig = &lambdav1alpha1.FunctionURLConfig{AuthType: lambdav1alpha1.FunctionURLAuthNone, InvokeMode: lambdav1alpha1.InvokeModeResponseStream}
	urls := &functionurl.Handler{Table: functionurl.NewTable(), API: rig.Handler, Invoker: rig.Core, AccountID: rig.Core.AccountID}
	urls.Table.SetFunction(f)
	srv := httptest.NewServer(urls.Wrap(rig.Handler))
	t.Cleanup(srv.Close)
	return srv.URL + contract.FunctionURLPathPrefix + contract.FunctionURLID(string(f.UID), f.Namespace, f.Name, "") + "/"
}

func postURL(t *testing.T, u, event string) *http.Response {
	t.Helper()
	resp, err := http.Post(u, "application/json", strings.NewReader(event))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readChunk(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	l, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading a chunk: %q %v", l, err)
	}
	return l
}

// aws-lambda-go's events.LambdaFunctionURLStreamingResponse (its own prelude writer)
// through runtime-shim and the activator to a RESPONSE_STREAM function URL: the prelude's
// status, headers and cookie; each chunk before the next is written; an error after the
// chunks aborts the answer.
func TestGoStreamingFunctionURL(t *testing.T) {
	p := startPeer(t, peerShim, "10", []string{"KLAMBDA_INVOKE_SECRET=" + testrig.Secret}, t.TempDir(), goFuncBin)
	u := streamingURL(t, strings.TrimPrefix(p.url, "http://"))
	g := newGates(t)
	resp := postURL(t, u, fmt.Sprintf(`{"op":"urlstream","n":3,"gate":%q}`, g.srv.URL))
	expect(t, "status", resp.StatusCode, 201)
	expect(t, "content type", resp.Header.Get("Content-Type"), "text/plain")
	expect(t, "header", resp.Header.Get("X-Custom"), "yes")
	expect(t, "cookie", resp.Header.Get("Set-Cookie"), "a=1")
	br := bufio.NewReader(resp.Body)
	for i := 0; i < 3; i++ {
		if l := readChunk(t, br); !strings.HasPrefix(l, fmt.Sprintf("%d ", i)) {
			t.Fatalf("chunk %d: %q", i, l)
		}
		if br.Buffered() > 0 {
			t.Fatalf("more than chunk %d came before its gate opened", i)
		}
		if i < 2 {
			g.release(i + 1)
		}
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after the last chunk: %q %v", rest, err)
	}
	resp = postURL(t, u, `{"op":"urlstreamfail","n":2}`)
	b, err := io.ReadAll(resp.Body)
	if err == nil || resp.StatusCode != 201 || strings.Count(string(b), "\n") != 2 {
		t.Fatalf("error after 2 chunks: %d %q %v", resp.StatusCode, b, err)
	}
}
