package onnx

import (
	"fmt"
)

// Operators that move elements or compute shapes: Shape, Reshape,
// Flatten, Unsqueeze, Squeeze, Transpose, Concat, Gather, Slice,
// ConstantOfShape, Expand, Constant.

// copyElems copies n elements of src from soff to dst at doff; both have
// the same type.
func copyElems(dst *tensor, doff int, src *tensor, soff, n int) {
	switch src.dt {
	case tFloat:
		copy(dst.f[doff:doff+n], src.f[soff:soff+n])
	case tInt64:
		copy(dst.i[doff:doff+n], src.i[soff:soff+n])
	default:
		copy(dst.b[doff:doff+n], src.b[soff:soff+n])
	}
}

func prod(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

type shapeOp struct{ start, end int64 }

func buildShape(b *buildCtx) (op, error) {
	if err := b.io(1, 1, 1, 1); err != nil {
		return nil, err
	}
	o := &shapeOp{end: 1 << 62}
	if b.opset >= 15 {
		o.start = b.attrs.int("start", 0)
		o.end = b.attrs.int("end", 1<<62)
	}
	return o, nil
}

func (o *shapeOp) run(e *env, in, out []*tensor) error {
	r := int64(len(in[0].shape))
	clamp := func(v int64) int64 {
		if v < 0 {
			v += r
		}
		return min(max(v, 0), r)
	}
	start, end := clamp(o.start), clamp(o.end)
	n := max(end-start, 0)
	if err := out[0].alloc(e, tInt64, []int{int(n)}); err != nil {
		return err
	}
	for i := range n {
		out[0].i[i] = int64(in[0].shape[start+i])
	}
	return nil
}

type reshape struct{ allowZero bool }

func buildReshape(b *buildCtx) (op, error) {
	if err := b.io(2, 2, 1, 1); err != nil {
		return nil, err
	}
	o := &reshape{}
	if b.opset >= 14 {
		o.allowZero = b.attrs.int("allowzero", 0) != 0
	}
	return o, nil
}

func (o *reshape) run(e *env, in, out []*tensor) error {
	x := in[0]
	want, err := in[1].ints()
	if err != nil {
		return fmt.Errorf("shape: %v", err)
	}
	if len(want) > maxRank {
		return fmt.Errorf("%w: to rank %d", ErrLimit, len(want))
	}
	shape := e.shape[:len(want)]
	infer, known := -1, 1
	for k, d := range want {
		switch {
		case d == -1:
			if infer >= 0 {
				return fmt.Errorf("two -1 dimensions in %v", want)
			}
			infer = k
			continue
		case d == 0 && !o.allowZero:
			if k >= len(x.shape) {
				return fmt.Errorf("dimension %d is 0 but the input has rank %d", k, len(x.shape))
			}
			shape[k] = x.shape[k]
		case d < 0 || d > MaxElements:
			return fmt.Errorf("dimension %d in %v", d, want)
		default:
			shape[k] = int(d)
		}
		known *= shape[k]
		if known > MaxElements {
			return fmt.Errorf("%w: to %v", ErrLimit, want)
		}
	}
	n := x.size()
	if infer >= 0 {
		if known == 0 || n%known != 0 {
			return fmt.Errorf("reshaping %v to %v", x.shape, want)
		}
		shape[infer] = n / known
	} else if known != n {
		return fmt.Errorf("reshaping %v (%d elements) to %v", x.shape, n, want)
	}
	out[0].alias(x, shape)
	return nil
}

type flatten struct{ axis int64 }

func buildFlatten(b *buildCtx) (op, error) {
	if err := b.io(1, 1, 1, 1); err != nil {
		return nil, err
	}
	return &flatten{axis: b.attrs.int("axis", 1)}, nil
}

func (o *flatten) run(e *env, in, out []*tensor) error {
	x := in[0]
	r := int64(len(x.shape))
	a := o.axis
	if a < 0 {
		a += r
	}
	if a < 0 || a > r {
		return fmt.Errorf("axis %d for rank %d", o.axis, r)
	}
	e.shape[0], e.shape[1] = prod(x.shape[:a]), prod(x.shape[a:])
	out[0].alias(x, e.shape[:2])
	return nil
}

// unsqueeze is Unsqueeze and Squeeze.
type unsqueeze struct {
	squeeze bool
	axes    []int64 // constant axes; nil when they are computed or absent
}

func buildSqueeze(squeeze bool) builder {
	return func(b *buildCtx) (op, error) {
		lo := 2
		if squeeze {
			lo = 1
		}
		if err := b.io(lo, 2, 1, 1); err != nil {
			return nil, err
		}
		o := &unsqueeze{squeeze: squeeze}
		if len(b.consts) == 2 && b.consts[1] != nil {
			axes, err := b.consts[1].ints()
			if err != nil {
				return nil, fmt.Errorf("axes: %v", err)
			}
			o.axes = axes
		}
		return o, nil
	}
}

func (o *unsqueeze) run(e *env, in, out []*tensor) error {
	x := in[0]
	axes := o.axes
	if axes == nil && len(in) == 2 && in[1] != nil {
		var err error
		if axes, err = in[1].ints(); err != nil {
			return fmt.Errorf("axes: %v", err)
		}
	}
	var mark [maxRank]bool
	if o.squeeze {
		r := len(x.shape)
		for _, a := range axes {
			k, err := axis(a, r)
			if err != nil {
				return fmt.Errorf("%v", err)
			}
			if x.shape[k] != 1 {
				return fmt.Errorf("dimension %d of %v is not 1", k, x.shape)
			}
			mark[k] = true
		}
		shape := e.shape[:0]
		for k, d := range x.shape {
			if mark[k] || (len(axes) == 0 && d == 1) {
				continue
			}
			shape = append(shape, d)
		}
		out[0].alias(x, shape)
		return nil
	}
	r := len(x.shape) + len(axes)
	if r > maxRank {
		return fmt.Errorf("%w: to rank %d", ErrLimit, r)
	}
	for _, a := range axes {
		k, err := axis(a, r)
		if err != nil {
			return fmt.Errorf("%v", err)
		}
		if mark[k] {
			return fmt.Errorf("axis %d listed twice", a)
		}
		mark[k] = true
	}
	shape := e.shape[:r]
	j := 0
	for k := range shape {
		if mark[k] {
			shape[k] = 1
			continue
		}
		shape[k] = x.shape[j]
		j++
	}
	out[0].alias(x, shape)
	return nil
}

type transpose struct{ perm []int64 }

func buildTranspose(b *buildCtx) (op, error) {
	if err := b.io(1, 1, 1, 1); err != nil {
		return nil, err
	}
	return &transpose{perm: b.attrs.ints("perm")}, nil
}

func (o *transpose) run(e *env, in, out []*tensor) error {
	x, y := in[0], out[0]
	r := len(x.shape)
	var perm [maxRank]int
	if o.perm == nil {
		for k := range r {
			perm[k] = r - 1 - k
		}
	} else {
		if len(o.perm) != r {
			return fmt.Errorf("perm %v for rank %d", o.perm, r)
		}
		var seen [maxRank]bool
		for k, p := range o.perm {
			if p < 0 || p >= int64(r) || seen[p] {
				return fmt.Errorf("perm %v is not a permutation", o.perm)
			}
			seen[p] = true
			perm[k] = int(p)
		}
	}
	var inStride, st [maxRank]int
	s := 1
	for k := r - 1; k >= 0; k-- {
		inStride[k] = s
		s *= x.shape[k]
	}
	shape := e.shape[:r]
	for k := range r {
		shape[k] = x.shape[perm[k]]
		st[k] = inStride[perm[k]]
	}
	if err := y.alloc(e, x.dt, shape); err != nil {
		return err
	}
	e.odo.initWith(y.shape, st[:r])
	for i := range y.size() {
		copyElems(y, i, x, e.odo.off[0], 1)
		e.odo.step()
	}
	return nil
}

type concat struct{ axis int64 }

func buildConcat(b *buildCtx) (op, error) {
	if err := b.io(1, 1<<16, 1, 1); err != nil {
		return nil, err
	}
	for _, s := range b.node.in {
		if s < 0 {
			return nil, fmt.Errorf("an empty input")
		}
	}
	if !b.attrs.has("axis") {
		return nil, fmt.Errorf("no axis")
	}
	return &concat{axis: b.attrs.int("axis", 0)}, nil
}

func (o *concat) run(e *env, in, out []*tensor) error {
	first := in[0]
	r := len(first.shape)
	a, err := axis(o.axis, r)
	if err != nil {
		return fmt.Errorf("%v", err)
	}
	total := 0
	for _, t := range in {
		if t.dt != first.dt || len(t.shape) != r {
			return fmt.Errorf("concatenating %s%v and %s%v", first.dt, first.shape, t.dt, t.shape)
		}
		for k := range r {
			if k != a && t.shape[k] != first.shape[k] {
				return fmt.Errorf("concatenating %v and %v along axis %d", first.shape, t.shape, a)
			}
		}
		total += t.shape[a]
	}
	shape := e.shape[:r]
	copy(shape, first.shape)
	shape[a] = total
	y := out[0]
	if err := y.alloc(e, first.dt, shape); err != nil {
		return err
	}
	outer, inner := prod(first.shape[:a]), prod(first.shape[a+1:])
	off := 0
	for i := range outer {
		for _, t := range in {
			n := t.shape[a] * inner
			copyElems(y, off, t, i*n, n)
			off += n
		}
	}
	return nil
}

type gather struct{ axis int64 }

func buildGather(b *buildCtx) (op, error) {
	if err := b.io(2, 2, 1, 1); err != nil {
		return nil, err
	}
	return &gather{axis: b.attrs.int("axis", 0)}, nil
}

func (o *gather) run(e *env, in, out []*tensor) error {
	x, idx, y := in[0], in[1], out[0]
	if idx.dt != tInt64 {
		return fmt.Errorf("indices of type %s", idx.dt)
	}
	r := len(x.shape)
	a, err := axis(o.axis, r)
	if err != nil {
		return fmt.Errorf("%v", err)
	}
	if r-1+len(idx.shape) > maxRank {
		return fmt.Errorf("%w: to rank %d", ErrLimit, r-1+len(idx.shape))
	}
	shape := append(append(append(e.shape[:0], x.shape[:a]...), idx.shape...), x.shape[a+1:]...)
	if err := y.alloc(e, x.dt, shape); err != nil {
		return err
	}
	outer, dim, inner := prod(x.shape[:a]), x.shape[a], prod(x.shape[a+1:])
	ids := idx.i[:idx.size()]
	off := 0
	for i := range outer {
		for _, j := range ids {
			if j < 0 {
				j += int64(dim)
			}
			if j < 0 || j >= int64(dim) {
				return fmt.Errorf("%w: index %d is out of range [%d, %d)", ErrInput, j, -dim, dim)
			}
			copyElems(y, off, x, (i*dim+int(j))*inner, inner)
			off += inner
		}
	}
	return nil
}

type slice struct{}

func buildSlice(b *buildCtx) (op, error) {
	if err := b.io(3, 5, 1, 1); err != nil {
		return nil, err
	}
	return &slice{}, nil
}

func (o *slice) run(e *env, in, out []*tensor) error {
	x, y := in[0], out[0]
	r := len(x.shape)
	starts, err := in[1].ints()
	if err != nil {
		return fmt.Errorf("starts: %v", err)
	}
	ends, err := in[2].ints()
	if err != nil {
		return fmt.Errorf("ends: %v", err)
	}
	if len(ends) != len(starts) {
		return fmt.Errorf("%d starts and %d ends", len(starts), len(ends))
	}
	var axes, steps []int64
	if len(in) > 3 && in[3] != nil {
		if axes, err = in[3].ints(); err != nil || len(axes) != len(starts) {
			return fmt.Errorf("axes %v for %d starts", axes, len(starts))
		}
	}
	if len(in) > 4 && in[4] != nil {
		if steps, err = in[4].ints(); err != nil || len(steps) != len(starts) {
			return fmt.Errorf("steps %v for %d starts", steps, len(starts))
		}
	}
	var begin, step [maxRank]int
	shape := e.shape[:r]
	copy(shape, x.shape)
	for k := range r {
		step[k] = 1
	}
	var seen [maxRank]bool
	for i := range starts {
		a := int64(i)
		if axes != nil {
			a = axes[i]
		}
		k, err := axis(a, r)
		if err != nil || seen[k] {
			return fmt.Errorf("axes %v for rank %d", axes, r)
		}
		seen[k] = true
		st := int64(1)
		if steps != nil {
			st = steps[i]
		}
		if st == 0 {
			return fmt.Errorf("a step of 0")
		}
		dim := int64(x.shape[k])
		s, en := starts[i], ends[i]
		if s < 0 {
			s += dim
		}
		if en < 0 {
			en += dim
		}
		var n int64
		if st > 0 {
			s, en = min(max(s, 0), dim), min(max(en, 0), dim)
			n = max(0, (en-s+st-1)/st)
		} else {
			s, en = min(max(s, -1), dim-1), min(max(en, -1), dim-1)
			n = max(0, (s-en-st-1)/(-st))
		}
		begin[k], step[k], shape[k] = int(s), int(st), int(n)
	}
	if err := y.alloc(e, x.dt, shape); err != nil {
		return err
	}
	var inStride, st [maxRank]int
	s := 1
	for k := r - 1; k >= 0; k-- {
		inStride[k] = s
		s *= x.shape[k]
	}
	base := 0
	for k := range r {
		st[k] = inStride[k] * step[k]
		base += begin[k] * inStride[k]
	}
	e.odo.initWith(y.shape, st[:r])
	for i := range y.size() {
		copyElems(y, i, x, base+e.odo.off[0], 1)
		e.odo.step()
	}
	return nil
}

// shapeArg reads a 1-D int64 tensor of dimensions into e's shape buffer.
func shapeArg(e *env, t *tensor, what string) ([]int, error) {
	v, err := t.ints()
	if err != nil {
		return nil, fmt.Errorf("%s: %v", what, err)
	}
	if len(v) > maxRank {
		return nil, fmt.Errorf("%w: %s of rank %d", ErrLimit, what, len(v))
	}
	shape := e.shape[:len(v)]
	for k, d := range v {
		if d < 0 || d > MaxElements {
			return nil, fmt.Errorf("%s: dimension %d", what, d)
		}
		shape[k] = int(d)
	}
	return shape, nil
}

type constantOfShape struct{ value *tensor }

func buildConstantOfShape(b *buildCtx) (op, error) {
	if err := b.io(1, 1, 1, 1); err != nil {
		return nil, err
	}
	v, err := b.attrs.tensor("value")
	if err != nil {
		return nil, fmt.Errorf("value: %v", err)
	}
	if v == nil {
		v = &tensor{dt: tFloat, shape: []int{1}, f: []float32{0}}
	}
	if v.size() != 1 {
		return nil, fmt.Errorf("value of shape %v, want one element", v.shape)
	}
	return &constantOfShape{value: v}, nil
}

func (o *constantOfShape) run(e *env, in, out []*tensor) error {
	shape, err := shapeArg(e, in[0], "ConstantOfShape")
	if err != nil {
		return err
	}
	y := out[0]
	if err := y.alloc(e, o.value.dt, shape); err != nil {
		return err
	}
	n := y.size()
	switch o.value.dt {
	case tFloat:
		for i := range y.f[:n] {
			y.f[i] = o.value.f[0]
		}
	case tInt64:
		for i := range y.i[:n] {
			y.i[i] = o.value.i[0]
		}
	default:
		for i := range y.b[:n] {
			y.b[i] = o.value.b[0]
		}
	}
	return nil
}

type expand struct{}

func buildExpand(b *buildCtx) (op, error) {
	if err := b.io(2, 2, 1, 1); err != nil {
		return nil, err
	}
	return &expand{}, nil
}

func (o *expand) run(e *env, in, out []*tensor) error {
	x, y := in[0], out[0]
	want, err := shapeArg(e, in[1], "Expand")
	if err != nil {
		return err
	}
	var buf [maxRank]int
	shape, err := broadcast(buf[:0], x.shape, want)
	if err != nil {
		return fmt.Errorf("expanding %v to %v: %v", x.shape, in[1].i[:len(want)], err)
	}
	if err := y.alloc(e, x.dt, shape); err != nil {
		return err
	}
	e.odo.init(y.shape, x.shape)
	for i := range y.size() {
		copyElems(y, i, x, e.odo.off[0], 1)
		e.odo.step()
	}
	return nil
}

type constant struct{ value *tensor }

func buildConstant(b *buildCtx) (op, error) {
	if err := b.io(0, 0, 1, 1); err != nil {
		return nil, err
	}
	var vals []*tensor
	if t, err := b.attrs.tensor("value"); err != nil {
		return nil, fmt.Errorf("value: %v", err)
	} else if t != nil {
		vals = append(vals, t)
	}
	if b.attrs.has("value_float") {
		vals = append(vals, &tensor{dt: tFloat, shape: []int{}, f: []float32{b.attrs.float("value_float", 0)}})
	}
	if b.attrs.has("value_floats") {
		f := b.attrs.floats("value_floats")
		vals = append(vals, &tensor{dt: tFloat, shape: []int{len(f)}, f: f})
	}
	if b.attrs.has("value_int") {
		vals = append(vals, &tensor{dt: tInt64, shape: []int{}, i: []int64{b.attrs.int("value_int", 0)}})
	}
	if b.attrs.has("value_ints") {
		v := b.attrs.ints("value_ints")
		vals = append(vals, &tensor{dt: tInt64, shape: []int{len(v)}, i: v})
	}
	if len(vals) != 1 {
		return nil, fmt.Errorf("want one of value, value_float(s), value_int(s); got %d", len(vals))
	}
	return &constant{value: vals[0]}, nil
}

func (o *constant) run(e *env, in, out []*tensor) error {
	out[0].alias(o.value, o.value.shape)
	return nil
}
