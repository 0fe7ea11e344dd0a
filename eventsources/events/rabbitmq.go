package events

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
)

// EventSourceRabbitMQ is the eventSource of RabbitMQ batches.
const EventSourceRabbitMQ = "aws:rmq"

// RabbitMQEvent is the batch a function receives from a RabbitMQ queue, grouped by
// "<queue>::<vhost>" (see RabbitMQQueueKey).
type RabbitMQEvent struct {
	EventSource     string                       `json:"eventSource"`
	EventSourceARN  string                       `json:"eventSourceArn"`
	MessagesByQueue map[string][]RabbitMQMessage `json:"rmqMessagesByQueue"`
}

// RabbitMQQueueKey is the key of a queue's messages: "<queue>::<vhost>", e.g. "pizzaQueue::/".
func RabbitMQQueueKey(queue, vhost string) string {
	if vhost == "" {
		vhost = "/"
	}
	return queue + "::" + vhost
}

// RabbitMQMessage is one delivery. Data is the body, marshalled as base64.
type RabbitMQMessage struct {
	BasicProperties RabbitMQBasicProperties `json:"basicProperties"`
	Redelivered     bool                    `json:"redelivered"`
	Data            []byte                  `json:"data"`
}

// RabbitMQBasicProperties are the AMQP 0-9-1 basic properties. Every field is always
// written; unset ones are null, as in Lambda's events.
type RabbitMQBasicProperties struct {
	ContentType     *string        `json:"contentType"`
	ContentEncoding *string        `json:"contentEncoding"`
	Headers         map[string]any `json:"headers"`
	DeliveryMode    *uint8         `json:"deliveryMode"`
	Priority        *uint8         `json:"priority"`
	CorrelationID   *string        `json:"correlationId"`
	ReplyTo         *string        `json:"replyTo"`
	Expiration      *string        `json:"expiration"`
	MessageID       *string        `json:"messageId"`
	Timestamp       *string        `json:"timestamp"`
	Type            *string        `json:"type"`
	UserID          *string        `json:"userId"`
	AppID           *string        `json:"appId"`
	ClusterID       *string        `json:"clusterId"`
	BodySize        uint64         `json:"bodySize"`
}

// RabbitMQBytes is a string (longstr) header value, which Lambda writes as
// {"bytes":[118,97,...]}. Numbers and booleans in headers are written as themselves.
type RabbitMQBytes []byte

// MarshalJSON writes {"bytes":[...]} with unsigned byte values, as Lambda's example does.
func (r RabbitMQBytes) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"bytes":[`)
	for i, c := range r {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(c)))
	}
	b.WriteString(`]}`)
	return b.Bytes(), nil
}

// UnmarshalJSON reads {"bytes":[...]}.
func (r *RabbitMQBytes) UnmarshalJSON(data []byte) error {
	var v struct {
		Bytes []int `json:"bytes"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	b, err := intsToBytes(v.Bytes)
	if err != nil {
		return err
	}
	*r = b
	return nil
}

// rabbitMQTimeLayout is Java's DateFormat MEDIUM style, which Lambda uses for the AMQP
// timestamp property ("Jan 1, 1970, 12:33:41 AM").
const rabbitMQTimeLayout = "Jan 2, 2006, 3:04:05 PM"

// RabbitMQTimestamp formats an AMQP timestamp property as Lambda does, in UTC.
func RabbitMQTimestamp(t time.Time) *string {
	s := t.UTC().Format(rabbitMQTimeLayout)
	return &s
}

// ParseRabbitMQTimestamp is the inverse of RabbitMQTimestamp.
func ParseRabbitMQTimestamp(s string) (time.Time, error) {
	return time.ParseInLocation(rabbitMQTimeLayout, s, time.UTC)
}
