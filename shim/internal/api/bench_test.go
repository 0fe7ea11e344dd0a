package api

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkWarmInvoke measures the shim's own cost of a warm invocation: caller →
// invoke endpoint → /next → /response → caller, all over loopback HTTP with keep-alive,
// with an in-process runtime loop.
func BenchmarkWarmInvoke(b *testing.B) {
	h := newHarness(&testing.T{}, nil)
	defer func() {
		close(h.quit)
		h.env.Shutdown()
	}()
	rt := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	go func() {
		for {
			resp, err := rt.Get(h.rapi.URL + "/2018-06-01/runtime/invocation/next")
			if err != nil || resp.StatusCode != 200 {
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
			r2, err := rt.Post(h.rapi.URL+"/2018-06-01/runtime/invocation/"+id+"/response", "application/json", bytes.NewReader(body))
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, r2.Body)
			r2.Body.Close()
		}
	}()
	caller := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	url := h.invoke.URL + "/2015-03-31/functions/function/invocations"
	payload := `{"hello":"world","n":42}`
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := caller.Post(url, "application/json", strings.NewReader(payload))
		if err != nil {
			b.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != payload {
			b.Fatalf("got %q", got)
		}
	}
}
