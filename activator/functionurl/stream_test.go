package functionurl

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/klambda/klambda/activator/invoke"
	"github.com/klambda/klambda/activator/testrig"
	"github.com/klambda/klambda/api/contract"
	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
)

// fnStream is a streamed Output's body the test writes piece by piece; on its end the
// outcome fields are set, as invoke's streamed bodies do from the shim's trailers.
type fnStream struct {
	pr     *io.PipeReader
	pw     *io.PipeWriter
	out    *invoke.Output
	fnErr  string
	cutOff bool
}

func (s *fnStream) Read(p []byte) (int, error) {
	n, err := s.pr.Read(p)
	if errors.Is(err, io.EOF) {
		if s.cutOff {
			return n, io.ErrUnexpectedEOF
		}
		s.out.Complete = true
		s.out.FunctionError = s.fnErr
	}
	return n, err
}

func (s *fnStream) Close() error { return s.pr.Close() }

// streaming makes an invoker whose every invocation is a stream of content type ct fed
// through the channel it returns.
func streaming(ct string, streams chan *fnStream) func(*invoke.Input) (*invoke.Output, error) {
	return func(in *invoke.Input) (*invoke.Output, error) {
		pr, pw := io.Pipe()
		out := &invoke.Output{StatusCode: 200, RequestID: in.RequestID, ContentType: ct, ContentLength: -1, Streamed: true}
		s := &fnStream{pr: pr, pw: pw, out: out}
		out.Body = s
		streams <- s
		return out, nil
	}
}

func streamURL(t *testing.T) (*rigURL, *fakeInvoker, string) {
	inv := &fakeInvoker{}
	x := newRigURL(t, testrig.Options{}, inv)
	f := function("s", &lambdav1alpha1.FunctionURLConfig{AuthType: lambdav1alpha1.FunctionURLAuthNone,
		InvokeMode: lambdav1alpha1.InvokeModeResponseStream})
	x.table.SetFunction(f)
	return x, inv, urlOf(x.srv.URL, f)
}

// get starts a request to u in the background; the answer comes on the channel.
func get(u string) chan *http.Response {
	c := make(chan *http.Response, 1)
	go func() {
		resp, err := http.Get(u)
		if err != nil {
			close(c)
			return
		}
		c <- resp
	}()
	return c
}

func recv[T any](t *testing.T, c chan T) T {
	t.Helper()
	select {
	case v, ok := <-c:
		if !ok {
			t.Fatal("request failed")
		}
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("nothing within 10 s")
	}
	var zero T
	return zero
}

// readLine reads one line of the body within 10 s.
func readLine(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	c := make(chan string, 1)
	go func() {
		l, err := br.ReadString('\n')
		if err != nil {
			l = "ERROR " + err.Error()
		}
		c <- l
	}()
	return recv(t, c)
}

// A RESPONSE_STREAM URL asks for the response stream and relays each piece the function
// writes to the client before the function writes the next (the test writes piece 2
// only once the client has read piece 1), with the function's content type.
func TestURLStreamRelaysPiecesAsWritten(t *testing.T) {
	x, inv, u := streamURL(t)
	streams := make(chan *fnStream, 1)
	inv.fn = streaming("text/plain", streams)
	answer := get(u + "sse")
	s := recv(t, streams)
	if !inv.last.ResponseStream {
		t.Fatal("the invocation did not ask for the response stream")
	}
	_, _ = io.WriteString(s.pw, "piece 1\n")
	resp := recv(t, answer)
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/plain" || resp.Header.Get(contract.HeaderRequestID) == "" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	br := bufio.NewReader(resp.Body)
	expectEq(t, "first piece", readLine(t, br), "piece 1\n")
	_, _ = io.WriteString(s.pw, "piece 2\n")
	expectEq(t, "second piece", readLine(t, br), "piece 2\n")
	s.pw.Close()
	rest, err := io.ReadAll(br)
	if err != nil || len(rest) != 0 {
		t.Fatalf("end of a complete stream: %q %v", rest, err)
	}
	_ = x
}

