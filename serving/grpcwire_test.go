package serving

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	seerv1 "github.com/seer-ml/seer/api/seer/v1"
	"github.com/seer-ml/seer/features"
)

// onDegradedsFromProto converts the on_degraded of a request, returned
// first, and of each of its queries, in order after it.
func onDegradedsFromProto[Q interface{ GetOnDegraded() seerv1.OnDegraded }](req seerv1.OnDegraded, qs []Q) ([]OnDegraded, error) {
	out := make([]OnDegraded, 1+len(qs))
	var err error
	if out[0], err = onDegradedFromProto(req, "on_degraded"); err != nil {
		return nil, err
	}
	for i, q := range qs {
		if out[1+i], err = onDegradedFromProto(q.GetOnDegraded(), fmt.Sprintf("queries[%d].on_degraded", i)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func candidatesFromProto(cs []*seerv1.Candidate) []Candidate {
	if len(cs) == 0 {
		return nil
	}
	out := make([]Candidate, len(cs))
	for i, c := range cs {
		out[i] = Candidate{ID: c.GetId(), Entities: c.GetEntities(), Features: valuesFromProto(c.GetFeatures())}
	}
	return out
}

func valuesFromProto(m map[string]*seerv1.Value) map[string]features.Value {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]features.Value, len(m))
	for name, v := range m {
		out[name] = valueFromProto(v)
	}
	return out
}

// valueFromProto converts a request value; one with no kind set is the
// invalid Value, which counts as not given.
func valueFromProto(v *seerv1.Value) features.Value {
	switch k := v.GetKind().(type) {
	case *seerv1.Value_DoubleValue:
		return features.FloatValue(k.DoubleValue)
	case *seerv1.Value_Int64Value:
		return features.IntValue(k.Int64Value)
	case *seerv1.Value_BoolValue:
		return features.BoolValue(k.BoolValue)
	case *seerv1.Value_StringValue:
		return features.StringValue(k.StringValue)
	case *seerv1.Value_VectorValue:
		return features.VectorValue(k.VectorValue.GetValues())
	case *seerv1.Value_ListValue:
		return features.ListValue(k.ListValue.GetValues())
	}
	return features.Value{}
}

// predictFromProto is the typed request of a PredictRequest as
// proto.Unmarshal and the generated types give it: what the gRPC
// transport did before it read the message itself.
func predictFromProto(in *seerv1.PredictRequest) (*PredictRequest, error) {
	od, err := onDegradedsFromProto(in.GetOnDegraded(), in.GetQueries())
	if err != nil {
		return nil, err
	}
	req := &PredictRequest{Debug: in.GetDebug(), OnDegraded: od[0], Queries: make([]Query, len(in.GetQueries()))}
	for i, q := range in.GetQueries() {
		req.Queries[i] = Query{
			ID: q.GetId(), Model: q.GetModel(), Context: q.GetContext(), Debug: q.GetDebug(),
			Features: valuesFromProto(q.GetFeatures()), Candidates: candidatesFromProto(q.GetCandidates()),
			OnDegraded: od[1+i],
		}
	}
	return req, nil
}

// featuresFromProto is predictFromProto for a GetFeaturesRequest.
func featuresFromProto(in *seerv1.GetFeaturesRequest) (*FeaturesRequest, error) {
	od, err := onDegradedsFromProto(in.GetOnDegraded(), in.GetQueries())
	if err != nil {
		return nil, err
	}
	req := &FeaturesRequest{OnDegraded: od[0], Queries: make([]FeaturesQuery, len(in.GetQueries()))}
	for i, q := range in.GetQueries() {
		req.Queries[i] = FeaturesQuery{
			ID: q.GetId(), Features: q.GetFeatures(), Context: q.GetContext(),
			Candidates: candidatesFromProto(q.GetCandidates()), OnDegraded: od[1+i],
		}
	}
	return req, nil
}

// wireOutcome reads msg with wirePredict, given in two buffers when split
// is inside it, and describes the typed request or the error.
func wireOutcome(msg []byte, split int) (string, bool) {
	data := mem.BufferSlice{mem.SliceBuffer(msg)}
	if split > 0 && split < len(msg) {
		data = mem.BufferSlice{mem.SliceBuffer(msg[:split]), mem.SliceBuffer(msg[split:])}
	}
	w := newWirePredict()
	defer w.release()
	if err := w.unmarshal(data); err != nil {
		return "", false
	}
	req, err := w.request()
	return describeRequest(req, err), true
}

// protoOutcome is wireOutcome with proto.Unmarshal and predictFromProto.
func protoOutcome(msg []byte) (string, bool) {
	var in seerv1.PredictRequest
	if err := proto.Unmarshal(msg, &in); err != nil {
		return "", false
	}
	req, err := predictFromProto(&in)
	return describeRequest(req, err), true
}

// describeRequest writes out a typed request, maps in key order and
// floats by their bits. An empty map and none are the same to the request
// path (proto.Unmarshal makes a map for a field of the wrong wire type
// and leaves it empty), and so are no candidates and an empty list.
func describeRequest(req *PredictRequest, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	s := fmt.Sprintf("debug %v on_degraded %d\n", req.Debug, req.OnDegraded)
	for _, q := range req.Queries {
		s += fmt.Sprintf("query %q %q %v %d ctx %s feats %s\n", q.ID, q.Model, q.Debug, q.OnDegraded, describeIDs(q.Context), describeValues(q.Features))
		s += fmt.Sprintf("  candidates %d\n", len(q.Candidates))
		for _, c := range q.Candidates {
			s += fmt.Sprintf("  %q %s %s\n", c.ID, describeIDs(c.Entities), describeValues(c.Features))
		}
	}
	return s
}

func describeIDs(m map[string]string) string {
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
	s := "{"
	for _, k := range keys {
		s += fmt.Sprintf("%q: %q, ", k, m[k])
	}
	return s + "}"
}

func describeValues(m map[string]features.Value) string {
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
	s := "{"
	for _, k := range keys {
		v := m[k]
		s += fmt.Sprintf("%q: %v ", k, v.Type())
		switch v.Type() {
		case features.Float:
			s += fmt.Sprint(math.Float64bits(v.Float()))
		case features.Int:
			s += fmt.Sprint(v.Int())
		case features.Bool:
			s += fmt.Sprint(v.Bool())
		case features.String:
			s += fmt.Sprintf("%q", v.Str())
		case features.Vector:
			for _, f := range v.Vector() {
				s += fmt.Sprint(math.Float32bits(f), " ")
			}
		case features.List:
			s += fmt.Sprintf("%q", v.List())
		}
		s += ", "
	}
	return s + "}"
}

// wireFeaturesOutcome is wireOutcome for a GetFeaturesRequest.
func wireFeaturesOutcome(msg []byte, split int) (string, bool) {
	data := mem.BufferSlice{mem.SliceBuffer(msg)}
	if split > 0 && split < len(msg) {
		data = mem.BufferSlice{mem.SliceBuffer(msg[:split]), mem.SliceBuffer(msg[split:])}
	}
	w := newWireFeatures()
	defer w.release()
	if err := w.unmarshal(data); err != nil {
		return "", false
	}
	req, err := w.featuresRequest()
	return describeFeaturesRequest(req, err), true
}

// protoFeaturesOutcome is wireFeaturesOutcome with proto.Unmarshal and
// featuresFromProto.
func protoFeaturesOutcome(msg []byte) (string, bool) {
	var in seerv1.GetFeaturesRequest
	if err := proto.Unmarshal(msg, &in); err != nil {
		return "", false
	}
	req, err := featuresFromProto(&in)
	return describeFeaturesRequest(req, err), true
}

// describeFeaturesRequest is describeRequest for a FeaturesRequest.
func describeFeaturesRequest(req *FeaturesRequest, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	s := fmt.Sprintf("on_degraded %d\n", req.OnDegraded)
	for _, q := range req.Queries {
		s += fmt.Sprintf("query %q %q %d ctx %s\n", q.ID, q.Features, q.OnDegraded, describeIDs(q.Context))
		s += fmt.Sprintf("  candidates %d\n", len(q.Candidates))
		for _, c := range q.Candidates {
			s += fmt.Sprintf("  %q %s %s\n", c.ID, describeIDs(c.Entities), describeValues(c.Features))
		}
	}
	return s
}

// wireFeaturesSeeds are messages that reach each rule of reading a
// GetFeaturesRequest.
func wireFeaturesSeeds(t testing.TB) [][]byte {
	every := &seerv1.GetFeaturesRequest{OnDegraded: seerv1.OnDegraded_ON_DEGRADED_FAIL, Queries: []*seerv1.FeaturesQuery{{
		Id: "q", Features: []string{"store_avg_rating", "", "store_avg_rating", "é"}, Context: map[string]string{"consumer": "1", "": ""}, OnDegraded: 1,
		Candidates: []*seerv1.Candidate{{Id: "c", Entities: map[string]string{"store": "7"}}, {}, {Features: map[string]*seerv1.Value{
			"x": {Kind: &seerv1.Value_Int64Value{Int64Value: -5}}, "n": {},
		}}},
	}, {}}}
	many := &seerv1.GetFeaturesRequest{Queries: []*seerv1.FeaturesQuery{{Features: []string{"a", "b", "c"}}}}
	for i := range 30 {
		many.Queries[0].Candidates = append(many.Queries[0].Candidates, &seerv1.Candidate{Entities: map[string]string{"store": fmt.Sprint(i)}})
	}
	var seeds [][]byte
	for _, m := range []*seerv1.GetFeaturesRequest{every, many, {}, {OnDegraded: -1}, {Queries: []*seerv1.FeaturesQuery{{OnDegraded: 3}}}} {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	// Given twice, wrong wire types, unknown fields and groups.
	q := protowire.AppendString(protowire.AppendTag(nil, 2, protowire.BytesType), "f")
	q = protowire.AppendVarint(protowire.AppendTag(q, 2, protowire.VarintType), 1) // a feature as a varint: unknown
	q = protowire.AppendString(protowire.AppendTag(q, 1, protowire.BytesType), "a")
	q = protowire.AppendString(protowire.AppendTag(q, 1, protowire.BytesType), "b")
	q = protowire.AppendVarint(protowire.AppendTag(q, 5, protowire.VarintType), 2)
	q = protowire.AppendFixed64(protowire.AppendTag(q, 5, protowire.Fixed64Type), 0) // on_degraded as fixed64: unknown
	q = protowire.AppendTag(protowire.AppendTag(q, 99, protowire.StartGroupType), 99, protowire.EndGroupType)
	q = protowire.AppendBytes(protowire.AppendTag(q, 4, protowire.BytesType), protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "c"))
	msg := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), q)
	msg = protowire.AppendBytes(protowire.AppendTag(msg, 1, protowire.BytesType), q)
	msg = protowire.AppendVarint(protowire.AppendTag(msg, 2, protowire.VarintType), 1)
	seeds = append(seeds, msg, append(slices.Clone(msg), 0xff), []byte{0x0a, 0x03, 0x12, 0x01, 0xc3})
	return seeds
}

