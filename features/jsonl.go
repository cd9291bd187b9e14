package features

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// A JSON Lines upload file is one flat object per line. encoding/json's
// token reader read them at about 0.2 million values a second, a quarter
// of what Redis takes; this scanner reads one object in one pass without
// an allocation per value. FuzzJSONLine checks that it accepts exactly
// the lines encoding/json accepts and reads the same values from them.

// jsonScan reads one line.
type jsonScan struct {
	b   []byte
	i   int
	str []byte // scratch for unescaped strings
}

var errJSONSyntax = errors.New("bad JSON")

func (s *jsonScan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *jsonScan) peek() byte {
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// string reads a string whose opening quote is at s.i. The bytes returned
// are valid until the next call.
func (s *jsonScan) string() ([]byte, error) {
	s.i++ // the quote
	start := s.i
	// The common case: no escapes.
	for s.i < len(s.b) {
		c := s.b[s.i]
		if c == '"' {
			s.i++
			return s.b[start : s.i-1], nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return nil, errJSONSyntax
		}
		s.i++
	}
	s.str = append(s.str[:0], s.b[start:s.i]...)
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return s.str, nil
		case c < 0x20:
			return nil, errJSONSyntax
		case c != '\\':
			s.str = append(s.str, c)
			s.i++
			continue
		}
		if s.i+1 >= len(s.b) {
			return nil, errJSONSyntax
		}
		e := s.b[s.i+1]
		s.i += 2
		switch e {
		case '"', '\\', '/':
			s.str = append(s.str, e)
		case 'b':
			s.str = append(s.str, '\b')
		case 'f':
			s.str = append(s.str, '\f')
		case 'n':
			s.str = append(s.str, '\n')
		case 'r':
			s.str = append(s.str, '\r')
		case 't':
			s.str = append(s.str, '\t')
		case 'u':
			r, ok := s.hex4()
			if !ok {
				return nil, errJSONSyntax
			}
			if utf16.IsSurrogate(r) {
				// A pair makes one rune; a lone half is U+FFFD, as
				// encoding/json decodes it.
				r2 := rune(-1)
				if s.i+1 < len(s.b) && s.b[s.i] == '\\' && s.b[s.i+1] == 'u' {
					save := s.i
					s.i += 2
					var ok2 bool
					if r2, ok2 = s.hex4(); !ok2 {
						return nil, errJSONSyntax
					}
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						s.str = utf8.AppendRune(s.str, d)
						continue
					}
					s.i = save
				}
				r = utf8.RuneError
			}
			s.str = utf8.AppendRune(s.str, r)
		default:
			return nil, errJSONSyntax
		}
	}
	return nil, errJSONSyntax
}

