package features

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestParseType(t *testing.T) {
	for _, want := range []Type{Float, Int, Bool, String, Vector, List} {
		got, err := ParseType(want.String())
		if err != nil || got != want {
			t.Errorf("ParseType(%q) = %v, %v; want %v", want.String(), got, err, want)
		}
	}
	for _, bad := range []string{"", "invalid", "Float", "double", "type(9)"} {
		if got, err := ParseType(bad); err == nil {
			t.Errorf("ParseType(%q) = %v, want an error", bad, got)
		}
	}
	if got, want := Type(9).String(), "type(9)"; got != want {
		t.Errorf("Type(9).String() = %q, want %q", got, want)
	}
}

func TestValueAccessors(t *testing.T) {
	tests := []struct {
		v     Value
		typ   Type
		float float64 // NaN: NaN
		json  string
	}{
		{Value{}, Invalid, math.NaN(), "null"},
		{FloatValue(1.5), Float, 1.5, "1.5"},
		{FloatValue(math.NaN()), Float, math.NaN(), "null"},
		{FloatValue(math.Inf(-1)), Float, math.Inf(-1), "null"},
		{IntValue(-7), Int, -7, "-7"},
		{IntValue(math.MaxInt64), Int, math.MaxInt64, "9223372036854775807"},
		{BoolValue(true), Bool, 1, "true"},
		{BoolValue(false), Bool, 0, "false"},
		{StringValue("a\"b"), String, math.NaN(), `"a\"b"`},
		{VectorValue([]float32{1, 0.5, float32(math.NaN())}), Vector, math.NaN(), "[1,0.5,null]"},
		{VectorValue(nil), Vector, math.NaN(), "[]"},
		{ListValue([]string{"x", "y"}), List, math.NaN(), `["x","y"]`},
	}
	for _, tt := range tests {
		if got := tt.v.Type(); got != tt.typ {
			t.Errorf("%v: Type() = %v, want %v", tt.v, got, tt.typ)
		}
		if got := tt.v.Valid(); got != (tt.typ != Invalid) {
			t.Errorf("%v: Valid() = %v", tt.v, got)
		}
		got := tt.v.Float()
		if got != tt.float && !(math.IsNaN(got) && math.IsNaN(tt.float)) {
			t.Errorf("%v: Float() = %v, want %v", tt.v, got, tt.float)
		}
		if got := tt.v.String(); got != tt.json {
			t.Errorf("String() = %s, want %s", got, tt.json)
		}
		if !tt.v.Equal(tt.v) {
			t.Errorf("%v is not Equal to itself", tt.v)
		}
	}
	if got := IntValue(-3).Int(); got != -3 {
		t.Errorf("Int() = %d", got)
	}
	if !BoolValue(true).Bool() || BoolValue(false).Bool() {
		t.Error("Bool() is wrong")
	}
	if got := StringValue("s").Str(); got != "s" {
		t.Errorf("Str() = %q", got)
	}
}