// TestWireFeatures requires reading a GetFeaturesRequest to read each
// seed as proto.Unmarshal does, whole and cut short, and the same pooled
// reader to read a PredictRequest after it.
func TestWireFeatures(t *testing.T) {
	predict := wireSeeds(t)[0]
	wantPredict, _ := protoOutcome(predict)
	for k, msg := range wireFeaturesSeeds(t) {
		for n := range len(msg) + 1 {
			want, wantOK := protoFeaturesOutcome(msg[:n])
			got, ok := wireFeaturesOutcome(msg[:n], n/2)
			if ok != wantOK || got != want {
				t.Fatalf("seed %d cut at %d of %d: wire read %v\n%s\nproto.Unmarshal read %v\n%s", k, n, len(msg), ok, got, wantOK, want)
			}
			if got, _ := wireOutcome(predict, 0); got != wantPredict {
				t.Fatalf("a PredictRequest after seed %d cut at %d: wire read\n%s\nproto.Unmarshal read\n%s", k, n, got, wantPredict)
			}
		}
	}
}

// FuzzWireFeatures is FuzzWirePredict for a GetFeaturesRequest.
func FuzzWireFeatures(f *testing.F) {
	for _, s := range wireFeaturesSeeds(f) {
		f.Add(s, uint8(0))
	}
	f.Fuzz(func(t *testing.T, msg []byte, split uint8) {
		want, wantOK := protoFeaturesOutcome(msg)
		got, ok := wireFeaturesOutcome(msg, int(split))
		if ok != wantOK || got != want {
			t.Fatalf("wire read %v\n%s\nproto.Unmarshal read %v\n%s", ok, got, wantOK, want)
		}
	})
}

