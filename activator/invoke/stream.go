package invoke

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"

	"github.com/klambda/klambda/api/contract"
)

// InvokeWithResponseStream: POST [/namespaces/{ns}]/2021-11-15/functions/{FunctionName}/response-streaming-invocations
// answers 200 with the function's Content-Type and an AWS event stream
// (application/vnd.amazon.eventstream framing): a PayloadChunk event for each piece of
// the response as the function writes it, then one InvokeComplete event with ErrorCode,
// ErrorDetails and LogResult. Errors before the stream starts are the Invoke API's.

const (
	streamPrefix = "/2021-11-15/functions/"
	streamPart   = "/response-streaming-invocations"
)

// errStreamInvocationType refuses an invocation type InvokeWithResponseStream does not
// take (Lambda's ResponseStreamingInvocationType: RequestResponse, DryRun).
func errStreamInvocationType(t string) *Error {
	return ErrValidation("1 validation error detected: Value '" + t + "' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [RequestResponse, DryRun]")
}

// invokeComplete is the InvokeComplete event's payload.
type invokeComplete struct {
	ErrorCode    string `json:",omitempty"`
	ErrorDetails string `json:",omitempty"`
	LogResult    string `json:",omitempty"`
}

// writeStream answers out as InvokeWithResponseStream does, relaying each piece of the
// body as an event as soon as it is read, and closes it.
func writeStream(w http.ResponseWriter, out *Output) {
	hd := w.Header()
	if out.RequestID != "" {
		hd[contract.HeaderRequestID] = []string{out.RequestID}
	}
	if out.ExecutedVersion != "" {
		hd[contract.HeaderExecutedVersion] = []string{out.ExecutedVersion}
	}
	if out.Body == nil { // DryRun
		w.WriteHeader(out.StatusCode)
		return
	}
	defer out.Body.Close()
	ct := out.ContentType
	if ct == "" {
		ct = "application/json"
	}
	hd["Content-Type"] = []string{ct}
	w.WriteHeader(out.StatusCode)
	flush := func() {}
	if f, ok := w.(http.Flusher); ok {
		flush = f.Flush
		flush()
	}
	enc := eventstream.NewEncoder()
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	var errBody []byte // a buffered function error's object goes in InvokeComplete
	broken := false
	for {
		n, err := out.Body.Read(buf)
		if n > 0 && !broken {
			if !out.Streamed && out.FunctionError != "" {
				errBody = append(errBody, buf[:n]...)
			} else if enc.Encode(w, payloadChunk(buf[:n])) != nil {
				broken = true // the caller went away; Close reads the rest
			} else {
				flush()
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// The environment's answer was cut off.
			if !broken {
				_ = enc.Encode(w, complete(invokeComplete{ErrorCode: "ServiceException", ErrorDetails: "The execution environment's response was cut off: " + err.Error()}))
				flush()
			}
			return
		}
	}
	if broken {
		return
	}
	c := invokeComplete{LogResult: out.LogResult}
	if out.FunctionError != "" {
		if out.Streamed {
			errBody = out.ErrorBody
		}
		c.ErrorCode, c.ErrorDetails = errorCodeAndDetails(out.ErrorType, errBody)
	}
	_ = enc.Encode(w, complete(c))
	flush()
}

// errorCodeAndDetails is InvokeComplete's ErrorCode (the error type) and ErrorDetails
// (the error message) of a function error object.
func errorCodeAndDetails(errType string, body []byte) (code, details string) {
	var e struct {
		ErrorType    string `json:"errorType"`
		ErrorMessage string `json:"errorMessage"`
	}
	if json.Unmarshal(body, &e) == nil && e.ErrorMessage != "" {
		details = e.ErrorMessage
	} else {
		details = string(body)
	}
	code = errType
	if code == "" {
		code = e.ErrorType
	}
	if code == "" {
		code = "Unhandled"
	}
	return code, details
}

func payloadChunk(p []byte) eventstream.Message {
	var m eventstream.Message
	m.Headers.Set(":event-type", eventstream.StringValue("PayloadChunk"))
	m.Headers.Set(":message-type", eventstream.StringValue("event"))
	m.Headers.Set(":content-type", eventstream.StringValue("application/octet-stream"))
	m.Payload = p
	return m
}

func complete(c invokeComplete) eventstream.Message {
	var m eventstream.Message
	m.Headers.Set(":event-type", eventstream.StringValue("InvokeComplete"))
	m.Headers.Set(":message-type", eventstream.StringValue("event"))
	m.Headers.Set(":content-type", eventstream.StringValue("application/json"))
	m.Payload, _ = json.Marshal(c)
	return m
}
