package serving

import (
	"math"
	"sync"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/seer-ml/seer/features"
)

// This file writes seer.v1's answers straight from the request path's
// results to the wire, as the HTTP transport writes JSON.
//
// Why by hand: converting a 100-entity GetFeatures answer into messages
// for proto.Marshal made a Row, a map, and a Cell, a Value, its oneof
// wrapper and a Timestamp for every cell: about 2,100 allocations and
// 110 KB per call (BenchmarkGRPCFeatures), where the whole request over
// HTTP makes 50 (BenchmarkFeatures). Here each message's length is
// measured first (sizes) and the answer written once into one pooled
// buffer. The bytes are a valid encoding of the message rowsToProto and
// proto.Marshal would make, which TestWireAnswer and FuzzWireAnswer hold
// them to by parsing them back: the same fields, with proto3's rules for
// what is left out (empty strings, zero numbers, false) and what is always
// there (a oneof's member, a map entry's key and value, a repeated
// message).

// wireAnswer is an answer already encoded: the server's codec sends its
// bytes as they are.
type wireAnswer struct{ buf mem.Buffer }

// Field numbers of seer.v1 (api/seer/v1/seer.proto).
const (
	fieldResults = 1 // PredictResponse.results, GetFeaturesResponse.results

	fieldResultID             = 1
	fieldResultModel          = 2
	fieldResultVersion        = 3
	fieldResultScores         = 4
	fieldResultOutputs        = 5
	fieldResultDegraded       = 6
	fieldResultDegradedStores = 7
	fieldResultDegradedValues = 8
	fieldResultDebug          = 9

	fieldFeaturesID             = 1
	fieldFeaturesRows           = 2
	fieldFeaturesDegraded       = 3
	fieldFeaturesDegradedStores = 4
	fieldFeaturesDegradedValues = 5

	fieldRowCells = 1
	fieldEntryKey = 1
	fieldEntryVal = 2

	fieldCellValue   = 1
	fieldCellSource  = 2
	fieldCellWhy     = 3
	fieldCellUpdated = 4

	fieldTimestampSeconds = 1

	fieldValueDouble = 1
	fieldValueInt64  = 2
	fieldValueBool   = 3
	fieldValueString = 4
	fieldValueVector = 5
	fieldValueList   = 6

	fieldRepeatedValues = 1 // FloatVector.values, StringList.values
)

