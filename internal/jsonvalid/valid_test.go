package jsonvalid

import (
	"encoding/json"
	"strings"
	"testing"
)

var cases = []string{
	``, ` `, `1`, `-0`, `-`, `01`, `1.`, `1.5`, `1e`, `1e+`, `1E-7`, `-12.5e10`, `1x`, ` 1 `,
	`true`, `tru`, `truex`, `false`, `null`, `nul`, `"`, `""`, `"abc`, `"a\"b"`, `"\u00e9"`,
	`"\u00g9"`, `"\u12"`, `"\x"`, `"\/\b\f\n\r\t\\"`, "\"a\tb\"", "\"\x1f\"", "\"\x7f\"",
	"\"\xff\xfe\"", `"01234567"`, `"0123456\"`, `"012345678901234\\"`, `"0123456789abcdef"`,
	`{}`, `{ }`, `{"a":1}`, `{"a" : [1, 2, {"b": null}] }`, `{"a":}`, `{"a" 1}`, `{a:1}`,
	`{"a":1,}`, `{,}`, `{"a":1 "b":2}`, `[]`, `[ ]`, `[1,]`, `[,]`, `[1 2]`, `[1,2`, `[[[]]]`,
	`[[[]]`, `[}`, `{]`, `[1]]`, `[1] 2`, `{"a":1}}`, "\t\r\n[\n1\n]\n", "\v1", `[true,false,null]`,
	`[truefalse]`, `["a""b"]`, `{"a":"b""c":1}`, `{"":""}`, `[1.0e+05,-0.0,0e0]`, `[-]`, `[.5]`,
	`[1e5.5]`, strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000),
	strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001),
	`"` + strings.Repeat("x", 1000) + `"`, `"` + strings.Repeat("x", 1000) + "\n" + `"`,
	`"` + strings.Repeat("é", 100) + `\"` + strings.Repeat("y", 77) + `"`,
}

// TestValidMatchesEncodingJSON: Valid answers as json.Valid on hand-picked inputs.
func TestValidMatchesEncodingJSON(t *testing.T) {
	for _, c := range cases {
		if got, want := Valid([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("Valid(%.60q) = %v, json.Valid says %v", c, got, want)
		}
	}
}

// TestSpecialByteAtEveryOffset: a quote, backslash or control character is found at any
// position of the eight-byte blocks.
func TestSpecialByteAtEveryOffset(t *testing.T) {
	for n := 0; n < 40; n++ {
		for _, special := range []string{`"`, `\`, "\x00", "\x01", "\x1f", " ", "\x80", "!", "[", `\u0041`, `\n`} {
			s := `"` + strings.Repeat("a", n) + special + strings.Repeat("b", 17) + `"`
			if got, want := Valid([]byte(s)), json.Valid([]byte(s)); got != want {
				t.Errorf("Valid(%q) = %v, json.Valid says %v", s, got, want)
			}
		}
	}
}

// FuzzValid: Valid never disagrees with json.Valid.
func FuzzValid(f *testing.F) {
	for _, c := range cases {
		if len(c) < 4096 {
			f.Add([]byte(c))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := Valid(b), json.Valid(b); got != want {
			t.Fatalf("Valid(%q) = %v, json.Valid says %v", b, got, want)
		}
	})
}

func payload() []byte {
	return []byte(`{"op":"echo","items":[1,2.5,-3e2,true,null],"data":"` + strings.Repeat("0123456789abcdef", 1<<16) + `"}`)
}

func BenchmarkValid(b *testing.B) {
	p := payload()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if !Valid(p) {
			b.Fatal("invalid")
		}
	}
}

func BenchmarkEncodingJSONValid(b *testing.B) {
	p := payload()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if !json.Valid(p) {
			b.Fatal("invalid")
		}
	}
}
