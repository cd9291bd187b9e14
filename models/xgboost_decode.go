package models

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The XGBoost loader reads JSON and UBJSON through one small pull decoder
// interface, so that the model schema is walked once for both. Arrays of
// numbers decode straight into typed slices: no generic document is ever
// built, and no slice is allocated before the input is known to hold its
// elements (each element takes at least one byte of input).

// maxDecodeDepth caps the nesting of arrays and objects.
const maxDecodeDepth = 64

// errSyntax is wrapped by every error a decoder returns.
var errSyntax = errors.New("syntax")

// valueKind is the kind of the next value of a decoder.
type valueKind uint8

const (
	kindNull valueKind = iota
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

// decoder reads one document value by value.
type decoder interface {
	// kind returns the kind of the next value without consuming it.
	kind() (valueKind, error)
	// object reads an object, calling member for each key; member must
	// consume the key's value.
	object(member func(key string) error) error
	// array reads an array, calling elem for each element; elem must
	// consume it.
	array(elem func() error) error
	str() (string, error)
	// float returns a number rounded once, to float32 when f32 is set.
	float(f32 bool) (float64, error)
	// int returns an integral number (or a boolean as 0 or 1).
	int() (int64, error)
	// floats reads an array of numbers as float32.
	floats() ([]float32, error)
	// ints reads an array of integers (or booleans) that fit in int32.
	ints() ([]int32, error)
	skip() error
	// check walks the next value checking its syntax, keeping and
	// allocating nothing, so that a whole document can be checked before
	// anything is decoded from it.
	check() error
	// end checks that nothing but padding follows the document.
	end() error
}

// jsonDecoder decodes JSON text, accepting the NaN, Infinity and
// -Infinity tokens XGBoost writes.
type jsonDecoder struct {
	b     []byte
	i     int
	depth int
}

func (d *jsonDecoder) end() error {
	d.space()
	if d.i < len(d.b) {
		return d.errorf("data after the document")
	}
	return nil
}

func (d *jsonDecoder) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: json at byte %d: %s", errSyntax, d.i, fmt.Sprintf(format, args...))
}

func (d *jsonDecoder) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *jsonDecoder) kind() (valueKind, error) {
	d.space()
	if d.i >= len(d.b) {
		return 0, d.errorf("unexpected end")
	}
	switch c := d.b[d.i]; {
	case c == '{':
		return kindObject, nil
	case c == '[':
		return kindArray, nil
	case c == '"':
		return kindString, nil
	case c == 't' || c == 'f':
		return kindBool, nil
	case c == 'n':
		return kindNull, nil
	case c == '-' || c >= '0' && c <= '9' || c == 'N' || c == 'I':
		return kindNumber, nil
	default:
		return 0, d.errorf("unexpected %q", c)
	}
}

// literal consumes the word w.
func (d *jsonDecoder) literal(w string) bool {
	if len(d.b)-d.i >= len(w) && string(d.b[d.i:d.i+len(w)]) == w {
		d.i += len(w)
		return true
	}
	return false
}

// container reads the elements of an array (close ']') or the members of
// an object (close '}'), calling each after positioning on an element.
func (d *jsonDecoder) container(open, close byte, each func() error) error {
	d.space()
	if d.i >= len(d.b) || d.b[d.i] != open {
		return d.errorf("want %q", open)
	}
	if d.depth >= maxDecodeDepth {
		return d.errorf("nested deeper than %d", maxDecodeDepth)
	}
	d.depth++
	defer func() { d.depth-- }()
	d.i++
	d.space()
	if d.i < len(d.b) && d.b[d.i] == close {
		d.i++
		return nil
	}
	for {
		if err := each(); err != nil {
			return err
		}
		d.space()
		if d.i >= len(d.b) {
			return d.errorf("unexpected end")
		}
		switch d.b[d.i] {
		case ',':
			d.i++
		case close:
			d.i++
			return nil
		default:
			return d.errorf("want ',' or %q, found %q", close, d.b[d.i])
		}
	}
}

func (d *jsonDecoder) object(member func(key string) error) error {
	return d.container('{', '}', func() error {
		key, err := d.str()
		if err != nil {
			return err
		}
		d.space()
		if d.i >= len(d.b) || d.b[d.i] != ':' {
			return d.errorf("want ':' after key %q", key)
		}
		d.i++
		return member(key)
	})
}

