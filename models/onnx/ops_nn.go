package onnx

import (
	"fmt"
	"math"
)

// Neural-network operators: Gemm, MatMul, Softmax, LogSoftmax,
// BatchNormalization, LayerNormalization, ReduceSum, ReduceMean.

type gemm struct {
	alpha, beta    float32
	transA, transB bool
	packed         []float32 // a constant B as [K, N] row-major
	pk, pn         int
}

func buildGemm(b *buildCtx) (op, error) {
	if err := b.io(2, 3, 1, 1); err != nil {
		return nil, err
	}
	o := &gemm{
		alpha:  b.attrs.float("alpha", 1),
		beta:   b.attrs.float("beta", 1),
		transA: b.attrs.int("transA", 0) != 0,
		transB: b.attrs.int("transB", 0) != 0,
	}
	if c := b.consts[1]; c != nil {
		if c.dt != tFloat || len(c.shape) != 2 {
			return nil, fmt.Errorf("input B is %s%v, want a float matrix", c.dt, c.shape)
		}
		o.pk, o.pn = c.shape[0], c.shape[1]
		if o.transB {
			o.pk, o.pn = o.pn, o.pk
			o.packed = make([]float32, len(c.f))
			for i := range o.pn {
				for j := range o.pk {
					o.packed[j*o.pn+i] = c.f[i*o.pk+j]
				}
			}
		} else {
			o.packed = c.f
		}
	}
	return o, nil
}

func (o *gemm) run(e *env, in, out []*tensor) error {
	a, y := in[0], out[0]
	if a.dt != tFloat || len(a.shape) != 2 {
		return fmt.Errorf("input A is %s%v, want a float matrix", a.dt, a.shape)
	}
	m, k := a.shape[0], a.shape[1]
	if o.transA {
		m, k = k, m
	}
	bm, n, kb := o.packed, o.pn, o.pk
	if bm == nil {
		b := in[1]
		if b.dt != tFloat || len(b.shape) != 2 {
			return fmt.Errorf("input B is %s%v, want a float matrix", b.dt, b.shape)
		}
		kb, n = b.shape[0], b.shape[1]
		bm = b.f[:kb*n]
		if o.transB {
			kb, n = n, kb
		}
	}
	if kb != k {
		return fmt.Errorf("input A%v and B with %d rows", a.shape, kb)
	}
	if err := e.multiplies(m, n, k); err != nil {
		return err
	}
	e.shape[0], e.shape[1] = m, n
	if err := y.alloc(e, tFloat, e.shape[:2]); err != nil {
		return err
	}
	av := a.f[:m*k]
	// Bring a transposed A (and a transposed B given at run time) into
	// row-major order in scratch space.
	need := 0
	if o.transA {
		need += m * k
	}
	if o.packed == nil && o.transB {
		need += k * n
	}
	if need > 0 {
		e.scratch = grow(e.scratch, need)
		used := 0
		if o.transA {
			t := e.scratch[:m*k]
			for i := range k {
				for j := range m {
					t[j*k+i] = av[i*m+j]
				}
			}
			av, used = t, m*k
		}
		if o.packed == nil && o.transB {
			t := e.scratch[used : used+k*n]
			for i := range n {
				for j := range k {
					t[j*n+i] = bm[i*k+j]
				}
			}
			bm = t
		}
	}
	c := y.f[:m*n]
	var bias *tensor
	if len(in) == 3 && in[2] != nil {
		bias = in[2]
		if bias.dt != tFloat {
			return fmt.Errorf("input C is %s", bias.dt)
		}
		if got, err := broadcast(e.shape[2:2], bias.shape, e.shape[:2]); err != nil || !sameShape(got, e.shape[:2]) {
			return fmt.Errorf("input C of shape %v does not broadcast to [%d, %d]", bias.shape, m, n)
		}
	}
	// A bias that is a row fills C first when nothing scales it.
	rowBias := bias != nil && o.alpha == 1 && o.beta == 1 && bias.size() == n && (len(bias.shape) == 1 || bias.shape[0] == 1)
	if rowBias {
		for i := range m {
			copy(c[i*n:(i+1)*n], bias.f[:n])
		}
	} else {
		clear(c)
	}
	sgemm(m, n, k, av, k, bm, n, c, n)
	if rowBias {
		return nil
	}
	if o.alpha != 1 {
		for i := range c {
			c[i] *= o.alpha
		}
	}
	if bias != nil && o.beta != 0 {
		e.odo.init(y.shape, bias.shape)
		for i := range c {
			c[i] += o.beta * bias.f[e.odo.off[0]]
			e.odo.step()
		}
	}
	return nil
}

