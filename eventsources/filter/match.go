package filter

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Source is the kind of event source a record comes from. It decides which top-level fields
// are data fields and what a format mismatch does.
type Source int

const (
	// SourceGeneric has no data fields: the whole record is metadata (e.g. DynamoDB, whose
	// "dynamodb" field is already JSON).
	SourceGeneric Source = iota
	// SourceSQS: data field "body"; a mismatch drops the record.
	SourceSQS
	// SourceKinesis: data field "data", matched as JSON only; a mismatch drops the record.
	SourceKinesis
	// SourceDynamoDB: no data fields.
	SourceDynamoDB
	// SourceKafka (MSK and self-managed): data fields "key" and "value"; a mismatch or
	// non-UTF-8 data falls back to metadata-only filtering.
	SourceKafka
	// SourceMQ (RabbitMQ, ActiveMQ): data field "data"; mismatches fall back like Kafka.
	SourceMQ
	// SourceNATS (NATS JetStream, klambda's own source): data field "data"; it is a
	// byte stream like Kafka's, so mismatches fall back like Kafka.
	SourceNATS
)

func (s Source) String() string {
	switch s {
	case SourceSQS:
		return "sqs"
	case SourceKinesis:
		return "kinesis"
	case SourceDynamoDB:
		return "dynamodb"
	case SourceKafka:
		return "kafka"
	case SourceMQ:
		return "mq"
	case SourceNATS:
		return "nats"
	}
	return "generic"
}

// DataFields are the names of the source's data fields, the ones given as bytes in
// Record.Data rather than in Record.Metadata.
func (s Source) DataFields() []string {
	switch s {
	case SourceSQS:
		return []string{"body"}
	case SourceKinesis, SourceMQ, SourceNATS:
		return []string{"data"}
	case SourceKafka:
		return []string{"key", "value"}
	}
	return nil
}

func (s Source) fallsBackOnMismatch() bool {
	return s == SourceKafka || s == SourceMQ || s == SourceNATS
}

func (s Source) isDataField(name string) bool {
	for _, f := range s.DataFields() {
		if f == name {
			return true
		}
	}
	return false
}

// Record is what a filter sees of one message.
type Record struct {
	// Source decides the data fields and the mismatch rules.
	Source Source
	// Metadata is a JSON object of the record's other fields as Lambda's pattern names them
	// (e.g. SQS "attributes" and "messageAttributes", Kafka "topic", "partition", "headers",
	// Kinesis "partitionKey"). Empty or invalid means {}.
	Metadata json.RawMessage
	// Fields, when not nil, stands for Metadata already decoded, as Match would decode it
	// (numbers as json.Number): FromKafka builds it without JSON, because a Kafka mapping
	// with filters views every fetched record and marshalling, decoding and marshalling
	// again cost tens of µs per record.
	Fields map[string]any
	// Data holds the decoded bytes of the data fields present (Kafka: base64-decoded key and
	// value). A data field absent from Data is looked up in Metadata like any other field;
	// a nil Kafka key should simply be left out.
	Data map[string][]byte
}

// Match reports whether any filter matches the record. A Matcher without filters matches
// everything.
func (m *Matcher) Match(r Record) bool {
	if m == nil || len(m.filters) == 0 {
		return true
	}
	rv := newRecordView(r)
	for _, f := range m.filters {
		if f.matchRoot(rv) {
			return true
		}
	}
	return false
}

// recordView is a record decoded once for all filters.
type recordView struct {
	source   Source
	metadata map[string]any
	data     map[string]*dataValue
}

// dataValue is one data field, decoded lazily.
type dataValue struct {
	raw     []byte
	decoded bool
	isJSON  bool // a JSON object or array
	json    any
	str     string
	utf8    bool
}

func (d *dataValue) decode() {
	if d.decoded {
		return
	}
	d.decoded = true
	d.utf8 = utf8.Valid(d.raw)
	if v, ok := decodeJSON(d.raw); ok {
		switch v.(type) {
		case map[string]any, []any:
			d.isJSON, d.json = true, v
		}
	}
	if !d.isJSON {
		d.str = string(d.raw)
	}
}

func newRecordView(r Record) *recordView {
	rv := &recordView{source: r.Source, metadata: r.Fields}
	if r.Fields == nil && len(r.Metadata) > 0 {
		if v, ok := decodeJSON(r.Metadata); ok {
			rv.metadata, _ = v.(map[string]any)
		}
	}
	for name, b := range r.Data {
		if !r.Source.isDataField(name) {
			continue
		}
		if rv.data == nil {
			rv.data = map[string]*dataValue{}
		}
		rv.data[name] = &dataValue{raw: b}
	}
	return rv
}

