package async

import (
	"bytes"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// FuzzReadEvent feeds the queue's message reader (headers as NATS encodes them, subject,
// payload) with anything: it never panics, whatever it accepts is bounded and matches its
// subject, and an accepted event stored again reads back the same. With sign, the message
// is first signed with the queue's key (the activator's own, possibly odd, event).
// Seed corpus: testdata/fuzz/FuzzReadEvent. Run: go test -run '^$' -fuzz FuzzReadEvent ./activator/async/
func FuzzReadEvent(f *testing.F) {
	now := strconv.FormatInt(time.Now().UnixNano(), 10)
	f.Add("klambda.async.default.f", []byte("NATS/1.0\r\nKlambda-Request-Id: r1\r\nKlambda-Namespace: default\r\nKlambda-Function: f\r\nKlambda-Received: "+now+"\r\n\r\n"), []byte(`{}`), true)
	f.Add("klambda.async.default.f", []byte("NATS/1.0\r\nKlambda-Request-Id: r1\r\nKlambda-Namespace: default\r\nKlambda-Function: f\r\nKlambda-Received: "+now+"\r\n\r\n"), []byte(`{}`), false)
	f.Add("klambda.async.a.f", []byte("NATS/1.0\r\nKlambda-Request-Id: r1\r\nKlambda-Namespace: b\r\nKlambda-Function: f\r\nKlambda-Qualifier: $LATEST\r\nKlambda-Received: 1\r\n\r\n"), []byte(nil), true)
	f.Add("", []byte("NATS/1.0 503\r\n\r\n"), []byte("x"), false)
	signer, err := NewSigner([]byte("fuzzing key of at least thirty-two bytes"))
	if err != nil {
		f.Fatal(err)
	}
	q := &Queue{opts: QueueOptions{SubjectPrefix: "klambda.async", Signer: signer, Metrics: NewMetrics(nil)}}
	f.Fuzz(func(t *testing.T, subject string, rawHeaders, data []byte, sign bool) {
		h, err := nats.DecodeHeadersMsg(rawHeaders)
		if err != nil {
			return
		}
		if sign {
			m := &nats.Msg{Subject: subject, Header: h, Data: data}
			signer.sign(m)
		}
		ev, err := q.readEvent(subject, h, data)
		if err != nil {
			var re *RejectedError
			if !errors.As(err, &re) {
				t.Fatalf("error %v is not a *RejectedError", err)
			}
			return
		}
		if !sign {
			t.Fatalf("an unsigned message was accepted: %+v", ev)
		}
		if subject != "klambda.async."+ev.Namespace+"."+ev.Function || !namespaceRE.MatchString(ev.Namespace) ||
			!functionRE.MatchString(ev.Function) || !tokenRE.MatchString(ev.RequestID) ||
			(ev.Qualifier != "" && !qualifierRE.MatchString(ev.Qualifier)) || time.Until(ev.Received) > maxClockSkew {
			t.Fatalf("accepted an out-of-bounds event on %q: %+v", subject, ev)
		}
		m := ev.toMsg(q.subject(ev.Namespace, ev.Function))
		signer.sign(m)
		again, err := q.readEvent(m.Subject, m.Header, m.Data)
		if err != nil {
			t.Fatalf("the accepted event %+v, stored again, is refused: %v", ev, err)
		}
		if again.RequestID != ev.RequestID || again.Namespace != ev.Namespace || again.Function != ev.Function ||
			again.Qualifier != ev.Qualifier || again.ClientContext != ev.ClientContext || again.TraceID != ev.TraceID ||
			!again.Received.Equal(ev.Received) || !bytes.Equal(again.Payload, ev.Payload) {
			t.Fatalf("round trip changed the event: %+v, then %+v", ev, again)
		}
	})
}