// newWireAnswer returns a buffer of exactly size bytes for an answer,
// from gRPC's pool when the answer is large enough to be worth it (as
// gRPC's own proto codec does).
func newWireAnswer(size int, write func([]byte) []byte) *wireAnswer {
	if mem.IsBelowBufferPoolingThreshold(size) {
		return &wireAnswer{mem.SliceBuffer(write(make([]byte, 0, size)))}
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	*buf = write((*buf)[:0])
	return &wireAnswer{mem.NewBuffer(buf, pool)}
}

// sizes are the lengths of an answer's messages, measured once before it
// is written: each is reserved in the order the writer needs them (a
// message's length before its fields) and filled in once its fields are
// measured.
type sizes struct {
	n  []int
	at int // the next one the writer reads
}

var sizesPool = sync.Pool{New: func() any { return new(sizes) }}

func newSizes() *sizes { return sizesPool.Get().(*sizes) }

func (z *sizes) release() {
	if cap(z.n) <= 1<<16 {
		z.n, z.at = z.n[:0], 0
		sizesPool.Put(z)
	}
}

func (z *sizes) reserve() int {
	z.n = append(z.n, 0)
	return len(z.n) - 1
}

// next returns the next length the writer needs.
func (z *sizes) next() int {
	n := z.n[z.at]
	z.at++
	return n
}

// featuresAnswer encodes resp as a seer.v1.GetFeaturesResponse.
func featuresAnswer(resp *FeaturesResponse) *wireAnswer {
	z := newSizes()
	defer z.release()
	size := 0
	for i := range resp.Results {
		r := &resp.Results[i]
		slot := z.reserve()
		n := stringSize(r.ID) + z.rows(&r.Rows) + boolSize(len(r.DegradedStores) > 0) +
			stringsSize(r.DegradedStores) + varintSize(uint64(r.DegradedValues))
		z.n[slot] = n
		size += sizeField(n)
	}
	return newWireAnswer(size, func(b []byte) []byte {
		for i := range resp.Results {
			r := &resp.Results[i]
			b = appendLen(b, fieldResults, z.next())
			b = appendString(b, fieldFeaturesID, r.ID)
			b = z.appendRows(b, fieldFeaturesRows, &r.Rows)
			b = appendBool(b, fieldFeaturesDegraded, len(r.DegradedStores) > 0)
			b = appendStrings(b, fieldFeaturesDegradedStores, r.DegradedStores)
			b = appendVarint(b, fieldFeaturesDegradedValues, uint64(r.DegradedValues))
		}
		return b
	})
}

// predictAnswer encodes resp as a seer.v1.PredictResponse.
func predictAnswer(resp *PredictResponse) *wireAnswer {
	z := newSizes()
	defer z.release()
	size := 0
	for i := range resp.Results {
		r := &resp.Results[i]
		slot := z.reserve()
		n := stringSize(r.ID) + stringSize(r.Model) + stringSize(r.Version) + varintSize(uint64(int32(r.Outputs))) +
			boolSize(r.Degraded()) + stringsSize(r.DegradedStores) + varintSize(uint64(r.DegradedValues))
		if len(r.Scores) > 0 {
			n += sizeField(8 * len(r.Scores))
		}
		if r.Debug != nil {
			n += z.rows(r.Debug)
		}
		z.n[slot] = n
		size += sizeField(n)
	}
	return newWireAnswer(size, func(b []byte) []byte {
		for i := range resp.Results {
			r := &resp.Results[i]
			b = appendLen(b, fieldResults, z.next())
			b = appendString(b, fieldResultID, r.ID)
			b = appendString(b, fieldResultModel, r.Model)
			b = appendString(b, fieldResultVersion, r.Version)
			if len(r.Scores) > 0 {
				b = appendLen(b, fieldResultScores, 8*len(r.Scores))
				for _, s := range r.Scores {
					b = protowire.AppendFixed64(b, math.Float64bits(s))
				}
			}
			b = appendVarint(b, fieldResultOutputs, uint64(int32(r.Outputs)))
			b = appendBool(b, fieldResultDegraded, r.Degraded())
			b = appendStrings(b, fieldResultDegradedStores, r.DegradedStores)
			b = appendVarint(b, fieldResultDegradedValues, uint64(r.DegradedValues))
			if r.Debug != nil {
				b = z.appendRows(b, fieldResultDebug, r.Debug)
			}
		}
		return b
	})
}

// rows measures rows as a repeated Row field and returns its size;
// appendRows writes them: each row a map of input name to cell, in the
// inputs' order. A map entry's key and value are always written, whatever
// they hold.
func (z *sizes) rows(r *Rows) int {
	total := 0
	for i := range r.Len() {
		slot := z.reserve()
		n := 0
		cells := r.Row(i)
		for k := range cells {
			cs := cellSize(&cells[k])
			z.n = append(z.n, cs)
			n += sizeField(sizeField(len(r.Inputs[k])) + sizeField(cs))
		}
		z.n[slot] = n
		total += sizeField(n)
	}
	return total
}

func (z *sizes) appendRows(b []byte, field protowire.Number, r *Rows) []byte {
	for i := range r.Len() {
		b = appendLen(b, field, z.next())
		cells := r.Row(i)
		for k := range cells {
			key, cs := r.Inputs[k], z.next()
			b = appendLen(b, fieldRowCells, sizeField(len(key))+sizeField(cs))
			b = appendLen(b, fieldEntryKey, len(key))
			b = append(b, key...)
			b = appendLen(b, fieldEntryVal, cs)
			b = appendCell(b, &cells[k])
		}
	}
	return b
}

func cellSize(c *features.Cell) int {
	n := stringSize(c.Source.String()) + stringSize(c.Why.String())
	if vs, ok := valueSize(&c.Value); ok {
		n += sizeField(vs)
	}
	if c.Updated != 0 {
		n += sizeField(varintSize(uint64(c.Updated)))
	}
	return n
}

func appendCell(b []byte, c *features.Cell) []byte {
	if vs, ok := valueSize(&c.Value); ok {
		b = appendLen(b, fieldCellValue, vs)
		b = appendValue(b, &c.Value)
	}
	b = appendString(b, fieldCellSource, c.Source.String())
	b = appendString(b, fieldCellWhy, c.Why.String())
	if c.Updated != 0 {
		// A Timestamp of whole seconds: nanos is 0, left out.
		b = appendLen(b, fieldCellUpdated, varintSize(uint64(c.Updated)))
		b = appendVarint(b, fieldTimestampSeconds, uint64(c.Updated))
	}
	return b
}

// valueSize is the size of v as a Value message, and false when v has
// no value (the cell's value is left unset, as JSON's null). A oneof's
// member is written even when it holds its zero value.
func valueSize(v *features.Value) (int, bool) {
	switch v.Type() {
	case features.Float:
		return 1 + 8, true
	case features.Int:
		return 1 + protowire.SizeVarint(uint64(v.Int())), true
	case features.Bool:
		return 1 + 1, true
	case features.String:
		return sizeField(len(v.Str())), true
	case features.Vector:
		return sizeField(vectorSize(v.Vector())), true
	case features.List:
		return sizeField(stringsSize(v.List())), true
	}
	return 0, false
}

func appendValue(b []byte, v *features.Value) []byte {
	switch v.Type() {
	case features.Float:
		b = protowire.AppendTag(b, fieldValueDouble, protowire.Fixed64Type)
		return protowire.AppendFixed64(b, math.Float64bits(v.Float()))
	case features.Int:
		b = protowire.AppendTag(b, fieldValueInt64, protowire.VarintType)
		return protowire.AppendVarint(b, uint64(v.Int()))
	case features.Bool:
		b = protowire.AppendTag(b, fieldValueBool, protowire.VarintType)
		return protowire.AppendVarint(b, protowire.EncodeBool(v.Bool()))
	case features.String:
		b = appendLen(b, fieldValueString, len(v.Str()))
		return append(b, v.Str()...)
	case features.Vector:
		vec := v.Vector()
		b = appendLen(b, fieldValueVector, vectorSize(vec))
		if len(vec) > 0 {
			b = appendLen(b, fieldRepeatedValues, 4*len(vec))
			for _, x := range vec {
				b = protowire.AppendFixed32(b, math.Float32bits(x))
			}
		}
		return b
	case features.List:
		list := v.List()
		b = appendLen(b, fieldValueList, stringsSize(list))
		return appendStrings(b, fieldRepeatedValues, list)
	}
	return b
}

// vectorSize is the size of a FloatVector: its values packed.
func vectorSize(vec []float32) int {
	if len(vec) == 0 {
		return 0
	}
	return sizeField(4 * len(vec))
}

// stringsSize is the size of a repeated string field (a StringList's
// values): every string, empty ones too.
func stringsSize(ss []string) int {
	n := 0
	for _, s := range ss {
		n += sizeField(len(s))
	}
	return n
}

// sizeField is the size of a length-delimited field of n bytes (its tag
// of one byte: every field number here is below 16).
func sizeField(n int) int { return 1 + protowire.SizeBytes(n) }

// stringSize is the size of a string field, left out when empty.
func stringSize(s string) int {
	if s == "" {
		return 0
	}
	return sizeField(len(s))
}

// varintSize is the size of a varint field, left out when zero.
func varintSize(v uint64) int {
	if v == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(v)
}

func boolSize(v bool) int {
	if !v {
		return 0
	}
	return 2
}

func appendLen(b []byte, field protowire.Number, n int) []byte {
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(n))
}

func appendString(b []byte, field protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = appendLen(b, field, len(s))
	return append(b, s...)
}

func appendStrings(b []byte, field protowire.Number, ss []string) []byte {
	for _, s := range ss {
		b = appendLen(b, field, len(s))
		b = append(b, s...)
	}
	return b
}

func appendVarint(b []byte, field protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, field, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendBool(b []byte, field protowire.Number, v bool) []byte {
	if !v {
		return b
	}
	b = protowire.AppendTag(b, field, protowire.VarintType)
	return append(b, 1)
}