// awslambda.HttpResponseStream.from's prelude (JSON metadata, 8 NUL bytes), even split
// across writes, gives the status, headers and cookies; the body follows as written.
func TestURLStreamPrelude(t *testing.T) {
	_, inv, u := streamURL(t)
	streams := make(chan *fnStream, 1)
	inv.fn = streaming(PreludeContentType, streams)
	answer := get(u)
	s := recv(t, streams)
	_, _ = io.WriteString(s.pw, `{"statusCode":201,"headers":{"x-custom":"yes","Content-Type":"text/event-stream"},`)
	_, _ = io.WriteString(s.pw, `"cookies":["a=1","b=2"]}`+"\x00\x00\x00\x00")
	_, _ = io.WriteString(s.pw, "\x00\x00\x00\x00data: 1\n")
	resp := recv(t, answer)
	defer resp.Body.Close()
	if resp.StatusCode != 201 || resp.Header.Get("X-Custom") != "yes" || resp.Header.Get("Content-Type") != "text/event-stream" ||
		strings.Join(resp.Header.Values("Set-Cookie"), ";") != "a=1;b=2" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	br := bufio.NewReader(resp.Body)
	expectEq(t, "first body piece", readLine(t, br), "data: 1\n")
	_, _ = io.WriteString(s.pw, "data: 2\n")
	s.pw.Close()
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "data: 2\n" {
		t.Fatalf("rest %q %v", rest, err)
	}

	// Without statusCode or content-type: 200, application/octet-stream.
	answer = get(u)
	s = recv(t, streams)
	_, _ = io.WriteString(s.pw, `{"headers":{"x-a":"b"}}`+"\x00\x00\x00\x00\x00\x00\x00\x00body")
	s.pw.Close()
	resp = recv(t, answer)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/octet-stream" || resp.Header.Get("X-A") != "b" || string(b) != "body" {
		t.Fatalf("defaults: %d %v %q", resp.StatusCode, resp.Header, b)
	}
}

// What Lambda cannot read, and failures: 502 before the answer began; after it, the
// answer is aborted (the client's read fails) rather than ended as if complete.
func TestURLStreamFailures(t *testing.T) {
	_, inv, u := streamURL(t)
	streams := make(chan *fnStream, 1)
	for _, c := range []struct {
		name, ct, written string
		fnErr             string
		cutOff            bool
	}{
		{"error before any byte", "text/plain", "", "Unhandled", false},
		{"cut off before any byte", "text/plain", "", "", true},
		{"prelude not JSON", PreludeContentType, "nope\x00\x00\x00\x00\x00\x00\x00\x00body", "", false},
		{"prelude with a bad status", PreludeContentType, `{"statusCode":"x"}` + "\x00\x00\x00\x00\x00\x00\x00\x00body", "", false},
		{"prelude without its delimiter", PreludeContentType, `{"statusCode":200}`, "", false},
		{"prelude too long", PreludeContentType, `{"headers":{"x":"` + strings.Repeat("a", MaxPrelude) + `"}}` + "\x00\x00\x00\x00\x00\x00\x00\x00", "", false},
		{"error after the prelude, before the body", PreludeContentType, `{"statusCode":200}` + "\x00\x00\x00\x00\x00\x00\x00\x00", "Unhandled", false},
	} {
		inv.fn = streaming(c.ct, streams)
		answer := get(u)
		s := recv(t, streams)
		s.fnErr, s.cutOff = c.fnErr, c.cutOff
		go func() { _, _ = io.WriteString(s.pw, c.written); s.pw.Close() }()
		resp := recv(t, answer)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 502 || string(b) != MsgInternalServerError {
			t.Errorf("%s: %d %q", c.name, resp.StatusCode, b)
		}
	}

	// Mid-stream: the client has the pieces written before, then a failed read.
	for _, cut := range []bool{false, true} {
		inv.fn = streaming("text/plain", streams)
		answer := get(u)
		s := recv(t, streams)
		_, _ = io.WriteString(s.pw, "piece 1\n")
		resp := recv(t, answer)
		br := bufio.NewReader(resp.Body)
		expectEq(t, "piece before the error", readLine(t, br), "piece 1\n")
		s.fnErr, s.cutOff = "Unhandled", cut
		if cut {
			s.fnErr = ""
		}
		s.pw.Close()
		rest, err := io.ReadAll(br)
		resp.Body.Close()
		if err == nil {
			t.Errorf("mid-stream failure (cut off %v): the answer ended as complete after %q", cut, rest)
		}
	}
}

// A function that does not stream, on a RESPONSE_STREAM URL: its payload as written (not
// read as a response object), 200 application/json; its function error: 502.
func TestURLStreamWholeResponse(t *testing.T) {
	_, inv, u := streamURL(t)
	inv.fn = result(`{"statusCode":418,"body":"teapot"}`, "")
	resp, b := do(t, mustReq(http.MethodGet, u, ""))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || string(b) != `{"statusCode":418,"body":"teapot"}` {
		t.Errorf("whole response: %d %v %q", resp.StatusCode, resp.Header, b)
	}
	inv.fn = result(`{"errorMessage":"boom"}`, "Unhandled")
	resp, b = do(t, mustReq(http.MethodGet, u, ""))
	if resp.StatusCode != 502 || string(b) != MsgInternalServerError {
		t.Errorf("whole function error: %d %q", resp.StatusCode, b)
	}
	// HEAD: the head only.
	inv.fn = result(`"x"`, "")
	resp, b = do(t, mustReq(http.MethodHead, u, ""))
	if resp.StatusCode != 200 || len(b) != 0 {
		t.Errorf("HEAD: %d %q", resp.StatusCode, b)
	}
}

func expectEq(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s = %q, want %q", what, got, want)
	}
}
