package controller

import (
	"testing"

	lambdav1alpha1 "github.com/klambda/klambda/api/v1alpha1"
	"github.com/klambda/klambda/eventsources/kafka"
)

// An SQS mapping's poller cap: maximumConcurrency when set, else the pollers' flag (0: the
// default of 100), never above the function's reserved concurrency.
func TestSQSMaxConcurrency(t *testing.T) {
	i32 := func(v int32) *int32 { return &v }
	withMax := func(v int32) *lambdav1alpha1.EventSourceMappingSpec {
		return &lambdav1alpha1.EventSourceMappingSpec{ScalingConfig: &lambdav1alpha1.ScalingConfig{MaximumConcurrency: i32(v)}}
	}
	none := &lambdav1alpha1.EventSourceMappingSpec{}
	for _, tc := range []struct {
		name     string
		spec     *lambdav1alpha1.EventSourceMappingSpec
		reserved *int32
		flag     int
		want     int
	}{
		{"default", none, nil, 0, DefaultSQSMaxConcurrency},
		{"flag", none, nil, 400, 400},
		{"maximumConcurrency wins over the flag", withMax(700), nil, 400, 700},
		{"reserved concurrency caps the flag", none, i32(50), 400, 50},
		{"reserved concurrency caps maximumConcurrency", withMax(700), i32(50), 400, 50},
		{"reserved 0 is no cap", none, i32(0), 300, 300},
	} {
		if got := sqsMaxConcurrency(tc.spec, tc.reserved, tc.flag); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

// A mapping's functionName as a name, name:qualifier, ARN or partial ARN: the function and
// qualifier the poller invokes (and whose invoke permission it checks). A name ending in
// "function" with a qualifier is no ARN (it once read my-function:live as function "live").
func TestFunctionName(t *testing.T) {
	for in, want := range map[string]string{
		"my-function":      "my-function",
		"my-function:live": "my-function:live",
		"my-function:1":    "my-function:1",
		"function:live":    "live",
		"arn:aws:lambda:us-east-1:123456789012:function:my-function":            "my-function",
		"arn:aws:lambda:us-east-1:123456789012:function:my-function:live":       "my-function:live",
		"arn:aws:lambda:us-east-1:123456789012:function:function:live":          "function:live",
		"123456789012:function:my-function:$LATEST":                             "my-function:$LATEST",
		"arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:fn-function": "fn-function",
	} {
		if got := functionName(in); got != want {
			t.Errorf("functionName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestKafkaPollsHoldTwoBatchesAtLeastTheDefault(t *testing.T) {
	for _, c := range []struct{ batch, want int }{{1, kafka.DefaultMaxPollRecords}, {100, kafka.DefaultMaxPollRecords}, {500, 1000}, {10000, 20000}} {
		if got := kafkaPollRecords(c.batch); got != c.want {
			t.Errorf("batch size %d: polls of %d records, want %d", c.batch, got, c.want)
		}
	}
}
