package environment

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Logs API 2020-08-15 (spec §7.3): extensions subscribe during Init to platform,
// function and extension logs, which the shim pushes to them as JSON arrays over HTTP.

// SubscribeRequest is the body of PUT /2020-08-15/logs.
type SubscribeRequest struct {
	SchemaVersion string   `json:"schemaVersion"`
	Types         []string `json:"types"`
	Buffering     *struct {
		MaxItems  *int `json:"maxItems"`
		MaxBytes  *int `json:"maxBytes"`
		TimeoutMs *int `json:"timeoutMs"`
	} `json:"buffering"`
	Destination *struct {
		Protocol string `json:"protocol"`
		URI      string `json:"URI"`
	} `json:"destination"`
}

// LogsValidationError is Lambda's Logs.ValidationError (400).
type LogsValidationError struct{ Msg string }

func (e *LogsValidationError) Error() string { return e.Msg }

type subscriber struct {
	name      string
	types     map[string]bool
	schema    string
	uri       string
	maxItems  int
	maxBytes  int
	timeout   time.Duration
	mu        sync.Mutex
	queue     []json.RawMessage
	size      int
	dropped   int
	droppedB  int
	kick      chan struct{}
	quit      chan struct{}
	client    *http.Client
	closeOnce sync.Once
}

type subscriptions struct {
	list []*subscriber
}

func newSubscriptions() *subscriptions { return &subscriptions{} }

func (s *subscriptions) active() bool { return len(s.list) > 0 }

func categoryOf(typ string) string {
	if strings.HasPrefix(typ, "platform.") {
		return "platform"
	}
	return typ
}

func (s *subscriptions) publish(typ string, record any) {
	s.publishSchema(typ, record, "")
}

// publishRuntimeDone sends platform.runtimeDone to subscribers of schema 2021-03-18 only.
func (s *subscriptions) publishRuntimeDone(record any) {
	s.publishSchema("platform.runtimeDone", record, "2021-03-18")
}

func (s *subscriptions) publishSchema(typ string, record any, schema string) {
	msg, err := json.Marshal(map[string]any{"time": rfc3339ms(time.Now()), "type": typ, "record": record})
	if err != nil {
		return
	}
	cat := categoryOf(typ)
	for _, sub := range s.list {
		if !sub.types[cat] || (schema != "" && sub.schema != schema) {
			continue
		}
		sub.enqueue(msg)
	}
}

func (s *subscriptions) closeAll() {
	for _, sub := range s.list {
		sub.close()
	}
	s.list = nil
}

func (sub *subscriber) enqueue(msg json.RawMessage) {
	sub.mu.Lock()
	// A slow consumer loses records rather than holding the environment's memory;
	// Lambda reports the loss with platform.logsDropped.
	if sub.size+len(msg) > 4*sub.maxBytes || len(sub.queue) >= 4*sub.maxItems {
		sub.dropped++
		sub.droppedB += len(msg)
		sub.mu.Unlock()
		return
	}
	sub.queue = append(sub.queue, msg)
	sub.size += len(msg)
	full := len(sub.queue) >= sub.maxItems || sub.size >= sub.maxBytes
	sub.mu.Unlock()
	if full {
		select {
		case sub.kick <- struct{}{}:
		default:
		}
	}
}

func (sub *subscriber) close() { sub.closeOnce.Do(func() { close(sub.quit) }) }

func (sub *subscriber) run() {
	t := time.NewTimer(sub.timeout)
	defer t.Stop()
	for {
		select {
		case <-sub.quit:
			sub.flush()
			return
		case <-sub.kick:
		case <-t.C:
		}
		sub.flush()
		t.Reset(sub.timeout)
	}
}

func (sub *subscriber) flush() {
	sub.mu.Lock()
	batch := sub.queue
	sub.queue = nil
	sub.size = 0
	if sub.dropped > 0 {
		rec, _ := json.Marshal(map[string]any{"time": rfc3339ms(time.Now()), "type": "platform.logsDropped",
			"record": map[string]any{"reason": "Consumer seems to have fallen behind as it has not acknowledged receipt of logs.", "droppedRecords": sub.dropped, "droppedBytes": sub.droppedB}})
		batch = append(batch, rec)
		sub.dropped, sub.droppedB = 0, 0
	}
	sub.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	var body bytes.Buffer
	body.WriteByte('[')
	for i, m := range batch {
		if i > 0 {
			body.WriteByte(',')
		}
		body.Write(m)
	}
	body.WriteByte(']')
	for attempt, backoff := 0, 50*time.Millisecond; attempt < 3; attempt, backoff = attempt+1, backoff*2 {
		resp, err := sub.client.Post(sub.uri, "application/json", bytes.NewReader(body.Bytes()))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 300 {
				return
			}
		}
		select {
		case <-sub.quit:
			return
		case <-time.After(backoff):
		}
	}
}

