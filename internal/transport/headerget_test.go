package transport

import (
	"net/http"
	"testing"
)

// headerGet looks names up as they are, which is h.Get only for names in canonical form:
// every one it is given is.
func TestHeaderGetMatchesGet(t *testing.T) {
	h := http.Header{}
	h.Add("connection", "close")
	h.Add("expect", "100-continue")
	h["Content-Encoding"] = []string{}
	h["Transfer-Encoding"] = []string{"chunked", "gzip"}
	for _, k := range []string{"Expect", "Content-Length", "Transfer-Encoding", "Connection", "Content-Encoding"} {
		if c := http.CanonicalHeaderKey(k); c != k {
			t.Errorf("%q is not canonical (%q)", k, c)
		}
		if got, want := headerGet(h, k), h.Get(k); got != want {
			t.Errorf("headerGet(%q) = %q, h.Get: %q", k, got, want)
		}
	}
}
