package onnx

import (
	"fmt"
	"math"
)

// Element-wise operators: activations, arithmetic with broadcasting,
// comparisons, Where, Cast, Identity.

func typeErr(what string, got dtype) error {
	return fmt.Errorf("%s: element type %s is not supported", what, got)
}

// unary kinds
const (
	uRelu = iota
	uLeakyRelu
	uSigmoid
	uTanh
	uErf
	uSqrt
	uExp
	uLog
	uNeg
	uAbs
	uReciprocal
	uClip
	uNot
)

type unary struct {
	kind   int
	alpha  float32
	lo, hi float32 // Clip's bounds when they are constants
	dyn    bool    // Clip's bounds are inputs computed while running
}

func unaryBuilder(kind int) builder {
	return func(b *buildCtx) (op, error) {
		u := &unary{kind: kind}
		switch kind {
		case uLeakyRelu:
			u.alpha = b.attrs.float("alpha", 0.01)
		case uClip:
			if err := b.io(1, 3, 1, 1); err != nil {
				return nil, err
			}
			u.lo, u.hi = float32(math.Inf(-1)), float32(math.Inf(1))
			for k := 1; k < len(b.node.in); k++ {
				if b.node.in[k] < 0 {
					continue
				}
				c := b.consts[k]
				if c == nil {
					u.dyn = true
					continue
				}
				v, err := scalarFloat(c)
				if err != nil {
					return nil, fmt.Errorf("bound: %v", err)
				}
				if k == 1 {
					u.lo = v
				} else {
					u.hi = v
				}
			}
			return u, nil
		}
		if err := b.io(1, 1, 1, 1); err != nil {
			return nil, err
		}
		return u, nil
	}
}

func scalarFloat(t *tensor) (float32, error) {
	if t.size() != 1 {
		return 0, fmt.Errorf("want one element, got shape %v", t.shape)
	}
	switch t.dt {
	case tFloat:
		return t.f[0], nil
	case tInt64:
		return float32(t.i[0]), nil
	}
	return 0, typeErr("scalar", t.dt)
}

func (u *unary) run(e *env, in, out []*tensor) error {
	x, y := in[0], out[0]
	if u.kind == uNot {
		if x.dt != tBool {
			return typeErr("Not", x.dt)
		}
		if err := y.alloc(e, tBool, x.shape); err != nil {
			return err
		}
		for i, v := range x.b[:x.size()] {
			y.b[i] = !v
		}
		return nil
	}
	if u.kind == uNeg || u.kind == uAbs {
		if x.dt == tInt64 {
			if err := y.alloc(e, tInt64, x.shape); err != nil {
				return err
			}
			for i, v := range x.i[:x.size()] {
				if u.kind == uNeg || v < 0 {
					v = -v
				}
				y.i[i] = v
			}
			return nil
		}
	}
	if x.dt != tFloat {
		return typeErr("activation", x.dt)
	}
	if err := y.alloc(e, tFloat, x.shape); err != nil {
		return err
	}
	src, dst := x.f[:x.size()], y.f[:x.size()]
	dst = dst[:len(src)]
	switch u.kind {
	case uRelu:
		// max, not a branch, which random signs would mispredict half
		// the time; it keeps NaN.
		for i, v := range src {
			dst[i] = max(v, 0)
		}
	case uLeakyRelu:
		a := u.alpha
		for i, v := range src {
			if v < 0 {
				v *= a
			}
			dst[i] = v
		}
	case uSigmoid:
		for i, v := range src {
			dst[i] = float32(1 / (1 + math.Exp(-float64(v))))
		}
	case uTanh:
		for i, v := range src {
			dst[i] = float32(math.Tanh(float64(v)))
		}
	case uErf:
		for i, v := range src {
			dst[i] = float32(math.Erf(float64(v)))
		}
	case uSqrt:
		for i, v := range src {
			dst[i] = float32(math.Sqrt(float64(v)))
		}
	case uExp:
		for i, v := range src {
			dst[i] = float32(math.Exp(float64(v)))
		}
	case uLog:
		for i, v := range src {
			dst[i] = float32(math.Log(float64(v)))
		}
	case uNeg:
		for i, v := range src {
			dst[i] = -v
		}
	case uAbs:
		for i, v := range src {
			dst[i] = float32(math.Abs(float64(v)))
		}
	case uReciprocal:
		for i, v := range src {
			dst[i] = 1 / v
		}
	case uClip:
		lo, hi := u.lo, u.hi
		if u.dyn {
			var err error
			if lo, hi, err = clipBounds(in, lo, hi); err != nil {
				return err
			}
		}
		for i, v := range src {
			if v < lo {
				v = lo
			}
			if v > hi {
				v = hi
			}
			dst[i] = v
		}
	}
	return nil
}