// matchRoot is match for the top level, where data fields follow the source's rules.
func (p *objectPattern) matchRoot(rv *recordView) bool {
	for _, f := range p.fields {
		if d, ok := rv.data[f.name]; ok {
			if !matchData(f, d, rv.source) {
				return false
			}
			continue
		}
		v, present := rv.metadata[f.name]
		if !f.match(v, present) {
			return false
		}
	}
	for _, alts := range p.ors {
		ok := false
		for _, a := range alts {
			if a.matchRoot(rv) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// matchData applies Lambda's format-mismatch table to one data field.
func matchData(f *fieldPattern, d *dataValue, source Source) bool {
	d.decode()
	if source.fallsBackOnMismatch() {
		if !d.utf8 {
			return true
		}
		switch {
		case f.object != nil && d.isJSON:
			return f.object.match(d.json, true)
		case f.leaf != nil && !d.isJSON:
			return f.leaf.match(d.str, true)
		}
		return true // mismatch: metadata-only filtering
	}
	switch {
	case f.object != nil && d.isJSON:
		return f.object.match(d.json, true)
	case f.leaf != nil && !d.isJSON && source != SourceKinesis:
		return f.leaf.match(d.str, true)
	}
	return false // mismatch: drop
}

func (f *fieldPattern) match(v any, present bool) bool {
	if f.object != nil {
		return f.object.match(v, present)
	}
	return f.leaf.match(v, present)
}

// match matches an object pattern against a value. Against an array it needs one object
// element to match the whole sub-pattern; against anything that is not an object (or a
// missing field) every named field is missing, so only exists:false can hold.
func (p *objectPattern) match(v any, present bool) bool {
	switch x := v.(type) {
	case map[string]any:
		if !present {
			break
		}
		return p.matchObject(x)
	case []any:
		if !present {
			break
		}
		sawObject := false
		found := false
		eachElement(x, func(el any) bool {
			if obj, ok := el.(map[string]any); ok {
				sawObject = true
				if p.matchObject(obj) {
					found = true
					return false
				}
			}
			return true
		})
		if sawObject {
			return found
		}
	}
	return p.matchObject(nil)
}

func (p *objectPattern) matchObject(obj map[string]any) bool {
	for _, f := range p.fields {
		v, present := obj[f.name]
		if !f.match(v, present) {
			return false
		}
	}
	for _, alts := range p.ors {
		ok := false
		for _, a := range alts {
			if a.matchObject(obj) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// eachElement walks an array, flattening nested arrays, until fn returns false.
func eachElement(arr []any, fn func(any) bool) bool {
	for _, el := range arr {
		if inner, ok := el.([]any); ok {
			if !eachElement(inner, fn) {
				return false
			}
			continue
		}
		if !fn(el) {
			return false
		}
	}
	return true
}

func isLeaf(v any) bool {
	switch v.(type) {
	case map[string]any, []any:
		return false
	}
	return true
}

// match matches a leaf list. Only scalar values (and scalars inside arrays) are leaves; a
// field holding an object or an array without scalars "does not exist" for the leaf.
func (l *leafPattern) match(v any, present bool) bool {
	if !present {
		return l.existsFalse
	}
	if isLeaf(v) {
		return l.existsTrue || l.matchValue(v)
	}
	arr, ok := v.([]any)
	if !ok {
		return l.existsFalse
	}
	sawLeaf, found := false, false
	eachElement(arr, func(el any) bool {
		if !isLeaf(el) {
			return true
		}
		sawLeaf = true
		if l.existsTrue || l.matchValue(el) {
			found = true
			return false
		}
		return true
	})
	if !sawLeaf {
		return l.existsFalse
	}
	return found
}

func (l *leafPattern) matchValue(v any) bool {
	for _, m := range l.values {
		if m.match(v) {
			return true
		}
	}
	return false
}

// --- leaf value matchers; v is a string, json.Number, bool or nil ---

type valueMatcher interface {
	match(v any) bool
}

type exactString string

func (e exactString) match(v any) bool {
	s, ok := v.(string)
	return ok && s == string(e)
}

// exactNumber compares JSON text, following Lambda's "numbers are compared by their string
// representation".
type exactNumber string

func (e exactNumber) match(v any) bool {
	n, ok := v.(json.Number)
	return ok && string(n) == string(e)
}

type exactBool bool

func (e exactBool) match(v any) bool {
	b, ok := v.(bool)
	return ok && b == bool(e)
}

type exactNull struct{}

func (exactNull) match(v any) bool { return v == nil }

type ignoreCase string

func (e ignoreCase) match(v any) bool {
	s, ok := v.(string)
	return ok && strings.EqualFold(s, string(e))
}

// affix is prefix or suffix; with fold, text is lower-cased already.
type affix struct {
	suffix bool
	fold   bool
	text   string
}

func (a affix) match(v any) bool {
	s, ok := v.(string)
	if !ok {
		return false
	}
	if a.fold {
		s = strings.ToLower(s)
	}
	if a.suffix {
		return strings.HasSuffix(s, a.text)
	}
	return strings.HasPrefix(s, a.text)
}

type numericRange struct {
	lower, upper         float64
	lowerIncl, upperIncl bool
}

func (r numericRange) match(v any) bool {
	n, ok := v.(json.Number)
	if !ok {
		return false
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		return false
	}
	if f < r.lower || (f == r.lower && !r.lowerIncl) {
		return false
	}
	if f > r.upper || (f == r.upper && !r.upperIncl) {
		return false
	}
	return true
}

// anythingBut matches any leaf value (of any type) its inner matcher doesn't.
type anythingBut struct{ inner valueMatcher }

func (a anythingBut) match(v any) bool { return !a.inner.match(v) }

type valueSet struct {
	strings map[string]bool
	numbers map[string]bool
}

func (s valueSet) match(v any) bool {
	switch x := v.(type) {
	case string:
		return s.strings[x]
	case json.Number:
		return s.numbers[string(x)]
	}
	return false
}

type anyOf []valueMatcher

func (a anyOf) match(v any) bool {
	for _, m := range a {
		if m.match(v) {
			return true
		}
	}
	return false
}