func (d *jsonDecoder) array(elem func() error) error {
	return d.container('[', ']', elem)
}

func (d *jsonDecoder) str() (string, error) {
	d.space()
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return "", d.errorf("want a string")
	}
	start := d.i
	escaped := false
	for j := d.i + 1; j < len(d.b); j++ {
		switch c := d.b[j]; {
		case c == '\\':
			escaped = true
			j++
		case c == '"':
			d.i = j + 1
			if !escaped {
				return string(d.b[start+1 : j]), nil
			}
			var s string
			if err := json.Unmarshal(d.b[start:j+1], &s); err != nil {
				d.i = start
				return "", d.errorf("bad string: %v", err)
			}
			return s, nil
		case c < 0x20:
			d.i = j
			return "", d.errorf("control character in string")
		}
	}
	return "", d.errorf("unterminated string")
}

// numberToken consumes a number, NaN, Infinity or -Infinity and returns
// its text.
func (d *jsonDecoder) numberToken() (string, error) {
	d.space()
	start := d.i
	if d.literal("NaN") || d.literal("Infinity") || d.literal("-Infinity") {
		return string(d.b[start:d.i]), nil
	}
	for d.i < len(d.b) {
		c := d.b[d.i]
		if c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			d.i++
			continue
		}
		break
	}
	if d.i == start {
		return "", d.errorf("want a number")
	}
	return string(d.b[start:d.i]), nil
}

func (d *jsonDecoder) float(f32 bool) (float64, error) {
	if k, err := d.kind(); err == nil && k == kindBool {
		v, err := d.int()
		return float64(v), err
	}
	at := d.i
	tok, err := d.numberToken()
	if err != nil {
		return 0, err
	}
	size := 64
	if f32 {
		size = 32
	}
	v, err := strconv.ParseFloat(tok, size)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		d.i = at
		return 0, d.errorf("bad number %q", tok)
	}
	return v, nil
}

func (d *jsonDecoder) int() (int64, error) {
	d.space()
	if d.literal("true") {
		return 1, nil
	}
	if d.literal("false") {
		return 0, nil
	}
	at := d.i
	tok, err := d.numberToken()
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(tok, 10, 64)
	if err != nil {
		d.i = at
		return 0, d.errorf("bad integer %q", tok)
	}
	return v, nil
}

func (d *jsonDecoder) floats() ([]float32, error) {
	var out []float32
	err := d.array(func() error {
		v, err := d.float(true)
		out = append(out, float32(v))
		return err
	})
	return out, err
}

func (d *jsonDecoder) ints() ([]int32, error) {
	var out []int32
	err := d.array(func() error {
		v, err := d.int()
		if err != nil {
			return err
		}
		if v != int64(int32(v)) {
			return d.errorf("integer %d out of range", v)
		}
		out = append(out, int32(v))
		return nil
	})
	return out, err
}

func (d *jsonDecoder) skip() error {
	k, err := d.kind()
	if err != nil {
		return err
	}
	switch k {
	case kindObject:
		return d.object(func(string) error { return d.skip() })
	case kindArray:
		return d.array(d.skip)
	case kindString:
		_, err := d.str()
		return err
	case kindBool:
		_, err := d.int()
		return err
	case kindNull:
		if !d.literal("null") {
			return d.errorf("bad literal")
		}
		return nil
	default:
		_, err := d.float(false)
		return err
	}
}

func (d *jsonDecoder) check() error {
	k, err := d.kind()
	if err != nil {
		return err
	}
	switch k {
	case kindObject:
		return d.container('{', '}', func() error {
			if err := d.checkString(); err != nil {
				return err
			}
			d.space()
			if d.i >= len(d.b) || d.b[d.i] != ':' {
				return d.errorf("want ':' after a key")
			}
			d.i++
			return d.check()
		})
	case kindArray:
		return d.container('[', ']', d.check)
	case kindString:
		return d.checkString()
	case kindBool:
		if d.literal("true") || d.literal("false") {
			return nil
		}
	case kindNull:
		if d.literal("null") {
			return nil
		}
	default:
		if d.literal("NaN") || d.literal("Infinity") || d.literal("-Infinity") {
			return nil
		}
		start := d.i
		for d.i < len(d.b) && strings.IndexByte("0123456789+-.eE", d.b[d.i]) >= 0 {
			d.i++
		}
		if d.i > start {
			return nil
		}
	}
	return d.errorf("bad literal")
}

