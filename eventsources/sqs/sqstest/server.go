// Package sqstest is an in-process SQS-compatible server speaking the AWS JSON 1.0 protocol
// that current aws-sdk-go-v2 SQS clients use, with real queue semantics: visibility timeouts,
// receive counts, long polling, receipt handles that change per receive, FIFO message groups
// (one group in flight at a time).
//
// It exists because no SQS-compatible server reachable from this project's registries speaks
// that protocol: goaws (v0.4.5, the newest on the Go module proxy) implements only the older
// query protocol, fauxqs on npm needs Node ≥ 22.5, and ElasticMQ and LocalStack come from
// registries the project can't reach. It implements the subset the poller and the tests use:
// CreateQueue, GetQueueUrl, SendMessage, ReceiveMessage, DeleteMessage, DeleteMessageBatch,
// ChangeMessageVisibility and GetQueueAttributes.
package sqstest

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Server is a running fake SQS.
type Server struct {
	*httptest.Server
	mu     sync.Mutex
	cond   *sync.Cond
	queues map[string]*queue // by URL
}

type message struct {
	id, body, handle string
	attrs            map[string]attrValue
	group            string
	sent, firstRecv  time.Time
	receives         int
	invisibleUntil   time.Time
	deleted          bool
}

type attrValue struct {
	DataType    string `json:"DataType"`
	StringValue string `json:"StringValue,omitempty"`
	BinaryValue []byte `json:"BinaryValue,omitempty"`
}

type queue struct {
	name, url string
	fifo      bool
	msgs      []*message
}

// New starts a server.
func New() *Server {
	s := &Server{queues: map[string]*queue{}}
	s.cond = sync.NewCond(&s.mu)
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	go func() { // wakes long polls when visibility timeouts expire
		for range time.Tick(50 * time.Millisecond) {
			s.cond.Broadcast()
		}
	}()
	return s
}

// CreateQueue makes a queue and returns its URL.
func (s *Server) CreateQueue(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.create(name)
}

func (s *Server) create(name string) string {
	url := s.URL + "/000000000000/" + name
	if _, ok := s.queues[url]; !ok {
		s.queues[url] = &queue{name: name, url: url, fifo: strings.HasSuffix(name, ".fifo")}
	}
	return url
}

// Counts returns the visible and in-flight messages of a queue.
func (s *Server) Counts(url string) (visible, inFlight int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[url]
	if q == nil {
		return 0, 0
	}
	now := time.Now()
	for _, m := range q.msgs {
		if m.deleted {
			continue
		}
		if now.Before(m.invisibleUntil) {
			inFlight++
		} else {
			visible++
		}
	}
	return
}

// Bodies returns the bodies of a queue's undeleted messages.
func (s *Server) Bodies(url string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	if q := s.queues[url]; q != nil {
		for _, m := range q.msgs {
			if !m.deleted {
				out = append(out, m.body)
			}
		}
	}
	return out
}

type sqsError struct {
	status int
	typ    string
	msg    string
}

func fail(status int, typ, format string, args ...any) *sqsError {
	return &sqsError{status, typ, fmt.Sprintf(format, args...)}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AmazonSQS.")
	var in map[string]json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeErr(w, fail(400, "InvalidParameterValue", "body is not JSON"))
		return
	}
	out, e := s.dispatch(r, op, in)
	if e != nil {
		writeErr(w, e)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Header().Set("X-Amzn-RequestId", uuid.NewString())
	_ = json.NewEncoder(w).Encode(out)
}

func writeErr(w http.ResponseWriter, e *sqsError) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Header().Set("X-Amzn-Query-Error", e.typ+";Sender")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": "com.amazonaws.sqs#" + e.typ, "message": e.msg})
}

func str(in map[string]json.RawMessage, k string) string {
	var v string
	_ = json.Unmarshal(in[k], &v)
	return v
}

func num(in map[string]json.RawMessage, k string, def int) int {
	var v *int
	_ = json.Unmarshal(in[k], &v)
	if v == nil {
		return def
	}
	return *v
}