// TestWireLimits sends messages of a million empty queries or
// candidates (2 MB each): the readers stop at the first one past the
// limits, keeping no more than the limits' worth, and the request is
// refused as checkShape refuses it.
func TestWireLimits(t *testing.T) {
	lim := limits{queries: 10, candidates: 1000}
	many := &seerv1.PredictRequest{Queries: []*seerv1.Query{{Model: "m", Candidates: make([]*seerv1.Candidate, 3)},
		{Model: "m", Candidates: make([]*seerv1.Candidate, 1_000_000)}}}
	wide := &seerv1.PredictRequest{Queries: make([]*seerv1.Query, 1_000_000)}
	fmany := &seerv1.GetFeaturesRequest{Queries: []*seerv1.FeaturesQuery{{Candidates: make([]*seerv1.Candidate, 1_000_000)}}}
	fwide := &seerv1.GetFeaturesRequest{Queries: make([]*seerv1.FeaturesQuery, 1_000_000)}
	for _, tt := range []struct {
		name     string
		msg      proto.Message
		features bool
		want     string
	}{
		{"candidates", many, false, "queries[1].candidates: more than the limit of 1000"},
		{"queries", wide, false, "queries: more than the limit of 10"},
		{"features candidates", fmany, true, "queries[0].candidates: more than the limit of 1000"},
		{"features queries", fwide, true, "queries: more than the limit of 10"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := proto.Marshal(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			w := newWirePredict()
			if tt.features {
				w = newWireFeatures()
			}
			defer w.release()
			w.lim = lim
			if err := w.unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}); err != nil {
				t.Fatalf("%d bytes: %v", len(b), err)
			}
			if tt.features {
				_, err = w.featuresRequest()
			} else {
				_, err = w.request()
			}
			if err == nil || err.Error() != tt.want || !errors.Is(err, ErrBadRequest) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
			if len(w.queries) > 2*lim.queries {
				t.Errorf("kept %d queries for a limit of %d", len(w.queries), lim.queries)
			}
			for i := range w.queries {
				if c := len(w.queries[i].cands); c > lim.candidates {
					t.Errorf("query %d: kept %d candidates for a limit of %d", i, c, lim.candidates)
				}
			}
		})
	}
}