// checkString consumes a string without decoding it.
func (d *jsonDecoder) checkString() error {
	d.space()
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return d.errorf("want a string")
	}
	for j := d.i + 1; j < len(d.b); j++ {
		switch c := d.b[j]; {
		case c == '\\':
			j++
		case c == '"':
			d.i = j + 1
			return nil
		case c < 0x20:
			d.i = j
			return d.errorf("control character in string")
		}
	}
	return d.errorf("unterminated string")
}

// ubjDecoder decodes UBJSON as XGBoost writes it (big-endian numbers,
// optimized typed arrays "[$type#count") and as the specification allows.
type ubjDecoder struct {
	b     []byte
	i     int
	depth int
}

func (d *ubjDecoder) end() error {
	for d.i < len(d.b) && d.b[d.i] == 'N' {
		d.i++
	}
	if d.i < len(d.b) {
		return d.errorf("data after the document")
	}
	return nil
}

func (d *ubjDecoder) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: ubjson at byte %d: %s", errSyntax, d.i, fmt.Sprintf(format, args...))
}

// marker returns the next type marker, skipping no-ops, without consuming it.
func (d *ubjDecoder) marker() (byte, error) {
	for d.i < len(d.b) && d.b[d.i] == 'N' {
		d.i++
	}
	if d.i >= len(d.b) {
		return 0, d.errorf("unexpected end")
	}
	return d.b[d.i], nil
}

// ubjSize returns the payload size of a numeric type marker, or 0.
func ubjSize(m byte) int {
	switch m {
	case 'i', 'U':
		return 1
	case 'I':
		return 2
	case 'l', 'd':
		return 4
	case 'L', 'D':
		return 8
	}
	return 0
}

func (d *ubjDecoder) kind() (valueKind, error) {
	m, err := d.marker()
	if err != nil {
		return 0, err
	}
	switch m {
	case 'Z':
		return kindNull, nil
	case 'T', 'F':
		return kindBool, nil
	case 'i', 'U', 'I', 'l', 'L', 'd', 'D', 'H':
		return kindNumber, nil
	case 'S', 'C':
		return kindString, nil
	case '[':
		return kindArray, nil
	case '{':
		return kindObject, nil
	}
	return 0, d.errorf("unknown marker %q", m)
}

// payload reads the payload of scalar type m: the value as float64 and,
// for integer types, as int64.
func (d *ubjDecoder) payload(m byte) (f float64, n int64, isInt bool, err error) {
	sz := ubjSize(m)
	if sz == 0 {
		return 0, 0, false, d.errorf("marker %q is not a number", m)
	}
	if len(d.b)-d.i < sz {
		return 0, 0, false, d.errorf("unexpected end")
	}
	p := d.b[d.i : d.i+sz]
	d.i += sz
	switch m {
	case 'i':
		n = int64(int8(p[0]))
	case 'U':
		n = int64(p[0])
	case 'I':
		n = int64(int16(binary.BigEndian.Uint16(p)))
	case 'l':
		n = int64(int32(binary.BigEndian.Uint32(p)))
	case 'L':
		n = int64(binary.BigEndian.Uint64(p))
	case 'd':
		return float64(math.Float32frombits(binary.BigEndian.Uint32(p))), 0, false, nil
	case 'D':
		return math.Float64frombits(binary.BigEndian.Uint64(p)), 0, false, nil
	}
	return float64(n), n, true, nil
}

// length reads a count or string length: an integer value with its marker.
func (d *ubjDecoder) length() (int, error) {
	if d.i >= len(d.b) {
		return 0, d.errorf("unexpected end")
	}
	m := d.b[d.i]
	d.i++
	_, n, isInt, err := d.payload(m)
	if err != nil {
		return 0, err
	}
	if !isInt {
		return 0, d.errorf("length marker %q is not an integer", m)
	}
	if n < 0 || n > int64(len(d.b)-d.i) {
		return 0, d.errorf("length %d with %d bytes left", n, len(d.b)-d.i)
	}
	return int(n), nil
}

