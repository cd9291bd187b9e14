package models

import (
	"fmt"
	"math"
	"sync/atomic"
)

// Split says how a numeric split compares an input with its threshold.
type Split uint8

const (
	// SplitLess32 goes left when float32(x) < threshold (XGBoost; scikit-learn
	// trees, whose x <= t on float32 inputs loaders rewrite as x < next32(t)).
	SplitLess32 Split = iota
	// SplitLessEqual64 goes left when x <= threshold in float64
	// (HistGradientBoosting, LightGBM).
	SplitLessEqual64
)

// Limits on the size of a Forest.
const (
	// MaxForestNodes caps the nodes (splits and leaves) of a Forest.
	MaxForestNodes = 1 << 27
	// MaxForestLeafValues caps the leaf values a compiled Forest holds
	// (a leaf holds Width values).
	MaxForestLeafValues = 1 << 26
)

// maxCatCode bounds category codes: a code is valid when 0 <= code < 2^24,
// the largest range XGBoost accepts and beyond which float32 codes are no
// longer exact.
const maxCatCode = 1 << 24

// Node is one node of a Tree.
type Node struct {
	// Feature is the input column a split reads; -1 marks a leaf.
	Feature int32
	// Left and Right are the children's indexes in Tree.Nodes. For a leaf,
	// Left is the index of its first value in Tree.Leaves.
	Left, Right int32
	// DefaultLeft sends missing (NaN) inputs left.
	DefaultLeft bool
	// Threshold of a numeric split (see Split).
	Threshold float64
	// Cats, when not nil, makes the split categorical: a bitset of the
	// category codes that go right; every other known code goes left.
	//
	// An input's code is the input truncated toward zero, after rounding
	// to float32 under SplitLess32. A code is unknown when the input is
	// negative or at least 2^24, or when CatsKnown is set and does not
	// list it; an unknown code follows DefaultLeft, like a missing input,
	// unless UnknownLeft is set.
	Cats []uint64
	// CatsKnown, when not nil, is the bitset of the codes a categorical
	// split knows (scikit-learn's known categories); nil knows every code
	// below 2^24.
	CatsKnown []uint64
	// UnknownLeft sends unknown codes of a categorical split left instead
	// of the way of missing inputs (XGBoost since 1.7.3).
	UnknownLeft bool
}

// Tree is one decision tree of a Forest. Node 0 is its root.
type Tree struct {
	Nodes []Node
	// Leaves holds Width values per leaf, added to outputs Output ..
	// Output+Width-1. Every tree of a Forest has the same Width (0 and 1
	// both mean 1).
	Leaves []float64
	Output int
	Width  int
	// Weight scales the tree's leaves (DART, averaging forests); 0 means 1.
	Weight float64
}

// Forest is an ensemble of decision trees that tree formats load into: the
// sum of its trees' leaves on top of a base margin, then a link.
//
// Check validates a forest and compiles it into the layout Predict walks;
// Predict compiles on first use when Check was not called. A forest must
// not be changed, nor copied, after its first Check or Predict; Predict
// may then run concurrently.
type Forest struct {
	Features int
	// Outputs is the number of margins per row, the trees' outputs.
	Outputs int
	// Base is the initial margin of each output; nil means zeros.
	Base  []float64
	Trees []Tree
	Split Split
	// Sum32 accumulates margins in float32, tree by tree, as XGBoost does.
	// Leaves (times Weight) are then rounded to float32.
	Sum32 bool
	// Link turns one row's margins into outputs in place; nil keeps margins.
	Link func(row []float64)
	// Argmax scores each row with the index of its largest margin (the
	// first on ties) instead of its margins; Link is then not called and
	// NumOutputs is 1.
	Argmax bool

	code atomic.Pointer[forestCode]
}

var _ Model = (*Forest)(nil)

// NumFeatures returns the number of input columns.
func (f *Forest) NumFeatures() int { return f.Features }

// NumOutputs returns the number of scores per row.
func (f *Forest) NumOutputs() int {
	if f.Argmax {
		return 1
	}
	return f.Outputs
}

// Check verifies the forest's structure so that Predict cannot index out of
// range or loop: from each tree's root (node 0) the children form a tree
// (no node reached twice), leaves index inside Leaves and features inside
// the row; nodes no split reaches are ignored. It then compiles the forest
// for Predict. Errors wrap ErrArtifact.
func (f *Forest) Check() error {
	c, err := compileForest(f)
	if err != nil {
		return err
	}
	f.code.Store(c)
	return nil
}

