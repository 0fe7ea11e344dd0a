package invoke_test

// Real clients against the activator in-process, with fake environments: the
// aws-sdk-go-v2 Lambda client and the AWS CLI.

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/klambda/klambda/activator/testrig"

	"github.com/klambda/klambda/internal/sdkbody"
)

func compatRig(t *testing.T) *testrig.Rig {
	r := testrig.New(testrig.Options{Auth: testrig.Tokens{"good": "system:serviceaccount:default:caller", "nope": "denied"}})
	t.Cleanup(r.Close)
	r.Function("f", -1, 2)
	r.Alias("f", "prod", "2", nil)
	r.Environments("f", "$LATEST", 1)
	r.Environments("f", "2", 1)
	r.Function("slow", 1, 0)
	r.Environments("slow", "$LATEST", 2)
	return r
}

func sdkClient(endpoint, sessionToken string) *lambda.Client {
	return lambda.New(lambda.Options{
		HTTPClient:       sdkbody.Client(0), // aws-sdk-go-v2 may close the body under net/http (internal/sdkbody)
		BaseEndpoint:     aws.String(endpoint),
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("klambda", "unused", sessionToken),
		RetryMaxAttempts: 1,
	})
}

func TestAWSSDKGoV2(t *testing.T) {
	r := compatRig(t)
	ctx := context.Background()
	c := sdkClient(r.URL()+"/namespaces/default", "good")

	out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("f"), Payload: []byte(`{"a":1}`), LogType: types.LogTypeTail})
	if err != nil || out.StatusCode != 200 || string(out.Payload) != `{"a":1}` || aws.ToString(out.ExecutedVersion) != "$LATEST" || out.LogResult == nil {
		t.Fatalf("success: %+v %v", out, err)
	}
	if log, _ := base64.StdEncoding.DecodeString(aws.ToString(out.LogResult)); !strings.Contains(string(log), "START RequestId") {
		t.Fatalf("log %q", log)
	}
	out, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("f"), Qualifier: aws.String("prod"), Payload: []byte(`{}`)})
	if err != nil || aws.ToString(out.ExecutedVersion) != "2" {
		t.Fatalf("alias: %+v %v", out, err)
	}
	out, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("arn:aws:lambda:us-east-1:000000000000:function:f:2"), Payload: []byte(`{}`)})
	if err != nil || aws.ToString(out.ExecutedVersion) != "2" {
		t.Fatalf("ARN: %+v %v", out, err)
	}
	out, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("f"), Payload: []byte(`{"fail":"boom"}`)})
	if err != nil || out.StatusCode != 200 || aws.ToString(out.FunctionError) != "Unhandled" || !strings.Contains(string(out.Payload), "boom") {
		t.Fatalf("function error: %+v %v", out, err)
	}
	out, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("f"), InvocationType: types.InvocationTypeDryRun})
	if err != nil || out.StatusCode != 204 {
		t.Fatalf("dry run: %+v %v", out, err)
	}

	var nf *types.ResourceNotFoundException
	if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("nope"), Payload: []byte(`{}`)}); !errors.As(err, &nf) ||
		!strings.Contains(aws.ToString(nf.Message), "Function not found") {
		t.Fatalf("unknown function: %v", err)
	}
	if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("f"), Qualifier: aws.String("staging"), Payload: []byte(`{}`)}); !errors.As(err, &nf) {
		t.Fatalf("unknown qualifier: %v", err)
	}
	var bad *types.InvalidRequestContentException
	if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("f"), Payload: []byte(`{nope`)}); !errors.As(err, &bad) {
		t.Fatalf("invalid JSON: %v", err)
	}
	var big *types.RequestTooLargeException
	if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("f"), Payload: []byte(`"` + strings.Repeat("x", 6<<20) + `"`)}); !errors.As(err, &big) {
		t.Fatalf("oversize: %v", err)
	}
	var ipv *types.InvalidParameterValueException
	if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("f:prod"), Qualifier: aws.String("2"), Payload: []byte(`{}`)}); !errors.As(err, &ipv) {
		t.Fatalf("qualifier conflict: %v", err)
	}

	done := make(chan error)
	go func() {
		_, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("slow"), Payload: []byte(`{"sleep_ms":400}`)})
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	var tmr *types.TooManyRequestsException
	if _, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("slow"), Payload: []byte(`{}`)}); !errors.As(err, &tmr) ||
		tmr.Reason != types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded {
		t.Fatalf("throttle: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	var api smithy.APIError
	if _, err := sdkClient(r.URL(), "").Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("f"), Payload: []byte(`{}`)}); !errors.As(err, &api) ||
		api.ErrorCode() != "MissingAuthenticationTokenException" {
		t.Fatalf("no token: %v", err)
	}
	if _, err := sdkClient(r.URL(), "nope").Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("f"), Payload: []byte(`{}`)}); !errors.As(err, &api) ||
		api.ErrorCode() != "AccessDeniedException" {
		t.Fatalf("denied: %v", err)
	}
}