// header reads a container's opening marker and optional type and count.
// typ is 0 when elements carry their own markers; count is -1 when the
// container ends with a closing marker.
func (d *ubjDecoder) header(open byte) (typ byte, count int, err error) {
	m, err := d.marker()
	if err != nil {
		return 0, 0, err
	}
	if m != open {
		return 0, 0, d.errorf("want %q, found %q", open, m)
	}
	d.i++
	count = -1
	if d.i < len(d.b) && d.b[d.i] == '$' {
		if d.i+1 >= len(d.b) {
			return 0, 0, d.errorf("unexpected end")
		}
		typ = d.b[d.i+1]
		d.i += 2
		if ubjSize(typ) == 0 {
			// Types without a payload would let a few bytes declare
			// endless elements; XGBoost only writes numeric ones.
			return 0, 0, d.errorf("unsupported container type %q", typ)
		}
		if d.i >= len(d.b) || d.b[d.i] != '#' {
			return 0, 0, d.errorf("typed container without a count")
		}
	}
	if d.i < len(d.b) && d.b[d.i] == '#' {
		d.i++
		if count, err = d.length(); err != nil {
			return 0, 0, err
		}
		if typ != 0 && count > (len(d.b)-d.i)/ubjSize(typ) {
			return 0, 0, d.errorf("%d elements of %d bytes with %d bytes left", count, ubjSize(typ), len(d.b)-d.i)
		}
	}
	return typ, count, nil
}

// container walks the elements of an array or the members of an object
// (each reads its key first); typed elements are left to each, which
// must read the payload of typ itself.
func (d *ubjDecoder) container(open, close byte, each func(typ byte) error) error {
	typ, count, err := d.header(open)
	if err != nil {
		return err
	}
	if d.depth >= maxDecodeDepth {
		return d.errorf("nested deeper than %d", maxDecodeDepth)
	}
	d.depth++
	defer func() { d.depth-- }()
	if count >= 0 {
		for range count {
			if err := each(typ); err != nil {
				return err
			}
		}
		return nil
	}
	for {
		m, err := d.marker()
		if err != nil {
			return err
		}
		if m == close {
			d.i++
			return nil
		}
		if err := each(0); err != nil {
			return err
		}
	}
}

func (d *ubjDecoder) object(member func(key string) error) error {
	return d.container('{', '}', func(typ byte) error {
		n, err := d.length()
		if err != nil {
			return err
		}
		key := string(d.b[d.i : d.i+n])
		d.i += n
		if typ != 0 {
			return d.errorf("typed object member %q", key)
		}
		return member(key)
	})
}

func (d *ubjDecoder) array(elem func() error) error {
	return d.container('[', ']', func(typ byte) error {
		if typ != 0 {
			return d.errorf("typed array where values are expected")
		}
		return elem()
	})
}

func (d *ubjDecoder) str() (string, error) {
	m, err := d.marker()
	if err != nil {
		return "", err
	}
	d.i++
	switch m {
	case 'C':
		if d.i >= len(d.b) {
			return "", d.errorf("unexpected end")
		}
		d.i++
		return string(d.b[d.i-1 : d.i]), nil
	case 'S':
		n, err := d.length()
		if err != nil {
			return "", err
		}
		d.i += n
		return string(d.b[d.i-n : d.i]), nil
	}
	d.i--
	return "", d.errorf("want a string, found %q", m)
}

// number reads a numeric value (or a boolean).
func (d *ubjDecoder) number(f32 bool) (f float64, n int64, isInt bool, err error) {
	m, err := d.marker()
	if err != nil {
		return 0, 0, false, err
	}
	d.i++
	switch m {
	case 'T':
		return 1, 1, true, nil
	case 'F':
		return 0, 0, true, nil
	case 'H':
		l, err := d.length()
		if err != nil {
			return 0, 0, false, err
		}
		d.i += l
		text := string(d.b[d.i-l : d.i])
		if n, err := strconv.ParseInt(text, 10, 64); err == nil {
			return float64(n), n, true, nil
		}
		size := 64
		if f32 {
			size = 32
		}
		f, err := strconv.ParseFloat(text, size)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return 0, 0, false, d.errorf("bad number %q", text)
		}
		return f, 0, false, nil
	}
	return d.payload(m)
}

