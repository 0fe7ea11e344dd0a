package compat

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The AWS CLI (an SDK client this project did not write) reads the shim's invoke answers:
// status code, FunctionError, ExecutedVersion, LogResult, and invocation errors.
func TestAWSCLIInvoke(t *testing.T) {
	const cli = "/usr/bin/aws" // Debian's awscli v2; an earlier pyenv "aws" may be v1
	if _, err := os.Stat(cli); err != nil {
		t.Skip("AWS CLI v2 not installed at /usr/bin/aws (apt-get install -y awscli)")
	}
	p := startPeer(t, peerShim, "5", nil, "", goFuncBin)
	tmp := t.TempDir()
	invoke := func(payload string, extra ...string) (map[string]any, string, error) {
		out := filepath.Join(tmp, "out.json")
		args := append([]string{"lambda", "invoke", "--endpoint-url", p.url, "--function-name", "function",
			"--cli-binary-format", "raw-in-base64-out", "--payload", payload}, extra...)
		cmd := exec.Command(cli, append(args, out)...)
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=x", "AWS_SECRET_ACCESS_KEY=y", "AWS_DEFAULT_REGION=us-east-1", "AWS_MAX_ATTEMPTS=1", "AWS_PAGER=")
		stdout, err := cmd.Output()
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				return nil, string(ee.Stderr), err
			}
			t.Fatal(err)
		}
		var meta map[string]any
		if err := json.Unmarshal(stdout, &meta); err != nil {
			t.Fatalf("CLI output %q", stdout)
		}
		body, _ := os.ReadFile(out)
		return meta, string(body), nil
	}

	meta, body, err := invoke(`{"a":42}`, "--log-type", "Tail")
	if err != nil {
		t.Fatalf("invoke: %v %s", err, body)
	}
	expect(t, "StatusCode", meta["StatusCode"], float64(200))
	expect(t, "ExecutedVersion", meta["ExecutedVersion"], "$LATEST")
	expect(t, "body", body, `{"a":42}`)
	tail, _ := base64.StdEncoding.DecodeString(meta["LogResult"].(string))
	if !strings.HasPrefix(string(tail), "START RequestId: ") || !shimReportRE.Match(tail) {
		t.Fatalf("LogResult %q", tail)
	}

	meta, body, err = invoke(`{"op":"error"}`)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, "FunctionError", meta["FunctionError"], "Unhandled")
	expect(t, "error body", body, `{"errorMessage":"something went wrong!","errorType":"errorString"}`)

	_, stderr, err := invoke(`{not json`)
	if err == nil || !strings.Contains(stderr, "An error occurred (InvalidRequestContentException) when calling the Invoke operation") ||
		!strings.Contains(stderr, ": Could not parse request body into json: the payload is not valid JSON") {
		t.Fatalf("invalid payload: err %v, stderr %q", err, stderr)
	}
}
