// Command fastrecorder is the recorder runtime of test/e2e/recorder.go (recorderBootstrap)
// as a Go binary: the same protocol with the recorder (POST $RECORDER_URL/invoke with the
// event; the answer's first line is "ok" or "error <type>", the rest the body), without
// forking a dozen processes per event. Tests that push thousands of events through a
// recorder function on two shared cores use it (test/e2e/async_kill_test.go).
package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	api := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/invocation/"
	recorder := os.Getenv("RECORDER_URL") + "/invoke"
	c := &http.Client{}
	for {
		resp, err := c.Get(api + "next")
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		event, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id")

		answer := []byte("error Recorder.Unreachable\nthe test recorder did not answer")
		req, _ := http.NewRequest(http.MethodPost, recorder, bytes.NewReader(event))
		req.Header.Set("X-Request-Id", id)
		req.Header.Set("X-Arn", resp.Header.Get("Lambda-Runtime-Invoked-Function-Arn"))
		req.Header.Set("X-Function", os.Getenv("AWS_LAMBDA_FUNCTION_NAME"))
		req.Header.Set("X-Version", os.Getenv("AWS_LAMBDA_FUNCTION_VERSION"))
		if r, err := c.Do(req); err == nil {
			if r.StatusCode == http.StatusOK {
				answer, _ = io.ReadAll(r.Body)
			}
			r.Body.Close()
		}
		first, body, _ := bytes.Cut(answer, []byte("\n"))
		if string(first) == "ok" {
			post(c, api+id+"/response", body, "")
			continue
		}
		typ := strings.TrimPrefix(string(first), "error ")
		msg, _ := json.Marshal(map[string]string{"errorType": typ, "errorMessage": string(body)})
		post(c, api+id+"/error", msg, typ)
	}
}

func post(c *http.Client, url string, body []byte, errorType string) {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if errorType != "" {
		req.Header.Set("Lambda-Runtime-Function-Error-Type", errorType)
	}
	if r, err := c.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
}
