package sdkbody

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// closingBody is a request body as aws-sdk-go-v2 makes it: its reads fail once it is
// closed. Its last read (the one that finds EOF) waits up to a second for a close, which
// puts net/http's write loop where the race leaves it.
type closingBody struct {
	r      io.Reader
	once   sync.Once
	closed chan struct{}
}

func (b *closingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 || !errors.Is(err, io.EOF) {
		return n, err
	}
	select {
	case <-b.closed:
		return 0, errors.New("read on closed body")
	case <-time.After(time.Second): // nobody closes it (a caller reading it whole first)
		return 0, io.EOF
	}
}

func (b *closingBody) Close() error { b.once.Do(func() { close(b.closed) }); return nil }

// The caller closes the request body once the answer's head has come, before the answer's
// body is read: through Transport the answer still arrives whole; straight through net/http
// the connection is closed under it (the check that the race is real).
func TestAnswerSurvivesTheCallerClosingTheRequestBody(t *testing.T) {
	for _, c := range []struct {
		name    string
		client  *http.Client
		wantErr bool
	}{
		{"net/http alone", &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}, true},
		{"sdkbody", Client(0), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			rest := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.ReadAll(r.Body)
				_, _ = io.WriteString(w, "first ")
				w.(http.Flusher).Flush()
				<-rest
				_, _ = io.WriteString(w, "second")
			}))
			defer srv.Close()
			body := &closingBody{r: strings.NewReader(`{"event":1}`), closed: make(chan struct{})}
			req, _ := http.NewRequest(http.MethodPost, srv.URL, body)
			req.ContentLength = int64(len(`{"event":1}`))
			resp, err := c.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = body.Close()                   // what the SDK does once the head has come
			time.Sleep(100 * time.Millisecond) // the write loop meets the closed body
			close(rest)
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if c.wantErr {
				if err == nil && string(got) == "first second" {
					t.Fatal("net/http read the whole answer after the request body failed: the race this package avoids is not shown")
				}
				t.Logf("net/http alone: %q, %v", got, err)
				return
			}
			if err != nil || string(got) != "first second" {
				t.Fatalf("answer %q, %v", got, err)
			}
		})
	}
}