// multiplies takes m*n*k multiply-adds from the run's budget.
func (e *env) multiplies(m, n, k int) error {
	if m > 0 && n > 0 && k > 0 && (m > e.macs/n || m*n > e.macs/k) {
		return fmt.Errorf("%w: a product of [%d, %d] by [%d, %d] is over the limit of %d multiply-adds per run", ErrLimit, m, k, k, n, MaxMultiplies)
	}
	e.macs -= m * n * k
	return nil
}

type matmul struct{}

func buildMatMul(b *buildCtx) (op, error) {
	if err := b.io(2, 2, 1, 1); err != nil {
		return nil, err
	}
	return &matmul{}, nil
}

func (o *matmul) run(e *env, in, out []*tensor) error {
	a, b, y := in[0], in[1], out[0]
	if a.dt != tFloat || b.dt != tFloat {
		return fmt.Errorf("multiplying %s by %s", a.dt, b.dt)
	}
	if len(a.shape) == 0 || len(b.shape) == 0 {
		return fmt.Errorf("multiplying a scalar")
	}
	// Promote vectors to matrices as numpy does.
	var as, bs [maxRank]int
	ashape, bshape := as[:0], bs[:0]
	if len(a.shape) == 1 {
		ashape = append(ashape, 1, a.shape[0])
	} else {
		ashape = append(ashape, a.shape...)
	}
	if len(b.shape) == 1 {
		bshape = append(bshape, b.shape[0], 1)
	} else {
		bshape = append(bshape, b.shape...)
	}
	ra, rb := len(ashape), len(bshape)
	m, k, kb, n := ashape[ra-2], ashape[ra-1], bshape[rb-2], bshape[rb-1]
	if k != kb {
		return fmt.Errorf("multiplying %v by %v", a.shape, b.shape)
	}
	var batchBuf [maxRank]int
	batch, err := broadcast(batchBuf[:0], ashape[:ra-2], bshape[:rb-2])
	if err != nil {
		return fmt.Errorf("multiplying %v by %v: %v", a.shape, b.shape, err)
	}
	if len(batch)+2 > maxRank {
		return fmt.Errorf("%w: of rank %d", ErrLimit, len(batch)+2)
	}
	shape := append(e.shape[:0], batch...)
	if len(a.shape) > 1 {
		shape = append(shape, m)
	}
	if len(b.shape) > 1 {
		shape = append(shape, n)
	}
	nb := prod(batch)
	if err := e.multiplies(nb*m, n, k); err != nil {
		return err
	}
	if err := y.alloc(e, tFloat, shape); err != nil {
		return err
	}
	c := y.f[:y.size()]
	clear(c)
	e.odo.init(batch, ashape[:ra-2], bshape[:rb-2])
	for i := range nb {
		ao, bo := e.odo.off[0]*m*k, e.odo.off[1]*k*n
		sgemm(m, n, k, a.f[ao:ao+m*k], k, b.f[bo:bo+k*n], n, c[i*m*n:(i+1)*m*n], n)
		e.odo.step()
	}
	return nil
}

type softmax struct {
	axis int64
	log  bool
}

func buildSoftmax(log bool) builder {
	return func(b *buildCtx) (op, error) {
		if err := b.io(1, 1, 1, 1); err != nil {
			return nil, err
		}
		return &softmax{axis: b.attrs.int("axis", -1), log: log}, nil
	}
}

func (o *softmax) run(e *env, in, out []*tensor) error {
	x, y := in[0], out[0]
	if x.dt != tFloat {
		return typeErr("Softmax", x.dt)
	}
	a, err := axis(o.axis, len(x.shape))
	if err != nil {
		return fmt.Errorf("%v", err)
	}
	if err := y.alloc(e, tFloat, x.shape); err != nil {
		return err
	}
	outer, dim, inner := prod(x.shape[:a]), x.shape[a], prod(x.shape[a+1:])
	for i := range outer {
		for j := range inner {
			base := i*dim*inner + j
			hi := math.Inf(-1)
			for d := range dim {
				hi = math.Max(hi, float64(x.f[base+d*inner]))
			}
			sum := 0.0
			for d := range dim {
				sum += math.Exp(float64(x.f[base+d*inner]) - hi)
			}
			for d := range dim {
				v := float64(x.f[base+d*inner]) - hi
				if o.log {
					y.f[base+d*inner] = float32(v - math.Log(sum))
				} else {
					y.f[base+d*inner] = float32(math.Exp(v) / sum)
				}
			}
		}
	}
	return nil
}