func TestValueEqual(t *testing.T) {
	nan32 := float32(math.NaN())
	tests := []struct {
		a, b Value
		want bool
	}{
		{Value{}, Value{}, true},
		{FloatValue(1), IntValue(1), false},
		{FloatValue(math.NaN()), FloatValue(math.NaN()), true},
		{FloatValue(0), FloatValue(1), false},
		{IntValue(1), IntValue(2), false},
		{BoolValue(true), BoolValue(false), false},
		{StringValue("a"), StringValue("b"), false},
		{VectorValue([]float32{1, nan32}), VectorValue([]float32{1, nan32}), true},
		{VectorValue([]float32{1}), VectorValue([]float32{1, 2}), false},
		{ListValue([]string{"a"}), ListValue([]string{"a"}), true},
		{ListValue([]string{"a"}), ListValue([]string{"b"}), false},
		{ListValue(nil), ListValue([]string{}), true},
	}
	for _, tt := range tests {
		if got := tt.a.Equal(tt.b); got != tt.want {
			t.Errorf("%v.Equal(%v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestValueSize(t *testing.T) {
	tests := []struct {
		v    Value
		want int
	}{
		{FloatValue(1), 0},
		{StringValue("abc"), 3},
		{VectorValue(make([]float32, 10)), 40},
		{ListValue([]string{"ab", ""}), 16 + 2 + 16},
	}
	for _, tt := range tests {
		if got := tt.v.Size(); got != tt.want {
			t.Errorf("%v.Size() = %d, want %d", tt.v, got, tt.want)
		}
	}
}

func TestCoerce(t *testing.T) {
	tests := []struct {
		t       Type
		x       any
		want    Value
		wantErr string
	}{
		{Float, 1.5, FloatValue(1.5), ""},
		{Float, 3, FloatValue(3), ""},
		{Float, int64(-3), FloatValue(-3), ""},
		{Float, uint64(7), FloatValue(7), ""},
		{Float, json.Number("2.25"), FloatValue(2.25), ""},
		{Float, json.Number("1e400"), Value{}, "want float, got number 1e400"},
		{Float, "1.5", Value{}, `want float, got string "1.5"`},
		{Float, true, Value{}, "want float, got bool true"},
		{Float, nil, Value{}, "want float, got null"},
		{Int, 42, IntValue(42), ""},
		{Int, int64(math.MinInt64), IntValue(math.MinInt64), ""},
		{Int, uint64(math.MaxInt64), IntValue(math.MaxInt64), ""},
		{Int, uint64(math.MaxInt64 + 1), Value{}, "want int"},
		{Int, 42.0, IntValue(42), ""},
		{Int, -1e18, IntValue(-1e18), ""},
		{Int, 1.5, Value{}, "want int, got number 1.5"},
		{Int, 1e19, Value{}, "want int"},
		{Int, math.NaN(), Value{}, "want int"},
		{Int, json.Number("9223372036854775807"), IntValue(math.MaxInt64), ""},
		{Int, json.Number("1e3"), IntValue(1000), ""},
		{Int, json.Number("2.5"), Value{}, "want int"},
		{Int, "1", Value{}, `want int, got string "1"`},
		{Bool, true, BoolValue(true), ""},
		{Bool, 1, Value{}, "want bool, got number 1"},
		{Bool, "true", Value{}, "want bool"},
		{String, "héllo", StringValue("héllo"), ""},
		{String, "bad\xff", Value{}, "not valid UTF-8"},
		{String, 5, Value{}, "want string, got number 5"},
		{String, strings.Repeat("x", 100), Value{}, "..."}, // never an error; checked below
		{Vector, []any{1.0, 2, json.Number("0.5")}, VectorValue([]float32{1, 2, 0.5}), ""},
		{Vector, []any{}, VectorValue([]float32{}), ""},
		{Vector, []any{1.0, "x"}, Value{}, `vector item 1: want a number, got string "x"`},
		{Vector, []any{1e300}, Value{}, "vector item 0: 1e+300 is out of float32 range"},
		{Vector, make([]any, MaxItems+1), Value{}, "over the limit"},
		{Vector, "[1]", Value{}, "want vector"},
		{Vector, map[string]any{}, Value{}, "want vector, got object"},
		{List, []any{"a", "b"}, ListValue([]string{"a", "b"}), ""},
		{List, []any{"a", 1.0}, Value{}, "list item 1: want a string, got number 1"},
		{List, []any{"\xfe"}, Value{}, "list item 0: string is not valid UTF-8"},
		{List, make([]any, MaxItems+1), Value{}, "over the limit"},
		{List, []string{"a"}, Value{}, "want list, got []string"},
		{Invalid, 1.0, Value{}, "want invalid"},
	}
	for _, tt := range tests {
		got, err := Coerce(tt.t, tt.x)
		if tt.want.Valid() || tt.wantErr == "" {
			if err != nil || !got.Equal(tt.want) {
				t.Errorf("Coerce(%v, %#v) = %v, %v; want %v", tt.t, tt.x, got, err, tt.want)
			}
			continue
		}
		if tt.wantErr == "..." {
			if err != nil {
				t.Errorf("Coerce(%v, long string): %v", tt.t, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Coerce(%v, %.40v) error = %v, want one containing %q", tt.t, tt.x, err, tt.wantErr)
		}
	}
}

func TestParseText(t *testing.T) {
	tests := []struct {
		t       Type
		s       string
		want    Value
		wantErr string
	}{
		{Float, "1.5", FloatValue(1.5), ""},
		{Float, "-2e3", FloatValue(-2000), ""},
		{Float, "NaN", FloatValue(math.NaN()), ""},
		{Float, "abc", Value{}, `want float, got "abc"`},
		{Float, "", Value{}, `want float, got ""`},
		{Float, "1e400", Value{}, "want float"},
		{Float, strings.Repeat("9", 60) + "x", Value{}, `..."`},
		{Int, "-12", IntValue(-12), ""},
		{Int, "1.0", Value{}, `want int, got "1.0"`},
		{Int, "99999999999999999999", Value{}, "want int"},
		{Bool, "true", BoolValue(true), ""},
		{Bool, "0", BoolValue(false), ""},
		{Bool, "yes", Value{}, `want bool, got "yes"`},
		{String, "", StringValue(""), ""},
		{String, "a,b", StringValue("a,b"), ""},
		{String, "\xff", Value{}, "not valid UTF-8"},
		{Vector, "[1, 2.5]", VectorValue([]float32{1, 2.5}), ""},
		{Vector, "[]", VectorValue([]float32{}), ""},
		{Vector, "1,2", Value{}, `want vector as a JSON array, got "1,2"`},
		{Vector, `["a"]`, Value{}, "vector item 0: want a number"},
		{Vector, `{"a":1}`, Value{}, "want vector, got object"},
		{List, `["a","b"]`, ListValue([]string{"a", "b"}), ""},
		{List, `[1]`, Value{}, "list item 0: want a string"},
		{List, `null`, Value{}, "want list, got null"},
		{Invalid, "1", Value{}, "cannot parse type invalid"},
	}
	for _, tt := range tests {
		got, err := ParseText(tt.t, tt.s)
		if tt.wantErr == "" {
			if err != nil || !got.Equal(tt.want) {
				t.Errorf("ParseText(%v, %q) = %v, %v; want %v", tt.t, tt.s, got, err, tt.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseText(%v, %q) error = %v, want one containing %q", tt.t, tt.s, err, tt.wantErr)
		}
	}
}
