package features

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/golang/snappy"
)

// codecValues returns values of every type, small and large enough to be
// compressed.
func codecValues() []Value {
	long := make([]float32, 300)
	for i := range long {
		long[i] = float32(i%7) * 0.25
	}
	noisy := make([]float32, 40)
	for i := range noisy {
		noisy[i] = float32(math.Sin(float64(i))) * 1e6
	}
	return []Value{
		FloatValue(0),
		FloatValue(-1.25),
		FloatValue(math.MaxFloat64),
		FloatValue(math.SmallestNonzeroFloat64),
		FloatValue(math.Inf(1)),
		FloatValue(math.NaN()),
		IntValue(0),
		IntValue(1),
		IntValue(-1),
		IntValue(63),
		IntValue(-64),
		IntValue(math.MaxInt64),
		IntValue(math.MinInt64),
		BoolValue(true),
		BoolValue(false),
		StringValue(""),
		StringValue("héllo, wörld"),
		StringValue(strings.Repeat("abc", 100)),
		VectorValue([]float32{}),
		VectorValue([]float32{1, -0.5, float32(math.Inf(-1))}),
		VectorValue(long),
		VectorValue(noisy),
		ListValue([]string{}),
		ListValue([]string{"", "a", "日本"}),
		ListValue(strings.Split(strings.Repeat("tag,", 50), ",")),
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, v := range codecValues() {
		b := Encode(nil, v)
		got, err := Decode(b)
		if err != nil {
			t.Errorf("Decode(Encode(%.60v)): %v", v, err)
			continue
		}
		if !got.Equal(v) {
			t.Errorf("Decode(Encode(%.60v)) = %.60v", v, got)
		}
		// Stamped, with a prefix in dst that must be kept.
		for _, unix := range []int64{0, 1, 1700000000, math.MaxInt64} {
			prefix := []byte("xy")
			sb := EncodeStamped(prefix, v, unix)
			if !bytes.HasPrefix(sb, []byte("xy")) {
				t.Fatalf("EncodeStamped dropped dst's contents")
			}
			got, stamp, err := DecodeStamped(sb[2:])
			if err != nil || !got.Equal(v) || stamp != unix {
				t.Errorf("DecodeStamped(EncodeStamped(%.60v, %d)) = %.60v, %d, %v", v, unix, got, stamp, err)
			}
		}
	}
}

func TestEncodeSnappy(t *testing.T) {
	long := make([]float32, 300) // zeros compress well
	noisy := make([]float32, 40)
	for i := range noisy {
		noisy[i] = float32(math.Sin(float64(i))) * 1e6
	}
	tests := []struct {
		name   string
		v      Value
		snappy bool
	}{
		{"small string", StringValue("abc"), false},
		{"63-byte string", StringValue(strings.Repeat("a", 63)), false},
		{"64-byte string", StringValue(strings.Repeat("a", 64)), true},
		{"long vector", VectorValue(long), true},
		{"incompressible vector", VectorValue(noisy), false},
		{"float", FloatValue(1), false},
	}
	for _, tt := range tests {
		for _, stamped := range []bool{false, true} {
			var b []byte
			if stamped {
				b = EncodeStamped(nil, tt.v, 1700000000)
			} else {
				b = Encode(nil, tt.v)
			}
			if got := b[0]&flagSnappy != 0; got != tt.snappy {
				t.Errorf("%s (stamped %v): snappy flag = %v, want %v", tt.name, stamped, got, tt.snappy)
			}
			if got := b[0]&flagStamp != 0; got != stamped {
				t.Errorf("%s: stamp flag = %v, want %v", tt.name, got, stamped)
			}
			if got := Type(b[0] & maskType); got != tt.v.Type() {
				t.Errorf("%s: type tag = %v, want %v", tt.name, got, tt.v.Type())
			}
			if v, err := Decode(b); err != nil || !v.Equal(tt.v) {
				t.Errorf("%s: Decode = %.40v, %v", tt.name, v, err)
			}
		}
	}
}

// TestEncodeLayout pins the bytes docs/format.md promises.
func TestEncodeLayout(t *testing.T) {
	tests := []struct {
		v    Value
		unix int64
		want []byte
	}{
		{FloatValue(1.5), -1, []byte{0x01, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f}},
		{IntValue(-3), -1, []byte{0x02, 0x05}},
		{IntValue(300), -1, []byte{0x02, 0xd8, 0x04}},
		{BoolValue(true), -1, []byte{0x03, 0x01}},
		{StringValue("hi"), -1, []byte{0x04, 'h', 'i'}},
		{VectorValue([]float32{1, -2}), -1, []byte{0x05, 0x02, 0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}},
		{ListValue([]string{"a", "bc"}), -1, []byte{0x06, 0x02, 0x01, 'a', 0x02, 'b', 'c'}},
		{IntValue(7), 1700000000, []byte{0x42, 0x80, 0xe2, 0xcf, 0xaa, 0x06, 0x0e}},
		// The examples of docs/format.md.
		{FloatValue(4.5), -1, []byte{0x01, 0, 0, 0, 0, 0, 0, 0x12, 0x40}},
		{FloatValue(4.5), 1700000000, []byte{0x41, 0x80, 0xe2, 0xcf, 0xaa, 0x06, 0, 0, 0, 0, 0, 0, 0x12, 0x40}},
		{IntValue(12345), -1, []byte{0x02, 0xf2, 0xc0, 0x01}},
		{IntValue(-1), -1, []byte{0x02, 0x01}},
		{StringValue("thaï"), -1, []byte{0x04, 0x74, 0x68, 0x61, 0xc3, 0xaf}},
		{VectorValue([]float32{0.5, -1, 3}), -1, []byte{0x05, 0x03, 0, 0, 0, 0x3f, 0, 0, 0x80, 0xbf, 0, 0, 0x40, 0x40}},
		{ListValue([]string{"vegan", "late"}), -1, []byte{0x06, 0x02, 0x05, 'v', 'e', 'g', 'a', 'n', 0x04, 'l', 'a', 't', 'e'}},
		{StringValue(strings.Repeat("ab", 50)), -1, []byte{0x84, 0x64, 0x04, 0x61, 0x62, 0xfe, 0x02, 0x00, 0x86, 0x02, 0x00}},
		{Value{}, -1, nil},
	}
	for _, tt := range tests {
		var got []byte
		if tt.unix < 0 {
			got = Encode(nil, tt.v)
		} else {
			got = EncodeStamped(nil, tt.v, tt.unix)
		}
		if !bytes.Equal(got, tt.want) {
			t.Errorf("Encode(%v) = % x, want % x", tt.v, got, tt.want)
		}
	}
	// A compressed value is the header with 0x80 set and a snappy block of
	// the payload.
	v := StringValue(strings.Repeat("ab", 50))
	got := Encode(nil, v)
	want := append([]byte{0x84}, snappy.Encode(nil, []byte(v.Str()))...)
	if !bytes.Equal(got, want) {
		t.Errorf("Encode(long string) = % x, want % x", got, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	big := snappy.Encode(nil, make([]byte, MaxValueSize+1))
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"invalid type", []byte{0x00}, "bad header"},
		{"unknown type", []byte{0x07}, "bad header"},
		{"reserved bits", []byte{0x21, 0, 0, 0, 0, 0, 0, 0, 0}, "bad header"},
		{"short float", []byte{0x01, 1, 2}, "float of 2 bytes"},
		{"long float", []byte{0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0}, "float of 9 bytes"},
		{"empty int", []byte{0x02}, "bad int"},
		{"int with trailing bytes", []byte{0x02, 0x02, 0x00}, "bad int"},
		{"overlong int", []byte{0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, "bad int"},
		{"bool 2", []byte{0x03, 0x02}, "bad bool"},
		{"empty bool", []byte{0x03}, "bad bool"},
		{"bad utf-8", []byte{0x04, 0xff}, "not UTF-8"},
		{"vector without length", []byte{0x05}, "bad vector length"},
		{"vector too long", append([]byte{0x05}, binary.AppendUvarint(nil, MaxItems+1)...), "bad vector length"},
		{"vector short", []byte{0x05, 0x02, 0, 0, 0x80, 0x3f}, "vector of 2 items has 4 bytes"},
		{"list without length", []byte{0x06}, "bad list length"},
		{"list longer than its bytes", []byte{0x06, 0x05, 0x00}, "bad list length"},
		{"list item overruns", []byte{0x06, 0x01, 0x05, 'a'}, "bad list item 0"},
		{"list trailing bytes", []byte{0x06, 0x01, 0x01, 'a', 'z'}, "1 bytes after the list"},
		{"list bad utf-8", []byte{0x06, 0x01, 0x01, 0xff}, "list item 0 is not UTF-8"},
		{"stamp truncated", []byte{0x41, 0x80}, "bad time stamp"},
		{"stamp over int64", append([]byte{0x42}, binary.AppendUvarint(nil, math.MaxUint64)...), "bad time stamp"},
		{"bad snappy", []byte{0x84, 0xff, 0xff, 0xff, 0xff, 0xff}, "snappy"},
		{"snappy no body", []byte{0x84}, "snappy"},
		{"snappy truncated", append([]byte{0x84}, snappy.Encode(nil, []byte(strings.Repeat("a", 100)))[:4]...), "snappy"},
		{"snappy too large", append([]byte{0x84}, big...), "over the limit"},
		{"payload too large", append([]byte{0x04}, make([]byte, MaxValueSize+1)...), "over the limit"},
	}
	for _, tt := range tests {
		v, err := Decode(tt.b)
		if err == nil {
			t.Errorf("%s: Decode = %.40v, want an error", tt.name, v)
			continue
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: error %v does not wrap ErrCorrupt", tt.name, err)
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %q does not contain %q", tt.name, err, tt.want)
		}
	}
}

func TestCheckSize(t *testing.T) {
	tests := []struct {
		v  Value
		ok bool
	}{
		{StringValue(strings.Repeat("a", MaxValueSize)), true},
		{StringValue(strings.Repeat("a", MaxValueSize+1)), false},
		{VectorValue(make([]float32, MaxItems)), true},
		{VectorValue(make([]float32, MaxItems+1)), false},
		{ListValue(make([]string, MaxItems+1)), false},
		{ListValue([]string{strings.Repeat("a", MaxValueSize-4)}), true},
		{ListValue([]string{strings.Repeat("a", MaxValueSize-3)}), false},
		{IntValue(math.MinInt64), true},
	}
	for _, tt := range tests {
		err := CheckSize(tt.v)
		if (err == nil) != tt.ok {
			t.Errorf("CheckSize(%v of %d bytes) = %v, want ok %v", tt.v.Type(), payloadSize(tt.v), err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Errorf("CheckSize error %v does not wrap ErrCorrupt", err)
		}
		if err == nil && tt.v.Type() != Int {
			if _, derr := Decode(Encode(nil, tt.v)); derr != nil {
				t.Errorf("CheckSize accepted a value Decode refuses: %v", derr)
			}
		}
	}
	for _, v := range codecValues() {
		// payloadSize must agree with what Encode writes when it does not
		// compress.
		b := Encode(nil, v)
		if b[0]&flagSnappy == 0 && payloadSize(v) != len(b)-1 {
			t.Errorf("payloadSize(%.40v) = %d, encoded payload is %d bytes", v, payloadSize(v), len(b)-1)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, v := range codecValues() {
		f.Add(Encode(nil, v))
		f.Add(EncodeStamped(nil, v, 1700000000))
	}
	f.Add([]byte{0x84, 0x00})
	f.Add([]byte{0x06, 0x03, 0x00, 0x00})
	f.Add([]byte{0x81, 0x08, 0x1c, 0, 0, 0, 0, 0, 0, 0x12, 0x40}) // a compressed float
	f.Fuzz(func(t *testing.T, b []byte) {
		v, unix, err := DecodeStamped(b)
		// DecodeScalar agrees with DecodeStamped on every scalar.
		st, bits, sunix, serr := DecodeScalar(b)
		switch {
		case serr != nil && !errors.Is(serr, ErrCorrupt):
			t.Fatalf("DecodeScalar error %v does not wrap ErrCorrupt", serr)
		case serr != nil && err == nil:
			t.Fatalf("DecodeScalar refused %v: %v", v, serr)
		case serr == nil && st.Scalar() && (err != nil || st != v.Type() || bits != v.bits || sunix != unix):
			t.Fatalf("DecodeScalar = %v %x %d; DecodeStamped = %v %d, %v", st, bits, sunix, v, unix, err)
		case serr == nil && !st.Scalar() && err == nil && (st != v.Type() || sunix != unix):
			t.Fatalf("DecodeScalar of a %v = %v at %d", v.Type(), st, sunix)
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if !v.Valid() {
			t.Fatalf("Decode returned an invalid value without an error")
		}
		if err := CheckSize(v); err != nil {
			t.Fatalf("decoded a value CheckSize refuses: %v", err)
		}
		if got, _ := Decode(Encode(nil, v)); !got.Equal(v) {
			t.Fatalf("round trip: %v != %v", got, v)
		}
		if got, gotUnix, _ := DecodeStamped(EncodeStamped(nil, v, unix)); !got.Equal(v) || gotUnix != unix {
			t.Fatalf("stamped round trip: %v at %d != %v at %d", got, gotUnix, v, unix)
		}
	})
}

// TestDecodeScalar checks DecodeScalar beyond what FuzzDecode compares:
// compressed scalars, and no allocation.
func TestDecodeScalar(t *testing.T) {
	for _, v := range []Value{FloatValue(-2.5), IntValue(-300), IntValue(1 << 62), BoolValue(true), BoolValue(false)} {
		b := EncodeStamped(nil, v, 1700000000)
		// The same payload compressed, as another writer may store it.
		packed := append([]byte{b[0] | flagSnappy}, b[1:len(b)-payloadSize(v)]...)
		packed = append(packed, snappy.Encode(nil, b[len(b)-payloadSize(v):])...)
		for _, enc := range [][]byte{b, packed} {
			typ, bits, stamp, err := DecodeScalar(enc)
			if err != nil || typ != v.Type() || bits != v.bits || stamp != 1700000000 {
				t.Errorf("DecodeScalar(% x) = %v %x %d %v, want %v", enc, typ, bits, stamp, err, v)
			}
		}
		if n := testing.AllocsPerRun(100, func() { _, _, _, _ = DecodeScalar(b) }); n != 0 {
			t.Errorf("DecodeScalar of %v: %v allocations", v, n)
		}
	}
	if typ, _, stamp, err := DecodeScalar(EncodeStamped(nil, StringValue("x"), 7)); typ != String || stamp != 7 || err != nil {
		t.Errorf("DecodeScalar of a string = %v %d %v", typ, stamp, err)
	}
	for _, b := range [][]byte{nil, {0x01, 1, 2}, {0x02, 0x80}, {0x03, 2}, {0x41, 0x80}, {0x81, 0x40, 0}} {
		if _, _, _, err := DecodeScalar(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("DecodeScalar(% x) = %v, want ErrCorrupt", b, err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	vec := make([]float32, 64)
	for i := range vec {
		vec[i] = float32(i) / 3
	}
	for _, bc := range []struct {
		name string
		v    Value
	}{
		{"float", FloatValue(3.25)},
		{"string", StringValue("category_label")},
		{"vector64", VectorValue(vec)},
		{"list", ListValue(strings.Split(strings.Repeat("tag,", 20), ","))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 4096)
			for b.Loop() {
				buf = EncodeStamped(buf[:0], bc.v, 1700000000)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	vec := make([]float32, 64)
	for i := range vec {
		vec[i] = float32(i) / 3
	}
	for _, bc := range []struct {
		name string
		v    Value
	}{
		{"float", FloatValue(3.25)},
		{"int", IntValue(123456)},
		{"string", StringValue("category_label")},
		{"vector64", VectorValue(vec)},
		{"list", ListValue(strings.Split(strings.Repeat("tag,", 20), ","))},
	} {
		enc := EncodeStamped(nil, bc.v, 1700000000)
		b.Run(bc.name+"/"+strconv.Itoa(len(enc))+"B", func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(enc)))
			for b.Loop() {
				if _, _, err := DecodeStamped(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestCodecAllocs(t *testing.T) {
	buf := make([]byte, 0, 4096)
	vec := make([]float32, 300)
	long := VectorValue(vec) // compressed
	if n := testing.AllocsPerRun(100, func() { buf = Encode(buf[:0], long) }); n != 0 {
		t.Errorf("Encode of a compressed vector into a large enough dst: %v allocs, want 0", n)
	}
	enc := EncodeStamped(nil, FloatValue(1), 1)
	if n := testing.AllocsPerRun(100, func() { _, _, _ = DecodeStamped(enc) }); n != 0 {
		t.Errorf("DecodeStamped of a float: %v allocs, want 0", n)
	}
}

// TestSpecDecodeInterns: a spec shares the short strings it decodes, up to
// maxInterned of them, and decodes everything else as DecodeStamped does.
func TestSpecDecodeInterns(t *testing.T) {
	s := &Spec{Name: "cuisine", Type: String}
	b := EncodeStamped(nil, StringValue("thai"), 42)
	first, stamp, err := s.Decode(b)
	if err != nil || stamp != 42 || first.Str() != "thai" {
		t.Fatalf("Decode = %v %d %v", first, stamp, err)
	}
	again, _, _ := s.Decode(b)
	if unsafe.StringData(again.Str()) != unsafe.StringData(first.Str()) {
		t.Error("the second decode of a string made a new copy")
	}
	if n := testing.AllocsPerRun(100, func() { _, _, _ = s.Decode(b) }); n != 0 {
		t.Errorf("decoding a known string: %v allocations", n)
	}
	long := EncodeStamped(nil, StringValue(strings.Repeat("x", maxInternedLen+1)), 1)
	l1, _, _ := s.Decode(long)
	l2, _, _ := s.Decode(long)
	if unsafe.StringData(l1.Str()) == unsafe.StringData(l2.Str()) {
		t.Error("a long string was kept")
	}
	for i := range 2 * maxInterned {
		v, _, err := s.Decode(Encode(nil, StringValue(strconv.Itoa(i))))
		if err != nil || v.Str() != strconv.Itoa(i) {
			t.Fatalf("Decode %d = %v, %v", i, v, err)
		}
	}
	if n := len(*s.interned.Load()); n != maxInterned {
		t.Errorf("%d strings kept, want %d", n, maxInterned)
	}
	for _, v := range codecValues() {
		b := EncodeStamped(nil, v, 7)
		got, stamp, err := s.Decode(b)
		want, wantStamp, wantErr := DecodeStamped(b)
		if !got.Equal(want) || stamp != wantStamp || (err == nil) != (wantErr == nil) {
			t.Errorf("Spec.Decode of %.40v = %v %d %v; DecodeStamped: %v %d %v", v, got, stamp, err, want, wantStamp, wantErr)
		}
	}
}
