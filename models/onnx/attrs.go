package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// constTensor converts an initializer or a constant attribute into a
// tensor: float, double (rounded to float), int64, int32, int8, uint8
// (widened to int64) and bool elements, given in raw_data or in the typed
// fields. The element count must match the dims exactly, which bounds it
// by the bytes that hold the elements.
func constTensor(t *tensorProto) (*tensor, error) {
	switch {
	case t.external:
		return nil, errors.New("external data is not supported: save the model as one file (onnx.save(model, path, save_as_external_data=False))")
	case t.segment:
		return nil, errors.New("segmented tensors are not supported")
	case t.strings > 0 || t.dataType == typeString:
		return nil, errors.New("string tensors are not supported")
	}
	if len(t.dims) > maxRank {
		return nil, fmt.Errorf("%w: rank %d is over the limit of %d", ErrLimit, len(t.dims), maxRank)
	}
	shape := make([]int, len(t.dims), maxRank)
	for i, d := range t.dims {
		if d < 0 || d > MaxElements {
			return nil, fmt.Errorf("%w: dimension %d (the limit is %d elements)", ErrLimit, d, MaxElements)
		}
		shape[i] = int(d)
	}
	n, err := shapeSize(shape, MaxElements)
	if err != nil {
		return nil, err
	}
	out := &tensor{shape: shape}
	count := func(got int) error {
		if got != n {
			return fmt.Errorf("%d elements for the shape %v of %d", got, shape, n)
		}
		return nil
	}
	raw := func(size int) error {
		if len(t.raw) != n*size {
			return fmt.Errorf("raw_data of %d bytes for the shape %v of %d %s elements", len(t.raw), shape, n, typeName(t.dataType))
		}
		return nil
	}
	switch t.dataType {
	case typeFloat, typeDouble:
		out.dt = tFloat
		switch {
		case t.hasRaw && t.dataType == typeFloat:
			if err := raw(4); err != nil {
				return nil, err
			}
			out.f = make([]float32, n)
			for i := range out.f {
				out.f[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.raw[4*i:]))
			}
		case t.hasRaw:
			if err := raw(8); err != nil {
				return nil, err
			}
			out.f = make([]float32, n)
			for i := range out.f {
				out.f[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(t.raw[8*i:])))
			}
		case t.dataType == typeFloat:
			if err := count(len(t.floats)); err != nil {
				return nil, err
			}
			out.f = t.floats
		default:
			if err := count(len(t.doubles)); err != nil {
				return nil, err
			}
			out.f = make([]float32, n)
			for i, v := range t.doubles {
				out.f[i] = float32(v)
			}
		}
	case typeInt64, typeInt32, typeInt8, typeUint8:
		out.dt = tInt64
		out.i = make([]int64, 0, min(n, len(t.raw)+len(t.int64s)+len(t.int32s)))
		switch {
		case t.hasRaw && t.dataType == typeInt64:
			if err := raw(8); err != nil {
				return nil, err
			}
			for i := range n {
				out.i = append(out.i, int64(binary.LittleEndian.Uint64(t.raw[8*i:])))
			}
		case t.hasRaw && t.dataType == typeInt32:
			if err := raw(4); err != nil {
				return nil, err
			}
			for i := range n {
				out.i = append(out.i, int64(int32(binary.LittleEndian.Uint32(t.raw[4*i:]))))
			}
		case t.hasRaw:
			if err := raw(1); err != nil {
				return nil, err
			}
			for _, b := range t.raw {
				if t.dataType == typeInt8 {
					out.i = append(out.i, int64(int8(b)))
				} else {
					out.i = append(out.i, int64(b))
				}
			}
		case t.dataType == typeInt64:
			if err := count(len(t.int64s)); err != nil {
				return nil, err
			}
			out.i = t.int64s
		default:
			if err := count(len(t.int32s)); err != nil {
				return nil, err
			}
			for _, v := range t.int32s {
				out.i = append(out.i, int64(v))
			}
		}
	case typeBool:
		out.dt = tBool
		switch {
		case t.hasRaw:
			if err := raw(1); err != nil {
				return nil, err
			}
			out.b = make([]bool, n)
			for i, v := range t.raw {
				out.b[i] = v != 0
			}
		default:
			if err := count(len(t.int32s)); err != nil {
				return nil, err
			}
			out.b = make([]bool, n)
			for i, v := range t.int32s {
				out.b[i] = v != 0
			}
		}
	default:
		return nil, fmt.Errorf("element type %s is not supported (want float, double, int64, int32, int8, uint8 or bool)", typeName(t.dataType))
	}
	return out, nil
}

