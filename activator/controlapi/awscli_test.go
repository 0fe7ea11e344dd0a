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
	r := newRig(t)
	tmp := t.TempDir()
	run, must := awsCLI(t, r, tmp)
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
	// --publish answers the version it published, which holds the new code (not the code
	// $LATEST ran while the update was in progress).
	if up := must("update-function-code", "--function-name", "cli", "--zip-file", "fileb://"+zip1, "--publish"); up["Version"] != "2" || up["CodeSha256"] != b641 {
		t.Fatalf("update-function-code --publish printed %v, want version 2 with the new code %s", up, b641)
	}
	must("wait", "function-updated-v2", "--function-name", "cli")
	// Nothing changed since version 2: publish-version answers it again.
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

const awsCLIPath = "/usr/bin/aws"

// awsCLI runs the AWS CLI v2's lambda commands against the rig: run answers the printed
// JSON or the CLI's stderr and error; must fails the test on an error.
func awsCLI(t *testing.T, r *rig, home string) (run func(args ...string) (map[string]any, string, error), must func(args ...string) map[string]any) {
	t.Helper()
	if _, err := os.Stat(awsCLIPath); err != nil {
		t.Skip("AWS CLI v2 not installed at /usr/bin/aws (apt-get install -y awscli)")
	}
	endpoint := r.server.URL + "/namespaces/" + r.ns
	run = func(args ...string) (map[string]any, string, error) {
		cmd := exec.Command(awsCLIPath, append([]string{"lambda", "--endpoint-url", endpoint, "--output", "json"}, args...)...)
		cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=klambda", "AWS_SECRET_ACCESS_KEY=unused", "AWS_DEFAULT_REGION=us-east-1",
			"AWS_MAX_ATTEMPTS=1", "AWS_PAGER=", "HOME="+home)
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
	must = func(args ...string) map[string]any {
		t.Helper()
		out, stderr, err := run(args...)
		if err != nil {
			t.Fatalf("aws lambda %v: %v\n%s", args, err, stderr)
		}
		return out
	}
	return run, must
}

// The AWS CLI v2 drives function URL configs, event invoke configs, event source mappings
// and layers: create/get/update/list/delete-function-url-config, put/get-function-event-
// invoke-config, create/get/update/list/delete-event-source-mapping (Kafka), and
// publish-layer-version --zip-file fileb:// used by create-function --layers.
func TestAWSCLIURLsEventSourceMappingsAndLayers(t *testing.T) {
	r := newRig(t)
	tmp := t.TempDir()
	run, must := awsCLI(t, r, tmp)
	zip := filepath.Join(tmp, "fn.zip")
	if err := os.WriteFile(zip, ziptest.Bootstrap(t, "fn"), 0o600); err != nil {
		t.Fatal(err)
	}

	layer := must("publish-layer-version", "--layer-name", "deps", "--zip-file", "fileb://"+zip, "--compatible-runtimes", "provided.al2023")
	if layer["Version"] != float64(1) || layer["LayerVersionArn"] != "arn:aws:lambda:us-east-1:000000000000:layer:deps:1" {
		t.Fatalf("publish-layer-version printed %v", layer)
	}
	if l := must("list-layers"); len(l["Layers"].([]any)) != 1 {
		t.Fatalf("list-layers printed %v", l)
	}
	must("create-function", "--function-name", "cli", "--runtime", "provided.al2023", "--handler", "bootstrap",
		"--role", role, "--zip-file", "fileb://"+zip, "--layers", "arn:aws:lambda:us-east-1:000000000000:layer:deps:1")
	must("wait", "function-active-v2", "--function-name", "cli")

	url := must("create-function-url-config", "--function-name", "cli", "--auth-type", "NONE")
	if u, _ := url["FunctionUrl"].(string); !strings.Contains(u, "/lambda-url/") || url["AuthType"] != "NONE" {
		t.Fatalf("create-function-url-config printed %v", url)
	}
	must("update-function-url-config", "--function-name", "cli", "--cors", `{"AllowOrigins":["https://example.com"],"MaxAge":30}`)
	got := must("get-function-url-config", "--function-name", "cli")
	if cors, _ := got["Cors"].(map[string]any); cors == nil || cors["MaxAge"] != float64(30) || got["FunctionUrl"] != url["FunctionUrl"] {
		t.Fatalf("get-function-url-config printed %v", got)
	}
	if l := must("list-function-url-configs", "--function-name", "cli"); len(l["FunctionUrlConfigs"].([]any)) != 1 {
		t.Fatalf("list-function-url-configs printed %v", l)
	}
	must("delete-function-url-config", "--function-name", "cli")
	if _, stderr, err := run("get-function-url-config", "--function-name", "cli"); err == nil ||
		!strings.Contains(stderr, "An error occurred (ResourceNotFoundException) when calling the GetFunctionUrlConfig operation") {
		t.Fatalf("get-function-url-config after the delete: %v %q", err, stderr)
	}

	eic := must("put-function-event-invoke-config", "--function-name", "cli", "--maximum-retry-attempts", "0")
	if eic["MaximumRetryAttempts"] != float64(0) || eic["LastModified"] == nil {
		t.Fatalf("put-function-event-invoke-config printed %v", eic)
	}
	if g := must("get-function-event-invoke-config", "--function-name", "cli"); g["MaximumRetryAttempts"] != float64(0) {
		t.Fatalf("get-function-event-invoke-config printed %v", g)
	}

	m := must("create-event-source-mapping", "--function-name", "cli", "--topics", "orders", "--starting-position", "LATEST",
		"--self-managed-event-source", `{"Endpoints":{"KAFKA_BOOTSTRAP_SERVERS":["kafka:9092"]}}`)
	uuid, _ := m["UUID"].(string)
	if uuid == "" || m["State"] != "Creating" {
		t.Fatalf("create-event-source-mapping printed %v", m)
	}
	must("update-event-source-mapping", "--uuid", uuid, "--batch-size", "7")
	if g := must("get-event-source-mapping", "--uuid", uuid); g["BatchSize"] != float64(7) {
		t.Fatalf("get-event-source-mapping printed %v", g)
	}
	if l := must("list-event-source-mappings", "--function-name", "cli"); len(l["EventSourceMappings"].([]any)) != 1 {
		t.Fatalf("list-event-source-mappings printed %v", l)
	}
	if _, stderr, err := run("create-event-source-mapping", "--function-name", "cli", "--event-source-arn",
		"arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/x", "--starting-position", "LATEST"); err == nil ||
		!strings.Contains(stderr, "(InvalidParameterValueException) when calling the CreateEventSourceMapping operation") {
		t.Fatalf("a DynamoDB stream: %v %q", err, stderr)
	}
	if d := must("delete-event-source-mapping", "--uuid", uuid); d["State"] != "Deleting" {
		t.Fatalf("delete-event-source-mapping printed %v", d)
	}
	must("delete-layer-version", "--layer-name", "deps", "--version-number", "1")
}
