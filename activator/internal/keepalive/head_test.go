package keepalive

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// heads are answers as shims and peers send them, and variations the plain parse must
// either read exactly as net/http does or leave to it.
var heads = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: application/json\r\nX-Amzn-Requestid: r1\r\n\r\nhello",
	"HTTP/1.1 200 OK\r\nX-Amz-Function-Error: Unhandled\r\nx-amz-log-result: bG9n\r\nContent-Length: 0\r\nDate: Thu, 03 Dec 2026 13:00:00 GMT\r\n\r\n",
	"HTTP/1.1 429 Too Many Requests\r\nX-Amzn-Errortype: TooManyRequestsException\r\nContent-Length: 2\r\n\r\n{}",
	"HTTP/1.1 200\r\nContent-Length: 3\r\n\r\nabc",
	"HTTP/1.1 200 OK\r\nA:  spaced value \t\r\nA: second\r\nEmpty:\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nContent-Length: 007\r\n\r\n1234567",
	"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops",
	// Left to net/http (or refused by it alike).
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
	"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokk",
	"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nContent-Length: -0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
	"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\n Folded: x\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX: a\x01b\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
	"HTTP/1.1 20x OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nNoLength: 1\r\n\r\nbody",
	"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
	"HTTP/1.1 200 OK\r\nContent-Length: 2",
}

// answer is what a Response says, for comparing two of them.
type answer struct {
	Status                 string
	StatusCode             int
	Proto                  string
	Major, Minor           int
	Header                 http.Header
	ContentLength          int64
	Close                  bool
	TransferEncoding       []string
	Body                   string
	BodyErr                string
	Trailer                http.Header
	NextByte, NextByteErrs string
}

func read(t *testing.T, raw string, parse func(*bufio.Reader) (*http.Response, error)) (answer, error) {
	t.Helper()
	br := bufio.NewReaderSize(strings.NewReader(raw), 4<<10)
	_, _ = br.Peek(1) // the head arrives buffered, as from a connection
	resp, err := parse(br)
	if err != nil {
		return answer{}, err
	}
	b, berr := io.ReadAll(resp.Body)
	a := answer{Status: resp.Status, StatusCode: resp.StatusCode, Proto: resp.Proto, Major: resp.ProtoMajor, Minor: resp.ProtoMinor,
		Header: resp.Header, ContentLength: resp.ContentLength, Close: resp.Close, TransferEncoding: resp.TransferEncoding,
		Body: string(b), Trailer: resp.Trailer}
	if berr != nil {
		a.BodyErr = berr.Error()
	}
	// What follows the answer on the connection is left for the next one.
	next, nerr := br.ReadByte()
	a.NextByte = string(next)
	if nerr != nil {
		a.NextByteErrs = nerr.Error()
	}
	return a, nil
}

func TestFastHeadMatches(t *testing.T) {
	plain := 0
	for _, raw := range heads {
		for _, extra := range []string{"", "HTTP/1.1 200 OK\r\n"} { // a pipelined next answer must stay unread
			raw := raw + extra
			want, werr := read(t, raw, func(br *bufio.Reader) (*http.Response, error) { return http.ReadResponse(br, nil) })
			got, gerr := read(t, raw, readResponse)
			if (werr == nil) != (gerr == nil) || !reflect.DeepEqual(got, want) {
				t.Errorf("%q:\n got %+v, %v\nwant %+v, %v", raw, got, gerr, want, werr)
			}
			br := bufio.NewReader(strings.NewReader(raw))
			_, _ = br.Peek(1)
			if parsePlainHead(br) != nil {
				plain++
			}
		}
	}
	if plain != 16 {
		t.Fatalf("the plain parse read %d of the answers, want 16 (the first 7 and the short body, each with and without a next answer)", plain)
	}
}

// A head that has not all arrived is left to net/http, which waits for the rest.
func TestFastHeadNeedsTheWholeHead(t *testing.T) {
	raw := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	pr, pw := io.Pipe()
	go func() {
		_, _ = io.WriteString(pw, raw[:20])
		_, _ = io.WriteString(pw, raw[20:])
		pw.Close()
	}()
	br := bufio.NewReader(pr)
	_, _ = br.Peek(1)
	if parsePlainHead(br) != nil {
		t.Fatal("parsed a head cut in the middle")
	}
	resp, err := readResponse(br)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.Equal(b, []byte("ok")) {
		t.Fatalf("%d %q", resp.StatusCode, b)
	}
}

func FuzzFastHead(f *testing.F) {
	for _, h := range heads {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		want, werr := read(t, raw, func(br *bufio.Reader) (*http.Response, error) { return http.ReadResponse(br, nil) })
		got, gerr := read(t, raw, readResponse)
		if (werr == nil) != (gerr == nil) || !reflect.DeepEqual(got, want) {
			t.Errorf("%q:\n got %+v, %v\nwant %+v, %v", raw, got, gerr, want, werr)
		}
	})
}

type headOnly string

func (h headOnly) WriteHead(w *bufio.Writer) { _, _ = w.WriteString(string(h)) }

// Over a connection, Do reads a plain answer with the plain parse (it waits for the
// answer's first bytes before looking at what is buffered), and a chunked one with
// net/http's.
func TestDoReadsPlainAnswersWithThePlainParse(t *testing.T) {
	answers := []string{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"}
	for i, answer := range answers {
		client, server := net.Pipe()
		go func() {
			br := bufio.NewReader(server)
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond) // the client is waiting for the answer by now
			_, _ = io.WriteString(server, answer)
		}()
		p := New(func(context.Context, string, string) (net.Conn, error) { return client, nil })
		resp, err := p.Do(context.Background(), &Request{Addr: "env", Head: headOnly("GET / HTTP/1.1\r\nHost: env\r\n\r\n")})
		if err != nil {
			t.Fatal(err)
		}
		_, plain := resp.Body.(*body).r.(*plainBody)
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "ok" || plain != (i == 0) {
			t.Fatalf("answer %d: body %q, plain parse %v", i, b, plain)
		}
		client.Close()
		server.Close()
	}
}
