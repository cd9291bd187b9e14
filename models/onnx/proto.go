package onnx

import (
	"encoding/binary"
	"fmt"
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// The parts of onnx.proto (ONNX IR version 3 to 8) that seer reads. Fields
// seer does not use are skipped, so that documentation, metadata and
// training information cost nothing; everything read is checked against
// the bytes that hold it before memory is allocated for it.

// Element types of TensorProto.DataType.
const (
	typeFloat  = 1
	typeUint8  = 2
	typeInt8   = 3
	typeInt32  = 6
	typeInt64  = 7
	typeString = 8
	typeBool   = 9
	typeDouble = 11
)

var typeNames = map[int64]string{
	0: "undefined", 1: "float", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
	8: "string", 9: "bool", 10: "float16", 11: "double", 12: "uint32", 13: "uint64", 14: "complex64",
	15: "complex128", 16: "bfloat16",
}

func typeName(t int64) string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("type %d", t)
}

type modelProto struct {
	irVersion int64
	opsets    []opsetProto
	graph     *graphProto
	functions int // local functions, which seer refuses
}

type opsetProto struct {
	domain  string
	version int64
}

type graphProto struct {
	nodes        []*nodeProto
	initializers []*tensorProto
	sparse       int // sparse initializers, which seer refuses
	inputs       []valueInfo
	outputs      []valueInfo
}

type nodeProto struct {
	inputs  []string
	outputs []string
	name    string
	opType  string
	domain  string
	attrs   []*attrProto
}

// Attribute types.
const (
	attrFloat   = 1
	attrInt     = 2
	attrString  = 3
	attrTensor  = 4
	attrGraph   = 5
	attrFloats  = 6
	attrInts    = 7
	attrStrings = 8
)

type attrProto struct {
	name    string
	typ     int64
	f       float32
	i       int64
	s       []byte
	t       *tensorProto
	floats  []float32
	ints    []int64
	graph   bool // holds a subgraph, which seer refuses
	refAttr bool // refers to a function's attribute, which seer refuses
}

type tensorProto struct {
	name     string
	dims     []int64
	dataType int64
	floats   []float32
	int32s   []int32
	int64s   []int64
	doubles  []float64
	raw      []byte
	hasRaw   bool
	external bool
	strings  int
	segment  bool
}

type valueInfo struct {
	name      string
	elemType  int64 // 0 when the type is not a tensor or not given
	notTensor bool
	dims      []dimProto
	hasShape  bool
}

type dimProto struct {
	value int64
	param string
	known bool // dim_value was given
}

// decoder walks the fields of one message.
type decoder struct {
	b   []byte
	err error
}

// next returns the next field's number and type, or false at the end or
// on an error.
func (d *decoder) next() (protowire.Number, protowire.Type, bool) {
	if d.err != nil || len(d.b) == 0 {
		return 0, 0, false
	}
	num, typ, n := protowire.ConsumeTag(d.b)
	if n < 0 {
		d.err = protowire.ParseError(n)
		return 0, 0, false
	}
	d.b = d.b[n:]
	return num, typ, true
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) skip(num protowire.Number, typ protowire.Type) {
	n := protowire.ConsumeFieldValue(num, typ, d.b)
	if n < 0 {
		d.fail(protowire.ParseError(n))
		return
	}
	d.b = d.b[n:]
}

