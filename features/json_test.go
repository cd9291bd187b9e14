package features

import (
	"encoding/json"
	"math"
	"testing"
)

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\`, "\x00\x1f\n\t\r\b\f", "é€😀", "bad\xffutf8", "<&>", "\u2028\u2029"} {
		checkJSONString(t, s)
	}
}

func FuzzAppendJSONString(f *testing.F) {
	f.Add("plain")
	f.Add("q\"\\\x00\xff<\u2028")
	f.Fuzz(checkJSONString)
}

// checkJSONString fails unless AppendJSONString writes s byte for byte as
// encoding/json does.
func checkJSONString(t *testing.T, s string) {
	want, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := AppendJSONString([]byte("x"), s); string(got) != "x"+string(want) {
		t.Fatalf("%q: got %s, want x%s", s, got, want)
	}
}

func TestAppendJSON(t *testing.T) {
	for _, c := range []struct {
		v    Value
		want string
	}{
		{FloatValue(0.1), "0.1"},
		{FloatValue(math.NaN()), "null"},
		{FloatValue(math.Inf(-1)), "null"},
		{IntValue(-7), "-7"},
		{BoolValue(true), "true"},
		{StringValue("a<b"), `"a\u003cb"`},
		{VectorValue([]float32{1.5, float32(math.Inf(1)), 0.1}), "[1.5,null,0.1]"},
		{ListValue([]string{"x", "\"y"}), `["x","\"y"]`},
		{ListValue(nil), "null"},
		{Value{}, "null"},
	} {
		if got := string(c.v.AppendJSON(nil)); got != c.want {
			t.Errorf("%v: got %s, want %s", c.v.Type(), got, c.want)
		}
		if b, _ := json.Marshal(c.v); string(b) != c.want {
			t.Errorf("%v: json.Marshal gives %s, want %s", c.v.Type(), b, c.want)
		}
	}
}