func (d *ubjDecoder) float(f32 bool) (float64, error) {
	f, _, _, err := d.number(f32)
	if f32 {
		f = float64(float32(f))
	}
	return f, err
}

func (d *ubjDecoder) int() (int64, error) {
	at := d.i
	f, n, isInt, err := d.number(false)
	if err != nil {
		return 0, err
	}
	if !isInt {
		if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			d.i = at
			return 0, d.errorf("%v is not an integer", f)
		}
		n = int64(f)
	}
	return n, nil
}

func (d *ubjDecoder) floats() ([]float32, error) {
	var out []float32
	err := d.numbers(func(count int) { out = make([]float32, 0, count) }, func() error {
		v, err := d.float(true)
		out = append(out, float32(v))
		return err
	}, func(typ byte) error {
		f, _, _, err := d.payload(typ)
		out = append(out, float32(f))
		return err
	})
	return out, err
}

func (d *ubjDecoder) ints() ([]int32, error) {
	var out []int32
	add := func(n int64) error {
		if n != int64(int32(n)) {
			return d.errorf("integer %d out of range", n)
		}
		out = append(out, int32(n))
		return nil
	}
	err := d.numbers(func(count int) { out = make([]int32, 0, count) }, func() error {
		n, err := d.int()
		if err != nil {
			return err
		}
		return add(n)
	}, func(typ byte) error {
		f, n, isInt, err := d.payload(typ)
		if err != nil {
			return err
		}
		if !isInt {
			if f != math.Trunc(f) || math.Abs(f) > 1<<31 {
				return d.errorf("%v is not an integer", f)
			}
			n = int64(f)
		}
		return add(n)
	})
	return out, err
}

// numbers reads an array of numbers: start learns a typed array's count
// (already checked against the input left), value reads a marked element
// and typed one an element of a typed array.
func (d *ubjDecoder) numbers(start func(int), value func() error, typed func(byte) error) error {
	save := d.i
	typ, count, err := d.header('[')
	if err != nil {
		return err
	}
	if typ != 0 {
		start(count)
		for range count {
			if err := typed(typ); err != nil {
				return err
			}
		}
		return nil
	}
	d.i = save
	return d.array(value)
}

func (d *ubjDecoder) check() error {
	k, err := d.kind()
	if err != nil {
		return err
	}
	switch k {
	case kindObject:
		return d.container('{', '}', func(typ byte) error {
			n, err := d.length()
			if err != nil {
				return err
			}
			d.i += n
			if typ != 0 {
				return d.errorf("typed object member")
			}
			return d.check()
		})
	case kindArray:
		save := d.i
		typ, count, err := d.header('[')
		if err != nil {
			return err
		}
		if typ != 0 {
			d.i += count * ubjSize(typ)
			return nil
		}
		d.i = save
		return d.container('[', ']', func(typ byte) error {
			if typ != 0 {
				return d.errorf("typed array where values are expected")
			}
			return d.check()
		})
	case kindString:
		m, _ := d.marker()
		d.i++
		if m == 'C' {
			if d.i >= len(d.b) {
				return d.errorf("unexpected end")
			}
			d.i++
			return nil
		}
		n, err := d.length()
		d.i += n
		return err
	case kindNull:
		d.i++
		return nil
	}
	m, _ := d.marker()
	d.i++
	switch m {
	case 'T', 'F':
		return nil
	case 'H':
		n, err := d.length()
		d.i += n
		return err
	}
	_, _, _, err = d.payload(m)
	return err
}

func (d *ubjDecoder) skip() error {
	k, err := d.kind()
	if err != nil {
		return err
	}
	switch k {
	case kindObject:
		return d.object(func(string) error { return d.skip() })
	case kindArray:
		save := d.i
		typ, count, err := d.header('[')
		if err != nil {
			return err
		}
		if typ != 0 {
			d.i += count * ubjSize(typ)
			return nil
		}
		d.i = save
		return d.array(d.skip)
	case kindString:
		_, err := d.str()
		return err
	case kindNull:
		d.i++
		return nil
	default:
		_, _, _, err := d.number(false)
		return err
	}
}
