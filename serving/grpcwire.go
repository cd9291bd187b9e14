package serving

import (
	"errors"
	"math"
	"slices"
	"sync"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	seerv1 "github.com/seer-ml/seer/api/seer/v1"
	"github.com/seer-ml/seer/features"
)

// This file reads seer.v1.PredictRequest and GetFeaturesRequest straight
// from the wire into a pooled PredictRequest or FeaturesRequest, as the
// HTTP transport's decoder reads JSON.
//
// Why by hand: proto.Unmarshal of the 200-candidate ranking query made
// about 20 allocations per candidate (each candidate's maps, their
// groups, every key and value boxed through protoreflect, a message and
// a oneof wrapper per value) and, with the conversion into the typed
// request that followed, 4,455 allocations per call; that was most of
// what made a gRPC call cost twice the CPU of the same HTTP/JSON request
// (docs/performance.md). Here the message is copied once into a string,
// every string is a substring of it, and the maps are kept for the next
// call. The outcome is proto.Unmarshal's, field for field
// (FuzzWirePredict and FuzzWireFeatures hold the two to it): unknown
// fields and fields of the wrong wire type are skipped, the last of a
// scalar given twice counts, repeated fields and maps add up, a map
// entry's value message merges, a oneof's message given twice merges, and
// strings must be valid UTF-8. Unlike proto.Unmarshal, reading stops at
// the first query or candidate past the request limits (errOver).

// The errors of a message proto.Unmarshal refuses.
var (
	errWire     = errors.New("proto: cannot parse invalid wire-format data")
	errWireUTF8 = errors.New("proto: string field contains invalid UTF-8")
	// errSkip says that a field is read over as an unknown one.
	errSkip = errors.New("skip field")
	// errOver stops reading a message at a query or candidate past the
	// limits, as the JSON decoder stops: refusing a message of a million
	// empty candidates (2 MB) then costs no more than one of the limit's,
	// where reading them all took 196 MB, and a million queries 706 MB.
	errOver = errors.New("over a limit")
)

// wirePredict is a PredictRequest as read from the wire, with the memory
// it keeps between calls; or, made by newWireFeatures, a
// GetFeaturesRequest, whose queries and candidates it reads into the same
// parts.
type wirePredict struct {
	msg        string // the message: decoded strings are substrings of it
	features   bool   // the message is a GetFeaturesRequest
	bad        error  // why the message did not parse, as wireCodec read it
	lim        limits // the most queries, and candidates per query, to read
	over       error  // a limit passed: reading stopped there, at once
	debug      bool
	onDegraded int32
	// The message's queries are queries[:nq]; those after them are kept
	// emptied, with their maps, for the next message.
	queries []wireQuery
	nq      int

	req   PredictRequest
	freq  FeaturesRequest
	cands []Candidate // the typed request's candidates
}

type wireQuery struct {
	id, model  string
	names      []string // a FeaturesQuery's features
	debug      bool
	onDegraded int32
	context    map[string]string
	features   map[string]features.Value
	cands      []wireCandidate // cands[:nc] are the query's candidates, as queries
	nc         int
}

type wireCandidate struct {
	id       string
	entities map[string]string
	features map[string]features.Value
}

var wirePredicts = sync.Pool{New: func() any { return new(wirePredict) }}

func newWirePredict() *wirePredict { return wirePredicts.Get().(*wirePredict) }

// newWireFeatures returns a wirePredict that reads a GetFeaturesRequest.
func newWireFeatures() *wirePredict {
	w := newWirePredict()
	w.features = true
	return w
}

// release empties w and keeps it for another call, unless it grew too
// large to keep (the limits of the HTTP decoder's requests).
func (w *wirePredict) release() {
	n := 16*cap(w.cands) + 128*cap(w.queries)
	for i := range w.nq {
		w.queries[i].reset()
	}
	for i := range w.queries {
		q := &w.queries[i]
		n += 64*cap(q.cands) + 16*cap(q.names)
	}
	clear(w.cands)
	clear(w.req.Queries)
	clear(w.freq.Queries)
	w.cands, w.req.Queries, w.freq.Queries = w.cands[:0], w.req.Queries[:0], w.freq.Queries[:0]
	w.msg, w.features, w.bad, w.lim, w.over, w.debug, w.onDegraded, w.nq = "", false, nil, limits{}, nil, false, 0, 0
	w.req = PredictRequest{Queries: w.req.Queries}
	w.freq = FeaturesRequest{Queries: w.freq.Queries}
	if n <= keepBytes {
		wirePredicts.Put(w)
	}
}