// bytes reads a length-delimited field.
func (d *decoder) bytes(typ protowire.Type) []byte {
	if typ != protowire.BytesType {
		d.fail(fmt.Errorf("wire type %d where bytes were expected", typ))
		return nil
	}
	v, n := protowire.ConsumeBytes(d.b)
	if n < 0 {
		d.fail(protowire.ParseError(n))
		return nil
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string(typ protowire.Type) string {
	b := d.bytes(typ)
	if !utf8.Valid(b) {
		d.fail(fmt.Errorf("a string is not valid UTF-8"))
		return ""
	}
	return string(b)
}

func (d *decoder) varint(typ protowire.Type) int64 {
	if typ != protowire.VarintType {
		d.fail(fmt.Errorf("wire type %d where a varint was expected", typ))
		return 0
	}
	v, n := protowire.ConsumeVarint(d.b)
	if n < 0 {
		d.fail(protowire.ParseError(n))
		return 0
	}
	d.b = d.b[n:]
	return int64(v)
}

func (d *decoder) fixed32(typ protowire.Type) uint32 {
	if typ != protowire.Fixed32Type {
		d.fail(fmt.Errorf("wire type %d where a fixed32 was expected", typ))
		return 0
	}
	v, n := protowire.ConsumeFixed32(d.b)
	if n < 0 {
		d.fail(protowire.ParseError(n))
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) fixed64(typ protowire.Type) uint64 {
	if typ != protowire.Fixed64Type {
		d.fail(fmt.Errorf("wire type %d where a fixed64 was expected", typ))
		return 0
	}
	v, n := protowire.ConsumeFixed64(d.b)
	if n < 0 {
		d.fail(protowire.ParseError(n))
		return 0
	}
	d.b = d.b[n:]
	return v
}

// varints appends a repeated varint field, packed or not. A packed run
// holds at most one value per byte, so its bytes bound what it allocates.
func (d *decoder) varints(dst []int64, typ protowire.Type) []int64 {
	if typ == protowire.VarintType {
		return append(dst, d.varint(typ))
	}
	b := d.bytes(typ)
	for len(b) > 0 && d.err == nil {
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			d.fail(protowire.ParseError(n))
			break
		}
		dst = append(dst, int64(v))
		b = b[n:]
	}
	return dst
}

func (d *decoder) floats(dst []float32, typ protowire.Type) []float32 {
	if typ == protowire.Fixed32Type {
		return append(dst, math.Float32frombits(d.fixed32(typ)))
	}
	b := d.bytes(typ)
	if len(b)%4 != 0 {
		d.fail(fmt.Errorf("packed floats of %d bytes", len(b)))
		return dst
	}
	dst = growCap(dst, len(b)/4)
	for i := 0; i+4 <= len(b); i += 4 {
		dst = append(dst, math.Float32frombits(binary.LittleEndian.Uint32(b[i:])))
	}
	return dst
}

func (d *decoder) doubles(dst []float64, typ protowire.Type) []float64 {
	if typ == protowire.Fixed64Type {
		return append(dst, math.Float64frombits(d.fixed64(typ)))
	}
	b := d.bytes(typ)
	if len(b)%8 != 0 {
		d.fail(fmt.Errorf("packed doubles of %d bytes", len(b)))
		return dst
	}
	dst = growCap(dst, len(b)/8)
	for i := 0; i+8 <= len(b); i += 8 {
		dst = append(dst, math.Float64frombits(binary.LittleEndian.Uint64(b[i:])))
	}
	return dst
}

func growCap[T any](s []T, n int) []T {
	if cap(s)-len(s) >= n {
		return s
	}
	out := make([]T, len(s), len(s)+n)
	copy(out, s)
	return out
}

// sub decodes a nested message with f, adding where it failed to the error.
func (d *decoder) sub(typ protowire.Type, what string, f func(*decoder)) {
	b := d.bytes(typ)
	if d.err != nil {
		return
	}
	inner := &decoder{b: b}
	f(inner)
	if inner.err != nil {
		d.fail(fmt.Errorf("%s: %w", what, inner.err))
	}
}

func decodeModel(b []byte) (*modelProto, error) {
	m := &modelProto{}
	d := &decoder{b: b}
	for {
		num, typ, ok := d.next()
		if !ok {
			break
		}
		switch num {
		case 1:
			m.irVersion = d.varint(typ)
		case 7:
			if m.graph != nil {
				d.fail(fmt.Errorf("two graphs"))
				break
			}
			m.graph = &graphProto{}
			d.sub(typ, "graph", m.graph.decode)
		case 8:
			var o opsetProto
			d.sub(typ, "opset_import", o.decode)
			m.opsets = append(m.opsets, o)
		case 25:
			d.skip(num, typ)
			m.functions++
		default:
			d.skip(num, typ)
		}
	}
	return m, d.err
}

func (o *opsetProto) decode(d *decoder) {
	for {
		num, typ, ok := d.next()
		if !ok {
			return
		}
		switch num {
		case 1:
			o.domain = d.string(typ)
		case 2:
			o.version = d.varint(typ)
		default:
			d.skip(num, typ)
		}
	}
}

func (g *graphProto) decode(d *decoder) {
	for {
		num, typ, ok := d.next()
		if !ok {
			return
		}
		switch num {
		case 1:
			n := &nodeProto{}
			d.sub(typ, fmt.Sprintf("node %d", len(g.nodes)+1), n.decode)
			g.nodes = append(g.nodes, n)
		case 5:
			t := &tensorProto{}
			d.sub(typ, fmt.Sprintf("initializer %d", len(g.initializers)+1), t.decode)
			g.initializers = append(g.initializers, t)
		case 15:
			d.skip(num, typ)
			g.sparse++
		case 11, 12:
			var v valueInfo
			d.sub(typ, "graph input or output", v.decode)
			if num == 11 {
				g.inputs = append(g.inputs, v)
			} else {
				g.outputs = append(g.outputs, v)
			}
		default:
			d.skip(num, typ)
		}
	}
}

func (n *nodeProto) decode(d *decoder) {
	for {
		num, typ, ok := d.next()
		if !ok {
			return
		}
		switch num {
		case 1:
			n.inputs = append(n.inputs, d.string(typ))
		case 2:
			n.outputs = append(n.outputs, d.string(typ))
		case 3:
			n.name = d.string(typ)
		case 4:
			n.opType = d.string(typ)
		case 7:
			n.domain = d.string(typ)
		case 5:
			a := &attrProto{}
			d.sub(typ, "attribute", a.decode)
			n.attrs = append(n.attrs, a)
		default:
			d.skip(num, typ)
		}
	}
}

func (a *attrProto) decode(d *decoder) {
	for {
		num, typ, ok := d.next()
		if !ok {
			return
		}
		switch num {
		case 1:
			a.name = d.string(typ)
		case 20:
			a.typ = d.varint(typ)
		case 2:
			a.f = math.Float32frombits(d.fixed32(typ))
		case 3:
			a.i = d.varint(typ)
		case 4:
			a.s = d.bytes(typ)
		case 5:
			a.t = &tensorProto{}
			d.sub(typ, "tensor", a.t.decode)
		case 6, 11:
			d.skip(num, typ)
			a.graph = true
		case 7:
			a.floats = d.floats(a.floats, typ)
		case 8:
			a.ints = d.varints(a.ints, typ)
		case 21:
			d.skip(num, typ)
			a.refAttr = true
		default:
			d.skip(num, typ)
		}
	}
}

func (t *tensorProto) decode(d *decoder) {
	for {
		num, typ, ok := d.next()
		if !ok {
			return
		}
		switch num {
		case 1:
			t.dims = d.varints(t.dims, typ)
		case 2:
			t.dataType = d.varint(typ)
		case 3:
			d.skip(num, typ)
			t.segment = true
		case 4:
			t.floats = d.floats(t.floats, typ)
		case 5:
			var v []int64
			v = d.varints(v, typ)
			for _, x := range v {
				t.int32s = append(t.int32s, int32(x))
			}
		case 6:
			d.skip(num, typ)
			t.strings++
		case 7:
			t.int64s = d.varints(t.int64s, typ)
		case 8:
			t.name = d.string(typ)
		case 9:
			t.raw = d.bytes(typ)
			t.hasRaw = true
		case 10:
			t.doubles = d.doubles(t.doubles, typ)
		case 13:
			d.skip(num, typ)
			t.external = true
		case 14:
			if d.varint(typ) == 1 {
				t.external = true
			}
		default:
			d.skip(num, typ)
		}
	}
}

func (v *valueInfo) decode(d *decoder) {
	for {
		num, typ, ok := d.next()
		if !ok {
			return
		}
		switch num {
		case 1:
			v.name = d.string(typ)
		case 2:
			d.sub(typ, "type", v.decodeType)
		default:
			d.skip(num, typ)
		}
	}
}

// decodeType reads a TypeProto, keeping a tensor type's element type and
// shape.
func (v *valueInfo) decodeType(d *decoder) {
	for {
		num, typ, ok := d.next()
		if !ok {
			return
		}
		switch num {
		case 1:
			d.sub(typ, "tensor type", v.decodeTensorType)
		case 6: // denotation
			d.skip(num, typ)
		default:
			d.skip(num, typ)
			v.notTensor = true
		}
	}
}

func (v *valueInfo) decodeTensorType(d *decoder) {
	for {
		num, typ, ok := d.next()
		if !ok {
			return
		}
		switch num {
		case 1:
			v.elemType = d.varint(typ)
		case 2:
			v.hasShape = true
			d.sub(typ, "shape", v.decodeShape)
		default:
			d.skip(num, typ)
		}
	}
}

func (v *valueInfo) decodeShape(d *decoder) {
	for {
		num, typ, ok := d.next()
		if !ok {
			return
		}
		if num != 1 {
			d.skip(num, typ)
			continue
		}
		var dim dimProto
		d.sub(typ, "dim", func(d *decoder) {
			for {
				num, typ, ok := d.next()
				if !ok {
					return
				}
				switch num {
				case 1:
					dim.value, dim.known = d.varint(typ), true
				case 2:
					dim.param = d.string(typ)
				default:
					d.skip(num, typ)
				}
			}
		})
		v.dims = append(v.dims, dim)
	}
}