func clipBounds(in []*tensor, lo, hi float32) (float32, float32, error) {
	for k := 1; k < len(in); k++ {
		if in[k] == nil {
			continue
		}
		v, err := scalarFloat(in[k])
		if err != nil {
			return 0, 0, fmt.Errorf("bound: %v", err)
		}
		if k == 1 {
			lo = v
		} else {
			hi = v
		}
	}
	return lo, hi, nil
}

// binary kinds
const (
	bAdd = iota
	bSub
	bMul
	bDiv
	bPow
	bEqual
	bGreater
	bLess
	bGreaterOrEqual
	bLessOrEqual
	bAnd
	bOr
	bXor
	bMax
	bMin
)

var binaryNames = [...]string{"Add", "Sub", "Mul", "Div", "Pow", "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Xor", "Max", "Min"}

type binop struct{ kind int }

func binaryBuilder(kind int) builder {
	return func(b *buildCtx) (op, error) {
		if err := b.io(2, 2, 1, 1); err != nil {
			return nil, err
		}
		return &binop{kind: kind}, nil
	}
}

func (o *binop) compare() bool { return o.kind >= bEqual && o.kind <= bLessOrEqual }

func (o *binop) run(e *env, in, out []*tensor) error {
	a, b, y := in[0], in[1], out[0]
	name := binaryNames[o.kind]
	switch {
	case o.kind == bPow:
		if a.dt != tFloat || (b.dt != tFloat && b.dt != tInt64) {
			return fmt.Errorf("%s to the power of %s is not supported", a.dt, b.dt)
		}
	case a.dt != b.dt:
		return fmt.Errorf("%s of %s and %s", name, a.dt, b.dt)
	case o.kind >= bAnd && o.kind <= bXor && a.dt != tBool:
		return typeErr(name, a.dt)
	case a.dt == tBool && !(o.kind >= bAnd && o.kind <= bXor) && o.kind != bEqual:
		return typeErr(name, a.dt)
	}
	shape, err := broadcast(e.shape[:0], a.shape, b.shape)
	if err != nil {
		return fmt.Errorf("%s of %v and %v: %v", name, a.shape, b.shape, err)
	}
	dt := a.dt
	if o.compare() {
		dt = tBool
	}
	if err := y.alloc(e, dt, shape); err != nil {
		return err
	}
	n := y.size()
	if a.dt == tFloat && b.dt == tFloat && !o.compare() && o.kind != bPow {
		floatFast(e, o.kind, a, b, y, n)
		return nil
	}
	e.odo.init(y.shape, a.shape, b.shape)
	for i := range n {
		ia, ib := e.odo.off[0], e.odo.off[1]
		switch {
		case a.dt == tFloat && dt == tFloat: // Pow
			var x float64
			if b.dt == tFloat {
				x = float64(b.f[ib])
			} else {
				x = float64(b.i[ib])
			}
			y.f[i] = pow32(a.f[ia], x)
		case a.dt == tFloat:
			y.b[i] = cmpFloat(o.kind, a.f[ia], b.f[ib])
		case a.dt == tInt64 && dt == tBool:
			y.b[i] = cmpInt(o.kind, a.i[ia], b.i[ib])
		case a.dt == tInt64:
			v, err := arithInt(o.kind, a.i[ia], b.i[ib])
			if err != nil {
				return err
			}
			y.i[i] = v
		default:
			y.b[i] = logic(o.kind, a.b[ia], b.b[ib])
		}
		e.odo.step()
	}
	return nil
}

