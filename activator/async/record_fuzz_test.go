package async

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// sqsStringOK says whether SQS accepts s as a String message attribute: valid UTF-8 of
// #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF, and not empty.
func sqsStringOK(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		switch {
		case r == 0x9, r == 0xA, r == 0xD, r >= 0x20 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD, r >= 0x10000 && r <= 0x10FFFF:
		default:
			return false
		}
	}
	return true
}

// FuzzDestinationRecord holds the records and dead letters built from what a function
// returned (tenant-controlled bytes) to what every destination accepts: the invocation
// record is valid JSON that carries a JSON payload unchanged, and the dead letter's
// ErrorMessage is at most 1 KB, one line in a NATS header, and an SQS String attribute.
func FuzzDestinationRecord(f *testing.F) {
	for _, seed := range []string{
		``, `{}`, `null`, `"x"`, `{"errorMessage":"boom","errorType":"E"}`, `{"message":"m"}`,
		"not json \xff\xfe", "{\"errorMessage\":\"a\\r\\nInjected: 1\"}", "\x00\x01\x02",
		`{"errorMessage":"` + strings.Repeat("é", 700) + `"}`, strings.Repeat("\xff", 2000),
	} {
		f.Add([]byte(seed), []byte(`{"k":1}`))
	}
	f.Fuzz(func(t *testing.T, response, request []byte) {
		r := newRecord(time.Unix(0, 0), "id", "arn", ConditionRetriesExhausted, 3, request, 200, "$LATEST", "Unhandled", response)
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("record does not marshal: %v", err)
		}
		if !json.Valid(b) {
			t.Fatalf("record is not JSON: %q", b)
		}
		var back struct {
			ResponsePayload json.RawMessage `json:"responsePayload"`
		}
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("record does not read back: %v", err)
		}
		if len(response) > 0 && json.Valid(response) {
			var want, got any
			_ = json.Unmarshal(response, &want)
			_ = json.Unmarshal(back.ResponsePayload, &got)
			wb, _ := json.Marshal(want)
			gb, _ := json.Marshal(got)
			if string(wb) != string(gb) {
				t.Fatalf("JSON payload changed: %s -> %s", wb, gb)
			}
		}
		msg := errorMessage(response, ConditionRetriesExhausted)
		if len(msg) > deadLetterMessageLimit {
			t.Fatalf("ErrorMessage is %d bytes, over %d", len(msg), deadLetterMessageLimit)
		}
		if h := headerValue(msg); strings.ContainsAny(h, "\r\n") {
			t.Fatalf("NATS header value spans lines: %q", h)
		}
		if s := sqsAttribute(msg); !sqsStringOK(s) {
			t.Fatalf("SQS would refuse the ErrorMessage attribute %q", s)
		}
	})
}