// batchNorm is BatchNormalization in inference mode, with its statistics
// folded into a scale and a shift per channel at load when they are
// constants.
type batchNorm struct {
	eps          float64
	scale, shift []float64
}

func buildBatchNorm(b *buildCtx) (op, error) {
	if err := b.io(5, 5, 1, 1); err != nil {
		return nil, err
	}
	o := &batchNorm{eps: float64(b.attrs.float("epsilon", 1e-5))}
	b.attrs.float("momentum", 0.9)
	if b.opset >= 14 && b.attrs.int("training_mode", 0) != 0 {
		return nil, fmt.Errorf("training_mode is not supported")
	}
	for k := 1; k < 5; k++ {
		if c := b.consts[k]; c == nil || c.dt != tFloat || len(c.shape) != 1 {
			return nil, fmt.Errorf("input %d must be a constant float vector", k+1)
		}
	}
	scale, bias, mean, variance := b.consts[1], b.consts[2], b.consts[3], b.consts[4]
	c := scale.shape[0]
	for _, t := range []*tensor{bias, mean, variance} {
		if t.shape[0] != c {
			return nil, fmt.Errorf("per-channel inputs of %d and %d elements", c, t.shape[0])
		}
	}
	o.scale, o.shift = make([]float64, c), make([]float64, c)
	for i := range c {
		s := float64(scale.f[i]) / math.Sqrt(float64(variance.f[i])+o.eps)
		o.scale[i] = s
		o.shift[i] = float64(bias.f[i]) - float64(mean.f[i])*s
	}
	return o, nil
}

func (o *batchNorm) run(e *env, in, out []*tensor) error {
	x, y := in[0], out[0]
	if x.dt != tFloat || len(x.shape) < 2 || x.shape[1] != len(o.scale) {
		return fmt.Errorf("input %s%v for %d channels", x.dt, x.shape, len(o.scale))
	}
	if err := y.alloc(e, tFloat, x.shape); err != nil {
		return err
	}
	n, c, inner := x.shape[0], x.shape[1], prod(x.shape[2:])
	for i := range n {
		for ch := range c {
			s, t := o.scale[ch], o.shift[ch]
			base := (i*c + ch) * inner
			for j := base; j < base+inner; j++ {
				y.f[j] = float32(float64(x.f[j])*s + t)
			}
		}
	}
	return nil
}

// layerNorm is LayerNormalization (opset 17).
type layerNorm struct {
	axis int64
	eps  float64
}

func buildLayerNorm(b *buildCtx) (op, error) {
	if err := b.io(2, 3, 1, 3); err != nil {
		return nil, err
	}
	if st := b.attrs.int("stash_type", 1); st != 1 {
		return nil, fmt.Errorf("stash_type %d is not supported", st)
	}
	return &layerNorm{axis: b.attrs.int("axis", -1), eps: float64(b.attrs.float("epsilon", 1e-5))}, nil
}

func (o *layerNorm) run(e *env, in, out []*tensor) error {
	x, scale, y := in[0], in[1], out[0]
	if x.dt != tFloat || scale.dt != tFloat {
		return fmt.Errorf("a %s input with a %s scale", x.dt, scale.dt)
	}
	a, err := axis(o.axis, len(x.shape))
	if err != nil {
		return fmt.Errorf("%v", err)
	}
	outer, inner := prod(x.shape[:a]), prod(x.shape[a:])
	var bias *tensor
	if len(in) == 3 && in[2] != nil {
		bias = in[2]
		if bias.dt != tFloat || bias.size() != inner {
			return fmt.Errorf("bias of shape %v for %d elements", bias.shape, inner)
		}
	}
	if scale.size() != inner {
		return fmt.Errorf("scale of shape %v for %d elements", scale.shape, inner)
	}
	if err := y.alloc(e, tFloat, x.shape); err != nil {
		return err
	}
	var mean, inv *tensor
	if len(out) > 1 {
		stat := append(e.shape[:0], x.shape...)
		for k := a; k < len(stat); k++ {
			stat[k] = 1
		}
		mean = out[1]
		if err := mean.alloc(e, tFloat, stat); err != nil {
			return err
		}
		if len(out) > 2 {
			inv = out[2]
			if err := inv.alloc(e, tFloat, stat); err != nil {
				return err
			}
		}
	}
	for i := range outer {
		row := x.f[i*inner : (i+1)*inner]
		sum := 0.0
		for _, v := range row {
			sum += float64(v)
		}
		mu := sum / float64(inner)
		sq := 0.0
		for _, v := range row {
			d := float64(v) - mu
			sq += d * d
		}
		r := 1 / math.Sqrt(sq/float64(inner)+o.eps)
		dst := y.f[i*inner : (i+1)*inner]
		for j, v := range row {
			z := (float64(v) - mu) * r * float64(scale.f[j])
			if bias != nil {
				z += float64(bias.f[j])
			}
			dst[j] = float32(z)
		}
		if mean != nil {
			mean.f[i] = float32(mu)
		}
		if inv != nil {
			inv.f[i] = float32(r)
		}
	}
	return nil
}

