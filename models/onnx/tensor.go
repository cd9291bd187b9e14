package onnx

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// dtype is the element type of a tensor while the graph runs: float32,
// int64 or bool. Other ONNX types are refused at load.
type dtype uint8

const (
	tFloat dtype = iota + 1
	tInt64
	tBool
)

func (t dtype) String() string {
	switch t {
	case tFloat:
		return "float"
	case tInt64:
		return "int64"
	case tBool:
		return "bool"
	}
	return "undefined"
}

// maxRank caps the rank of every tensor.
const maxRank = 8

// tensor is a value of the graph: its type, shape and the elements of its
// type, row-major. A tensor a session owns keeps its buffers between runs.
type tensor struct {
	dt    dtype
	shape []int
	f     []float32
	i     []int64
	b     []bool
}

func (t *tensor) size() int {
	n := 1
	for _, d := range t.shape {
		n *= d
	}
	return n
}

// shapeSize returns the number of elements of shape, or an error when a
// dimension is negative or the count is over the limit.
func shapeSize(shape []int, limit int) (int, error) {
	// Errors print a copy, so that shape does not escape.
	if len(shape) > maxRank {
		return 0, fmt.Errorf("%w: rank %d is over the limit of %d", ErrLimit, len(shape), maxRank)
	}
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension %d in shape %v", d, slices.Clone(shape))
		}
		if d != 0 && n > limit/d {
			return 0, fmt.Errorf("%w: shape %v is over the limit of %d elements", ErrLimit, slices.Clone(shape), limit)
		}
		n *= d
	}
	if n > limit {
		return 0, fmt.Errorf("%w: shape %v is over the limit of %d elements", ErrLimit, slices.Clone(shape), limit)
	}
	return n, nil
}

// alloc gives t type dt and shape (copied), and a buffer of that many
// elements whose contents are undefined. It takes the elements from the
// run's budget, checking before it allocates.
func (t *tensor) alloc(e *env, dt dtype, shape []int) error {
	n, err := shapeSize(shape, e.budget)
	if err != nil {
		return err
	}
	e.budget -= n
	return t.allocN(dt, shape, n)
}

// allocN is alloc for a size already checked.
func (t *tensor) allocN(dt dtype, shape []int, n int) error {
	t.setShape(shape)
	t.dt = dt
	switch dt {
	case tFloat:
		t.f = grow(t.f, n)
	case tInt64:
		t.i = grow(t.i, n)
	case tBool:
		t.b = grow(t.b, n)
	}
	return nil
}

// setShape copies shape into t's shape, keeping its backing array.
func (t *tensor) setShape(shape []int) {
	if cap(t.shape) < len(shape) {
		t.shape = make([]int, len(shape), maxRank)
	}
	t.shape = t.shape[:len(shape)]
	copy(t.shape, shape)
}

// alias makes t share src's elements under another shape of the same size.
func (t *tensor) alias(src *tensor, shape []int) {
	t.setShape(shape)
	t.dt = src.dt
	t.f, t.i, t.b = src.f, src.i, src.b
}

// clone returns a copy of t that shares nothing with it.
func (t *tensor) clone() *tensor {
	c := &tensor{dt: t.dt, shape: append(make([]int, 0, maxRank), t.shape...)}
	n := t.size()
	switch t.dt {
	case tFloat:
		c.f = append([]float32(nil), t.f[:n]...)
	case tInt64:
		c.i = append([]int64(nil), t.i[:n]...)
	case tBool:
		c.b = append([]bool(nil), t.b[:n]...)
	}
	return c
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// ints returns the elements of an int64 tensor, for shape arguments.
func (t *tensor) ints() ([]int64, error) {
	if t.dt != tInt64 {
		return nil, fmt.Errorf("want an int64 tensor, got %s", t.dt)
	}
	return t.i[:t.size()], nil
}

// axis resolves a possibly negative axis against rank r.
func axis(a int64, r int) (int, error) {
	if a < -int64(r) || a >= int64(r) {
		return 0, fmt.Errorf("axis %d out of range for rank %d", a, r)
	}
	if a < 0 {
		a += int64(r)
	}
	return int(a), nil
}

// errBroadcast says that shapes do not broadcast; callers name them.
var errBroadcast = errors.New("the shapes do not broadcast")

// broadcast writes into dst the shape that a and b broadcast to (numpy's
// rules, ONNX's multidirectional broadcasting).
func broadcast(dst []int, shapes ...[]int) ([]int, error) {
	r := 0
	for _, s := range shapes {
		r = max(r, len(s))
	}
	dst = dst[:0]
	for k := range r {
		d := 1
		for _, s := range shapes {
			j := k - (r - len(s))
			if j < 0 {
				continue
			}
			switch x := s[j]; {
			case x == d || x == 1:
			case d == 1:
				d = x
			default:
				return nil, errBroadcast
			}
		}
		dst = append(dst, d)
	}
	return dst, nil
}

// strides writes into dst the element strides of shape as seen from an
// output of rank r it broadcasts to: 0 along broadcast dimensions.
func strides(dst []int, shape []int, r int) []int {
	dst = dst[:r]
	s := 1
	for k := r - 1; k >= 0; k-- {
		j := k - (r - len(shape))
		if j < 0 || shape[j] == 1 {
			dst[k] = 0
		} else {
			dst[k] = s
		}
		if j >= 0 {
			s *= shape[j]
		}
	}
	return dst
}

// odometer walks the positions of an output shape, keeping the offset of
// each of up to three arrays laid out along it (broadcast inputs, or any
// strides). It copies what it is given, so that callers' buffers stay on
// their stacks.
type odometer struct {
	shape   [maxRank]int
	rank    int
	strides [3][maxRank]int
	idx     [maxRank]int
	off     [3]int
	n       int
}

func (o *odometer) init(out []int, in ...[]int) {
	o.start(out, len(in))
	var buf [maxRank]int
	for k, s := range in {
		copy(o.strides[k][:], strides(buf[:], s, len(out)))
	}
}

// initWith walks out with the given element strides, one list per
// array, each of out's rank.
func (o *odometer) initWith(out []int, st ...[]int) {
	o.start(out, len(st))
	for k, s := range st {
		copy(o.strides[k][:], s)
	}
}

func (o *odometer) start(out []int, n int) {
	o.rank = copy(o.shape[:], out)
	o.n = n
	o.off = [3]int{}
	clear(o.idx[:])
}

// step advances to the next position.
func (o *odometer) step() {
	for d := o.rank - 1; d >= 0; d-- {
		o.idx[d]++
		for k := range o.n {
			o.off[k] += o.strides[k][d]
		}
		if o.idx[d] < o.shape[d] {
			return
		}
		for k := range o.n {
			o.off[k] -= o.strides[k][d] * o.shape[d]
		}
		o.idx[d] = 0
	}
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// isSuffix reports whether b's elements repeat along a's leading
// dimensions: b's shape, without leading 1s, ends a's.
func isSuffix(a, b []int) bool {
	for len(b) > 0 && b[0] == 1 {
		b = b[1:]
	}
	if len(b) > len(a) {
		return false
	}
	return sameShape(a[len(a)-len(b):], b)
}

var nan32 = float32(math.NaN())
