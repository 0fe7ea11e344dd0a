package filter

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

type matchCase struct {
	name     string
	patterns []string
	source   Source
	metadata string
	data     map[string]string
	want     bool
}

// Records used by many cases.
const (
	person  = `{"Name":"Alice","LastName":"","UserID":null,"Location":"New York","Day":"Monday","PaymentType":"Credit","Weather":"Sunny","Price":100,"Region":"us-east-1","FileName":"cat.png","ProductName":"widget"}`
	sqsMeta = `{"messageId":"059f36b4-87a3-44ab-83d2-661975830a7d","attributes":{"ApproximateReceiveCount":"1","SenderId":"AIDAIEQZJLO23YVJ4VO"},"messageAttributes":{},"eventSource":"aws:sqs","awsRegion":"us-east-2"}`
)

func matchCases() []matchCase {
	return []matchCase{
		// Every row of the spec's operator table, matching and not.
		{name: "null matches null", patterns: []string{`{"UserID":[null]}`}, metadata: person, want: true},
		{name: "null does not match a string", patterns: []string{`{"Name":[null]}`}, metadata: person},
		{name: "null does not match a missing field", patterns: []string{`{"Nope":[null]}`}, metadata: person},
		{name: "empty matches empty string", patterns: []string{`{"LastName":[""]}`}, metadata: person, want: true},
		{name: "empty does not match non-empty", patterns: []string{`{"Name":[""]}`}, metadata: person},
		{name: "empty does not match null", patterns: []string{`{"UserID":[""]}`}, metadata: person},
		{name: "equals", patterns: []string{`{"Name":["Alice"]}`}, metadata: person, want: true},
		{name: "equals is case sensitive", patterns: []string{`{"Name":["alice"]}`}, metadata: person},
		{name: "equals-ignore-case", patterns: []string{`{"Name":[{"equals-ignore-case":"aLiCe"}]}`}, metadata: person, want: true},
		{name: "equals-ignore-case different", patterns: []string{`{"Name":[{"equals-ignore-case":"bob"}]}`}, metadata: person},
		{name: "and both hold", patterns: []string{`{"Location":["New York"],"Day":["Monday"]}`}, metadata: person, want: true},
		{name: "and one fails", patterns: []string{`{"Location":["New York"],"Day":["Tuesday"]}`}, metadata: person},
		{name: "or within a field", patterns: []string{`{"PaymentType":["Debit","Credit"]}`}, metadata: person, want: true},
		{name: "or within a field none", patterns: []string{`{"PaymentType":["Debit","Cash"]}`}, metadata: person},
		{name: "anything-but list", patterns: []string{`{"Weather":[{"anything-but":["Raining"]}]}`}, metadata: person, want: true},
		{name: "anything-but list excluded", patterns: []string{`{"Weather":[{"anything-but":["Raining","Sunny"]}]}`}, metadata: person},
		{name: "anything-but single string", patterns: []string{`{"Weather":[{"anything-but":"Sunny"}]}`}, metadata: person},
		{name: "anything-but single number", patterns: []string{`{"Price":[{"anything-but":100}]}`}, metadata: person},
		{name: "anything-but number list", patterns: []string{`{"Price":[{"anything-but":[1,2]}]}`}, metadata: person, want: true},
		{name: "anything-but prefix", patterns: []string{`{"Region":[{"anything-but":{"prefix":"eu-"}}]}`}, metadata: person, want: true},
		{name: "anything-but prefix excluded", patterns: []string{`{"Region":[{"anything-but":{"prefix":"us-"}}]}`}, metadata: person},
		{name: "anything-but suffix excluded", patterns: []string{`{"FileName":[{"anything-but":{"suffix":".png"}}]}`}, metadata: person},
		{name: "anything-but equals-ignore-case excluded", patterns: []string{`{"Weather":[{"anything-but":{"equals-ignore-case":["SUNNY"]}}]}`}, metadata: person},
		{name: "anything-but needs the field", patterns: []string{`{"Nope":[{"anything-but":["x"]}]}`}, metadata: person},
		{name: "anything-but matches other types", patterns: []string{`{"UserID":[{"anything-but":["x"]}]}`}, metadata: person, want: true},
		{name: "numeric equals", patterns: []string{`{"Price":[{"numeric":["=",100]}]}`}, metadata: person, want: true},
		{name: "numeric equals by value", patterns: []string{`{"Price":[{"numeric":["=",1e2]}]}`}, metadata: person, want: true},
		{name: "numeric equals different", patterns: []string{`{"Price":[{"numeric":["=",101]}]}`}, metadata: person},
		{name: "numeric range inside", patterns: []string{`{"Price":[{"numeric":[">",10,"<=",100]}]}`}, metadata: person, want: true},
		{name: "numeric range exclusive bound", patterns: []string{`{"Price":[{"numeric":[">",10,"<",100]}]}`}, metadata: person},
		{name: "numeric >= bound", patterns: []string{`{"Price":[{"numeric":[">=",100]}]}`}, metadata: person, want: true},
		{name: "numeric > bound", patterns: []string{`{"Price":[{"numeric":[">",100]}]}`}, metadata: person},
		{name: "numeric < ", patterns: []string{`{"Price":[{"numeric":["<",100.5]}]}`}, metadata: person, want: true},
		{name: "numeric ignores strings", patterns: []string{`{"Price":[{"numeric":[">",0]}]}`}, metadata: `{"Price":"100"}`},
		{name: "numeric negative and fraction", patterns: []string{`{"t":[{"numeric":[">=",-1.5,"<",0]}]}`}, metadata: `{"t":-1.5}`, want: true},
		{name: "exists true", patterns: []string{`{"ProductName":[{"exists":true}]}`}, metadata: person, want: true},
		{name: "exists true missing", patterns: []string{`{"Nope":[{"exists":true}]}`}, metadata: person},
		{name: "exists true on null", patterns: []string{`{"UserID":[{"exists":true}]}`}, metadata: person, want: true},
		{name: "exists false missing", patterns: []string{`{"Nope":[{"exists":false}]}`}, metadata: person, want: true},
		{name: "exists false present", patterns: []string{`{"ProductName":[{"exists":false}]}`}, metadata: person},
		{name: "exists only looks at leaves", patterns: []string{`{"a":[{"exists":true}]}`}, metadata: `{"a":{"b":1}}`},
		{name: "exists false on an object field", patterns: []string{`{"a":[{"exists":false}]}`}, metadata: `{"a":{"b":1}}`, want: true},
		{name: "exists false under a missing parent", patterns: []string{`{"a":{"b":[{"exists":false}]}}`}, metadata: `{}`, want: true},
		{name: "begins with", patterns: []string{`{"Region":[{"prefix":"us-"}]}`}, metadata: person, want: true},
		{name: "begins with no", patterns: []string{`{"Region":[{"prefix":"eu-"}]}`}, metadata: person},
		{name: "begins with ignore case", patterns: []string{`{"Region":[{"prefix":{"equals-ignore-case":"US-"}}]}`}, metadata: person, want: true},
		{name: "prefix ignores numbers", patterns: []string{`{"Price":[{"prefix":"1"}]}`}, metadata: person},
		{name: "ends with", patterns: []string{`{"FileName":[{"suffix":".png"}]}`}, metadata: person, want: true},
		{name: "ends with no", patterns: []string{`{"FileName":[{"suffix":".jpg"}]}`}, metadata: person},
		{name: "ends with ignore case", patterns: []string{`{"FileName":[{"suffix":{"equals-ignore-case":".PNG"}}]}`}, metadata: person, want: true},

		// Numbers by their text, booleans, types.
		{name: "number exact", patterns: []string{`{"n":[300]}`}, metadata: `{"n":300}`, want: true},
		{name: "number 300 vs 300.0", patterns: []string{`{"n":[300]}`}, metadata: `{"n":300.0}`},
		{name: "number 300 vs 3.0e2", patterns: []string{`{"n":[3.0e2]}`}, metadata: `{"n":300}`},
		{name: "number does not match its string", patterns: []string{`{"n":["300"]}`}, metadata: `{"n":300}`},
		{name: "string does not match a number pattern", patterns: []string{`{"n":[300]}`}, metadata: `{"n":"300"}`},
		{name: "boolean true", patterns: []string{`{"b":[true]}`}, metadata: `{"b":true}`, want: true},
		{name: "boolean mismatch", patterns: []string{`{"b":[true]}`}, metadata: `{"b":false}`},
		{name: "boolean vs string", patterns: []string{`{"b":[true]}`}, metadata: `{"b":"true"}`},

		// Structure: named fields, nesting, arrays, $or, OR-ed filters.
		{name: "named field must be present", patterns: []string{`{"Name":["Alice"],"Missing":["x"]}`}, metadata: person},
		{name: "unnamed fields ignored", patterns: []string{`{"Name":["Alice"]}`}, metadata: `{"Name":"Alice","Other":{"deep":[1,2]}}`, want: true},
		{name: "nested key", patterns: []string{`{"a":{"b":{"c":["x"]}}}`}, metadata: `{"a":{"b":{"c":"x"}}}`, want: true},
		{name: "nested key value mismatch", patterns: []string{`{"a":{"b":{"c":["x"]}}}`}, metadata: `{"a":{"b":{"c":"y"}}}`},
		{name: "object pattern on a scalar", patterns: []string{`{"a":{"b":["x"]}}`}, metadata: `{"a":"x"}`},
		{name: "leaf pattern on an object", patterns: []string{`{"a":["x"]}`}, metadata: `{"a":{"b":"x"}}`},
		{name: "array any element", patterns: []string{`{"tags":["blue"]}`}, metadata: `{"tags":["red","blue"]}`, want: true},
		{name: "array no element", patterns: []string{`{"tags":["green"]}`}, metadata: `{"tags":["red","blue"]}`},
		{name: "nested arrays flatten", patterns: []string{`{"tags":[3]}`}, metadata: `{"tags":[[1,2],[3]]}`, want: true},
		{name: "empty array is not a value", patterns: []string{`{"tags":[{"exists":true}]}`}, metadata: `{"tags":[]}`},
		{name: "array of objects", patterns: []string{`{"items":{"sku":["B"]}}`}, metadata: `{"items":[{"sku":"A"},{"sku":"B"}]}`, want: true},
		{name: "array of objects: one element must match all", patterns: []string{`{"items":{"sku":["A"],"qty":[2]}}`}, metadata: `{"items":[{"sku":"A","qty":1},{"sku":"B","qty":2}]}`},
		{name: "array of objects: same element", patterns: []string{`{"items":{"sku":["B"],"qty":[2]}}`}, metadata: `{"items":[{"sku":"A","qty":1},{"sku":"B","qty":2}]}`, want: true},
		{name: "numeric on array", patterns: []string{`{"p":[{"numeric":[">",5]}]}`}, metadata: `{"p":[1,2,9]}`, want: true},
		{name: "anything-but on array: some element differs", patterns: []string{`{"p":[{"anything-but":"a"}]}`}, metadata: `{"p":["a","b"]}`, want: true},
		{name: "anything-but on array: all excluded", patterns: []string{`{"p":[{"anything-but":["a","b"]}]}`}, metadata: `{"p":["a","b"]}`},
		{name: "$or first", patterns: []string{`{"$or":[{"a":["1"]},{"b":["2"]}]}`}, metadata: `{"a":"1"}`, want: true},
		{name: "$or second", patterns: []string{`{"$or":[{"a":["1"]},{"b":["2"]}]}`}, metadata: `{"b":"2"}`, want: true},
		{name: "$or neither", patterns: []string{`{"$or":[{"a":["1"]},{"b":["2"]}]}`}, metadata: `{"a":"2","b":"1"}`},
		{name: "$or AND siblings", patterns: []string{`{"c":["3"],"$or":[{"a":["1"]},{"b":["2"]}]}`}, metadata: `{"a":"1","c":"4"}`},
		{name: "$or nested", patterns: []string{`{"x":{"$or":[{"a":[{"numeric":[">",5]}]},{"b":[{"prefix":"z"}]}]}}`}, metadata: `{"x":{"b":"zed"}}`, want: true},
		{name: "filters are OR-ed", patterns: []string{`{"Name":["Bob"]}`, `{"Day":["Monday"]}`}, metadata: person, want: true},
		{name: "filters are OR-ed none", patterns: []string{`{"Name":["Bob"]}`, `{"Day":["Sunday"]}`}, metadata: person},
		{name: "no filters match everything", patterns: nil, metadata: person, want: true},
		{name: "duplicate keys: last wins", patterns: []string{`{"Name":["Bob"],"Name":["Alice"]}`}, metadata: person, want: true},
		{name: "invalid metadata is {}", patterns: []string{`{"a":[{"exists":false}]}`}, metadata: `not json`, want: true},
		{name: "unicode equals-ignore-case", patterns: []string{`{"n":[{"equals-ignore-case":"ÉCOLE"}]}`}, metadata: `{"n":"école"}`, want: true},

		// Spec examples.
		{name: "Kinesis partitionKey and data", source: SourceKinesis, patterns: []string{`{"partitionKey":["1"],"data":{"Location":["Los Angeles"]}}`},
			metadata: `{"partitionKey":"1","sequenceNumber":"49590338271490256608559692538361571095921575989136588898"}`, data: map[string]string{"data": `{"Location":"Los Angeles","Temperature":20}`}, want: true},
		{name: "Kinesis partitionKey mismatch", source: SourceKinesis, patterns: []string{`{"partitionKey":["1"],"data":{"Location":["Los Angeles"]}}`},
			metadata: `{"partitionKey":"2"}`, data: map[string]string{"data": `{"Location":"Los Angeles"}`}},
		{name: "Kinesis non-JSON data with JSON pattern drops", source: SourceKinesis, patterns: []string{`{"data":{"Location":["Los Angeles"]}}`},
			metadata: `{"partitionKey":"1"}`, data: map[string]string{"data": `Los Angeles`}},
		{name: "DynamoDB nested keys", source: SourceDynamoDB, patterns: []string{`{"dynamodb":{"Keys":{"Id":{"N":["101"]}}}}`},
			metadata: `{"eventName":"INSERT","dynamodb":{"Keys":{"Id":{"N":"101"}},"NewImage":{"Id":{"N":"101"},"Message":{"S":"New item!"}}}}`, want: true},
		{name: "DynamoDB nested keys other id", source: SourceDynamoDB, patterns: []string{`{"dynamodb":{"Keys":{"Id":{"N":["101"]}}}}`},
			metadata: `{"eventName":"INSERT","dynamodb":{"Keys":{"Id":{"N":"102"}}}}`},
		{name: "DynamoDB eventName and NewImage", source: SourceDynamoDB, patterns: []string{`{"eventName":["INSERT","MODIFY"],"dynamodb":{"NewImage":{"Message":{"S":[{"prefix":"New"}]}}}}`},
			metadata: `{"eventName":"MODIFY","dynamodb":{"NewImage":{"Message":{"S":"New item!"}}}}`, want: true},

		// SQS format mismatches (spec §4).
		{name: "SQS JSON body JSON pattern", source: SourceSQS, patterns: []string{`{"body":{"RequestCode":["BBBB"]}}`}, metadata: sqsMeta, data: map[string]string{"body": `{"RequestCode":"BBBB"}`}, want: true},
		{name: "SQS JSON body JSON pattern no match", source: SourceSQS, patterns: []string{`{"body":{"RequestCode":["AAAA"]}}`}, metadata: sqsMeta, data: map[string]string{"body": `{"RequestCode":"BBBB"}`}},
		{name: "SQS plain body plain pattern", source: SourceSQS, patterns: []string{`{"body":["Test message."]}`}, metadata: sqsMeta, data: map[string]string{"body": `Test message.`}, want: true},
		{name: "SQS plain body prefix pattern", source: SourceSQS, patterns: []string{`{"body":[{"prefix":"Test"}]}`}, metadata: sqsMeta, data: map[string]string{"body": `Test message.`}, want: true},
		{name: "SQS plain body JSON pattern drops", source: SourceSQS, patterns: []string{`{"body":{"RequestCode":["BBBB"]}}`}, metadata: sqsMeta, data: map[string]string{"body": `RequestCode BBBB`}},
		{name: "SQS JSON body plain pattern drops", source: SourceSQS, patterns: []string{`{"body":[{"prefix":"{"}]}`}, metadata: sqsMeta, data: map[string]string{"body": `{"RequestCode":"BBBB"}`}},
		{name: "SQS JSON body with an exists:true leaf pattern drops", source: SourceSQS, patterns: []string{`{"body":[{"exists":true}]}`}, metadata: sqsMeta, data: map[string]string{"body": `{"a":1}`}},
		{name: "SQS no data pattern: metadata only", source: SourceSQS, patterns: []string{`{"attributes":{"SenderId":["AIDAIEQZJLO23YVJ4VO"]}}`}, metadata: sqsMeta, data: map[string]string{"body": `not json at all`}, want: true},
		{name: "SQS mismatch in one filter, other filter matches", source: SourceSQS, patterns: []string{`{"body":{"a":["1"]}}`, `{"awsRegion":["us-east-2"]}`}, metadata: sqsMeta, data: map[string]string{"body": `plain`}, want: true},
		{name: "SQS JSON scalar body is a plain string", source: SourceSQS, patterns: []string{`{"body":["123"]}`}, metadata: sqsMeta, data: map[string]string{"body": `123`}, want: true},
		{name: "SQS empty body", source: SourceSQS, patterns: []string{`{"body":[""]}`}, metadata: sqsMeta, data: map[string]string{"body": ``}, want: true},
		{name: "SQS body in $or", source: SourceSQS, patterns: []string{`{"$or":[{"body":{"a":["1"]}},{"body":["x"]}]}`}, metadata: sqsMeta, data: map[string]string{"body": `x`}, want: true},

		// Kafka and MQ: mismatches fall back to metadata-only filtering, never a drop.
		{name: "Kafka JSON value JSON pattern", source: SourceKafka, patterns: []string{`{"value":{"type":["order"]}}`}, metadata: `{"topic":"t","partition":0}`, data: map[string]string{"value": `{"type":"order"}`}, want: true},
		{name: "Kafka JSON value JSON pattern no match", source: SourceKafka, patterns: []string{`{"value":{"type":["order"]}}`}, metadata: `{"topic":"t"}`, data: map[string]string{"value": `{"type":"refund"}`}},
		{name: "Kafka plain value JSON pattern: metadata only", source: SourceKafka, patterns: []string{`{"topic":["t"],"value":{"type":["order"]}}`}, metadata: `{"topic":"t"}`, data: map[string]string{"value": `plain text`}, want: true},
		{name: "Kafka metadata-only fallback still checks metadata", source: SourceKafka, patterns: []string{`{"topic":["other"],"value":{"type":["order"]}}`}, metadata: `{"topic":"t"}`, data: map[string]string{"value": `plain text`}},
		{name: "Kafka JSON value string pattern: metadata only", source: SourceKafka, patterns: []string{`{"value":["nope"]}`}, metadata: `{"topic":"t"}`, data: map[string]string{"value": `{"type":"order"}`}, want: true},
		{name: "Kafka non-UTF-8 value: metadata only", source: SourceKafka, patterns: []string{`{"value":["nope"]}`}, metadata: `{"topic":"t"}`, data: map[string]string{"value": "\xff\xfe\x00"}, want: true},
		{name: "Kafka plain key plain pattern", source: SourceKafka, patterns: []string{`{"key":[{"prefix":"user-"}]}`}, metadata: `{"topic":"t"}`, data: map[string]string{"key": `user-42`}, want: true},
		{name: "Kafka plain key plain pattern no match", source: SourceKafka, patterns: []string{`{"key":[{"prefix":"user-"}]}`}, metadata: `{"topic":"t"}`, data: map[string]string{"key": `order-42`}},
		{name: "Kafka key and value both checked", source: SourceKafka, patterns: []string{`{"key":["k"],"value":{"n":[{"numeric":[">",1]}]}}`}, metadata: `{}`, data: map[string]string{"key": "k", "value": `{"n":2}`}, want: true},
		{name: "Kafka missing key fails a key pattern", source: SourceKafka, patterns: []string{`{"key":["k"]}`}, metadata: `{"topic":"t"}`},
		{name: "MQ JSON data", source: SourceMQ, patterns: []string{`{"data":{"order":{"total":[{"numeric":[">=",10]}]}}}`}, metadata: `{}`, data: map[string]string{"data": `{"order":{"total":12.5}}`}, want: true},
		{name: "MQ plain data JSON pattern: metadata only", source: SourceMQ, patterns: []string{`{"data":{"order":["x"]}}`}, metadata: `{}`, data: map[string]string{"data": `hello`}, want: true},
		{name: "NATS JSON data", source: SourceNATS, patterns: []string{`{"subject":[{"prefix":"orders."}],"data":{"id":[7]}}`}, metadata: `{"subject":"orders.created"}`, data: map[string]string{"data": `{"id":7}`}, want: true},
		{name: "NATS JSON data mismatch value", source: SourceNATS, patterns: []string{`{"data":{"id":[7]}}`}, metadata: `{}`, data: map[string]string{"data": `{"id":8}`}},
	}
}

