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
// it, as strconv.AppendFloat(b, f, 'g', -1, 64) writes it), or null when
// it is not finite: JSON has no NaN.
func AppendJSONFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	if out, ok := appendShortDecimal(b, f); ok {
		return out
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

var (
	pow10f = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}
	pow10u = [...]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}
)

// appendShortDecimal appends f as strconv's shortest 'g' form when that
// is a plain decimal of at most 15 significant digits between 1e-4 and
// 1e6, such as the values of a CSV written with %.6f, in half the time
// strconv takes; otherwise it reports false.
//
// It scales f to 15 significant digits, m = round(|f|·10^k), and keeps m
// only when m/10^k, rounded as a float64, is f: the decimal m·10^-k then
// parses back to f. Two decimals of at most 15 significant digits never
// parse to the same float64 (10^15 < 2^52), so this one is the shortest
// text that does, once its trailing zeros are dropped, and it is what
// strconv writes. TestAppendJSONFloat and FuzzAppendJSONFloat compare the
// two.
func appendShortDecimal(b []byte, f float64) ([]byte, bool) {
	a := math.Abs(f)
	if !(a >= 1e-4 && a < 1e6) {
		return b, false
	}
	k := 15 // fraction digits: 15 significant digits in all
	for t := 1.0; a >= t && k > 9; t *= 10 {
		k--
	}
	p := pow10f[k]
	m := math.Round(a * p)
	if m >= 1e15 || m/p != a {
		return b, false
	}
	u := uint64(m)
	if u < pow10u[k-4] {
		return b, false // below 1e-4: strconv writes an exponent
	}
	for k >= 8 && u%1e8 == 0 {
		u, k = u/1e8, k-8
	}
	for k >= 4 && u%1e4 == 0 {
		u, k = u/1e4, k-4
	}
	for k > 0 && u%10 == 0 {
		u, k = u/10, k-1
	}
	if k < 9 && u >= pow10u[k+6] {
		return b, false // 1e6 or more: strconv writes an exponent
	}
	if f < 0 {
		b = append(b, '-')
	}
	b = strconv.AppendUint(b, u/pow10u[k], 10)
	if k > 0 {
		var frac [16]byte
		frac[0] = '.'
		for i, r := k, u%pow10u[k]; i > 0; i-- {
			frac[i] = byte('0' + r%10)
			r /= 10
		}
		b = append(b, frac[:k+1]...)
	}
	return b, true
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
