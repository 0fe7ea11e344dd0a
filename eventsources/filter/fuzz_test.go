package filter

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzCompile checks that any pattern is either rejected with an *Error or compiles into a
// matcher that answers quickly.
func FuzzCompile(f *testing.F) {
	for _, tc := range matchCases() {
		for _, p := range tc.patterns {
			f.Add(p)
		}
	}
	f.Add(`{"$or":[{"a":[{"numeric":[">",1,"<",2]}]},{"b":{"$or":[{"c":[null]},{"d":[{"exists":false}]}]}}]}`)
	f.Add(`{"a":[{"anything-but":{"equals-ignore-case":["x","Y"]}}]}`)
	f.Fuzz(func(t *testing.T, pattern string) {
		m, err := CompilePatterns([]string{pattern}, ForSource(SourceKinesis))
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		start := time.Now()
		m.Match(Record{Source: SourceKinesis, Metadata: json.RawMessage(`{"a":[1,"x",null,{"b":true}],"partitionKey":"1"}`), Data: map[string][]byte{"data": []byte(`{"a":{"b":[1,2]}}`)}})
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Match took %v", d)
		}
	})
}

// FuzzMatch matches fuzzed records, with fuzzed data, against fuzzed patterns: it must never
// panic or hang, whatever the source kind.
func FuzzMatch(f *testing.F) {
	for _, tc := range matchCases() {
		var p, data string
		if len(tc.patterns) > 0 {
			p = tc.patterns[0]
		}
		for _, v := range tc.data {
			data = v
		}
		f.Add(p, tc.metadata, data, uint8(tc.source))
	}
	f.Fuzz(func(t *testing.T, pattern, metadata, data string, source uint8) {
		src := Source(source % 7)
		m, err := CompilePatterns([]string{pattern, `{"z":[{"exists":false}],"y":[{"anything-but":{"prefix":"q"}}]}`})
		if err != nil {
			return
		}
		rec := Record{Source: src, Metadata: json.RawMessage(metadata), Data: map[string][]byte{}}
		for _, name := range src.DataFields() {
			rec.Data[name] = []byte(data)
		}
		start := time.Now()
		first := m.Match(rec)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Match took %v", d)
		}
		if m.Match(rec) != first {
			t.Fatal("Match is not deterministic")
		}
	})
}