// wireSeeds are messages that reach each rule of wirePredict.
func wireSeeds(t testing.TB) [][]byte {
	vec := func(fs ...float32) *seerv1.Value {
		return &seerv1.Value{Kind: &seerv1.Value_VectorValue{VectorValue: &seerv1.FloatVector{Values: fs}}}
	}
	list := func(ss ...string) *seerv1.Value {
		return &seerv1.Value{Kind: &seerv1.Value_ListValue{ListValue: &seerv1.StringList{Values: ss}}}
	}
	every := &seerv1.PredictRequest{Debug: true, OnDegraded: seerv1.OnDegraded_ON_DEGRADED_FAIL, Queries: []*seerv1.Query{{
		Id: "q", Model: "m@2", Context: map[string]string{"consumer": "1", "": ""}, Debug: true, OnDegraded: 1,
		Features: map[string]*seerv1.Value{
			"d": {Kind: &seerv1.Value_DoubleValue{DoubleValue: math.Inf(-1)}}, "i": {Kind: &seerv1.Value_Int64Value{Int64Value: -5}},
			"b": {Kind: &seerv1.Value_BoolValue{BoolValue: true}}, "s": {Kind: &seerv1.Value_StringValue{StringValue: "é"}},
			"v": vec(1, -2.5), "e": vec(), "l": list("a", ""), "n": {},
		},
		Candidates: []*seerv1.Candidate{{Id: "c", Entities: map[string]string{"store": "7"}}, {}, {Features: map[string]*seerv1.Value{"x": list()}}},
	}, {}}}
	var seeds [][]byte
	for _, m := range []*seerv1.PredictRequest{rankingProto(false), rankingProto(true), every, {}, {OnDegraded: -1}, {Queries: []*seerv1.Query{{OnDegraded: 3}}}} {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	// Given twice, wrong wire types, unpacked floats, unknown fields and
	// groups, and a vector merged with the one before.
	value := protowire.AppendTag(nil, 5, protowire.BytesType)
	value = protowire.AppendBytes(value, protowire.AppendFixed32(protowire.AppendTag(nil, 1, protowire.Fixed32Type), math.Float32bits(3)))
	value = append(value, value...)
	value = protowire.AppendVarint(protowire.AppendTag(value, 1, protowire.VarintType), 9) // double as a varint: unknown
	entry := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "k")
	entry = protowire.AppendBytes(protowire.AppendTag(entry, 2, protowire.BytesType), value)
	entry = protowire.AppendBytes(protowire.AppendTag(entry, 2, protowire.BytesType), value) // merged
	cand := protowire.AppendBytes(protowire.AppendTag(nil, 3, protowire.BytesType), entry)
	cand = protowire.AppendVarint(protowire.AppendTag(cand, 1, protowire.VarintType), 1) // id as a varint: unknown
	cand = protowire.AppendTag(protowire.AppendTag(cand, 99, protowire.StartGroupType), 99, protowire.EndGroupType)
	q := protowire.AppendBytes(protowire.AppendTag(nil, 5, protowire.BytesType), cand)
	q = protowire.AppendString(protowire.AppendTag(q, 1, protowire.BytesType), "a")
	q = protowire.AppendString(protowire.AppendTag(q, 1, protowire.BytesType), "b")
	q = protowire.AppendVarint(protowire.AppendTag(q, 6, protowire.VarintType), 2)
	q = protowire.AppendFixed64(protowire.AppendTag(q, 6, protowire.Fixed64Type), 0) // debug as fixed64: unknown
	msg := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), q)
	msg = protowire.AppendBytes(protowire.AppendTag(msg, 1, protowire.BytesType), q)
	seeds = append(seeds, msg, append(slices.Clone(msg), 0xff), []byte{0x0a, 0x03, 0x0a, 0x01, 0xc3})
	return seeds
}

// TestWirePredict requires wirePredict to read each seed as
// proto.Unmarshal does, whole and cut short.
func TestWirePredict(t *testing.T) {
	for k, msg := range wireSeeds(t) {
		for n := range len(msg) + 1 {
			want, wantOK := protoOutcome(msg[:n])
			got, ok := wireOutcome(msg[:n], n/2)
			if ok != wantOK || got != want {
				t.Fatalf("seed %d cut at %d of %d: wire read %v\n%s\nproto.Unmarshal read %v\n%s", k, n, len(msg), ok, got, wantOK, want)
			}
		}
	}
}

// FuzzWirePredict requires wirePredict to refuse exactly the messages
// proto.Unmarshal refuses, and to give the others the same typed request
// (or the same error) as the generated types did.
func FuzzWirePredict(f *testing.F) {
	for _, s := range wireSeeds(f) {
		f.Add(s, uint8(0))
	}
	f.Fuzz(func(t *testing.T, msg []byte, split uint8) {
		want, wantOK := protoOutcome(msg)
		got, ok := wireOutcome(msg, int(split))
		if ok != wantOK || got != want {
			t.Fatalf("wire read %v\n%s\nproto.Unmarshal read %v\n%s", ok, got, wantOK, want)
		}
	})
}