func TestAWSCLI(t *testing.T) {
	const cli = "/usr/bin/aws"
	if _, err := os.Stat(cli); err != nil {
		t.Skip("AWS CLI not installed (apt-get install -y awscli)")
	}
	r := compatRig(t)
	dir := t.TempDir()
	var seq atomic.Int32
	run := func(token string, args ...string) (string, string, error) {
		cmd := exec.Command(cli, append([]string{"lambda", "invoke", "--endpoint-url", r.URL(), "--cli-binary-format", "raw-in-base64-out", "--output", "json"}, args...)...)
		cmd.Env = []string{"AWS_ACCESS_KEY_ID=klambda", "AWS_SECRET_ACCESS_KEY=unused", "AWS_DEFAULT_REGION=us-east-1",
			"AWS_MAX_ATTEMPTS=1", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "HOME=" + dir, "PATH=/usr/bin:/bin"}
		if token != "" {
			cmd.Env = append(cmd.Env, "AWS_SESSION_TOKEN="+token)
		}
		var so, se strings.Builder
		cmd.Stdout, cmd.Stderr = &so, &se
		err := cmd.Run()
		return so.String(), se.String(), err
	}
	// The CLI takes a second or more to start: the cases run side by side.
	var wg sync.WaitGroup
	expectOK := func(stdoutPart, file string, args ...string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := filepath.Join(dir, fmt.Sprintf("out%d.json", seq.Add(1)))
			so, se, err := run("good", append(args, out)...)
			if err != nil || !strings.Contains(so, stdoutPart) {
				t.Errorf("aws %v: %v\nstdout %s\nstderr %s", args, err, so, se)
			}
			if file != "" {
				b, _ := os.ReadFile(out)
				if !strings.Contains(string(b), file) {
					t.Errorf("aws %v wrote %s", args, b)
				}
			}
		}()
	}
	expectErr := func(token, errPart string, args ...string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := filepath.Join(dir, fmt.Sprintf("out%d.json", seq.Add(1)))
			so, se, err := run(token, append(args, out)...)
			if err == nil || !strings.Contains(se, errPart) {
				t.Errorf("aws %v: want %q, got %v\nstdout %s\nstderr %s", args, errPart, err, so, se)
			}
		}()
	}
	expectOK(`"ExecutedVersion": "$LATEST"`, `{"a": 1}`, "--function-name", "f", "--payload", `{"a": 1}`)
	expectOK(`"ExecutedVersion": "2"`, "", "--function-name", "f", "--qualifier", "prod", "--payload", `{}`)
	expectOK(`"LogResult"`, "", "--function-name", "f", "--log-type", "Tail", "--payload", `{}`)
	expectOK(`"StatusCode": 204`, "", "--function-name", "f", "--invocation-type", "DryRun")
	expectOK(`"FunctionError": "Unhandled"`, "boom", "--function-name", "f", "--payload", `{"fail":"boom"}`)
	expectErr("good", "An error occurred (ResourceNotFoundException) when calling the Invoke operation", "--function-name", "nope", "--payload", `{}`)
	expectErr("good", "(ResourceNotFoundException)", "--function-name", "f", "--qualifier", "staging", "--payload", `{}`)
	expectErr("good", "(InvalidRequestContentException)", "--function-name", "f", "--payload", `{nope`)
	big := filepath.Join(dir, "big.json")
	_ = os.WriteFile(big, []byte(`"`+strings.Repeat("x", 6<<20)+`"`), 0o644)
	expectErr("good", "(RequestTooLargeException)", "--function-name", "f", "--payload", "fileb://"+big)
	expectErr("", "(MissingAuthenticationTokenException)", "--function-name", "f", "--payload", `{}`)
	expectErr("nope", "(AccessDeniedException)", "--function-name", "f", "--payload", `{}`)
	wg.Wait()

	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _, _ = run("good", "--function-name", "slow", "--payload", `{"sleep_ms":8000}`, filepath.Join(dir, "slow.json"))
	}()
	deadline := time.Now().Add(10 * time.Second)
	for r.Dispatcher.Concurrency("default", "slow") == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	expectErr("good", "(TooManyRequestsException)", "--function-name", "slow", "--payload", `{}`)
	wg.Wait()
	<-done
}
