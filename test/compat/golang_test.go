package compat

import (
	"encoding/base64"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// shimReportRE is Lambda's REPORT line, tab-separated, Init Duration last and optional.
var shimReportRE = regexp.MustCompile(`(?m)^REPORT RequestId: ([0-9a-f-]{36})\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\tMemory Size: 128 MB\tMax Memory Used: [1-9]\d* MB\t(Init Duration: \d+\.\d\d ms\t)?$`)

func TestGoHandlerEchoErrorAndContext(t *testing.T) {
	bothPeers(t, func(t *testing.T, kind string) {
		p := startPeer(t, kind, "5", nil, "", goFuncBin)
		p.warmUp(t, `"warm"`)

		r := p.invokeJSON(t, `{"hello":"world","n":[1,2,3]}`)
		expect(t, "echo status", r.status, 200)
		expect(t, "echo body", string(r.body), `{"hello":"world","n":[1,2,3]}`)
		expect(t, "echo function error", r.header.Get("X-Amz-Function-Error"), "")

		r = p.invokeJSON(t, `{"op":"error"}`)
		expect(t, "error status", r.status, 200)
		expect(t, "error body", string(r.body), `{"errorMessage":"something went wrong!","errorType":"errorString"}`)
		if kind == peerShim {
			// Lambda marks function errors with X-Amz-Function-Error; the emulator does not.
			expect(t, "function error header", r.header.Get("X-Amz-Function-Error"), "Unhandled")
			expect(t, "executed version", r.header.Get("X-Amz-Executed-Version"), "$LATEST")
		}

		cc := `{"client":{"installation_id":"inst-1","app_title":"app"},"custom":{"k":"v"}}`
		start := time.Now()
		r = p.invoke(t, []byte(`{"op":"context"}`), map[string]string{"X-Amz-Client-Context": base64.StdEncoding.EncodeToString([]byte(cc))})
		end := time.Now()
		expect(t, "context status", r.status, 200)
		got := decode(t, r.body)
		ctx := got["clientContext"].(map[string]any)
		expect(t, "client context custom", ctx["custom"].(map[string]any)["k"], "v")
		expect(t, "client installation id", ctx["Client"].(map[string]any)["installation_id"], "inst-1")
		// The handler's ctx.Deadline() comes from Lambda-Runtime-Deadline-Ms: invoke time + 5 s.
		dl := time.UnixMilli(int64(got["deadlineMs"].(float64)))
		if dl.Before(start.Add(5*time.Second-50*time.Millisecond)) || dl.After(end.Add(5*time.Second+50*time.Millisecond)) {
			t.Fatalf("deadline %v is not invoke time + 5 s (%v..%v)", dl, start, end)
		}
		if kind == peerShim {
			expect(t, "invoked arn", got["invokedArn"], "arn:aws:lambda:us-east-1:000000000000:function:compat")
			expect(t, "function name", got["functionName"], "compat")
			expect(t, "memory", got["memory"], float64(128))
			// With the activator's headers: the caller's qualifier and trace id reach the handler.
			r = p.invoke(t, []byte(`{"op":"context"}`), map[string]string{
				"X-Klambda-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:000000000000:function:compat:prod",
				"X-Amzn-Trace-Id":                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
				"X-Amzn-RequestId":               "11111111-2222-4333-8444-555555555555",
			})
			got = decode(t, r.body)
			expect(t, "qualified arn", got["invokedArn"], "arn:aws:lambda:us-east-1:000000000000:function:compat:prod")
			expect(t, "request id", got["requestId"], "11111111-2222-4333-8444-555555555555")
			expect(t, "trace id", got["traceId"], "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")

			// Logs: function output between START and END, and the tail carries it.
			r = p.invoke(t, []byte(`{"op":"log"}`), map[string]string{"X-Amz-Log-Type": "Tail", "X-Amzn-RequestId": "aaaaaaaa-2222-4333-8444-555555555555"})
			tail, _ := base64.StdEncoding.DecodeString(r.header.Get("X-Amz-Log-Result"))
			want := "START RequestId: aaaaaaaa-2222-4333-8444-555555555555 Version: $LATEST\na line from the function\na line on stderr\nEND RequestId: aaaaaaaa-2222-4333-8444-555555555555\nREPORT RequestId: aaaaaaaa-2222-4333-8444-555555555555\tDuration: "
			if !strings.HasPrefix(string(tail), want) || !shimReportRE.Match(tail) {
				t.Fatalf("tail:\n%s\nwant it to start with:\n%s", tail, want)
			}
			var reports [][]string
			for i := 0; i < 200 && len(reports) < 5; i++ { // the log arrives through a pipe
				reports = shimReportRE.FindAllStringSubmatch(p.logs.String(), -1)
				time.Sleep(10 * time.Millisecond)
			}
			if len(reports) != 5 || reports[0][2] == "" || reports[1][2] != "" {
				t.Fatalf("want 5 REPORT lines, Init Duration on the first only; log:\n%s", p.logs.String())
			}
		} else {
			p.waitLog(t, "REPORT RequestId: ")
		}
	})
}

func TestGoHandlerPanicAndExit(t *testing.T) {
	bothPeers(t, func(t *testing.T, kind string) {
		p := startPeer(t, kind, "5", nil, "", goFuncBin)
		p.warmUp(t, `"warm"`)
		expect(t, "warm up", string(p.invokeJSON(t, `1`).body), "1")

		r := p.invokeJSON(t, `{"op":"panic"}`)
		m := decode(t, r.body)
		expect(t, "panic message", m["errorMessage"], "boom")
		expect(t, "panic type", m["errorType"], "string")
		if kind == peerShim {
			// aws-lambda-go posts the panic as the invocation's error, then exits. Lambda
			// answers with the posted error (a function error, 200); the emulator answers 502
			// because the runtime exited before calling next again.
			expect(t, "panic status", r.status, 200)
			expect(t, "panic function error", r.header.Get("X-Amz-Function-Error"), "Unhandled")
		}
		expect(t, "after panic", string(p.invokeJSON(t, `2`).body), "2")

		r = p.invoke(t, []byte(`{"op":"exit"}`), map[string]string{"X-Amzn-RequestId": "dddddddd-2222-4333-8444-555555555555"})
		m = decode(t, r.body)
		expect(t, "exit type", m["errorType"], "Runtime.ExitError")
		if kind == peerShim {
			expect(t, "exit body", string(r.body), `{"errorMessage":"RequestId: dddddddd-2222-4333-8444-555555555555 Error: Runtime exited with error: exit status 3","errorType":"Runtime.ExitError"}`)
			expect(t, "exit status", r.status, 200) // a function error; the emulator says 502
			expect(t, "exit function error", r.header.Get("X-Amz-Function-Error"), "Unhandled")
		} else {
			expect(t, "exit message", strings.HasSuffix(m["errorMessage"].(string), "Error: Runtime exited with error: exit status 3"), true)
		}
		r = p.invokeJSON(t, `3`)
		expect(t, "after exit", string(r.body), "3")
		if kind == peerShim && r.header.Get("X-Klambda-Init-Duration-Ms") == "" {
			t.Fatal("the invocation after a crash must report Init Duration (new environment)")
		}
	})
}

func TestGoHandlerTimeout(t *testing.T) {
	bothPeers(t, func(t *testing.T, kind string) {
		p := startPeer(t, kind, "1", nil, "", goFuncBin)
		p.warmUp(t, `"warm"`)
		expect(t, "warm up", string(p.invokeJSON(t, `1`).body), "1")
		start := time.Now()
		r := p.invoke(t, []byte(`{"op":"sleep","ms":3000}`), map[string]string{"X-Amzn-RequestId": "eeeeeeee-2222-4333-8444-555555555555"})
		took := time.Since(start)
		expect(t, "timeout status", r.status, 200)
		if took < time.Second || took > 2500*time.Millisecond {
			t.Fatalf("timed out after %v, want about 1 s", took)
		}
		if kind == peerShim {
			expect(t, "timeout body", string(r.body), `{"errorMessage":"RequestId: eeeeeeee-2222-4333-8444-555555555555 Error: Task timed out after 1.00 seconds","errorType":"Sandbox.Timedout"}`)
			expect(t, "function error", r.header.Get("X-Amz-Function-Error"), "Unhandled")
			p.waitLog(t, "eeeeeeee-2222-4333-8444-555555555555 Task timed out after 1.00 seconds\nEND RequestId: eeeeeeee-2222-4333-8444-555555555555\nREPORT RequestId: eeeeeeee-2222-4333-8444-555555555555\tDuration: 1000.00 ms\tBilled Duration: 1000 ms\t")
		} else {
			// The emulator answers plain text (and no X-Amz-Function-Error); Lambda answers
			// the JSON error object above.
			expect(t, "timeout body", string(r.body), "Task timed out after 1.00 seconds")
		}
		r = p.invokeJSON(t, `{"after":"timeout"}`)
		expect(t, "after timeout", string(r.body), `{"after":"timeout"}`)
		if kind == peerShim && r.header.Get("X-Klambda-Init-Duration-Ms") == "" {
			// Both reset the environment; the emulator does not report Init Duration again.
			t.Fatal("the invocation after a timeout must report Init Duration (reset environment)")
		}
	})
}

func TestGoHandlerPayloadLimits(t *testing.T) {
	bothPeers(t, func(t *testing.T, kind string) {
		p := startPeer(t, kind, "30", nil, "", goFuncBin)
		p.warmUp(t, `"warm"`)
		max := 6 * 1024 * 1024
		in := []byte(`"` + strings.Repeat("x", max-2) + `"`)
		r := p.invoke(t, in, nil)
		expect(t, "6 MB status", r.status, 200)
		expect(t, "6 MB echoed", len(r.body), max)

		over := []byte(`"` + strings.Repeat("x", max-1) + `"`)
		r = p.invoke(t, over, nil)
		if kind == peerShim {
			// Lambda rejects the request before running anything; the emulator runs it.
			expect(t, "over status", r.status, 413)
			expect(t, "over type", r.header.Get("X-Amzn-ErrorType"), "RequestTooLargeException")
			expect(t, "over body", string(r.body), `{"Type":"User","message":"Request must be smaller than 6291456 bytes for the InvokeFunction operation"}`)
		}

		// A response one byte over Lambda's 6291556-byte limit.
		r = p.invokeJSON(t, `{"op":"big","n":`+strconv.Itoa(6291556-1)+`}`)
		if kind == peerShim {
			expect(t, "big response status", r.status, 200)
			expect(t, "big response body", string(r.body), `{"errorMessage":"Response payload size exceeded maximum allowed payload size (6291556 bytes).","errorType":"Function.ResponseSizeTooLarge"}`)
			expect(t, "big response error", r.header.Get("X-Amz-Function-Error"), "Unhandled")
		} else {
			// The emulator answers 413 to aws-lambda-go, which then exits: the caller gets
			// 502 and an empty body. Lambda answers Function.ResponseSizeTooLarge (above).
			t.Logf("emulator, response over the limit: %d %q", r.status, tailString(string(r.body), 200))
		}
		// Just under the limit passes.
		r = p.invokeJSON(t, `{"op":"big","n":`+strconv.Itoa(6291556-2)+`}`)
		expect(t, "limit response status", r.status, 200)
		expect(t, "limit response size", len(r.body), 6291556)
		expect(t, "still serving", string(p.invokeJSON(t, `"ok"`).body), `"ok"`)
	})
}

func TestGoHandlerInitError(t *testing.T) {
	bothPeers(t, func(t *testing.T, kind string) {
		p := startPeer(t, kind, "2", nil, "", goFuncBin, "--init-fail")
		r := p.invoke(t, []byte(`{}`), map[string]string{"X-Amzn-RequestId": "ffffffff-2222-4333-8444-555555555555"})
		if kind == peerShim {
			expect(t, "init error status", r.status, 200)
			expect(t, "init error body", string(r.body), `{"errorMessage":"RequestId: ffffffff-2222-4333-8444-555555555555 Error: Runtime exited with error: exit status 1","errorType":"Runtime.ExitError"}`)
			expect(t, "function error", r.header.Get("X-Amz-Function-Error"), "Unhandled")
			// The init log line is in the shim's log; the environment stays up and answers
			// every invoke quickly (crash loop), never hangs.
			p.waitLog(t, "init failed: missing configuration")
			for i := 0; i < 3; i++ {
				start := time.Now()
				r = p.invokeJSON(t, `{}`)
				expect(t, "crash loop type", decode(t, r.body)["errorType"], "Runtime.ExitError")
				if d := time.Since(start); d > 1500*time.Millisecond {
					t.Fatalf("crash-loop invoke took %v", d)
				}
			}
		} else {
			// The emulator answers an empty body (its log says Sandbox.Failure); Lambda
			// answers the Runtime.ExitError object.
			t.Logf("emulator, init failure: %d %q", r.status, r.body)
		}
	})
}

// A runtime command that cannot start (Lambda: a bad ENTRYPOINT or bootstrap).
func TestInvalidEntrypoint(t *testing.T) {
	p := startPeer(t, peerShim, "2", nil, "", "/nonexistent/bootstrap")
	r := p.invoke(t, []byte(`{}`), map[string]string{"X-Amzn-RequestId": "0badc0de-2222-4333-8444-555555555555"})
	expect(t, "status", r.status, 200)
	expect(t, "function error", r.header.Get("X-Amz-Function-Error"), "Unhandled")
	expect(t, "body", string(r.body), `{"errorMessage":"RequestId: 0badc0de-2222-4333-8444-555555555555 Error: fork/exec /nonexistent/bootstrap: no such file or directory","errorType":"Runtime.InvalidEntrypoint"}`)
	expect(t, "readyz", p.status(t, "/readyz"), 503)
}
