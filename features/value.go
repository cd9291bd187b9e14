// Package features describes what seer knows about features: the catalog of
// entity types and features, their field ids, the typed values and their
// binary encoding, the compiled plans that turn a query into model rows, and
// the parsing of upload files.
//
// It does no I/O beyond reading an io.Reader it is given, and must not
// import any other seer package.
package features

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Type is the type of a feature value.
type Type uint8

// The value types. The numbers are the type tags of the binary encoding
// (docs/format.md) and must never change.
const (
	Invalid Type = 0 // no value
	Float   Type = 1 // float64
	Int     Type = 2 // int64
	Bool    Type = 3
	String  Type = 4 // UTF-8 text
	Vector  Type = 5 // []float32, an embedding
	List    Type = 6 // []string
)

var typeNames = [...]string{Invalid: "invalid", Float: "float", Int: "int", Bool: "bool", String: "string", Vector: "vector", List: "list"}

// String returns the name used for the type in catalogs and manifests.
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// Scalar reports whether values of the type are numbers a model reads as
// they are: float, int and bool.
func (t Type) Scalar() bool { return t == Float || t == Int || t == Bool }

// ParseType returns the type named s ("float", "int", "bool", "string",
// "vector" or "list").
func ParseType(s string) (Type, error) {
	for t, name := range typeNames {
		if name == s && Type(t) != Invalid {
			return Type(t), nil
		}
	}
	return Invalid, fmt.Errorf("unknown type %q (want float, int, bool, string, vector or list)", s)
}

// Value is one typed feature value. The zero Value is invalid: it stands for
// a value that is absent.
type Value struct {
	t    Type
	bits uint64 // Float: math.Float64bits; Int: int64; Bool: 0 or 1
	s    string
	vec  []float32
	list []string
}

// FloatValue returns a float value.
func FloatValue(f float64) Value { return Value{t: Float, bits: math.Float64bits(f)} }

// IntValue returns an int value.
func IntValue(i int64) Value { return Value{t: Int, bits: uint64(i)} }

// BoolValue returns a bool value.
func BoolValue(b bool) Value {
	v := Value{t: Bool}
	if b {
		v.bits = 1
	}
	return v
}

// StringValue returns a string value.
func StringValue(s string) Value { return Value{t: String, s: s} }

// VectorValue returns a vector value holding v (not a copy).
func VectorValue(v []float32) Value { return Value{t: Vector, vec: v} }

// ListValue returns a list value holding l (not a copy).
func ListValue(l []string) Value { return Value{t: List, list: l} }

// Type returns the value's type; Invalid for the zero Value.
func (v Value) Type() Type { return v.t }

// Valid reports whether v holds a value.
func (v Value) Valid() bool { return v.t != Invalid }

// Float returns the value as a model input: floats as they are, ints
// converted, bools as 0 or 1, and NaN (missing) for every other type.
func (v Value) Float() float64 {
	switch v.t {
	case Float:
		return math.Float64frombits(v.bits)
	case Int:
		return float64(int64(v.bits))
	case Bool:
		return float64(v.bits)
	}
	return math.NaN()
}

// Finite reports whether v holds no NaN or infinity: true for every value
// but a non-finite float and a vector with a non-finite item.
func (v Value) Finite() bool {
	switch v.t {
	case Float:
		f := math.Float64frombits(v.bits)
		return !math.IsNaN(f) && !math.IsInf(f, 0)
	case Vector:
		for _, f := range v.vec {
			if f != f || math.IsInf(float64(f), 0) {
				return false
			}
		}
	}
	return true
}

// Int returns an int value's integer.
func (v Value) Int() int64 { return int64(v.bits) }

// Bool returns a bool value's truth.
func (v Value) Bool() bool { return v.bits != 0 }

// Str returns a string value's text.
func (v Value) Str() string { return v.s }

// Vector returns a vector value's elements; the caller must not modify them.
func (v Value) Vector() []float32 { return v.vec }

// List returns a list value's items; the caller must not modify them.
func (v Value) List() []string { return v.list }

// Equal reports whether v and w have the same type and contents. Float NaNs
// are equal to each other.
func (v Value) Equal(w Value) bool {
	if v.t != w.t {
		return false
	}
	switch v.t {
	case Float:
		a, b := v.Float(), w.Float()
		return a == b || (math.IsNaN(a) && math.IsNaN(b))
	case Int, Bool:
		return v.bits == w.bits
	case String:
		return v.s == w.s
	case Vector:
		return slices.EqualFunc(v.vec, w.vec, func(a, b float32) bool {
			return a == b || (a != a && b != b)
		})
	case List:
		return slices.Equal(v.list, w.list)
	}
	return true
}

