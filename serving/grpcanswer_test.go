package serving

import (
	"encoding/binary"
	"math"
	"strconv"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	seerv1 "github.com/seer-ml/seer/api/seer/v1"
	"github.com/seer-ml/seer/features"
)

// The conversion into seer.v1's generated messages that the gRPC
// transport did before grpcanswer.go, kept as the reference its bytes are
// held to (TestWireAnswer, FuzzWireAnswer).

func valueToProto(v *features.Value) *seerv1.Value {
	switch v.Type() {
	case features.Float:
		return &seerv1.Value{Kind: &seerv1.Value_DoubleValue{DoubleValue: v.Float()}}
	case features.Int:
		return &seerv1.Value{Kind: &seerv1.Value_Int64Value{Int64Value: v.Int()}}
	case features.Bool:
		return &seerv1.Value{Kind: &seerv1.Value_BoolValue{BoolValue: v.Bool()}}
	case features.String:
		return &seerv1.Value{Kind: &seerv1.Value_StringValue{StringValue: v.Str()}}
	case features.Vector:
		return &seerv1.Value{Kind: &seerv1.Value_VectorValue{VectorValue: &seerv1.FloatVector{Values: v.Vector()}}}
	case features.List:
		return &seerv1.Value{Kind: &seerv1.Value_ListValue{ListValue: &seerv1.StringList{Values: v.List()}}}
	}
	return nil
}

// rowsToProto converts debug rows: a map of input name to cell per row.
func rowsToProto(r *Rows) []*seerv1.Row {
	if r == nil {
		return nil
	}
	out := make([]*seerv1.Row, r.Len())
	for i := range out {
		cells := make(map[string]*seerv1.Cell, len(r.Inputs))
		for k, c := range r.Row(i) {
			pc := &seerv1.Cell{Value: valueToProto(&c.Value), Source: c.Source.String(), Why: c.Why.String()}
			if c.Updated != 0 {
				pc.Updated = timestamppb.New(c.Updated.Time())
			}
			cells[r.Inputs[k]] = pc
		}
		out[i] = &seerv1.Row{Cells: cells}
	}
	return out
}

func predictToProto(resp *PredictResponse) *seerv1.PredictResponse {
	out := &seerv1.PredictResponse{Results: make([]*seerv1.Result, len(resp.Results))}
	for i := range resp.Results {
		r := &resp.Results[i]
		out.Results[i] = &seerv1.Result{
			Id: r.ID, Model: r.Model, Version: r.Version, Scores: r.Scores, Outputs: int32(r.Outputs),
			Degraded: r.Degraded(), DegradedStores: r.DegradedStores, DegradedValues: int64(r.DegradedValues),
			Debug: rowsToProto(r.Debug),
		}
	}
	return out
}

func featuresToProto(resp *FeaturesResponse) *seerv1.GetFeaturesResponse {
	out := &seerv1.GetFeaturesResponse{Results: make([]*seerv1.FeaturesResult, len(resp.Results))}
	for i := range resp.Results {
		r := &resp.Results[i]
		out.Results[i] = &seerv1.FeaturesResult{
			Id: r.ID, Rows: rowsToProto(&r.Rows), Degraded: len(r.DegradedStores) > 0, DegradedStores: r.DegradedStores,
			DegradedValues: int64(r.DegradedValues),
		}
	}
	return out
}