// floatFast is float32 arithmetic: same shapes, a scalar, or one operand
// repeating along the other's leading dimensions (a bias) in tight loops;
// any other broadcast element by element.
func floatFast(e *env, kind int, a, b, y *tensor, n int) {
	na, nb := a.size(), b.size()
	switch {
	case na == n && nb == n:
		arith(kind, y.f[:n], a.f[:n], b.f[:n], false, false)
	case nb == 1 && na == n:
		arith(kind, y.f[:n], a.f[:n], b.f[:1], false, true)
	case na == 1 && nb == n:
		arith(kind, y.f[:n], a.f[:1], b.f[:n], true, false)
	case na == n && nb > 0 && isSuffix(y.shape, b.shape):
		for off := 0; off < n; off += nb {
			arith(kind, y.f[off:off+nb], a.f[off:off+nb], b.f[:nb], false, false)
		}
	case nb == n && na > 0 && isSuffix(y.shape, a.shape):
		for off := 0; off < n; off += na {
			arith(kind, y.f[off:off+na], a.f[:na], b.f[off:off+na], false, false)
		}
	default:
		e.odo.init(y.shape, a.shape, b.shape)
		for i := range n {
			arith(kind, y.f[i:i+1], a.f[e.odo.off[0]:e.odo.off[0]+1], b.f[e.odo.off[1]:e.odo.off[1]+1], false, false)
			e.odo.step()
		}
	}
}

// arith computes dst = a op b; a scalar operand is flagged.
func arith(kind int, dst, a, b []float32, aScalar, bScalar bool) {
	switch {
	case aScalar:
		x := a[0]
		b = b[:len(dst)]
		switch kind {
		case bAdd:
			for i, v := range b {
				dst[i] = x + v
			}
		case bSub:
			for i, v := range b {
				dst[i] = x - v
			}
		case bMul:
			for i, v := range b {
				dst[i] = x * v
			}
		case bDiv:
			for i, v := range b {
				dst[i] = x / v
			}
		case bMax:
			for i, v := range b {
				dst[i] = max32(x, v)
			}
		case bMin:
			for i, v := range b {
				dst[i] = min32(x, v)
			}
		}
	case bScalar:
		x := b[0]
		a = a[:len(dst)]
		switch kind {
		case bAdd:
			for i, v := range a {
				dst[i] = v + x
			}
		case bSub:
			for i, v := range a {
				dst[i] = v - x
			}
		case bMul:
			for i, v := range a {
				dst[i] = v * x
			}
		case bDiv:
			for i, v := range a {
				dst[i] = v / x
			}
		case bMax:
			for i, v := range a {
				dst[i] = max32(v, x)
			}
		case bMin:
			for i, v := range a {
				dst[i] = min32(v, x)
			}
		}
	default:
		a, b = a[:len(dst)], b[:len(dst)]
		switch kind {
		case bAdd:
			for i := range dst {
				dst[i] = a[i] + b[i]
			}
		case bSub:
			for i := range dst {
				dst[i] = a[i] - b[i]
			}
		case bMul:
			for i := range dst {
				dst[i] = a[i] * b[i]
			}
		case bDiv:
			for i := range dst {
				dst[i] = a[i] / b[i]
			}
		case bMax:
			for i := range dst {
				dst[i] = max32(a[i], b[i])
			}
		case bMin:
			for i := range dst {
				dst[i] = min32(a[i], b[i])
			}
		}
	}
}

// max32 and min32 propagate NaN, as ONNX's Max and Min do.
func max32(a, b float32) float32 {
	if a != a || b != b {
		return nan32
	}
	return max(a, b)
}

func min32(a, b float32) float32 {
	if a != a || b != b {
		return nan32
	}
	return min(a, b)
}

// pow32 is x**y rounded to float32, with PyTorch's exact forms for the
// exponents it special-cases.
func pow32(x float32, y float64) float32 {
	switch y {
	case 1:
		return x
	case 2:
		return x * x
	case 3:
		return x * x * x
	case 0.5:
		return float32(math.Sqrt(float64(x)))
	}
	return float32(math.Pow(float64(x), y))
}

func cmpFloat(kind int, a, b float32) bool {
	switch kind {
	case bEqual:
		return a == b
	case bGreater:
		return a > b
	case bLess:
		return a < b
	case bGreaterOrEqual:
		return a >= b
	}
	return a <= b
}

func cmpInt(kind int, a, b int64) bool {
	switch kind {
	case bEqual:
		return a == b
	case bGreater:
		return a > b
	case bLess:
		return a < b
	case bGreaterOrEqual:
		return a >= b
	}
	return a <= b
}

func arithInt(kind int, a, b int64) (int64, error) {
	switch kind {
	case bAdd:
		return a + b, nil
	case bSub:
		return a - b, nil
	case bMul:
		return a * b, nil
	case bDiv:
		if b == 0 {
			return 0, fmt.Errorf("%w: integer division by zero", ErrInput)
		}
		return a / b, nil
	case bMax:
		return max(a, b), nil
	case bMin:
		return min(a, b), nil
	}
	return 0, fmt.Errorf("%s is not supported on int64", binaryNames[kind])
}

