package functionurl

import (
	"net/http"
	"testing"
)

// The guide's three output examples and its cookies example
// (awsdocs/aws-lambda-developer-guide doc_source/urls-invocation.md, "Response payload
// format" and "Cookies"), then responses Lambda cannot read.
func TestInterpretGuideExamples(t *testing.T) {
	for _, c := range []struct {
		name, out   string
		status      int
		ctype, body string
		header      map[string]string
		cookies     []string
	}{
		{"string", `"Hello, world!"`, 200, "application/json", `"Hello, world!"`, nil, nil},
		{"JSON without statusCode", `{"message": "Hello, world!"}`, 200, "application/json", `{"message": "Hello, world!"}`, nil, nil},
		{"custom", `{"statusCode": 201, "headers": {"Content-Type": "application/json", "My-Custom-Header": "Custom Value"},
		  "body": "{\"message\":\"Hello, world!\"}", "isBase64Encoded": false}`,
			201, "application/json", `{"message":"Hello, world!"}`, map[string]string{"My-Custom-Header": "Custom Value"}, nil},
		{"cookies", `{"statusCode": 201, "headers": {"Content-Type": "application/json"}, "body": "x",
		  "cookies": ["Cookie_1=Value1; Expires=21 Oct 2021 07:48 GMT", "Cookie_2=Value2; Max-Age=78000"]}`,
			201, "application/json", "x", nil, []string{"Cookie_1=Value1; Expires=21 Oct 2021 07:48 GMT", "Cookie_2=Value2; Max-Age=78000"}},
		{"base64 body", `{"statusCode": 200, "headers": {"content-type": "image/png"}, "body": "AP8=", "isBase64Encoded": true}`,
			200, "image/png", "\x00\xff", nil, nil},
		{"no headers: application/json", `{"statusCode": 404}`, 404, "application/json", "", nil, nil},
		{"number", `42`, 200, "application/json", `42`, nil, nil},
		{"null", `null`, 200, "application/json", `null`, nil, nil},
		{"string statusCode", `{"statusCode": "202", "body": ""}`, 202, "application/json", "", nil, nil},
		{"hop-by-hop headers dropped", `{"statusCode": 200, "headers": {"Content-Length": "99", "X-N": 5}, "body": "ab"}`,
			200, "application/json", "ab", map[string]string{"Content-Length": "", "X-N": "5"}, nil},
		// Unreadable response objects: 502 Internal Server Error.
		{"statusCode not a number", `{"statusCode": "abc"}`, 502, "application/json", MsgInternalServerError, nil, nil},
		{"statusCode out of range", `{"statusCode": 99}`, 502, "application/json", MsgInternalServerError, nil, nil},
		{"body an object", `{"statusCode": 200, "body": {"a": 1}}`, 502, "application/json", MsgInternalServerError, nil, nil},
		{"headers an array", `{"statusCode": 200, "headers": ["a"]}`, 502, "application/json", MsgInternalServerError, nil, nil},
		{"bad base64", `{"statusCode": 200, "body": "%%%", "isBase64Encoded": true}`, 502, "application/json", MsgInternalServerError, nil, nil},
		{"header with a newline", `{"statusCode": 200, "headers": {"X": "a\nb"}}`, 502, "application/json", MsgInternalServerError, nil, nil},
		{"cookies not strings", `{"statusCode": 200, "cookies": [1]}`, 502, "application/json", MsgInternalServerError, nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := Interpret([]byte(c.out))
			if r.StatusCode != c.status || r.Header.Get("Content-Type") != c.ctype || string(r.Body) != c.body {
				t.Errorf("got %d %q %q", r.StatusCode, r.Header.Get("Content-Type"), r.Body)
			}
			for k, v := range c.header {
				if r.Header.Get(k) != v {
					t.Errorf("header %s = %q, want %q", k, r.Header.Get(k), v)
				}
			}
			if got := r.Header.Values("Set-Cookie"); len(got) != len(c.cookies) || (len(got) > 0 && (got[0] != c.cookies[0] || got[1] != c.cookies[1])) {
				t.Errorf("set-cookie %q, want %q", got, c.cookies)
			}
		})
	}
	if r := InternalServerError(); r.StatusCode != http.StatusBadGateway {
		t.Error(r.StatusCode)
	}
}
