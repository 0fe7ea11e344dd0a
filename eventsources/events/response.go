package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// BatchItemFailure is one entry of the function's partial batch response.
type BatchItemFailure struct {
	ItemIdentifier string `json:"itemIdentifier"`
}

// BatchResponse is what a function with ReportBatchItemFailures returns:
// {"batchItemFailures":[{"itemIdentifier":"<id>"}]}. The identifier is the SQS messageId,
// the Kinesis/DynamoDB sequence number, the Kafka offset (as a string) or the NATS stream
// sequence (as a string).
type BatchResponse struct {
	BatchItemFailures []BatchItemFailure `json:"batchItemFailures"`
}

// ErrBatchFailed wraps the reasons ParseBatchItemFailures treats a batch as failed entirely.
var ErrBatchFailed = errors.New("the whole batch failed")

// ParseBatchItemFailures applies Lambda's rules to a function's response payload:
//
//   - complete success (nil, nil): an empty or null payload, null, an object without
//     batchItemFailures, or an empty or null list; also any other valid JSON value (a function
//     returning "ok"), which carries no failures;
//   - complete failure (an error wrapping ErrBatchFailed): invalid JSON, a batchItemFailures
//     that is not a list, an entry that is not an object, an itemIdentifier that is missing
//     (wrongly named), null, not a string or empty, or an identifier known reports as not in
//     the batch;
//   - otherwise the failed identifiers, deduplicated, in the function's order.
//
// known may be nil to skip the membership check.
func ParseBatchItemFailures(payload []byte, known func(id string) bool) ([]string, error) {
	payload = bytes.TrimSpace(payload)
	if len(payload) == 0 {
		return nil, nil
	}
	if !json.Valid(payload) {
		return nil, fmt.Errorf("%w: the response is not valid JSON", ErrBatchFailed)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(payload, &top); err != nil {
		return nil, nil // a valid non-object response (null, "ok", 42) reports no failures
	}
	raw, ok := top["batchItemFailures"]
	if !ok || isNull(raw) {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("%w: batchItemFailures is not a list", ErrBatchFailed)
	}
	var ids []string
	seen := map[string]bool{}
	for i, item := range items {
		var entry map[string]json.RawMessage
		if err := json.Unmarshal(item, &entry); err != nil || entry == nil {
			return nil, fmt.Errorf("%w: batchItemFailures[%d] is not an object", ErrBatchFailed, i)
		}
		rawID, ok := entry["itemIdentifier"]
		if !ok {
			return nil, fmt.Errorf("%w: batchItemFailures[%d] has no itemIdentifier", ErrBatchFailed, i)
		}
		if isNull(rawID) {
			return nil, fmt.Errorf("%w: batchItemFailures[%d].itemIdentifier is null", ErrBatchFailed, i)
		}
		var id string
		if err := json.Unmarshal(rawID, &id); err != nil {
			return nil, fmt.Errorf("%w: batchItemFailures[%d].itemIdentifier is not a string", ErrBatchFailed, i)
		}
		if id == "" {
			return nil, fmt.Errorf("%w: batchItemFailures[%d].itemIdentifier is empty", ErrBatchFailed, i)
		}
		if known != nil && !known(id) {
			return nil, fmt.Errorf("%w: batchItemFailures[%d].itemIdentifier %q is not in the batch", ErrBatchFailed, i, id)
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func isNull(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}
