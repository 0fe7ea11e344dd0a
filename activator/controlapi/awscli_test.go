package controlapi_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klambda/klambda/test/ziptest"
)

// The AWS CLI v2 (a client this project did not write) drives the control plane: the
// deploy-script flow of issue 20 without invocations (there are no pods over envtest;
// test/e2e invokes): create-function --zip-file fileb://, wait function-active-v2,
// update-function-code, wait function-updated-v2, publish-version, create-alias with
// --routing-config, put-function-concurrency, list-functions with pagination, errors as
// the CLI prints them, delete-function.
func TestAWSCLIControlPlane(t *testing.T) {
	const cli = "/usr/bin/aws"
	if _, err := os.Stat(cli); err != nil {
		t.Skip("AWS CLI v2 not installed at /usr/bin/aws (apt-get install -y awscli)")
	}
	r := newRig(t)
	tmp := t.TempDir()
	endpoint := r.server.URL + "/namespaces/" + r.ns
	run := func(args ...string) (map[string]any, string, error) {
		cmd := exec.Command(cli, append([]string{"lambda", "--endpoint-url", endpoint, "--output", "json"}, args...)...)
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=klambda", "AWS_SECRET_ACCESS_KEY=unused", "AWS_DEFAULT_REGION=us-east-1",
			"AWS_MAX_ATTEMPTS=1", "AWS_PAGER=", "HOME="+tmp)
		stdout, err := cmd.Output()
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				return nil, string(ee.Stderr), err
			}
			t.Fatal(err)
		}
		var out map[string]any
		if len(strings.TrimSpace(string(stdout))) > 0 {
			if err := json.Unmarshal(stdout, &out); err != nil {
				t.Fatalf("aws %v printed %q", args, stdout)
			}
		}
		return out, "", nil
	}
	must := func(args ...string) map[string]any {
		t.Helper()
		out, stderr, err := run(args...)
		if err != nil {
			t.Fatalf("aws lambda %v: %v\n%s", args, err, stderr)
		}
		return out
	}
	zip1, zip2 := filepath.Join(tmp, "v1.zip"), filepath.Join(tmp, "v2.zip")
	if err := os.WriteFile(zip1, ziptest.Bootstrap(t, "v1"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(zip2, ziptest.Bootstrap(t, "v2"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, b641 := ziptest.Digest(ziptest.Bootstrap(t, "v1"))
	_, b642 := ziptest.Digest(ziptest.Bootstrap(t, "v2"))

	out := must("create-function", "--function-name", "cli", "--runtime", "provided.al2023", "--handler", "bootstrap",
		"--role", role, "--zip-file", "fileb://"+zip1, "--architectures", "arm64")
	if out["State"] != "Pending" || out["CodeSha256"] != b641 {
		t.Fatalf("create-function printed %v", out)
	}
	must("wait", "function-active-v2", "--function-name", "cli")
	must("update-function-code", "--function-name", "cli", "--zip-file", "fileb://"+zip2)
	must("wait", "function-updated-v2", "--function-name", "cli")
	cfg := must("get-function-configuration", "--function-name", "cli")
	if cfg["State"] != "Active" || cfg["LastUpdateStatus"] != "Successful" || cfg["CodeSha256"] != b642 {
		t.Fatalf("get-function-configuration printed %v", cfg)
	}
	v := must("publish-version", "--function-name", "cli", "--description", "first")
	if v["Version"] != "1" {
		t.Fatalf("publish-version printed %v", v)
	}
	must("wait", "published-version-active", "--function-name", "cli", "--qualifier", "1")
	must("update-function-code", "--function-name", "cli", "--zip-file", "fileb://"+zip1, "--publish")
	must("wait", "function-updated-v2", "--function-name", "cli")
	v2 := must("publish-version", "--function-name", "cli")
	if v2["Version"] != "2" {
		t.Fatalf("the second publish-version printed %v", v2)
	}
	a := must("create-alias", "--function-name", "cli", "--name", "live", "--function-version", "1",
		"--routing-config", "AdditionalVersionWeights={2=0.1}")
	if w := a["RoutingConfig"].(map[string]any)["AdditionalVersionWeights"].(map[string]any)["2"]; w != 0.1 {
		t.Fatalf("create-alias printed %v", a)
	}
	must("put-function-concurrency", "--function-name", "cli", "--reserved-concurrent-executions", "4")
	if c := must("get-function-concurrency", "--function-name", "cli"); c["ReservedConcurrentExecutions"] != float64(4) {
		t.Fatalf("get-function-concurrency printed %v", c)
	}
	for _, n := range []string{"cli-b", "cli-c"} {
		must("create-function", "--function-name", n, "--runtime", "provided.al2023", "--handler", "bootstrap", "--role", role, "--zip-file", "fileb://"+zip1)
	}
	// The CLI pages by itself (--page-size is MaxItems; it follows NextMarker).
	list := must("list-functions", "--page-size", "1")
	var names []string
	for _, f := range list["Functions"].([]any) {
		names = append(names, f.(map[string]any)["FunctionName"].(string))
	}
	if strings.Join(names, ",") != "cli,cli-b,cli-c" {
		t.Fatalf("list-functions --page-size 1 listed %v", names)
	}
	if _, stderr, err := run("get-function", "--function-name", "nope"); err == nil ||
		!strings.Contains(stderr, "An error occurred (ResourceNotFoundException) when calling the GetFunction operation") ||
		!strings.Contains(stderr, ": Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope") {
		t.Fatalf("get-function of an unknown function: %v %q", err, stderr)
	}
	must("delete-alias", "--function-name", "cli", "--name", "live")
	must("delete-function", "--function-name", "cli")
	if _, stderr, err := run("get-function", "--function-name", "cli"); err == nil || !strings.Contains(stderr, "ResourceNotFoundException") {
		t.Fatalf("get-function after delete-function: %v %q", err, stderr)
	}
}