func (q *wireQuery) reset() {
	q.id, q.model, q.debug, q.onDegraded = "", "", false, 0
	clear(q.names)
	q.names = q.names[:0]
	q.context = emptied(q.context)
	q.features = emptied(q.features)
	for i := range q.nc {
		c := &q.cands[i]
		c.id = ""
		c.entities = emptied(c.entities)
		c.features = emptied(c.features)
	}
	q.nc = 0
}

// unmarshal reads the message in data.
func (w *wirePredict) unmarshal(data mem.BufferSlice) error {
	if len(data) == 1 {
		w.msg = string(data[0].ReadOnlyData())
	} else {
		b := make([]byte, 0, data.Len())
		for _, d := range data {
			b = append(b, d.ReadOnlyData()...)
		}
		w.msg = unsafe.String(unsafe.SliceData(b), len(b))
	}
	b := unsafe.Slice(unsafe.StringData(w.msg), len(w.msg))
	var err error
	if w.features {
		err = w.readFeatures(b)
	} else {
		err = w.read(b)
	}
	if err == errOver {
		return nil // the request says so: w.over
	}
	return err
}

// text returns the bytes b of the message as a substring of w.msg: b is
// a part of the message's bytes, which end where w.msg ends.
func (w *wirePredict) text(b []byte) string {
	start := len(w.msg) - cap(b)
	return w.msg[start : start+len(b)]
}

// read reads a PredictRequest.
func (w *wirePredict) read(b []byte) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1:
			return w.queryField(typ, b, w.query)
		case 2:
			return boolTo(&w.debug, typ, b)
		case 3:
			return int32To(&w.onDegraded, typ, b)
		}
		return 0, errSkip
	})
}

// queryField reads a query field into the next query with read, or
// stops at the first query past the limit.
func (w *wirePredict) queryField(typ protowire.Type, b []byte, read func(*wireQuery, []byte) error) (int, error) {
	m, n, err := message(typ, b)
	if err != nil {
		return n, err
	}
	if w.lim.queries > 0 && w.nq == w.lim.queries {
		w.over = badRequest("queries: more than the limit of %d", w.lim.queries)
		return n, errOver
	}
	return n, read(w.addQuery(), m)
}

// addQuery returns the next query, emptied, with the maps it kept.
func (w *wirePredict) addQuery() *wireQuery {
	if w.nq == len(w.queries) {
		w.queries = append(w.queries, wireQuery{})
	}
	w.nq++
	return &w.queries[w.nq-1]
}

// addCandidate returns the query's next candidate, as addQuery.
func (q *wireQuery) addCandidate() *wireCandidate {
	if q.nc == len(q.cands) {
		q.cands = append(q.cands, wireCandidate{})
	}
	q.nc++
	return &q.cands[q.nc-1]
}

// query reads a Query.
func (w *wirePredict) query(q *wireQuery, b []byte) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1:
			return w.strTo(&q.id, typ, b)
		case 2:
			return w.strTo(&q.model, typ, b)
		case 3:
			return w.stringEntry(&q.context, typ, b)
		case 4:
			return w.valueEntry(&q.features, typ, b)
		case 5:
			return w.candidateField(q, typ, b)
		case 6:
			return boolTo(&q.debug, typ, b)
		case 7:
			return int32To(&q.onDegraded, typ, b)
		}
		return 0, errSkip
	})
}

// readFeatures reads a GetFeaturesRequest.
func (w *wirePredict) readFeatures(b []byte) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1:
			return w.queryField(typ, b, w.featuresQuery)
		case 2:
			return int32To(&w.onDegraded, typ, b)
		}
		return 0, errSkip
	})
}