// reduce is ReduceSum and ReduceMean: axes from an input (ReduceSum) or
// an attribute (ReduceMean before opset 18).
type reduce struct {
	mean     bool
	keepDims bool
	noop     bool    // noop_with_empty_axes
	axes     []int64 // constant axes; nil when computed or absent
	axesIn   bool
}

func buildReduce(mean bool) builder {
	return func(b *buildCtx) (op, error) {
		o := &reduce{mean: mean, keepDims: b.attrs.int("keepdims", 1) != 0}
		if mean {
			if err := b.io(1, 1, 1, 1); err != nil {
				return nil, err
			}
			o.axes = b.attrs.ints("axes")
			return o, nil
		}
		if err := b.io(1, 2, 1, 1); err != nil {
			return nil, err
		}
		o.noop = b.attrs.int("noop_with_empty_axes", 0) != 0
		if len(b.node.in) == 2 && b.node.in[1] >= 0 {
			o.axesIn = true
			if c := b.consts[1]; c != nil {
				axes, err := c.ints()
				if err != nil {
					return nil, fmt.Errorf("axes: %v", err)
				}
				o.axes, o.axesIn = axes, false
			}
		}
		return o, nil
	}
}

func (o *reduce) run(e *env, in, out []*tensor) error {
	x, y := in[0], out[0]
	if x.dt != tFloat {
		return typeErr("Reduce", x.dt)
	}
	axes := o.axes
	if o.axesIn {
		var err error
		if axes, err = in[1].ints(); err != nil {
			return fmt.Errorf("axes: %v", err)
		}
	}
	r := len(x.shape)
	var mark [maxRank]bool
	if len(axes) == 0 {
		if o.noop {
			y.alias(x, x.shape)
			return nil
		}
		for k := range r {
			mark[k] = true
		}
	}
	for _, a := range axes {
		k, err := axis(a, r)
		if err != nil {
			return fmt.Errorf("%v", err)
		}
		mark[k] = true
	}
	shape := e.shape[:0]
	var full [maxRank]int // the output's shape with kept dimensions
	count := 1
	for k, d := range x.shape {
		if mark[k] {
			count *= d
			full[k] = 1
			if o.keepDims {
				shape = append(shape, 1)
			}
			continue
		}
		full[k] = d
		shape = append(shape, d)
	}
	if err := y.alloc(e, tFloat, shape); err != nil {
		return err
	}
	n := y.size()
	e.sums = grow(e.sums, n)
	sums := e.sums[:n]
	clear(sums)
	if inner := x.shape[r-1]; r > 0 && mark[r-1] && allMarkedFrom(mark[:r], r-1) && n*inner == x.size() {
		// Reducing the trailing axes only: sum contiguous runs.
		for i := range n {
			s := 0.0
			for _, v := range x.f[i*inner : (i+1)*inner] {
				s += float64(v)
			}
			sums[i] = s
		}
	} else {
		var st [maxRank]int
		strides(st[:], full[:r], r)
		e.odo.initWith(x.shape, st[:r])
		for i := range x.size() {
			sums[e.odo.off[0]] += float64(x.f[i])
			e.odo.step()
		}
	}
	for i, s := range sums {
		if o.mean && count > 0 {
			s /= float64(count)
		}
		y.f[i] = float32(s)
	}
	return nil
}

// allMarkedFrom reports whether the marked axes are exactly from..end.
func allMarkedFrom(mark []bool, from int) bool {
	for k, m := range mark {
		if m != (k >= from) {
			return false
		}
	}
	return true
}