func (s *Server) dispatch(r *http.Request, op string, in map[string]json.RawMessage) (any, *sqsError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if op == "CreateQueue" {
		return map[string]string{"QueueUrl": s.create(str(in, "QueueName"))}, nil
	}
	if op == "GetQueueUrl" {
		for _, q := range s.queues {
			if q.name == str(in, "QueueName") {
				return map[string]string{"QueueUrl": q.url}, nil
			}
		}
		return nil, fail(400, "QueueDoesNotExist", "The specified queue does not exist.")
	}
	q := s.queues[str(in, "QueueUrl")]
	if q == nil {
		return nil, fail(400, "QueueDoesNotExist", "The specified queue does not exist.")
	}
	switch op {
	case "SendMessage":
		m := &message{id: uuid.NewString(), body: str(in, "MessageBody"), group: str(in, "MessageGroupId"), sent: time.Now()}
		_ = json.Unmarshal(in["MessageAttributes"], &m.attrs)
		q.msgs = append(q.msgs, m)
		s.cond.Broadcast()
		return map[string]string{"MessageId": m.id, "MD5OfMessageBody": md5Hex(m.body)}, nil
	case "ReceiveMessage":
		return s.receive(r, q, in)
	case "DeleteMessage":
		if !s.delete(q, str(in, "ReceiptHandle")) {
			return nil, fail(400, "ReceiptHandleIsInvalid", "The input receipt handle is invalid.")
		}
		return map[string]any{}, nil
	case "DeleteMessageBatch":
		var entries []struct{ Id, ReceiptHandle string }
		_ = json.Unmarshal(in["Entries"], &entries)
		ok, failed := []map[string]string{}, []map[string]any{}
		for _, e := range entries {
			if s.delete(q, e.ReceiptHandle) {
				ok = append(ok, map[string]string{"Id": e.Id})
			} else {
				failed = append(failed, map[string]any{"Id": e.Id, "Code": "ReceiptHandleIsInvalid", "SenderFault": true, "Message": "invalid receipt handle"})
			}
		}
		return map[string]any{"Successful": ok, "Failed": failed}, nil
	case "ChangeMessageVisibility":
		for _, m := range q.msgs {
			if m.handle == str(in, "ReceiptHandle") && !m.deleted {
				m.invisibleUntil = time.Now().Add(time.Duration(num(in, "VisibilityTimeout", 0)) * time.Second)
				s.cond.Broadcast()
				return map[string]any{}, nil
			}
		}
		return nil, fail(400, "ReceiptHandleIsInvalid", "The input receipt handle is invalid.")
	case "GetQueueAttributes":
		now := time.Now()
		vis, inflight := 0, 0
		for _, m := range q.msgs {
			if m.deleted {
				continue
			}
			if now.Before(m.invisibleUntil) {
				inflight++
			} else {
				vis++
			}
		}
		return map[string]any{"Attributes": map[string]string{
			"ApproximateNumberOfMessages": strconv.Itoa(vis), "ApproximateNumberOfMessagesNotVisible": strconv.Itoa(inflight),
			"VisibilityTimeout": "30", "QueueArn": "arn:aws:sqs:us-east-1:000000000000:" + q.name,
		}}, nil
	}
	return nil, fail(400, "InvalidAction", "unsupported action %q", op)
}

func (s *Server) delete(q *queue, handle string) bool {
	for _, m := range q.msgs {
		if m.handle == handle && handle != "" && !m.deleted {
			m.deleted = true
			return true
		}
	}
	return false
}

// receive long-polls (WaitTimeSeconds) for visible messages; in a FIFO queue a group with a
// message in flight is skipped.
func (s *Server) receive(r *http.Request, q *queue, in map[string]json.RawMessage) (any, *sqsError) {
	max := num(in, "MaxNumberOfMessages", 1)
	if max < 1 || max > 10 {
		return nil, fail(400, "InvalidParameterValue", "MaxNumberOfMessages must be between 1 and 10")
	}
	vis := time.Duration(num(in, "VisibilityTimeout", 30)) * time.Second
	deadline := time.Now().Add(time.Duration(num(in, "WaitTimeSeconds", 0)) * time.Second)
	for {
		now := time.Now()
		busy := map[string]bool{}
		if q.fifo {
			for _, m := range q.msgs {
				if !m.deleted && now.Before(m.invisibleUntil) {
					busy[m.group] = true
				}
			}
		}
		var got []map[string]any
		for _, m := range q.msgs {
			if len(got) == max {
				break
			}
			if m.deleted || now.Before(m.invisibleUntil) || (q.fifo && busy[m.group]) {
				continue
			}
			m.receives++
			if m.firstRecv.IsZero() {
				m.firstRecv = now
			}
			m.handle = uuid.NewString()
			m.invisibleUntil = now.Add(vis)
			attrs := map[string]string{
				"ApproximateReceiveCount":          strconv.Itoa(m.receives),
				"SentTimestamp":                    strconv.FormatInt(m.sent.UnixMilli(), 10),
				"SenderId":                         "AIDAFAKESENDER",
				"ApproximateFirstReceiveTimestamp": strconv.FormatInt(m.firstRecv.UnixMilli(), 10),
			}
			if q.fifo {
				attrs["MessageGroupId"] = m.group
				attrs["SequenceNumber"] = strconv.Itoa(len(got))
			}
			out := map[string]any{"MessageId": m.id, "ReceiptHandle": m.handle, "Body": m.body, "MD5OfBody": md5Hex(m.body), "Attributes": attrs}
			if len(m.attrs) > 0 {
				out["MessageAttributes"] = m.attrs
			}
			got = append(got, out)
		}
		if len(got) > 0 || !now.Before(deadline) || r.Context().Err() != nil {
			return map[string]any{"Messages": got}, nil
		}
		s.cond.Wait()
	}
}

func md5Hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}