// featuresQuery reads a FeaturesQuery.
func (w *wirePredict) featuresQuery(q *wireQuery, b []byte) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1:
			return w.strTo(&q.id, typ, b)
		case 2:
			s, n, err := w.str(typ, b)
			if err == nil {
				q.names = append(q.names, s)
			}
			return n, err
		case 3:
			return w.stringEntry(&q.context, typ, b)
		case 4:
			return w.candidateField(q, typ, b)
		case 5:
			return int32To(&q.onDegraded, typ, b)
		}
		return 0, errSkip
	})
}

// candidateField reads a Candidate field of a query into its next
// candidate.
func (w *wirePredict) candidateField(q *wireQuery, typ protowire.Type, b []byte) (int, error) {
	m, n, err := message(typ, b)
	if err != nil {
		return n, err
	}
	if w.lim.candidates > 0 && q.nc == w.lim.candidates {
		w.over = badRequest("queries[%d].candidates: more than the limit of %d", w.nq-1, w.lim.candidates)
		return n, errOver
	}
	return n, w.candidate(q.addCandidate(), m)
}

// candidate reads a Candidate.
func (w *wirePredict) candidate(c *wireCandidate, b []byte) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1:
			return w.strTo(&c.id, typ, b)
		case 2:
			return w.stringEntry(&c.entities, typ, b)
		case 3:
			return w.valueEntry(&c.features, typ, b)
		}
		return 0, errSkip
	})
}

// stringEntry reads an entry of a map<string, string> into *m, made when
// needed.
func (w *wirePredict) stringEntry(m *map[string]string, typ protowire.Type, b []byte) (int, error) {
	e, n, err := message(typ, b)
	if err != nil {
		return n, err
	}
	var key, val string
	err = fields(e, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1:
			return w.strTo(&key, typ, b)
		case 2:
			return w.strTo(&val, typ, b)
		}
		return 0, errSkip
	})
	if err != nil {
		return n, err
	}
	if *m == nil {
		*m = make(map[string]string, 1)
	}
	(*m)[key] = val
	return n, nil
}

// valueEntry reads an entry of a map<string, Value> into *m, made when
// needed.
func (w *wirePredict) valueEntry(m *map[string]features.Value, typ protowire.Type, b []byte) (int, error) {
	e, n, err := message(typ, b)
	if err != nil {
		return n, err
	}
	var key string
	var val features.Value
	err = fields(e, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1:
			return w.strTo(&key, typ, b)
		case 2:
			v, n, err := message(typ, b)
			if err != nil {
				return n, err
			}
			return n, w.value(&val, v)
		}
		return 0, errSkip
	})
	if err != nil {
		return n, err
	}
	if *m == nil {
		*m = make(map[string]features.Value, 1)
	}
	(*m)[key] = val
	return n, nil
}

// value reads a Value into *v, as valueFromProto converts one: the last
// kind given counts, and a vector or list given again adds to the one
// before.
func (w *wirePredict) value(v *features.Value, b []byte) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1:
			if typ != protowire.Fixed64Type {
				return 0, errSkip
			}
			x, n := protowire.ConsumeFixed64(b)
			if n < 0 {
				return n, errWire
			}
			*v = features.FloatValue(math.Float64frombits(x))
			return n, nil
		case 2:
			x, n, err := varint(typ, b)
			if err == nil {
				*v = features.IntValue(int64(x))
			}
			return n, err
		case 3:
			x, n, err := varint(typ, b)
			if err == nil {
				*v = features.BoolValue(x != 0)
			}
			return n, err
		case 4:
			s, n, err := w.str(typ, b)
			if err == nil {
				*v = features.StringValue(s)
			}
			return n, err
		case 5:
			m, n, err := message(typ, b)
			if err != nil {
				return n, err
			}
			var vec []float32
			if v.Type() == features.Vector {
				vec = v.Vector()
			}
			if vec, err = floats(vec, m); err != nil {
				return n, err
			}
			*v = features.VectorValue(vec)
			return n, nil
		case 6:
			m, n, err := message(typ, b)
			if err != nil {
				return n, err
			}
			var list []string
			if v.Type() == features.List {
				list = v.List()
			}
			if list, err = w.strs(list, m); err != nil {
				return n, err
			}
			*v = features.ListValue(list)
			return n, nil
		}
		return 0, errSkip
	})
}