// parseSubscription validates a Logs API subscription as Lambda does.
func parseSubscription(body []byte) (*subscriber, error) {
	var req SubscribeRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&req); err != nil {
		return nil, &LogsValidationError{Msg: "could not parse the subscription request: " + err.Error()}
	}
	var problems []string
	switch req.SchemaVersion {
	case "", "2020-08-15", "2021-03-18":
	default:
		problems = append(problems, "schemaVersion must be 2020-08-15 or 2021-03-18")
	}
	sub := &subscriber{types: map[string]bool{}, schema: req.SchemaVersion, maxItems: 10000, maxBytes: 262144, timeout: time.Second}
	if sub.schema == "" {
		sub.schema = "2020-08-15"
	}
	if len(req.Types) == 0 {
		problems = append(problems, "types should not be empty")
	}
	for _, t := range req.Types {
		switch t {
		case "platform", "function", "extension":
			sub.types[t] = true
		default:
			problems = append(problems, fmt.Sprintf("unknown log type %q", t))
		}
	}
	if b := req.Buffering; b != nil {
		if b.MaxItems != nil {
			if *b.MaxItems < 1000 || *b.MaxItems > 10000 {
				problems = append(problems, "buffering.maxItems must be between 1000 and 10000")
			}
			sub.maxItems = *b.MaxItems
		}
		if b.MaxBytes != nil {
			if *b.MaxBytes < 262144 || *b.MaxBytes > 1048576 {
				problems = append(problems, "buffering.maxBytes must be between 262144 and 1048576")
			}
			sub.maxBytes = *b.MaxBytes
		}
		if b.TimeoutMs != nil {
			if *b.TimeoutMs < 25 || *b.TimeoutMs > 30000 {
				problems = append(problems, "buffering.timeoutMs must be between 25 and 30000")
			}
			sub.timeout = time.Duration(*b.TimeoutMs) * time.Millisecond
		}
	}
	if d := req.Destination; d == nil {
		problems = append(problems, "destination is required")
	} else {
		switch d.Protocol {
		case "HTTP":
		case "TCP":
			problems = append(problems, "destination protocol TCP is not supported by klambda; use HTTP")
		default:
			problems = append(problems, "destination protocol must be HTTP")
		}
		u, err := url.Parse(d.URI)
		switch {
		case err != nil || u.Scheme != "http" || u.Host == "":
			problems = append(problems, "URI must be an http:// URL")
		case u.Port() == "":
			problems = append(problems, "URI port is not provided")
		case u.Port() == "9001":
			problems = append(problems, "URI port 9001 is reserved")
		}
		sub.uri = d.URI
	}
	if len(problems) > 0 {
		return nil, &LogsValidationError{Msg: strings.Join(problems, "; ")}
	}
	return sub, nil
}

// Subscribe is PUT /2020-08-15/logs for extension extID. Subscribing twice replaces the
// earlier subscription (the call is idempotent).
func (e *Environment) Subscribe(extID string, body []byte) error {
	e.mu.Lock()
	x := e.extByID[extID]
	phase := e.phase
	e.mu.Unlock()
	if x == nil {
		return ErrUnknownExtension
	}
	if phase != PhaseInit {
		return ErrSubscriptionClosed
	}
	sub, err := parseSubscription(body)
	if err != nil {
		return err
	}
	sub.name = x.Name
	sub.kick = make(chan struct{}, 1)
	sub.quit = make(chan struct{})
	// sandbox.localdomain is what Lambda's docs tell extensions to listen on.
	sub.uri = strings.Replace(sub.uri, "sandbox.localdomain", "127.0.0.1", 1)
	sub.client = &http.Client{Timeout: 5 * time.Second}
	s := e.logs
	s.mu.Lock()
	kept := s.subs.list[:0]
	for _, old := range s.subs.list {
		if old.name == sub.name {
			old.close()
			continue
		}
		kept = append(kept, old)
	}
	s.subs.list = append(kept, sub)
	types := make([]string, 0, len(sub.types))
	for t := range sub.types {
		types = append(types, t)
	}
	s.subs.publish("platform.logsSubscription", map[string]any{"name": sub.name, "state": "Subscribed", "types": types})
	s.mu.Unlock()
	go sub.run()
	return nil
}