func (s *jsonScan) hex4() (rune, bool) {
	if s.i+4 > len(s.b) {
		return 0, false
	}
	var r rune
	for _, c := range s.b[s.i : s.i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	s.i += 4
	return r, true
}

// number reads a number as JSON's grammar has it and returns its text.
func (s *jsonScan) number() ([]byte, error) {
	start := s.i
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case '1' <= c && c <= '9':
		s.digits()
	default:
		return nil, errJSONSyntax
	}
	if s.peek() == '.' {
		s.i++
		if !s.digits() {
			return nil, errJSONSyntax
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !s.digits() {
			return nil, errJSONSyntax
		}
	}
	return s.b[start:s.i], nil
}

func (s *jsonScan) digits() bool {
	start := s.i
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

func (s *jsonScan) literal(word string) error {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return errJSONSyntax
	}
	s.i += len(word)
	return nil
}

// JSON kinds of a value, as the errors name them.
const (
	jNull = iota
	jBool
	jNumber
	jString
	jArray
	jObject
)

// jsonValue is one scanned value: its kind and, for scalars, its text or
// truth.
type jsonValue struct {
	kind  int
	text  []byte // number text, string contents
	truth bool
}

// describe names the value for errors, as describe does for decoded JSON.
func (v *jsonValue) describe() string {
	switch v.kind {
	case jNull:
		return "null"
	case jBool:
		return fmt.Sprintf("bool %v", v.truth)
	case jNumber:
		return "number " + string(v.text)
	case jString:
		return fmt.Sprintf("string %q", truncate(string(v.text), 40))
	case jArray:
		return "array"
	}
	return "object"
}

// value reads a scalar; an array or an object is checked, skipped and
// reported by its kind alone.
func (s *jsonScan) value(depth int) (jsonValue, error) {
	switch c := s.peek(); {
	case c == '"':
		b, err := s.string()
		return jsonValue{kind: jString, text: b}, err
	case c == '-' || ('0' <= c && c <= '9'):
		b, err := s.number()
		return jsonValue{kind: jNumber, text: b}, err
	case c == 't':
		return jsonValue{kind: jBool, truth: true}, s.literal("true")
	case c == 'f':
		return jsonValue{kind: jBool}, s.literal("false")
	case c == 'n':
		return jsonValue{kind: jNull}, s.literal("null")
	case c == '[':
		return jsonValue{kind: jArray}, s.skip(depth)
	case c == '{':
		return jsonValue{kind: jObject}, s.skip(depth)
	}
	return jsonValue{}, errJSONSyntax
}

// skip checks and skips an array or object.
func (s *jsonScan) skip(depth int) error {
	if depth > 1000 {
		return errors.New("JSON nested too deep")
	}
	open := s.b[s.i]
	close := byte(']')
	if open == '{' {
		close = '}'
	}
	s.i++
	s.ws()
	if s.peek() == close {
		s.i++
		return nil
	}
	for {
		if open == '{' {
			if s.peek() != '"' {
				return errJSONSyntax
			}
			if _, err := s.string(); err != nil {
				return err
			}
			s.ws()
			if s.peek() != ':' {
				return errJSONSyntax
			}
			s.i++
			s.ws()
		}
		if _, err := s.value(depth + 1); err != nil {
			return err
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
			s.ws()
		case close:
			s.i++
			return nil
		default:
			return errJSONSyntax
		}
	}
}

// parseJSONLine reads one line of a JSON Lines file into t.row.
func (t *TableReader) parseJSONLine(line []byte) error {
	t.row.Line = t.line
	t.row.ID = ""
	t.row.Specs, t.row.Values = t.row.Specs[:0], t.row.Values[:0]
	clear(t.seen)
	if !utf8.Valid(line) {
		return t.fail(t.line, "", errors.New("line is not valid UTF-8"))
	}
	s := &t.scan
	s.b, s.i = line, 0
	bad := func(column string) error { return t.fail(t.line, column, fmt.Errorf("bad JSON at byte %d", s.i+1)) }
	s.ws()
	if s.peek() != '{' {
		return t.fail(t.line, "", errors.New("want a JSON object"))
	}
	s.i++
	s.ws()
	t.hasIDs = 0
	t.seq++
	if s.peek() == '}' {
		s.i++
	} else {
		for {
			if s.peek() != '"' {
				return bad("")
			}
			kb, err := s.string()
			if err != nil {
				return bad("")
			}
			s.ws()
			if s.peek() != ':' {
				return bad(string(kb))
			}
			s.i++
			s.ws()
			if err := t.jsonField(kb); err != nil {
				return err
			}
			s.ws()
			if s.peek() == ',' {
				s.i++
				s.ws()
				continue
			}
			if s.peek() != '}' {
				return bad("")
			}
			s.i++
			break
		}
	}
	s.ws()
	if s.i != len(s.b) {
		if _, err := s.value(0); err != nil {
			return bad("")
		}
		return t.fail(t.line, "", errors.New("more than one JSON value on the line"))
	}
	if t.hasIDs != 1<<len(t.idNames)-1 {
		for k, n := range t.idNames {
			if t.hasIDs&(1<<k) == 0 {
				return t.fail(t.line, "", fmt.Errorf("no %q", n))
			}
		}
	}
	return t.setKey(func(column string, err error) error { return t.fail(t.line, column, err) })
}

// jsonField reads the value of the key kb.
func (t *TableReader) jsonField(kb []byte) error {
	s := &t.scan
	for k, name := range t.idNames {
		if string(kb) != name {
			continue
		}
		if t.hasIDs&(1<<k) != 0 {
			return t.fail(t.line, name, errors.New("listed twice"))
		}
		v, err := s.value(0)
		if err != nil {
			return t.fail(t.line, name, fmt.Errorf("bad JSON at byte %d", s.i+1))
		}
		var id string
		switch {
		case v.kind == jString:
			id = string(v.text)
		case v.kind == jNumber && isInteger(v.text):
			id = string(v.text)
		default:
			return t.fail(t.line, name, fmt.Errorf("want a string or an integer id, got %s", v.describe()))
		}
		if err := CheckID(id); err != nil {
			return t.fail(t.line, name, err)
		}
		t.row.IDs[k] = id
		t.hasIDs |= 1 << k
		return nil
	}
	// Known keys are found without making a string of them.
	sp := t.catalog.byName[string(kb)]
	if sp == nil || sp.Entity != t.entity {
		key := string(kb)
		_, err := t.spec(key)
		if t.seen[key] {
			err = errors.New("listed twice")
		}
		t.seen[key] = true
		// The value must still be JSON for the error to be this one.
		if _, jerr := s.value(0); jerr != nil {
			return t.fail(t.line, key, fmt.Errorf("bad JSON at byte %d", s.i+1))
		}
		return t.fail(t.line, key, err)
	}
	key := sp.Name
	if t.seenAt[sp.Index] == t.seq {
		return t.fail(t.line, key, errors.New("listed twice"))
	}
	t.seenAt[sp.Index] = t.seq
	var err error
	var v Value
	if s.peek() == '[' && (sp.Type == Vector || sp.Type == List) {
		v, err = t.jsonArray(sp.Type)
	} else {
		var jv jsonValue
		jv, err = s.value(0)
		if err != nil {
			return t.fail(t.line, key, fmt.Errorf("bad JSON at byte %d", s.i+1))
		}
		if jv.kind == jNull {
			return nil // no value: nothing to write
		}
		v, err = jsonScalar(sp.Type, &jv)
	}
	if err == nil {
		err = CheckSize(v)
	}
	if err == nil {
		err = sp.CheckFinite(v)
	}
	if err != nil {
		return t.fail(t.line, key, err)
	}
	t.row.Specs = append(t.row.Specs, sp)
	t.row.Values = append(t.row.Values, v)
	return nil
}

// isInteger reports whether a JSON number's text is an integer: digits,
// perhaps after a minus.
func isInteger(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// jsonScalar converts a value that is not an array, as Coerce converts
// the value encoding/json decodes.
func jsonScalar(t Type, v *jsonValue) (Value, error) {
	switch {
	case t == Float && v.kind == jNumber:
		if f, err := strconv.ParseFloat(string(v.text), 64); err == nil {
			return FloatValue(f), nil
		}
	case t == Int && v.kind == jNumber:
		if i, err := strconv.ParseInt(string(v.text), 10, 64); err == nil {
			return IntValue(i), nil
		}
		if f, err := strconv.ParseFloat(string(v.text), 64); err == nil && f == math.Trunc(f) && math.Abs(f) < 1<<63 {
			return IntValue(int64(f)), nil
		}
	case t == Bool && v.kind == jBool:
		return BoolValue(v.truth), nil
	case t == String && v.kind == jString:
		return StringValue(string(v.text)), nil
	}
	return Value{}, fmt.Errorf("want %s, got %s", t, v.describe())
}

// jsonArray reads the array at s.i as a vector or a list.
func (t *TableReader) jsonArray(typ Type) (Value, error) {
	s := &t.scan
	s.i++ // [
	s.ws()
	vec := []float32{}
	list := []string{}
	var itemErr error
	n := 0
	if s.peek() == ']' {
		s.i++
	} else {
		for {
			v, err := s.value(1)
			if err != nil {
				return Value{}, fmt.Errorf("bad JSON at byte %d", s.i+1)
			}
			if itemErr == nil && n >= MaxItems {
				itemErr = errItems
			}
			if itemErr == nil {
				switch {
				case typ == Vector && v.kind == jNumber:
					f, err := strconv.ParseFloat(string(v.text), 64)
					switch {
					case err != nil:
						itemErr = fmt.Errorf("vector item %d: want a number, got %s", n, v.describe())
					case math.Abs(f) > math.MaxFloat32 && !math.IsInf(f, 0):
						itemErr = fmt.Errorf("vector item %d: %g is out of float32 range", n, f)
					default:
						vec = append(vec, float32(f))
					}
				case typ == Vector:
					itemErr = fmt.Errorf("vector item %d: want a number, got %s", n, v.describe())
				case v.kind == jString:
					list = append(list, string(v.text))
				default:
					itemErr = fmt.Errorf("list item %d: want a string, got %s", n, v.describe())
				}
			}
			n++
			s.ws()
			if s.peek() == ',' {
				s.i++
				s.ws()
				continue
			}
			if s.peek() != ']' {
				return Value{}, fmt.Errorf("bad JSON at byte %d", s.i+1)
			}
			s.i++
			break
		}
	}
	if itemErr == errItems || n > MaxItems {
		return Value{}, fmt.Errorf("%s of %d items is over the limit of %d", typ, n, MaxItems)
	}
	if itemErr != nil {
		return Value{}, itemErr
	}
	if typ == Vector {
		return VectorValue(vec), nil
	}
	return ListValue(list), nil
}

var errItems = errors.New("too many items")