// attrs is a node's attributes; check refuses those no operator read.
type attrs struct {
	list []*attrProto
	used []bool
	err  error
}

func (a *attrs) find(name string, typ int64) *attrProto {
	if a.used == nil {
		a.used = make([]bool, len(a.list))
	}
	for i, at := range a.list {
		if at.name != name {
			continue
		}
		a.used[i] = true
		switch {
		case at.refAttr:
			a.fail(fmt.Errorf("attribute %s refers to a function attribute, which is not supported", name))
			return nil
		case at.typ != 0 && at.typ != typ:
			a.fail(fmt.Errorf("attribute %s has type %d, want %d", name, at.typ, typ))
			return nil
		}
		return at
	}
	return nil
}

func (a *attrs) fail(err error) {
	if a.err == nil {
		a.err = err
	}
}

func (a *attrs) has(name string) bool {
	for _, at := range a.list {
		if at.name == name {
			return true
		}
	}
	return false
}

func (a *attrs) int(name string, def int64) int64 {
	if at := a.find(name, attrInt); at != nil {
		return at.i
	}
	return def
}

func (a *attrs) float(name string, def float32) float32 {
	if at := a.find(name, attrFloat); at != nil {
		return at.f
	}
	return def
}

func (a *attrs) ints(name string) []int64 {
	if at := a.find(name, attrInts); at != nil {
		return at.ints
	}
	return nil
}

func (a *attrs) floats(name string) []float32 {
	if at := a.find(name, attrFloats); at != nil {
		return at.floats
	}
	return nil
}

func (a *attrs) tensor(name string) (*tensor, error) {
	at := a.find(name, attrTensor)
	if at == nil || at.t == nil {
		return nil, nil
	}
	return constTensor(at.t)
}

// check refuses attributes that nothing read, and subgraphs.
func (a *attrs) check() error {
	if a.err != nil {
		return a.err
	}
	for i, at := range a.list {
		if at.graph {
			return fmt.Errorf("attribute %s holds a subgraph, which is not supported", at.name)
		}
		if a.used == nil || !a.used[i] {
			return fmt.Errorf("attribute %s is not supported", at.name)
		}
	}
	return nil
}

// buildCtx is what an operator's builder sees of its node.
type buildCtx struct {
	node    *node
	attrs   *attrs
	consts  []*tensor // per input: its value when it is a constant
	opset   int64
	outputs int
}

// inputs checks the node's number of inputs.
func (b *buildCtx) inputs(lo, hi int) error {
	if n := len(b.node.in); n < lo || n > hi {
		if lo == hi {
			return fmt.Errorf("%d inputs, want %d", n, lo)
		}
		return fmt.Errorf("%d inputs, want %d to %d", n, lo, hi)
	}
	for k := range lo {
		if b.node.in[k] < 0 {
			return fmt.Errorf("input %d is required", k+1)
		}
	}
	return nil
}

// outs checks the node's number of outputs.
func (b *buildCtx) outs(lo, hi int) error {
	if b.outputs < lo || b.outputs > hi {
		return fmt.Errorf("%d outputs, want %d to %d", b.outputs, lo, hi)
	}
	return nil
}

// io checks both counts.
func (b *buildCtx) io(inLo, inHi, outLo, outHi int) error {
	if err := b.inputs(inLo, inHi); err != nil {
		return err
	}
	return b.outs(outLo, outHi)
}

type builder func(b *buildCtx) (op, error)