// Predict scores nrows rows of x into dst.
func (f *Forest) Predict(dst, x []float64, nrows int) error {
	c := f.code.Load()
	if c == nil {
		if err := f.Check(); err != nil {
			return fmt.Errorf("predict: %w", err)
		}
		c = f.code.Load()
	}
	nout := f.NumOutputs()
	if nrows < 0 || len(x) < nrows*f.Features || len(dst) < nrows*nout {
		return fmt.Errorf("predict: %d inputs and %d outputs for %d rows of %d features and %d outputs",
			len(x), len(dst), nrows, f.Features, nout)
	}
	for r := 0; r < nrows; r += predictBlock {
		n := min(predictBlock, nrows-r)
		c.predictBlock(f, dst[r*nout:(r+n)*nout], x[r*f.Features:(r+n)*f.Features], n)
	}
	return nil
}

// predictBlock is the number of rows Predict scores at a time, so that
// the margins of a block of an Argmax forest fit a buffer on the stack.
const predictBlock = 64

// forestCode is a Forest compiled for prediction. All trees' reachable
// splits share one array in depth-first order (a split's left child, when
// a split, follows it); a child reference >= 0 is a split's index, < 0 the
// complement of the index of a leaf's first value. Every numeric split,
// XGBoost's float32 ones included, becomes "x <= thr". A categorical split
// has an entry in cats and, when small, its listed codes in thr's bits.
//
// Predict walks the rows one by one through every tree, branching on each
// split: on the oracle models this beat both walking each tree for a
// block of rows and branch-free walks of several rows at once, since the
// branch predictor learns a row's path through successive trees.
type forestCode struct {
	nodes  []codeNode
	roots  []int32 // per tree: its root reference
	outs   []int32 // per tree: its first output
	width  int     // values per leaf, the same for every tree
	leaf64 []float64
	leaf32 []float32
	cats   []catSplit // categorical splits, by node index in catIdx
	catIdx []int32    // per node: index in cats, or -1; nil without categorical splits
	// scalar marks single-output forests, the common case Predict
	// specializes.
	scalar bool
	// f32 rounds inputs to float32 before categorical splits read them.
	f32 bool
}

// codeNode is one split of a compiled forest: kids[0] is the right
// child, kids[1] the left one, and flags holds node* bits. A numeric
// split sends x left when x <= thr; a NaN threshold sends every input
// that is not missing right.
type codeNode struct {
	thr   float64
	feat  uint32
	kids  [2]int32
	flags int32
}

const (
	nodeDefaultLeft = 1 << iota // missing inputs go left (must be bit 0)
	nodeCategorical             // a categorical split in cats
	nodeSmallCats               // a categorical split whose listed codes, all below 64, are the bits of thr
	nodeUnknownLeft             // unknown codes of a small categorical split go left
)

// catSplit is the compiled form of a categorical split.
type catSplit struct {
	right   []uint64 // codes that go right
	known   []uint64 // nil: every valid code is known
	unknown int32    // the child unknown codes go to
	f32     bool     // round inputs to float32 before truncating them
}

// child returns the child of a categorical split n for the non-missing input x.
func (s *catSplit) child(n *codeNode, x float64) int32 {
	if s.f32 {
		x = float64(float32(x))
	}
	if !(x >= 0 && x < maxCatCode) {
		return s.unknown
	}
	c := uint64(x)
	if s.known != nil && !inBits(s.known, c) {
		return s.unknown
	}
	if inBits(s.right, c) {
		return n.kids[0]
	}
	return n.kids[1]
}

func inBits(bits []uint64, c uint64) bool {
	return c/64 < uint64(len(bits)) && bits[c/64]&(1<<(c%64)) != 0
}

