// Package jsonvalid tells whether bytes are one JSON value, exactly as encoding/json.Valid
// does (RFC 8259 grammar, any bytes >= 0x80 inside strings, nesting at most 10000 deep), at
// memory speed: the contents of strings, which make up most of a large payload, are scanned
// eight bytes at a time. encoding/json's scanner spends a few nanoseconds per byte, which
// is milliseconds per megabyte in every invocation of the shim and the activator.
package jsonvalid

import "encoding/binary"

// maxDepth is encoding/json's maxNestingDepth.
const maxDepth = 10000

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// Valid reports whether b is one JSON value, with optional surrounding whitespace.
func Valid(b []byte) bool {
	// stack holds one bit per open container: 1 for an object, 0 for an array.
	var stack [maxDepth/64 + 1]uint64
	depth := 0
	i := skipSpace(b, 0)
	for {
		// A value starts at i.
		if i >= len(b) {
			return false
		}
		switch c := b[i]; c {
		case '{', '[':
			if depth == maxDepth {
				return false
			}
			if c == '{' {
				stack[depth/64] |= 1 << (depth % 64)
			} else {
				stack[depth/64] &^= 1 << (depth % 64)
			}
			depth++
			i = skipSpace(b, i+1)
			if i < len(b) && b[i] == closer(c) {
				depth--
				i++
				break
			}
			if c == '{' {
				if i = objectKey(b, i); i < 0 {
					return false
				}
			}
			continue
		case '"':
			if i = endOfString(b, i+1); i < 0 {
				return false
			}
		case 't':
			if i = literal(b, i, "true"); i < 0 {
				return false
			}
		case 'f':
			if i = literal(b, i, "false"); i < 0 {
				return false
			}
		case 'n':
			if i = literal(b, i, "null"); i < 0 {
				return false
			}
		default:
			if i = endOfNumber(b, i); i < 0 {
				return false
			}
		}
		// A value ended before i: close containers, or find the next value.
		for {
			i = skipSpace(b, i)
			if depth == 0 {
				return i == len(b)
			}
			if i >= len(b) {
				return false
			}
			inObject := stack[(depth-1)/64]&(1<<((depth-1)%64)) != 0
			c := b[i]
			if c == ',' {
				i = skipSpace(b, i+1)
				if inObject {
					if i = objectKey(b, i); i < 0 {
						return false
					}
				}
				break
			}
			if inObject && c == '}' || !inObject && c == ']' {
				depth--
				i++
				continue
			}
			return false
		}
	}
}

func closer(c byte) byte {
	if c == '{' {
		return '}'
	}
	return ']'
}

// objectKey reads `"key" :` at i (after whitespace) and the whitespace after the colon; it
// returns where the value starts, or -1.
func objectKey(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	if i = endOfString(b, i+1); i < 0 {
		return -1
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return -1
	}
	return skipSpace(b, i+1)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func literal(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// endOfString returns the index after the closing quote of the string whose contents
// start at i, or -1.
func endOfString(b []byte, i int) int {
	for {
		// Sixteen, then eight bytes at a time while none is a quote, a backslash or a
		// control character.
		for i+16 <= len(b) && (special(binary.LittleEndian.Uint64(b[i:]))|special(binary.LittleEndian.Uint64(b[i+8:])))&msb == 0 {
			i += 16
		}
		for i+8 <= len(b) {
			if special(binary.LittleEndian.Uint64(b[i:]))&msb != 0 {
				break
			}
			i += 8
		}
		if i >= len(b) {
			return -1
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			i++
			if i >= len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if len(b)-i < 5 {
					return -1
				}
				for _, h := range b[i+1 : i+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return -1
					}
				}
				i += 5
			default:
				return -1
			}
		case c < 0x20:
			return -1
		default:
			i++
		}
	}
}

// special has a high bit set (&msb != 0) when one of w's eight bytes is a quote, a
// backslash or a control character, and none otherwise (each test is exact for whether
// any byte matches; only which bit is set may be wrong).
func special(w uint64) uint64 {
	q := w ^ ('"' * lsb)
	s := w ^ ('\\' * lsb)
	return (q-lsb)&^q | (s-lsb)&^s | (w-0x20*lsb)&^w
}

// endOfNumber returns the index after the number starting at i, or -1:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func endOfNumber(b []byte, i int) int {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return -1
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		i = digits(b, i+1)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}
