package async

import (
	"encoding/json"
	"time"
)

// Conditions of an invocation record.
const (
	ConditionSuccess          = "Success"
	ConditionRetriesExhausted = "RetriesExhausted"
	ConditionEventAgeExceeded = "EventAgeExceeded"
)

// Record is Lambda's invocation record, sent to onSuccess and onFailure destinations.
type Record struct {
	Version         string          `json:"version"`
	Timestamp       string          `json:"timestamp"`
	RequestContext  RequestContext  `json:"requestContext"`
	RequestPayload  json.RawMessage `json:"requestPayload"`
	ResponseContext ResponseContext `json:"responseContext"`
	ResponsePayload json.RawMessage `json:"responsePayload"`
}

type RequestContext struct {
	RequestID              string `json:"requestId"`
	FunctionARN            string `json:"functionArn"`
	Condition              string `json:"condition"`
	ApproximateInvokeCount int    `json:"approximateInvokeCount"`
}

type ResponseContext struct {
	StatusCode      int    `json:"statusCode"`
	ExecutedVersion string `json:"executedVersion"`
	// FunctionError is absent on success.
	FunctionError string `json:"functionError,omitempty"`
}

// recordTimestamp is Lambda's: UTC with milliseconds, 2019-11-14T18:16:05.568Z.
const recordTimestamp = "2006-01-02T15:04:05.000Z"

func newRecord(now time.Time, requestID, functionARN, condition string, invokeCount int,
	requestPayload []byte, status int, executedVersion, functionError string, responsePayload []byte) Record {
	return Record{
		Version:   "1.0",
		Timestamp: now.UTC().Format(recordTimestamp),
		RequestContext: RequestContext{
			RequestID: requestID, FunctionARN: functionARN, Condition: condition,
			ApproximateInvokeCount: invokeCount,
		},
		RequestPayload:  asJSON(requestPayload),
		ResponseContext: ResponseContext{StatusCode: status, ExecutedVersion: executedVersion, FunctionError: functionError},
		ResponsePayload: asJSON(responsePayload),
	}
}

// asJSON embeds a payload as is when it is JSON, as a JSON string when it is not, and as
// null when it is empty (a function that returned nothing).
func asJSON(b []byte) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	if json.Valid(b) {
		return json.RawMessage(b)
	}
	s, _ := json.Marshal(string(b))
	return s
}
