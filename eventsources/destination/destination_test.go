package destination_test

import (
	"context"
	"testing"

	"github.com/klambda/klambda/eventsources/destination"
	"github.com/klambda/klambda/eventsources/invokeclient/invoketest"
	"github.com/klambda/klambda/eventsources/sqs"
	"github.com/klambda/klambda/eventsources/sqs/sqstest"
)

func TestSQSDestinationSendsTheRecord(t *testing.T) {
	srv := sqstest.New()
	defer srv.Close()
	url := srv.CreateQueue("esm-failures")
	c, err := sqs.NewClient(sqs.Config{QueueURL: url})
	if err != nil {
		t.Fatal(err)
	}
	d := &destination.SQS{Client: c, QueueURL: url}
	if err := d.Send(context.Background(), []byte(`{"version":"1.0"}`)); err != nil {
		t.Fatal(err)
	}
	if got := srv.Bodies(url); len(got) != 1 || got[0] != `{"version":"1.0"}` {
		t.Errorf("queue holds %v", got)
	}
}

func TestFunctionDestinationInvokesAsynchronously(t *testing.T) {
	fake := invoketest.New(nil)
	defer fake.Close()
	d := &destination.Function{Invoker: fake.Invoker(), Namespace: "team", Name: "on-failure:live"}
	if err := d.Send(context.Background(), []byte(`{"version":"1.0"}`)); err != nil {
		t.Fatal(err)
	}
	calls := fake.Calls()
	if len(calls) != 1 || calls[0].InvocationType != "Event" || calls[0].Function != "on-failure" || calls[0].Qualifier != "live" || calls[0].Namespace != "team" {
		t.Errorf("calls %+v", calls)
	}
}
