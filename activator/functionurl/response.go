package functionurl

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// Response is the HTTP answer Lambda makes of a function's result.
type Response struct {
	StatusCode int
	Header     http.Header
	Body       []byte
}

// Lambda's answers for what is not the function's own response.
const (
	// MsgInternalServerError is the body of a 502 for a function error (a timeout
	// included) or a response object Lambda cannot read.
	MsgInternalServerError = "Internal Server Error"
)

// hopHeaders are not the function's to set: the server frames the answer itself.
var hopHeaders = map[string]bool{"content-length": true, "transfer-encoding": true, "connection": true,
	"keep-alive": true, "upgrade": true, "trailer": true, "te": true, "proxy-connection": true}

// Interpret makes the HTTP answer of a function's successful result (Lambda's rules):
// a JSON object with statusCode is a response object (its statusCode, headers, cookies,
// body, isBase64Encoded); any other JSON value is the body of a 200 with content-type
// application/json. A response object Lambda cannot read answers 502.
func Interpret(payload []byte) *Response {
	trimmed := bytes.TrimSpace(payload)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return jsonValue(payload)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &obj); err != nil {
		return jsonValue(payload)
	}
	sc, ok := obj["statusCode"]
	if !ok {
		return jsonValue(payload)
	}
	resp, ok := responseObject(obj, sc, "application/json")
	if !ok {
		return InternalServerError()
	}
	return resp
}

// InternalServerError is Lambda's 502 for a function error or an unreadable response.
func InternalServerError() *Response {
	return &Response{StatusCode: http.StatusBadGateway,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(MsgInternalServerError)}
}

func jsonValue(payload []byte) *Response {
	return &Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Body: payload}
}

// responseObject reads {statusCode, headers, cookies, body, isBase64Encoded}; false:
// a field of the wrong type, a status outside 100-599, a body that is not base64 while
// isBase64Encoded says so. Without a content-type header, the answer's is ct.
func responseObject(obj map[string]json.RawMessage, rawStatus json.RawMessage, ct string) (*Response, bool) {
	status, ok := statusCode(rawStatus)
	if !ok {
		return nil, false
	}
	r := &Response{StatusCode: status, Header: http.Header{}}
	if raw, ok := obj["headers"]; ok && !isNull(raw) {
		var hs map[string]json.RawMessage
		if json.Unmarshal(raw, &hs) != nil {
			return nil, false
		}
		for k, v := range hs {
			s, ok := scalar(v)
			if !ok || !validHeader(k, s) {
				return nil, false
			}
			if hopHeaders[strings.ToLower(k)] {
				continue
			}
			r.Header.Set(k, s)
		}
	}
	if raw, ok := obj["cookies"]; ok && !isNull(raw) {
		var cs []string
		if json.Unmarshal(raw, &cs) != nil {
			return nil, false
		}
		for _, c := range cs {
			if !validHeader("Set-Cookie", c) {
				return nil, false
			}
			r.Header.Add("Set-Cookie", c)
		}
	}
	var b64 bool
	if raw, ok := obj["isBase64Encoded"]; ok && !isNull(raw) {
		if json.Unmarshal(raw, &b64) != nil {
			return nil, false
		}
	}
	if raw, ok := obj["body"]; ok && !isNull(raw) {
		var body string
		if json.Unmarshal(raw, &body) != nil {
			return nil, false
		}
		if b64 {
			b, err := base64.StdEncoding.DecodeString(body)
			if err != nil {
				return nil, false
			}
			r.Body = b
		} else {
			r.Body = []byte(body)
		}
	}
	if r.Header.Get("Content-Type") == "" {
		r.Header.Set("Content-Type", ct)
	}
	return r, true
}

// statusCode: a JSON integer (or a string holding one, as API Gateway reads it) in
// 100-599.
func statusCode(raw json.RawMessage) (int, bool) {
	var n json.Number
	if json.Unmarshal(raw, &n) != nil {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, false
		}
		n = json.Number(s)
	}
	v, err := strconv.Atoi(string(n))
	if err != nil || v < 100 || v > 599 {
		return 0, false
	}
	return v, true
}

// scalar: a header value given as a string, number or boolean.
func scalar(raw json.RawMessage) (string, bool) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String(), true
	}
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		return strconv.FormatBool(b), true
	}
	return "", false
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// validHeader: a token name and a value without control characters (net/http would
// drop or refuse them).
func validHeader(name, value string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