// floats reads a FloatVector, adding its values to vec.
func floats(vec []float32, b []byte) ([]float32, error) {
	err := fields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		if num != 1 {
			return 0, errSkip
		}
		switch typ {
		case protowire.Fixed32Type:
			x, n := protowire.ConsumeFixed32(b)
			if n < 0 {
				return n, errWire
			}
			vec = append(vec, math.Float32frombits(x))
			return n, nil
		case protowire.BytesType:
			p, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return n, errWire
			}
			vec = slices.Grow(vec, len(p)/4)
			for len(p) > 0 {
				x, m := protowire.ConsumeFixed32(p)
				if m < 0 {
					return m, errWire
				}
				vec = append(vec, math.Float32frombits(x))
				p = p[m:]
			}
			return n, nil
		}
		return 0, errSkip
	})
	return vec, err
}

// strs reads a StringList, adding its values to list.
func (w *wirePredict) strs(list []string, b []byte) ([]string, error) {
	err := fields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		if num != 1 {
			return 0, errSkip
		}
		s, n, err := w.str(typ, b)
		if err == nil {
			list = append(list, s)
		}
		return n, err
	})
	return list, err
}

// fields calls field for each field of the message b with its number,
// its wire type and the bytes from its value on; field returns the
// length of the value, or errSkip to have it read over as unknown.
func fields(b []byte, field func(num protowire.Number, typ protowire.Type, b []byte) (int, error)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num > protowire.MaxValidNumber || typ == protowire.EndGroupType {
			return errWire
		}
		b = b[n:]
		n, err := field(num, typ, b)
		if err == errSkip {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return errWire
			}
		} else if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// message returns the bytes of the message field at b and its length.
func message(typ protowire.Type, b []byte) ([]byte, int, error) {
	if typ != protowire.BytesType {
		return nil, 0, errSkip
	}
	m, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return nil, n, errWire
	}
	return m, n, nil
}

func varint(typ protowire.Type, b []byte) (uint64, int, error) {
	if typ != protowire.VarintType {
		return 0, 0, errSkip
	}
	v, n := protowire.ConsumeVarint(b)
	if n < 0 {
		return 0, n, errWire
	}
	return v, n, nil
}

// str returns the string field at b, a substring of the message.
func (w *wirePredict) str(typ protowire.Type, b []byte) (string, int, error) {
	m, n, err := message(typ, b)
	if err != nil {
		return "", n, err
	}
	if !utf8.Valid(m) {
		return "", n, errWireUTF8
	}
	return w.text(m), n, nil
}

// strTo reads the string field at b into *dst, as str.
func (w *wirePredict) strTo(dst *string, typ protowire.Type, b []byte) (int, error) {
	s, n, err := w.str(typ, b)
	if err == nil {
		*dst = s
	}
	return n, err
}

// boolTo reads the bool field at b into *dst.
func boolTo(dst *bool, typ protowire.Type, b []byte) (int, error) {
	v, n, err := varint(typ, b)
	if err == nil {
		*dst = v != 0
	}
	return n, err
}

// int32To reads the int32 (or enum) field at b into *dst.
func int32To(dst *int32, typ protowire.Type, b []byte) (int, error) {
	v, n, err := varint(typ, b)
	if err == nil {
		*dst = int32(v)
	}
	return n, err
}

