package features

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// The appenders below write JSON into a caller's buffer without
// reflection: answers and feature-log lines are written with them on the
// request path, where encoding/json's allocations showed in profiles.

// AppendJSON appends v in its natural JSON form, as MarshalJSON writes it:
// numbers, booleans and strings as they are, vectors and lists as arrays,
// and null for an invalid value, a nil list or a non-finite number.
func (v *Value) AppendJSON(b []byte) []byte {
	switch v.t {
	case Float:
		return AppendJSONFloat(b, v.Float())
	case Int:
		return strconv.AppendInt(b, v.Int(), 10)
	case Bool:
		return strconv.AppendBool(b, v.Bool())
	case String:
		return AppendJSONString(b, v.s)
	case Vector:
		b = append(b, '[')
		for i, f := range v.vec {
			if i > 0 {
				b = append(b, ',')
			}
			if f != f || math.IsInf(float64(f), 0) {
				b = append(b, "null"...)
			} else {
				b = strconv.AppendFloat(b, float64(f), 'g', -1, 32)
			}
		}
		return append(b, ']')
	case List:
		if v.list == nil {
			return append(b, "null"...)
		}
		b = append(b, '[')
		for i, s := range v.list {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendJSONString(b, s)
		}
		return append(b, ']')
	}
	return append(b, "null"...)
}

// AppendJSONFloat appends f exactly (the shortest text that parses back to
// it), or null when it is not finite: JSON has no NaN.
func AppendJSONFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string byte for byte as
// encoding/json writes it: <, > and & escaped for HTML, invalid UTF-8 as
// \ufffd, U+2028 and U+2029 escaped.
func AppendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
