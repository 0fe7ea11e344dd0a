package async

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/test/brokers/fauxqs"
)

// startFauxqs starts a private fauxqs (a real SQS-compatible server) for one test and
// returns its endpoint; the test is skipped when fauxqs is not installed.
func startFauxqs(t *testing.T) string {
	t.Helper()
	if !fauxqs.Installed() {
		t.Skip("fauxqs is not installed: run test/brokers/fauxqs.sh install")
	}
	endpoint, stop, err := fauxqs.Start(filepath.Join(t.TempDir(), "fauxqs"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return endpoint
}

// TestSQSDestinationsOnARealServer delivers a success record to an SQS destination and a
// dead letter to an SQS dead-letter queue on fauxqs, and reads them back with the SDK:
// Lambda's record as the body, the dead letter's RequestID, ErrorCode and ErrorMessage as
// message attributes.
func TestSQSDestinationsOnARealServer(t *testing.T) {
	endpoint := startFauxqs(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := sqs.New(sqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")})
	queue := func(name string) string {
		out, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
		if err != nil {
			t.Fatalf("CreateQueue %s: %v", name, err)
		}
		return aws.ToString(out.QueueUrl)
	}
	successURL, dlqURL := queue("success"), queue("dead-letters")
	// fauxqs names its queues on a host of its own (sqs.<region>.localhost): the endpoint is
	// given, as a user of another SQS-compatible service would.
	success := &lambdav1alpha1.Destination{SQS: &lambdav1alpha1.SQSQueue{QueueURL: successURL, Endpoint: endpoint}}
	dlq := &lambdav1alpha1.DeadLetterConfig{Target: lambdav1alpha1.Destination{
		SQS: &lambdav1alpha1.SQSQueue{QueueURL: dlqURL, Endpoint: endpoint}}}

	inv := newInvoker(func(req InvokeRequest, _ int) InvokeResult {
		if req.Function == "fails" {
			return functionError
		}
		return InvokeResult{StatusCode: 200, ExecutedVersion: "$LATEST", Payload: []byte(`{"ok":true}`)}
	})
	e := startEnv(t, t.TempDir(), inv, configs(map[string]Config{
		"works": {MaximumRetryAttempts: 2, MaximumEventAge: time.Hour, OnSuccess: success},
		"fails": {MaximumRetryAttempts: 0, MaximumEventAge: time.Hour, DeadLetter: dlq},
	}))

	receive := func(url string) sqstypes.Message {
		t.Helper()
		for ctx.Err() == nil {
			out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url),
				WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"}})
			if err != nil {
				t.Fatalf("ReceiveMessage: %v", err)
			}
			if len(out.Messages) > 0 {
				if len(out.Messages) != 1 {
					t.Fatalf("%d messages on %s, want 1", len(out.Messages), url)
				}
				return out.Messages[0]
			}
		}
		t.Fatalf("nothing reached %s", url)
		return sqstypes.Message{}
	}

	id := e.enqueue("works", `{"s":1}`)
	m := receive(successURL)
	checkRecord(t, []byte(aws.ToString(m.Body)), id, "works", ConditionSuccess, 1, 200, "", `{"s":1}`, `{"ok":true}`)

	idF := e.enqueue("fails", `{"f":2}`)
	d := receive(dlqURL)
	attr := func(name string) string { return aws.ToString(d.MessageAttributes[name].StringValue) }
	if aws.ToString(d.Body) != `{"f":2}` || attr("RequestID") != idF || attr("ErrorCode") != "200" ||
		attr("ErrorMessage") != "something went wrong!" {
		t.Errorf("dead letter %s with RequestID %q ErrorCode %q ErrorMessage %q; want the event, %q, 200 and the error message",
			aws.ToString(d.Body), attr("RequestID"), attr("ErrorCode"), attr("ErrorMessage"), idF)
	}
}