// Size returns an estimate of the bytes the value holds beyond its header,
// used to budget caches.
func (v Value) Size() int {
	n := len(v.s) + 4*len(v.vec)
	for _, s := range v.list {
		n += 16 + len(s)
	}
	return n
}

// String formats the value for logs and errors.
func (v Value) String() string {
	b, _ := v.MarshalJSON()
	return string(b)
}

// MarshalJSON encodes the value as its natural JSON form (see AppendJSON).
func (v Value) MarshalJSON() ([]byte, error) {
	return v.AppendJSON(nil), nil
}

// Coerce converts x, a value decoded from JSON or YAML (float64, int,
// json.Number, string, bool, []any), into a Value of type t. Integral floats
// are accepted as ints; ints are accepted as floats; nothing else converts.
func Coerce(t Type, x any) (Value, error) {
	switch t {
	case Float:
		if f, ok := number(x); ok {
			return FloatValue(f), nil
		}
	case Int:
		if n, ok := x.(json.Number); ok {
			if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
				return IntValue(i), nil
			}
		}
		if i, ok := x.(int); ok {
			return IntValue(int64(i)), nil
		}
		if i, ok := x.(int64); ok {
			return IntValue(i), nil
		}
		if u, ok := x.(uint64); ok && u <= math.MaxInt64 {
			return IntValue(int64(u)), nil
		}
		if f, ok := number(x); ok && f == math.Trunc(f) && math.Abs(f) < 1<<63 {
			return IntValue(int64(f)), nil
		}
	case Bool:
		if b, ok := x.(bool); ok {
			return BoolValue(b), nil
		}
	case String:
		if s, ok := x.(string); ok {
			if !utf8.ValidString(s) {
				return Value{}, fmt.Errorf("string is not valid UTF-8")
			}
			return StringValue(s), nil
		}
	case Vector:
		if xs, ok := x.([]any); ok {
			if len(xs) > MaxItems {
				return Value{}, fmt.Errorf("vector of %d items is over the limit of %d", len(xs), MaxItems)
			}
			vec := make([]float32, len(xs))
			for i, e := range xs {
				f, ok := number(e)
				if !ok {
					return Value{}, fmt.Errorf("vector item %d: want a number, got %s", i, describe(e))
				}
				if math.Abs(f) > math.MaxFloat32 && !math.IsInf(f, 0) {
					return Value{}, fmt.Errorf("vector item %d: %g is out of float32 range", i, f)
				}
				vec[i] = float32(f)
			}
			return VectorValue(vec), nil
		}
	case List:
		if xs, ok := x.([]any); ok {
			if len(xs) > MaxItems {
				return Value{}, fmt.Errorf("list of %d items is over the limit of %d", len(xs), MaxItems)
			}
			l := make([]string, len(xs))
			for i, e := range xs {
				s, ok := e.(string)
				if !ok {
					return Value{}, fmt.Errorf("list item %d: want a string, got %s", i, describe(e))
				}
				if !utf8.ValidString(s) {
					return Value{}, fmt.Errorf("list item %d: string is not valid UTF-8", i)
				}
				l[i] = s
			}
			return ListValue(l), nil
		}
	}
	return Value{}, fmt.Errorf("want %s, got %s", t, describe(x))
}

func number(x any) (float64, bool) {
	switch n := x.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	case json.Number:
		f, err := strconv.ParseFloat(string(n), 64)
		return f, err == nil
	}
	return 0, false
}

func describe(x any) string {
	switch e := x.(type) {
	case nil:
		return "null"
	case float64, int, int64, uint64, json.Number:
		return fmt.Sprintf("number %v", e)
	case string:
		return fmt.Sprintf("string %q", truncate(e, 40))
	case bool:
		return fmt.Sprintf("bool %v", e)
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", x)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// ParseText converts the text of a CSV cell into a Value of type t. Vectors
// and lists are written as JSON arrays.
func ParseText(t Type, s string) (Value, error) {
	switch t {
	case Float:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return Value{}, fmt.Errorf("want float, got %q", truncate(s, 40))
		}
		return FloatValue(f), nil
	case Int:
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return Value{}, fmt.Errorf("want int, got %q", truncate(s, 40))
		}
		return IntValue(i), nil
	case Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return Value{}, fmt.Errorf("want bool, got %q", truncate(s, 40))
		}
		return BoolValue(b), nil
	case String:
		if !utf8.ValidString(s) {
			return Value{}, fmt.Errorf("want string, got text that is not valid UTF-8")
		}
		return StringValue(s), nil
	case Vector, List:
		var x any
		if err := json.Unmarshal([]byte(s), &x); err != nil {
			return Value{}, fmt.Errorf("want %s as a JSON array, got %q", t, truncate(s, 40))
		}
		return Coerce(t, x)
	}
	return Value{}, fmt.Errorf("cannot parse type %s", t)
}