func logic(kind int, a, b bool) bool {
	switch kind {
	case bAnd:
		return a && b
	case bOr:
		return a || b
	case bXor, bEqual:
		return (a != b) == (kind == bXor)
	}
	return false
}

// where is Where(condition, X, Y) with broadcasting.
type where struct{}

func buildWhere(b *buildCtx) (op, error) {
	if err := b.io(3, 3, 1, 1); err != nil {
		return nil, err
	}
	return &where{}, nil
}

func (o *where) run(e *env, in, out []*tensor) error {
	c, a, b, y := in[0], in[1], in[2], out[0]
	if c.dt != tBool {
		return fmt.Errorf("the condition is %s, want bool", c.dt)
	}
	if a.dt != b.dt {
		return fmt.Errorf("branches of %s and %s", a.dt, b.dt)
	}
	shape, err := broadcast(e.shape[:0], c.shape, a.shape, b.shape)
	if err != nil {
		return fmt.Errorf("shapes %v, %v and %v: %v", c.shape, a.shape, b.shape, err)
	}
	if err := y.alloc(e, a.dt, shape); err != nil {
		return err
	}
	e.odo.init(y.shape, c.shape, a.shape, b.shape)
	for i := range y.size() {
		src, off := b, e.odo.off[2]
		if c.b[e.odo.off[0]] {
			src, off = a, e.odo.off[1]
		}
		switch a.dt {
		case tFloat:
			y.f[i] = src.f[off]
		case tInt64:
			y.i[i] = src.i[off]
		default:
			y.b[i] = src.b[off]
		}
		e.odo.step()
	}
	return nil
}

// cast is Cast(to) between float, int64 and bool.
type cast struct{ to dtype }

func buildCast(b *buildCtx) (op, error) {
	if err := b.io(1, 1, 1, 1); err != nil {
		return nil, err
	}
	switch to := b.attrs.int("to", 0); to {
	case typeFloat:
		return &cast{to: tFloat}, nil
	case typeInt64:
		return &cast{to: tInt64}, nil
	case typeBool:
		return &cast{to: tBool}, nil
	default:
		return nil, fmt.Errorf("cast to %s is not supported (want float, int64 or bool)", typeName(to))
	}
}

func (o *cast) run(e *env, in, out []*tensor) error {
	x, y := in[0], out[0]
	if x.dt == o.to {
		y.alias(x, x.shape)
		return nil
	}
	if err := y.alloc(e, o.to, x.shape); err != nil {
		return err
	}
	n := x.size()
	for i := range n {
		switch {
		case x.dt == tFloat && o.to == tInt64:
			v := x.f[i]
			if v != v || v >= 0x1p63 || v < -0x1p63 {
				return fmt.Errorf("%w: Cast of %g to int64", ErrInput, v)
			}
			y.i[i] = int64(v)
		case x.dt == tFloat:
			y.b[i] = x.f[i] != 0
		case x.dt == tInt64 && o.to == tFloat:
			y.f[i] = float32(x.i[i])
		case x.dt == tInt64:
			y.b[i] = x.i[i] != 0
		case o.to == tFloat:
			y.f[i] = b2f(x.b[i])
		default:
			y.i[i] = int64(b2f(x.b[i]))
		}
	}
	return nil
}

func b2f(b bool) float32 {
	if b {
		return 1
	}
	return 0
}

// identity passes its input through; Dropout in inference is one too.
type identity struct{ mask bool }

func buildIdentity(b *buildCtx) (op, error) {
	if err := b.io(1, 1, 1, 1); err != nil {
		return nil, err
	}
	return &identity{}, nil
}

func buildDropout(b *buildCtx) (op, error) {
	if err := b.io(1, 3, 1, 2); err != nil {
		return nil, err
	}
	b.attrs.int("seed", 0)
	if len(b.node.in) == 3 && b.node.in[2] >= 0 {
		c := b.consts[2]
		if c == nil || c.dt != tBool || c.size() != 1 || c.b[0] {
			return nil, fmt.Errorf("training mode is not supported")
		}
	}
	return &identity{mask: b.outputs == 2}, nil
}

func (o *identity) run(e *env, in, out []*tensor) error {
	out[0].alias(in[0], in[0].shape)
	if o.mask {
		if err := out[1].alloc(e, tBool, in[0].shape); err != nil {
			return err
		}
		for i := range out[1].b {
			out[1].b[i] = true
		}
	}
	return nil
}
