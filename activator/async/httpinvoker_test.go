package async

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/klambda/klambda/activator/invoke"
)

func TestHTTPInvokerMapsTheInvokeAPI(t *testing.T) {
	var got *http.Request
	var body []byte
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, body = r, must(io.ReadAll(r.Body))
		switch r.URL.Query().Get("Qualifier") {
		case "throttled":
			w.Header().Set("X-Amzn-Errortype", "TooManyRequestsException")
			w.WriteHeader(429)
			_, _ = w.Write([]byte(`{"Type":"User","message":"Rate Exceeded."}`))
		case "broken":
			w.Header().Set("X-Amz-Executed-Version", "3")
			w.Header().Set("X-Amz-Function-Error", "Unhandled")
			_, _ = w.Write([]byte(`{"errorMessage":"boom"}`))
		default:
			w.Header().Set("X-Amz-Executed-Version", "$LATEST")
			_, _ = w.Write([]byte(`{"ok":1}`))
		}
	})
	inv := HTTPInvoker{Handler: h}
	res, err := inv.Invoke(context.Background(), InvokeRequest{RequestID: "r-1", Namespace: "team-a", Function: "fn",
		Payload: []byte(`{"x":1}`), ClientContext: "e30=", TraceID: "Root=1-abc"})
	if err != nil {
		t.Fatal(err)
	}
	if got.URL.Path != "/namespaces/team-a/2015-03-31/functions/fn/invocations" || got.Header.Get("X-Amz-Invocation-Type") != "RequestResponse" ||
		got.Header.Get(invoke.HeaderAsyncRequestID) != "r-1" || got.Header.Get("X-Amz-Client-Context") != "e30=" ||
		got.Header.Get("X-Amzn-Trace-Id") != "Root=1-abc" || string(body) != `{"x":1}` {
		t.Errorf("request %s %v %s", got.URL, got.Header, body)
	}
	if res.StatusCode != 200 || res.ExecutedVersion != "$LATEST" || res.FunctionError != "" || string(res.Payload) != `{"ok":1}` ||
		res.outcome() != outcomeSuccess {
		t.Errorf("success %+v", res)
	}
	res, _ = inv.Invoke(context.Background(), InvokeRequest{Namespace: "n", Function: "fn", Qualifier: "broken"})
	if res.StatusCode != 200 || res.ExecutedVersion != "3" || res.FunctionError != "Unhandled" || res.outcome() != outcomeFunctionError {
		t.Errorf("function error %+v", res)
	}
	res, _ = inv.Invoke(context.Background(), InvokeRequest{Namespace: "n", Function: "fn", Qualifier: "throttled"})
	if res.StatusCode != 429 || res.outcome() != outcomeRetryable {
		t.Errorf("throttle %+v", res)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