func TestMatch(t *testing.T) {
	cases := matchCases()
	if len(cases) < 60 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := CompilePatterns(tc.patterns)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			rec := Record{Source: tc.source, Metadata: json.RawMessage(tc.metadata)}
			if tc.data != nil {
				rec.Data = map[string][]byte{}
				for k, v := range tc.data {
					rec.Data[k] = []byte(v)
				}
			}
			if got := m.Match(rec); got != tc.want {
				t.Errorf("Match = %v, want %v\npatterns %s\nmetadata %s\ndata %q", got, tc.want, tc.patterns, tc.metadata, tc.data)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	cases := []struct {
		name    string
		pattern string
		opts    []Option
		want    string // substring of the message
	}{
		{"not JSON", `{"a":`, nil, "not valid JSON"},
		{"trailing data", `{"a":["x"]} {}`, nil, "not valid JSON"},
		{"not an object", `["a"]`, nil, "must be a JSON object"},
		{"empty pattern", `{}`, nil, "at least one field"},
		{"empty nested object", `{"a":{}}`, nil, "at least one field"},
		{"bare string value", `{"a":"x"}`, nil, "must be an array or an object"},
		{"bare number value", `{"a":1}`, nil, "must be an array or an object"},
		{"empty array", `{"a":[]}`, nil, "empty arrays"},
		{"nested array", `{"a":[["x"]]}`, nil, "nested arrays"},
		{"unknown operator", `{"a":[{"wildcard":"*.png"}]}`, nil, `unrecognized match type "wildcard"`},
		{"two operator keys", `{"a":[{"prefix":"x","suffix":"y"}]}`, nil, "exactly one key"},
		{"empty operator", `{"a":[{}]}`, nil, "exactly one key"},
		{"exists not bool", `{"a":[{"exists":"yes"}]}`, nil, "exists takes true or false"},
		{"prefix not string", `{"a":[{"prefix":1}]}`, nil, "prefix takes a string"},
		{"suffix not string", `{"a":[{"suffix":null}]}`, nil, "suffix takes a string"},
		{"equals-ignore-case not string", `{"a":[{"equals-ignore-case":["x"]}]}`, nil, "equals-ignore-case takes a string"},
		{"numeric not array", `{"a":[{"numeric":">"}]}`, nil, "numeric takes"},
		{"numeric odd", `{"a":[{"numeric":[">",1,"<"]}]}`, nil, "numeric takes"},
		{"numeric bad op", `{"a":[{"numeric":["!=",1]}]}`, nil, `unrecognized operator "!="`},
		{"numeric string value", `{"a":[{"numeric":[">","1"]}]}`, nil, "needs a number"},
		{"numeric two lower", `{"a":[{"numeric":[">",1,">=",2]}]}`, nil, "two lower bounds"},
		{"numeric equals combined", `{"a":[{"numeric":["=",1,"<",2]}]}`, nil, `"=" can't be combined`},
		{"numeric empty range", `{"a":[{"numeric":[">",5,"<",5]}]}`, nil, "range is empty"},
		{"numeric inverted range", `{"a":[{"numeric":[">",10,"<",5]}]}`, nil, "range is empty"},
		{"numeric too long", `{"a":[{"numeric":[">",1,"<",5,"=",3]}]}`, nil, "numeric takes"},
		{"number out of range", `{"a":[1e999]}`, nil, "out of range"},
		{"anything-but empty list", `{"a":[{"anything-but":[]}]}`, nil, "at least one value"},
		{"anything-but bool", `{"a":[{"anything-but":true}]}`, nil, "anything-but takes"},
		{"anything-but list with null", `{"a":[{"anything-but":["x",null]}]}`, nil, "only strings and numbers"},
		{"anything-but unknown inner", `{"a":[{"anything-but":{"wildcard":"x"}}]}`, nil, `does not support "wildcard"`},
		{"anything-but prefix not string", `{"a":[{"anything-but":{"prefix":["x"]}}]}`, nil, "prefix takes a string"},
		{"$or not array", `{"$or":{"a":["x"]}}`, nil, "$or must be an array"},
		{"$or one alternative", `{"$or":[{"a":["x"]}]}`, nil, "$or must be an array"},
		{"$or scalar alternative", `{"$or":[{"a":["x"]},"b"]}`, nil, "non-empty pattern object"},
		{"nested error path", `{"a":{"b":[{"numeric":[">",1,">",2]}]}}`, nil, `"a.b"`},
		{"Kinesis plain data pattern", `{"data":["x"]}`, []Option{ForSource(SourceKinesis)}, "must be a JSON object"},
		{"Kinesis plain data pattern in $or", `{"$or":[{"data":["x"]},{"partitionKey":["1"]}]}`, []Option{ForSource(SourceKinesis)}, "must be a JSON object"},
		{"too long", `{"a":["` + strings.Repeat("x", MaxPatternLength) + `"]}`, nil, "maximum is 4096"},
		{"invalid UTF-8", "{\"a\":[\"\xff\"]}", nil, "UTF-8"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(Criteria{Filters: []Filter{{Pattern: `{"ok":["yes"]}`}, {Pattern: tc.pattern}}}, tc.opts...)
			if err == nil {
				t.Fatalf("Compile(%s) succeeded", tc.pattern)
			}
			var fe *Error
			if !errors.As(err, &fe) || fe.Filter != 1 {
				t.Fatalf("error %v is not an *Error for filter 1", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "InvalidParameterValueException: Invalid filter pattern definition: Filters[1].Pattern") || !strings.Contains(msg, tc.want) {
				t.Errorf("message %q lacks %q", msg, tc.want)
			}
		})
	}
}

func TestCompileLimits(t *testing.T) {
	filters := func(n int) Criteria {
		c := Criteria{}
		for i := 0; i < n; i++ {
			c.Filters = append(c.Filters, Filter{Pattern: `{"a":["x"]}`})
		}
		return c
	}
	if _, err := Compile(filters(5)); err != nil {
		t.Errorf("5 filters: %v", err)
	}
	_, err := Compile(filters(6))
	if err == nil || !strings.Contains(err.Error(), "6 filters exceed the maximum of 5") {
		t.Errorf("6 filters: %v", err)
	}
	if _, err := Compile(filters(10), WithMaxFilters(RaisedMaxFilters)); err != nil {
		t.Errorf("10 filters with the raised quota: %v", err)
	}
	if _, err := Compile(filters(11), WithMaxFilters(RaisedMaxFilters)); err == nil {
		t.Error("11 filters with the raised quota accepted")
	}
	long := `{"a":["` + strings.Repeat("é", MaxPatternLength-10) + `"]}` // exactly 4096 characters, more bytes
	if _, err := Compile(Criteria{Filters: []Filter{{Pattern: long}}}); err != nil {
		t.Errorf("4096-character pattern: %v", err)
	}
	// A Kinesis string data pattern is fine for other sources (SQS bodies are strings).
	if _, err := CompilePatterns([]string{`{"data":["x"]}`}, ForSource(SourceMQ)); err != nil {
		t.Errorf("MQ string data pattern: %v", err)
	}
}

func TestCriteriaJSON(t *testing.T) {
	// Lambda's wire shape: {"Filters":[{"Pattern":"<json string>"}]}.
	var c Criteria
	if err := json.Unmarshal([]byte(`{"Filters":[{"Pattern":"{\"body\":{\"a\":[\"1\"]}}"}]}`), &c); err != nil {
		t.Fatal(err)
	}
	m, err := Compile(c)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Match(Record{Source: SourceSQS, Data: map[string][]byte{"body": []byte(`{"a":"1"}`)}}) {
		t.Error("no match")
	}
}

func TestMatcherConcurrentUse(t *testing.T) {
	m, err := CompilePatterns([]string{`{"value":{"n":[{"numeric":[">",1]}]}}`})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan bool)
	for i := 0; i < 4; i++ {
		go func() {
			ok := true
			for j := 0; j < 200; j++ {
				ok = ok && m.Match(Record{Source: SourceKafka, Data: map[string][]byte{"value": []byte(`{"n":2}`)}})
			}
			done <- ok
		}()
	}
	for i := 0; i < 4; i++ {
		if !<-done {
			t.Error("concurrent match failed")
		}
	}
}

var benchSink bool

func BenchmarkMatch(b *testing.B) {
	m, err := CompilePatterns([]string{
		`{"topic":["orders"],"value":{"type":["refund"]}}`,
		`{"headers":{"tenant":[{"prefix":"acme-"}]},"value":{"amount":[{"numeric":[">",100,"<=",1000]}],"currency":[{"anything-but":["XXX"]}]}}`,
	})
	if err != nil {
		b.Fatal(err)
	}
	rec := Record{
		Source:   SourceKafka,
		Metadata: json.RawMessage(`{"topic":"orders","partition":3,"offset":1234,"timestamp":1545084650987,"timestampType":"CREATE_TIME","headers":{"tenant":"acme-eu"}}`),
		Data: map[string][]byte{
			"key":   []byte("order-1234"),
			"value": []byte(`{"type":"order","amount":250.5,"currency":"EUR","lines":[{"sku":"A","qty":1},{"sku":"B","qty":3}]}`),
		},
	}
	b.ReportAllocs()
	for b.Loop() {
		benchSink = m.Match(rec)
	}
	if !benchSink {
		b.Fatal("benchmark record does not match")
	}
}
