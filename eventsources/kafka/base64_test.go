package kafka

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"testing"
)

// appendBase64 writes what the standard library writes, at every length and after what dst
// already holds.
func TestAppendBase64MatchesTheStandardLibrary(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 600 {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(r.UintN(256))
		}
		want := base64.StdEncoding.AppendEncode([]byte("prefix"), src)
		if got := appendBase64([]byte("prefix"), src); !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: got %s, want %s", n, got, want)
		}
	}
	all := make([]byte, 256*3)
	for i := range all {
		all[i] = byte(i)
	}
	if got, want := appendBase64(nil, all), base64.StdEncoding.AppendEncode(nil, all); !bytes.Equal(got, want) {
		t.Errorf("every byte value: got %s, want %s", got, want)
	}
}

func FuzzAppendBase64(f *testing.F) {
	f.Add([]byte("hello, kafka"))
	f.Fuzz(func(t *testing.T, src []byte) {
		if got, want := appendBase64(nil, src), base64.StdEncoding.AppendEncode(nil, src); !bytes.Equal(got, want) {
			t.Fatalf("%x: got %s, want %s", src, got, want)
		}
	})
}

func BenchmarkBase64(b *testing.B) {
	src := bytes.Repeat([]byte("abcdefghijklmnopqrstuvwxyz"), 10)[:256]
	dst := make([]byte, 0, 512)
	b.Run("stdlib", func(b *testing.B) {
		for b.Loop() {
			dst = base64.StdEncoding.AppendEncode(dst[:0], src)
		}
	})
	b.Run("appendBase64", func(b *testing.B) {
		for b.Loop() {
			dst = appendBase64(dst[:0], src)
		}
	})
}