// less32 returns the float64 threshold T such that, for every float64 x
// that is not NaN, float32(x) < t exactly when x <= T, and ok false when no
// x goes left (t is NaN or -Inf).
//
// float32(x) rounds to nearest, ties to even. With p the float32 just
// below t, float32(x) < t means float32(x) <= p, which holds for x below
// the midpoint m of p and t, and at m itself when the tie rounds to p,
// that is when p's last mantissa bit is 0. Both m and its neighbours are
// exact in float64. Infinities act as ±2^128 (with an even mantissa), the
// values float32 rounding treats them as.
func less32(t float32) (thr float64, ok bool) {
	if t != t || math.IsInf(float64(t), -1) {
		return 0, false
	}
	p := math.Nextafter32(t, float32(math.Inf(-1)))
	const big = 0x1p128
	hi, lo := float64(t), float64(p)
	if math.IsInf(hi, 1) {
		hi = big
	}
	if math.IsInf(lo, -1) {
		lo = -big
	}
	m := lo/2 + hi/2 // exact: both halves are exact and so is their sum
	pEven := math.IsInf(float64(p), 0) || math.Float32bits(p)&1 == 0
	if pEven {
		return m, true
	}
	return math.Nextafter(m, math.Inf(-1)), true
}

// compileForest checks f and builds its prediction layout.
func compileForest(f *Forest) (*forestCode, error) {
	if f.Features <= 0 || f.Outputs <= 0 {
		return nil, fmt.Errorf("%w: %d features, %d outputs", ErrArtifact, f.Features, f.Outputs)
	}
	if f.Features > math.MaxInt32 || f.Outputs > 1<<20 {
		return nil, fmt.Errorf("%w: %d features, %d outputs is too many", ErrArtifact, f.Features, f.Outputs)
	}
	if f.Base != nil && len(f.Base) != f.Outputs {
		return nil, fmt.Errorf("%w: %d base scores for %d outputs", ErrArtifact, len(f.Base), f.Outputs)
	}
	if f.Split != SplitLess32 && f.Split != SplitLessEqual64 {
		return nil, fmt.Errorf("%w: unknown split mode %d", ErrArtifact, f.Split)
	}
	total, width := 0, 0
	for ti := range f.Trees {
		t := &f.Trees[ti]
		w := max(t.Width, 1)
		if ti > 0 && w != width {
			return nil, fmt.Errorf("%w: tree %d: %d values per leaf, other trees have %d", ErrArtifact, ti, w, width)
		}
		width = w
		if t.Output < 0 || t.Output > f.Outputs-w {
			return nil, fmt.Errorf("%w: tree %d: outputs %d..%d of %d", ErrArtifact, ti, t.Output, t.Output+w-1, f.Outputs)
		}
		if len(t.Nodes) == 0 {
			return nil, fmt.Errorf("%w: tree %d: no nodes", ErrArtifact, ti)
		}
		if math.IsNaN(t.Weight) || math.IsInf(t.Weight, 0) {
			return nil, fmt.Errorf("%w: tree %d: weight %v", ErrArtifact, ti, t.Weight)
		}
		total += len(t.Nodes)
		if total > MaxForestNodes {
			return nil, fmt.Errorf("%w: more than %d nodes", ErrArtifact, MaxForestNodes)
		}
	}
	width = max(width, 1)
	c := &forestCode{
		roots:  make([]int32, len(f.Trees)),
		outs:   make([]int32, len(f.Trees)),
		width:  width,
		scalar: f.Outputs == 1,
		f32:    f.Split == SplitLess32,
	}
	var (
		stack []int32 // nodes to visit
		order []int32 // the tree's reachable splits, in compiled order
		ref   []int32 // per node of the tree: its compiled reference
		seen  []bool
	)
	for ti := range f.Trees {
		t := &f.Trees[ti]
		c.outs[ti] = int32(t.Output)
		ref = grow(ref, len(t.Nodes))
		seen = grow(seen, len(t.Nodes))
		clear(seen)
		// Depth first, left subtree first, so that a split's left child,
		// when it is a split, comes right after it.
		order = order[:0]
		stack = append(stack[:0], 0)
		for len(stack) > 0 {
			ni := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if ni < 0 || int(ni) >= len(t.Nodes) {
				return nil, fmt.Errorf("%w: tree %d: child %d of %d nodes", ErrArtifact, ti, ni, len(t.Nodes))
			}
			if seen[ni] {
				return nil, fmt.Errorf("%w: tree %d: node %d is reached twice", ErrArtifact, ti, ni)
			}
			seen[ni] = true
			n := &t.Nodes[ni]
			if n.Feature < 0 {
				if n.Left < 0 || int(n.Left) > len(t.Leaves)-width {
					return nil, fmt.Errorf("%w: tree %d node %d: leaf value out of range", ErrArtifact, ti, ni)
				}
				if len(c.leaf32)+len(c.leaf64) > MaxForestLeafValues-width {
					return nil, fmt.Errorf("%w: more than %d leaf values", ErrArtifact, MaxForestLeafValues)
				}
				ref[ni] = ^c.addLeaf(f, t, t.Leaves[n.Left:int(n.Left)+width])
				continue
			}
			if int(n.Feature) >= f.Features {
				return nil, fmt.Errorf("%w: tree %d node %d: feature %d of %d", ErrArtifact, ti, ni, n.Feature, f.Features)
			}
			ref[ni] = int32(len(c.nodes) + len(order))
			order = append(order, ni)
			stack = append(stack, n.Right, n.Left)
		}
		c.roots[ti] = ref[0]
		for _, ni := range order {
			c.addSplit(f, &t.Nodes[ni], ref)
		}
	}
	return c, nil
}

