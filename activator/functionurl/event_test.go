package functionurl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// guideRequest is the request of the guide's request payload example
// (awsdocs/aws-lambda-developer-guide doc_source/urls-invocation.md).
func guideRequest(t testing.TB) *http.Request {
	raw := "POST /my/path?parameter1=value1&parameter1=value2&parameter2=value HTTP/1.1\r\n" +
		"Host: abcdefghijklmnopqrstuvwxyz234567.lambda-url.example.com\r\n" +
		"Header1: value1\r\nHeader2: value1\r\nheader2: value2\r\n" +
		"Cookie: cookie1; cookie2\r\nUser-Agent: agent\r\nContent-Type: text/plain\r\nContent-Length: 18\r\n\r\n" +
		"Hello from client!"
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	r.RemoteAddr = "123.123.123.123:40000"
	return r
}

func guideMeta() RequestMeta {
	return RequestMeta{AccountID: "123456789012", URLID: "abcdefghijklmnopqrstuvwxyz234567",
		DomainName: "abcdefghijklmnopqrstuvwxyz234567.lambda-url.example.com", RequestID: "id",
		Received: time.Date(2020, 3, 12, 19, 3, 58, 390e6, time.UTC)}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, got, "", "  "); err != nil {
		t.Fatalf("not JSON: %v: %s", err, got)
	}
	buf.WriteByte('\n')
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("%s differs:\n got: %s\nwant: %s", name, buf.Bytes(), want)
	}
}

// The guide's example, field by field (golden file testdata/event-guide.json, checked
// by hand against the guide's example: version, $default route and stage, raw path
// and query, cookies, comma-joined headers and parameters, requestContext).
func TestEventGuideExample(t *testing.T) {
	r := guideRequest(t)
	body := []byte("Hello from client!")
	ev, err := NewEvent(r, body, guideMeta())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "event-guide.json", b)
	// The guide's values, asserted directly too.
	if ev.QueryStringParameters["parameter1"] != "value1,value2" || ev.Headers["header2"] != "value1,value2" ||
		strings.Join(ev.Cookies, "|") != "cookie1|cookie2" || ev.Headers["cookie"] != "" ||
		ev.RequestContext.Time != "12/Mar/2020:19:03:58 +0000" || ev.RequestContext.TimeEpoch != 1584039838390 ||
		ev.RequestContext.HTTP.SourceIP != "123.123.123.123" || ev.Body != "Hello from client!" || ev.IsBase64Encoded {
		t.Errorf("event: %s", b)
	}
}

// A binary body (no text content type) arrives base64-encoded; no query or cookies:
// rawQueryString "", the others absent; authorizer present when authenticated.
func TestEventBinaryBodyAndAuthorizer(t *testing.T) {
	raw := "PUT /a%20b/c HTTP/1.1\r\nHost: h\r\nContent-Type: application/octet-stream\r\nContent-Length: 4\r\n\r\n\x00\xff\x01\x02"
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	r.RemoteAddr = "10.0.0.1:1"
	m := guideMeta()
	m.Authorizer = &Authorizer{IAM: IAM{AccountID: "123456789012", CallerID: "system:serviceaccount:a:b",
		UserARN: "system:serviceaccount:a:b", UserID: "system:serviceaccount:a:b"}}
	ev, err := NewEvent(r, []byte("\x00\xff\x01\x02"), m)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ev.Marshal()
	golden(t, "event-binary-iam.json", b)
	if !ev.IsBase64Encoded || ev.Body != "AP8BAg==" || ev.RawPath != "/a%20b/c" || ev.RequestContext.HTTP.Path != "/a b/c" {
		t.Errorf("event: %s", b)
	}
}

func TestEventTextTypes(t *testing.T) {
	for ct, text := range map[string]bool{"text/plain; charset=utf-8": true, "application/json": true,
		"application/vnd.api+json": true, "application/xml": true, "": false, "image/png": false,
		"application/x-www-form-urlencoded": false, "bad;;": false} {
		if isText(ct) != text {
			t.Errorf("isText(%q) = %v", ct, !text)
		}
	}
	// Text that is not UTF-8 is sent as binary rather than altered.
	r, _ := http.NewRequest(http.MethodPost, "http://h/", nil)
	r.Header.Set("Content-Type", "text/plain")
	ev, err := NewEvent(r, []byte{0xff, 0xfe}, guideMeta())
	if err != nil || !ev.IsBase64Encoded {
		t.Errorf("non-UTF-8 text: %+v %v", ev, err)
	}
}

func TestEventMalformed(t *testing.T) {
	for _, target := range []string{"http://h/?a=%zz", "http://h/%ff"} {
		r, err := http.NewRequest(http.MethodGet, target, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := NewEvent(r, nil, guideMeta()); err == nil {
			t.Errorf("%s: no error", target)
		} else if _, ok := err.(*MalformedError); !ok {
			t.Errorf("%s: %T", target, err)
		}
	}
	r, _ := http.NewRequest("TRACE", "http://h/", nil)
	if _, err := NewEvent(r, nil, guideMeta()); err == nil {
		t.Error("TRACE accepted")
	}
}

// FuzzEvent: any request the server parses maps to an event or a MalformedError, never a
// panic, and the event is always valid JSON.
func FuzzEvent(f *testing.F) {
	f.Add([]byte("GET /x?a=1&a=2&b HTTP/1.1\r\nHost: h\r\nCookie: a=b; c=d\r\n\r\n"), []byte(""))
	f.Add([]byte("POST /%e2%82%ac?q=%ff HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nX: \xff\r\n\r\n"), []byte("\xff\xfe"))
	f.Add([]byte("PATCH / HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n\r\n"), []byte(`{"a":"\u0000"}`))
	f.Fuzz(func(t *testing.T, head, body []byte) {
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			return
		}
		r.RemoteAddr = "1.2.3.4:5"
		ev, err := NewEvent(r, body, guideMeta())
		if err != nil {
			if _, ok := err.(*MalformedError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		b, err := ev.Marshal()
		if err != nil || !json.Valid(b) {
			t.Fatalf("invalid JSON (%v): %q", err, b)
		}
		var back Event
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if back.IsBase64Encoded == false && back.Body != string(body) && len(body) > 0 {
			t.Fatalf("text body altered: %q → %q", body, back.Body)
		}
	})
}