// checkWireAnswer parses w's bytes as want's type and requires the same
// message as want, and the size proto.Marshal gives want when the rows'
// inputs are distinct (a map keeps one entry of a name given twice).
func checkWireAnswer(t *testing.T, w *wireAnswer, want proto.Message, distinct bool) {
	t.Helper()
	data := w.buf.ReadOnlyData()
	got := want.ProtoReflect().New().Interface()
	if err := proto.Unmarshal(data, got); err != nil {
		t.Fatalf("the answer's %d bytes do not parse: %v", len(data), err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("the answer parses as\n%v\nwant\n%v", got, want)
	}
	if n := proto.Size(want); distinct && len(data) != n {
		t.Fatalf("the answer is %d bytes, proto.Marshal's %d", len(data), n)
	}
}

// answerRows returns rows of every kind of value and cell: none, zero and
// negative numbers, empty and long strings, vectors and lists empty and
// not, every origin and reason, stamps zero, large and negative.
func answerRows() *Rows {
	long := string(make([]byte, 300))
	vals := []features.Value{
		{}, features.FloatValue(0), features.FloatValue(-2.5), features.FloatValue(math.NaN()),
		features.IntValue(0), features.IntValue(-1), features.IntValue(math.MaxInt64), features.IntValue(300),
		features.BoolValue(false), features.BoolValue(true),
		features.StringValue(""), features.StringValue("thai"), features.StringValue(long),
		features.VectorValue(nil), features.VectorValue([]float32{}), features.VectorValue([]float32{0, -1.5, float32(math.Inf(1))}),
		features.ListValue(nil), features.ListValue([]string{""}), features.ListValue([]string{"a", "", long}),
	}
	origins := []features.Origin{features.FromDefault, features.FromRequest, features.FromRedis, features.FromCache, features.FromDerived}
	reasons := []features.Reason{features.ReasonNone, features.ReasonAbsent, features.ReasonStoreDegraded, features.ReasonNoEntity}
	stamps := []features.Stamp{0, 1_700_000_000, -5, math.MaxInt64}
	r := &Rows{}
	for k := range 7 {
		r.Inputs = append(r.Inputs, "input_"+strconv.Itoa(k)+long[:k*30])
	}
	for i := range 3 * len(vals) {
		for k := range r.Inputs {
			n := i*len(r.Inputs) + k
			r.Cells = append(r.Cells, features.Cell{
				Value: vals[n%len(vals)], Source: origins[n%len(origins)], Why: reasons[n%len(reasons)], Updated: stamps[n%len(stamps)],
			})
		}
	}
	return r
}

func TestWireAnswer(t *testing.T) {
	rows := answerRows()
	featuresCases := map[string]*FeaturesResponse{
		"none":    {},
		"empty":   {Results: []FeaturesResult{{}}},
		"rows":    {Results: []FeaturesResult{{ID: "q1", Rows: *rows}, {Rows: Rows{Inputs: rows.Inputs}}}},
		"no rows": {Results: []FeaturesResult{{ID: "q", Rows: Rows{Inputs: []string{"a"}}, DegradedStores: []string{"main", ""}, DegradedValues: 1 << 40}}},
	}
	for name, resp := range featuresCases {
		t.Run("features/"+name, func(t *testing.T) {
			checkWireAnswer(t, featuresAnswer(resp), featuresToProto(resp), true)
		})
	}
	predictCases := map[string]*PredictResponse{
		"none":  {},
		"empty": {Results: []Result{{}}},
		"scores": {Results: []Result{
			{ID: "q", Model: "store_ranker", Version: "3", Scores: []float64{0, -1, math.NaN(), math.Inf(-1), 1e300}, Outputs: 1},
			{Model: "m", Scores: make([]float64, 300), Outputs: 3, DegradedStores: []string{"a", "b"}, DegradedValues: 7},
		}},
		"debug":       {Results: []Result{{Model: "m", Scores: []float64{1, 2}, Outputs: 1, Debug: rows}}},
		"empty debug": {Results: []Result{{Model: "m", Debug: &Rows{}}, {Model: "m", Debug: &Rows{Inputs: []string{"x"}}}}},
	}
	for name, resp := range predictCases {
		t.Run("predict/"+name, func(t *testing.T) {
			checkWireAnswer(t, predictAnswer(resp), predictToProto(resp), true)
		})
	}
}

// FuzzWireAnswer builds answers of rows from the fuzzer's bytes and
// requires of each what TestWireAnswer requires.
func FuzzWireAnswer(f *testing.F) {
	f.Add([]byte{3, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	f.Add([]byte{1, 1, 6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 7, 9})
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		g := fuzzBytes(data)
		r := &Rows{}
		distinct := true
		for k := range int(g.byte() % 6) {
			name := g.str()
			if name == "" {
				name = "input_" + strconv.Itoa(k)
			}
			for _, in := range r.Inputs {
				distinct = distinct && in != name
			}
			r.Inputs = append(r.Inputs, name)
		}
		if len(r.Inputs) > 0 {
			for range int(g.byte()%5) * len(r.Inputs) {
				r.Cells = append(r.Cells, features.Cell{
					Value: g.value(), Source: features.Origin(g.byte() % 5), Why: features.Reason(g.byte() % 7), Updated: features.Stamp(g.u64()),
				})
			}
		}
		fr := &FeaturesResponse{Results: []FeaturesResult{{ID: g.str(), Rows: *r, DegradedValues: int(g.u64() >> 2)}}}
		pr := &PredictResponse{Results: []Result{{ID: g.str(), Model: g.str(), Version: g.str(), Outputs: int(int32(g.u64())), Debug: r, DegradedValues: int(g.u64())}}}
		for range int(g.byte() % 4) {
			fr.Results[0].DegradedStores = append(fr.Results[0].DegradedStores, g.str())
			pr.Results[0].Scores = append(pr.Results[0].Scores, math.Float64frombits(g.u64()))
		}
		pr.Results[0].DegradedStores = fr.Results[0].DegradedStores
		checkWireAnswer(t, featuresAnswer(fr), featuresToProto(fr), distinct)
		checkWireAnswer(t, predictAnswer(pr), predictToProto(pr), distinct)
	})
}

// fuzzBytes hands out the fuzzer's bytes as the parts of an answer;
// past their end, zeros.
type fuzzBytes []byte

func (g *fuzzBytes) byte() byte {
	if len(*g) == 0 {
		return 0
	}
	b := (*g)[0]
	*g = (*g)[1:]
	return b
}

func (g *fuzzBytes) u64() uint64 {
	var b [8]byte
	n := copy(b[:], *g)
	*g = (*g)[n:]
	return binary.LittleEndian.Uint64(b[:])
}

// str is a string of up to 200 bytes (not always valid UTF-8: the
// encoder copies bytes, and proto.Unmarshal checks UTF-8, so only valid
// ones are kept).
func (g *fuzzBytes) str() string {
	n := min(int(g.byte())%201, len(*g))
	s := string((*g)[:n])
	*g = (*g)[n:]
	if !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	return s
}

func (g *fuzzBytes) value() features.Value {
	switch g.byte() % 7 {
	case 1:
		return features.FloatValue(math.Float64frombits(g.u64()))
	case 2:
		return features.IntValue(int64(g.u64()))
	case 3:
		return features.BoolValue(g.byte()%2 == 1)
	case 4:
		return features.StringValue(g.str())
	case 5:
		vec := make([]float32, g.byte()%9)
		for i := range vec {
			vec[i] = math.Float32frombits(uint32(g.u64()))
		}
		return features.VectorValue(vec)
	case 6:
		list := make([]string, g.byte()%5)
		for i := range list {
			list[i] = g.str()
		}
		return features.ListValue(list)
	}
	return features.Value{}
}