// grow returns s resized to n, reusing its array when it is large enough.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// addLeaf appends one leaf's values, scaled by the tree's weight, and
// returns the index of the first.
func (c *forestCode) addLeaf(f *Forest, t *Tree, vals []float64) int32 {
	var at int
	if f.Sum32 {
		at = len(c.leaf32)
		for _, v := range vals {
			v32 := float32(v)
			if t.Weight != 0 {
				v32 *= float32(t.Weight)
			}
			c.leaf32 = append(c.leaf32, v32)
		}
	} else {
		at = len(c.leaf64)
		for _, v := range vals {
			if t.Weight != 0 {
				v *= t.Weight
			}
			c.leaf64 = append(c.leaf64, v)
		}
	}
	return int32(at)
}

// addSplit appends the compiled form of split n, whose children's
// references are in ref.
func (c *forestCode) addSplit(f *Forest, n *Node, ref []int32) {
	i := len(c.nodes)
	cn := codeNode{feat: uint32(n.Feature), kids: [2]int32{ref[n.Right], ref[n.Left]}}
	miss := cn.kids[0]
	if n.DefaultLeft {
		cn.flags |= nodeDefaultLeft
		miss = cn.kids[1]
	}
	if n.Cats != nil || n.CatsKnown != nil {
		if c.catIdx == nil {
			c.catIdx = make([]int32, i, max(2*i, 64))
			for k := range c.catIdx {
				c.catIdx[k] = -1
			}
		}
		s := catSplit{right: n.Cats, known: n.CatsKnown, unknown: miss, f32: f.Split == SplitLess32}
		if n.UnknownLeft {
			s.unknown = cn.kids[1]
		}
		c.catIdx = append(c.catIdx, int32(len(c.cats)))
		c.cats = append(c.cats, s)
		cn.flags |= nodeCategorical
		cn.thr = math.NaN()
		if len(n.Cats) <= 1 && n.CatsKnown == nil {
			// The common case, kept in the node: no lookup in cats.
			var bits uint64
			if len(n.Cats) == 1 {
				bits = n.Cats[0]
			}
			cn.thr = math.Float64frombits(bits)
			cn.flags |= nodeSmallCats
			if s.unknown == cn.kids[1] {
				cn.flags |= nodeUnknownLeft
			}
		}
		c.nodes = append(c.nodes, cn)
		return
	}
	if c.catIdx != nil {
		c.catIdx = append(c.catIdx, -1)
	}
	goesLeft := true
	switch {
	case f.Split == SplitLess32:
		// float32(x) < T for a float64 T is float32(x) < t for the
		// smallest float32 t >= T.
		t := float32(n.Threshold)
		if float64(t) < n.Threshold {
			t = math.Nextafter32(t, float32(math.Inf(1)))
		}
		cn.thr, goesLeft = less32(t)
	default:
		cn.thr = n.Threshold
	}
	if !goesLeft {
		cn.thr = math.NaN() // no input that is not missing goes left
	}
	c.nodes = append(c.nodes, cn)
}

// walk returns the index of the first value of the leaf row reaches from
// reference i, in a forest without categorical splits.
func (c *forestCode) walk(i int32, row []float64) int32 {
	nodes := c.nodes
	for i >= 0 {
		n := &nodes[i]
		x := row[n.feat]
		switch {
		case x <= n.thr:
			i = n.kids[1]
		case x == x:
			i = n.kids[0]
		default:
			i = n.kids[n.flags&nodeDefaultLeft]
		}
	}
	return ^i
}

