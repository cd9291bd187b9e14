package features

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strconv"
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

// TestAppendJSONFloat compares AppendJSONFloat with strconv's shortest
// 'g' form on the edges of its fast path and on random floats: uniform in
// [0, 1), decimals of 1 to 17 significant digits across the fast path's
// range and past it, short decimals, and arbitrary bits.
func TestAppendJSONFloat(t *testing.T) {
	for _, f := range []float64{
		0, 1, 0.1, 0.3, 0.5, 1e-4, 9.9999e-5, 1.00001e-4, 1e6, 999999.9, 999999.999999999, 1e6 - 1e-10,
		0.9999999999999999, 0.999999999999999, 123456.789012345, 123456.7890123456, 1e-5, 5e-324,
		math.MaxFloat64, math.SmallestNonzeroFloat64, 1 << 53, 12, 100, 0.000123, 0.716421, 184,
	} {
		checkJSONFloat(t, f)
		checkJSONFloat(t, -f)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100_000 {
		checkJSONFloat(t, r.Float64())
		checkJSONFloat(t, math.Float64frombits(r.Uint64()))
		checkJSONFloat(t, float64(r.IntN(2_000_000))/math.Pow10(r.IntN(12)))
		s := strconv.FormatFloat((r.Float64()-0.5)*math.Pow10(r.IntN(16)-7), 'g', 1+r.IntN(17), 64)
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatal(err)
		}
		checkJSONFloat(t, f)
	}
}

func FuzzAppendJSONFloat(f *testing.F) {
	f.Add(0.716421)
	f.Add(1e-4)
	f.Add(999999.9)
	f.Fuzz(checkJSONFloat)
}

// checkJSONFloat fails unless AppendJSONFloat writes f as strconv's
// shortest 'g' form, or null when f is not finite.
func checkJSONFloat(t *testing.T, f float64) {
	want := strconv.FormatFloat(f, 'g', -1, 64)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		want = "null"
	}
	if got := AppendJSONFloat([]byte("x"), f); string(got) != "x"+want {
		t.Fatalf("%v (%#x): got %s, want x%s", f, math.Float64bits(f), got, want)
	}
}

// BenchmarkAppendJSONFloat measures writing values uploaded with six
// decimals, as tools/bench_features.sh's.
func BenchmarkAppendJSONFloat(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	vals := make([]float64, 1000)
	for i := range vals {
		vals[i], _ = strconv.ParseFloat(strconv.FormatFloat(r.Float64(), 'f', 6, 64), 64)
	}
	var buf []byte
	for b.Loop() {
		for _, f := range vals {
			buf = AppendJSONFloat(buf[:0], f)
		}
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