// request returns the typed request read, checking on_degraded as
// onDegradedsFromProto does, or the error of a limit it passed (w.lim,
// worded as checkShape words it). It holds w's memory until w is
// released.
func (w *wirePredict) request() (*PredictRequest, error) {
	od, err := w.check()
	if err != nil {
		return nil, err
	}
	r := &w.req
	r.Debug, r.OnDegraded = w.debug, od
	cands := w.allCandidates()
	r.Queries = slices.Grow(r.Queries[:0], w.nq)[:w.nq]
	for i := range w.nq {
		q := &w.queries[i]
		var qc []Candidate
		qc, cands = q.candidates(cands)
		r.Queries[i] = Query{
			ID: q.id, Model: q.model, Context: nonEmpty(q.context), Features: nonEmpty(q.features),
			Candidates: qc, Debug: q.debug, OnDegraded: OnDegraded(q.onDegraded),
		}
	}
	return r, nil
}

// featuresRequest is request for a GetFeaturesRequest.
func (w *wirePredict) featuresRequest() (*FeaturesRequest, error) {
	od, err := w.check()
	if err != nil {
		return nil, err
	}
	r := &w.freq
	r.OnDegraded = od
	cands := w.allCandidates()
	r.Queries = slices.Grow(r.Queries[:0], w.nq)[:w.nq]
	for i := range w.nq {
		q := &w.queries[i]
		var qc []Candidate
		qc, cands = q.candidates(cands)
		var names []string
		if len(q.names) > 0 {
			names = q.names
		}
		r.Queries[i] = FeaturesQuery{
			ID: q.id, Features: names, Context: nonEmpty(q.context), Candidates: qc, OnDegraded: OnDegraded(q.onDegraded),
		}
	}
	return r, nil
}

// check returns the request's on_degraded, or the first error of the
// message: a limit passed while reading it, then an on_degraded out of
// range, the request's before its queries'.
func (w *wirePredict) check() (OnDegraded, error) {
	if w.over != nil {
		return 0, w.over
	}
	od, err := onDegradedFromProto(seerv1.OnDegraded(w.onDegraded), "on_degraded")
	if err != nil {
		return 0, err
	}
	for i := range w.nq {
		if v := w.queries[i].onDegraded; v < 0 || v > int32(OnDegradedFail) {
			return 0, badRequest("queries[%d].on_degraded: unknown value %d", i, v)
		}
	}
	return od, nil
}

// allCandidates returns room for the typed candidates of every query.
func (w *wirePredict) allCandidates() []Candidate {
	n := 0
	for i := range w.nq {
		n += w.queries[i].nc
	}
	w.cands = slices.Grow(w.cands[:0], n)[:n]
	return w.cands
}

// candidates fills the query's typed candidates at the start of cands
// and returns them, and the rest of cands.
func (q *wireQuery) candidates(cands []Candidate) (qc, rest []Candidate) {
	if q.nc == 0 {
		return nil, cands
	}
	qc, rest = cands[:q.nc:q.nc], cands[q.nc:]
	for j := range qc {
		c := &q.cands[j]
		qc[j] = Candidate{ID: c.id, Entities: nonEmpty(c.entities), Features: nonEmpty(c.features)}
	}
	return qc, rest
}

// nonEmpty returns m, or nil when it is empty, as proto.Unmarshal leaves
// a map field that was not given.
func nonEmpty[M ~map[K]V, K comparable, V any](m M) M {
	if len(m) == 0 {
		return nil
	}
	return m
}

// wireCodec is the server's codec: proto's, but for the requests of
// seer.v1.Seer, which it reads with wirePredict, their answers, which
// are already encoded (wireAnswer), and the requests of the services
// parseChecked registers (parsed).
type wireCodec struct{ encoding.CodecV2 }

func newWireCodec() wireCodec { return wireCodec{encoding.GetCodecV2(protocodec.Name)} }

func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	if w, ok := v.(*wireAnswer); ok {
		return mem.BufferSlice{w.buf}, nil
	}
	return c.CodecV2.Marshal(v)
}

func (c wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	// Why the message does not parse is kept for the handler, which
	// answers INVALID_ARGUMENT; an error here, grpc-go would answer
	// INTERNAL.
	switch w := v.(type) {
	case *wirePredict:
		w.bad = w.unmarshal(data)
		return nil
	case *parsed:
		w.err = c.CodecV2.Unmarshal(data, w.m)
		return nil
	}
	return c.CodecV2.Unmarshal(data, v)
}