// walkCats is walk for forests with categorical splits.
func (c *forestCode) walkCats(i int32, row []float64) int32 {
	nodes := c.nodes
	for i >= 0 {
		n := &nodes[i]
		x := row[n.feat]
		switch {
		case n.flags&nodeCategorical == 0:
			switch {
			case x <= n.thr:
				i = n.kids[1]
			case x == x:
				i = n.kids[0]
			default:
				i = n.kids[n.flags&nodeDefaultLeft]
			}
		case x != x:
			i = n.kids[n.flags&nodeDefaultLeft]
		case n.flags&nodeSmallCats == 0:
			i = c.cats[c.catIdx[i]].child(n, x)
		default:
			if c.f32 {
				x = float64(float32(x))
			}
			switch {
			case x >= 0 && x < 64:
				i = n.kids[math.Float64bits(n.thr)>>uint(x)&1^1]
			case x >= 0 && x < maxCatCode || n.flags&nodeUnknownLeft != 0:
				i = n.kids[1]
			default:
				i = n.kids[n.flags&nodeDefaultLeft]
			}
		}
	}
	return ^i
}

// predictBlock scores n rows (n <= predictBlock) into dst.
func (c *forestCode) predictBlock(f *Forest, dst, x []float64, n int) {
	k := f.Outputs
	var margins []float64
	var buf [16 * predictBlock]float64
	switch {
	case !f.Argmax:
		margins = dst[:n*k]
	case n*k <= len(buf):
		margins = buf[:n*k]
	default:
		margins = make([]float64, n*k)
	}
	if c.scalar {
		c.sumScalar(f, margins, x, n)
	} else {
		c.sumVector(f, margins, x, n)
	}
	switch {
	case f.Argmax:
		for r := range n {
			m := margins[r*k : r*k+k]
			best := 0
			for j, v := range m {
				if v > m[best] {
					best = j
				}
			}
			dst[r] = float64(best)
		}
	case f.Link != nil:
		for r := range n {
			f.Link(dst[r*k : r*k+k])
		}
	}
}

// sumScalar writes the margins of n rows of a single-output forest.
func (c *forestCode) sumScalar(f *Forest, dst, x []float64, n int) {
	nf := f.Features
	base := 0.0
	if f.Base != nil {
		base = f.Base[0]
	}
	// Row by row, every tree in turn: the walks branch, and the branch
	// predictor learns more from one row's trees than from one tree's rows.
	cats := c.catIdx != nil
	for r := range n {
		row := x[r*nf : r*nf+nf]
		if f.Sum32 {
			acc := float32(base)
			for _, root := range c.roots {
				if cats {
					acc += c.leaf32[c.walkCats(root, row)]
				} else {
					acc += c.leaf32[c.walk(root, row)]
				}
			}
			dst[r] = float64(acc)
			continue
		}
		acc := base
		for _, root := range c.roots {
			if cats {
				acc += c.leaf64[c.walkCats(root, row)]
			} else {
				acc += c.leaf64[c.walk(root, row)]
			}
		}
		dst[r] = acc
	}
}

// sumVector writes the margins of n rows of a forest with several
// outputs.
func (c *forestCode) sumVector(f *Forest, margins, x []float64, n int) {
	nf, k, w := f.Features, f.Outputs, c.width
	for r := range n {
		m := margins[r*k : r*k+k]
		if f.Base != nil {
			copy(m, f.Base)
		} else {
			clear(m)
		}
		if f.Sum32 {
			for j := range m {
				m[j] = float64(float32(m[j]))
			}
		}
	}
	add := func(r int, ti int, l int32) {
		out := r*k + int(c.outs[ti])
		m := margins[out : out+w]
		if f.Sum32 {
			for j, v := range c.leaf32[l : int(l)+w] {
				m[j] = float64(float32(m[j]) + v)
			}
		} else {
			for j, v := range c.leaf64[l : int(l)+w] {
				m[j] += v
			}
		}
	}
	cats := c.catIdx != nil
	for r := range n {
		row := x[r*nf : r*nf+nf]
		for ti, root := range c.roots {
			if cats {
				add(r, ti, c.walkCats(root, row))
			} else {
				add(r, ti, c.walk(root, row))
			}
		}
	}
}
