package models

import (
	"fmt"
	"math"
	"sync"
	"unsafe"
)

// A Forest compiles into one array of 24-byte nodes that Predict walks
// without a data-dependent branch, blockRows rows at a time through each
// tree:
//
//   - Every input a split reads is turned, once per row and before any
//     walk, into a 64-bit key such that the split is a single comparison:
//     a row goes right when key&mask > thr (unsigned). Numeric inputs
//     become order-preserving integers (of the float32 under SplitLess32),
//     with NaN resolved up front: each column has one key where NaN sorts
//     below every number and one where it sorts above, and a split reads
//     the one that sends NaN its default way. A categorical input with a
//     code below 62 becomes a one-hot bit, with bits for "a larger code"
//     and "missing"; a split's mask lists the bits that go right. A
//     categorical split over larger codes gets a key of its own per row:
//     1 when the row goes right.
//   - A split's left child is the next node and its right child is a byte
//     offset, so a step is: load the node, load the key it names, compare,
//     and select the next offset with a conditional move.
//   - A leaf's key is a constant all-ones key with mask = its value index
//     + 1: it always "goes right", to itself. So every row of a block can
//     take exactly as many steps as the tree is deep and end on its leaf,
//     and the rows advance in lockstep: the processor overlaps the blockRows
//     independent chains of loads instead of waiting on each one and
//     mispredicting half the branches.
//
// Measured on the oracle models and a 200-tree depth-6 XGBoost model
// (docs/performance.md), this takes a half to a sixth of the time of the
// branchy row-by-row walk it replaced. It also beat, on those models, a
// walk where each row moves on to the next tree as soon as it reaches a
// leaf (no lockstep waste on unbalanced LightGBM trees, but more work per
// step), 8 and 32 rows per block, 16-byte nodes (which need more
// instructions per step to tell numeric from categorical splits), and a
// QuickScorer-style bit-vector evaluation (which shines on thousands of
// shallow trees, not on tens of trees of 31 leaves).

// blockRows is the number of rows walked through a tree together.
const blockRows = 16

// codeNode is one node of a compiled forest. See forestCode.
type codeNode struct {
	thr   uint64 // a row goes right when key&mask > thr
	mask  uint64
	slot  uint32 // byte offset of the node's key in a block's keys: slot index * blockRows * 8
	right uint32 // byte offset of the right child in nodes; a leaf's is its own
}

const nodeBytes = uint32(unsafe.Sizeof(codeNode{}))

// Keys of missing values and of the constant slot.
const (
	keyNaNLow  = 0              // NaN below every number: its split sends it left
	keyNaNHigh = math.MaxUint64 // NaN above every number: its split sends it right
	keyOne     = math.MaxUint64 // the constant key leaves read

	bitLargeCode = 1 << 62 // a valid category code of 62 or more
	bitMissing   = 1 << 63 // a missing input (and, for some splits, an unknown code)
)

// maxSlots caps the keys per row of a compiled forest (a block's keys
// take slots*blockRows*8 bytes).
const maxSlots = 1 << 16

// codeTree locates one compiled tree.
type codeTree struct {
	root  uint32 // byte offset of the root in nodes
	depth int32  // the most steps from the root to a leaf
	out   int32  // the first output the tree adds to
}

// forestCode is a Forest compiled for prediction.
type forestCode struct {
	nodes  []codeNode
	trees  []codeTree
	width  int // values per leaf, the same for every tree
	leaf64 []float64
	leaf32 []float32
	// lin, when some leaves are linear, holds per value of leaf64 its
	// linear model (an empty one for a constant leaf).
	lin    []linearLeaf
	scalar bool // a single output, the common case Predict specializes

	slots int       // keys per row
	one   int       // the slot of the constant key
	num   []numCol  // numeric columns and their slots
	cat   []catCol  // categorical columns with one-hot slots
	wide  []wideCat // categorical splits with a slot of their own
	f32   bool      // inputs compare as float32 (SplitLess32)
	trunc bool      // category codes truncate toward zero from above -1

	bufs sync.Pool // *[]uint64 key buffers when they do not fit the stack
}

// numCol fills the keys of one numeric input column.
type numCol struct {
	feat     int32
	low      int32 // slot where NaN is keyNaNLow, or -1
	high     int32 // slot where NaN is keyNaNHigh, or -1
	zeroLow  int32 // as low, and so are inputs within ±zeroBand, or -1
	zeroHigh int32 // as high, and so are inputs within ±zeroBand, or -1
}

// catCol fills the one-hot keys of one categorical input column.
type catCol struct {
	feat int32
	// known puts unknown codes (negative, too large, not integers'
	// truncations below 2^24) under no bit; missing puts them, like
	// missing inputs, under bitMissing. -1 when no split reads the slot.
	known, missing int32
}

// wideCat is a categorical split whose key is computed per row: 1 when
// the row goes right.
type wideCat struct {
	feat int32
	slot int32
	cats catSplit
}

// linearLeaf is a compiled LinearLeaf.
type linearLeaf struct {
	konst  float64
	feats  []int32
	coeffs []float64
	linear bool
}

// value returns the leaf's value for row, given its constant value v.
func (l *linearLeaf) value(row []float64, v float64) float64 {
	if !l.linear {
		return v
	}
	out := l.konst
	for i, f := range l.feats {
		x := row[f]
		if x != x {
			return v
		}
		out += float64(l.coeffs[i] * x) // rounded before the sum, never fused
	}
	return out
}

// catSplit is a categorical split as a decision on one input.
type catSplit struct {
	right    []uint64 // codes that go right
	known    []uint64 // nil: every valid code is known
	unknownR bool     // unknown codes go right
	missingR bool     // missing inputs go right
}

// zeroBand is LightGBM's kZeroThreshold (1e-35f): with zero as missing,
// inputs within ±zeroBand are missing.
var zeroBand = float64(float32(1e-35))

// catCode returns the category code of x, and ok false when x is missing
// or its code unknown.
func catCode(x float64, f32, trunc bool) (code uint64, ok bool) {
	if f32 {
		x = float64(float32(x))
	}
	lo := 0.0
	if trunc {
		lo = -1
	}
	if !(x > lo || x == 0) || !(x < maxCatCode) {
		return 0, false
	}
	return uint64(int64(x)), true
}

// goesRight reports whether s sends x right.
func (s *catSplit) goesRight(x float64, f32, trunc bool) bool {
	if x != x {
		return s.missingR
	}
	c, ok := catCode(x, f32, trunc)
	if !ok || (s.known != nil && !inBits(s.known, c)) {
		return s.unknownR
	}
	return inBits(s.right, c)
}

func inBits(bits []uint64, c uint64) bool {
	return c/64 < uint64(len(bits)) && bits[c/64]&(1<<(c%64)) != 0
}

// oneHot returns the mask of a categorical split's one-hot key, and ok
// false when the split tells apart codes of 62 or more (a wide split).
func (s *catSplit) oneHot() (mask uint64, ok bool) {
	word := func(b []uint64, i int) uint64 {
		if i < len(b) {
			return b[i]
		}
		return 0
	}
	// The codes that go right: listed and known.
	for i := range s.right {
		w := s.right[i]
		if s.known != nil {
			w &= word(s.known, i)
		}
		if w != 0 && (i > 0 || w>>62 != 0) {
			return 0, false
		}
	}
	mask = word(s.right, 0)
	if s.known != nil {
		mask &= word(s.known, 0)
		if s.unknownR {
			// Every code it does not know goes right, all of those of
			// 62 or more included.
			for i, w := range s.known {
				if w != 0 && (i > 0 || w>>62 != 0) {
					return 0, false
				}
			}
			mask |= ^word(s.known, 0)&(bitLargeCode-1) | bitLargeCode
		}
	}
	if s.missingR {
		mask |= bitMissing
	}
	return mask, true
}

// ukey64 maps a float64 that is not NaN to an unsigned integer in the
// same order, -0 and +0 alike, strictly between keyNaNLow and keyNaNHigh.
func ukey64(x float64) uint64 {
	x += 0 // -0 becomes +0
	b := int64(math.Float64bits(x))
	return uint64(b^(b>>63)&math.MaxInt64) ^ 1<<63
}

// unkey64 is the inverse of ukey64.
func unkey64(k uint64) float64 {
	b := int64(k ^ 1<<63)
	return math.Float64frombits(uint64(b ^ (b>>63)&math.MaxInt64))
}

// unkey32 is the inverse of ukey32.
func unkey32(k uint64) float32 {
	b := int32(uint32(k-1) ^ 1<<31)
	return math.Float32frombits(uint32(b ^ (b>>31)&math.MaxInt32))
}

// ukey32 is ukey64 for float32, in 1..2^32.
func ukey32(x float32) uint64 {
	x += 0
	b := int32(math.Float32bits(x))
	return uint64(uint32(b^(b>>31)&math.MaxInt32)^1<<31) + 1
}

// compiler builds a forestCode.
type compiler struct {
	f *Forest
	c *forestCode
	// slot indexes of the columns by feature, built on demand
	num  map[int32]int
	cat  map[int32]int
	wide map[string]int32 // key of a wide split -> its slot
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
		if t.Linear != nil {
			if err := checkLinear(f, ti, t); err != nil {
				return nil, err
			}
		}
		total += len(t.Nodes)
		if total > MaxForestNodes {
			return nil, fmt.Errorf("%w: more than %d nodes", ErrArtifact, MaxForestNodes)
		}
	}
	cp := &compiler{
		f: f,
		c: &forestCode{
			width:  max(width, 1),
			scalar: f.Outputs == 1,
			f32:    f.Split == SplitLess32,
			trunc:  f.TruncCategories,
			trees:  make([]codeTree, 0, len(f.Trees)),
		},
		num:  make(map[int32]int),
		cat:  make(map[int32]int),
		wide: make(map[string]int32),
	}
	var seen []bool
	for ti := range f.Trees {
		var err error
		if seen, err = cp.tree(ti, seen); err != nil {
			return nil, err
		}
	}
	c := cp.c
	c.one = c.slots
	c.slots++
	if c.slots > maxSlots {
		return nil, fmt.Errorf("%w: the trees read %d input keys; the limit is %d", ErrArtifact, c.slots, maxSlots)
	}
	if c.lin != nil { // constant leaves after the last linear one
		c.lin = append(c.lin, make([]linearLeaf, len(c.leaf64)-len(c.lin))...)
	}
	if uint64(len(c.nodes))*uint64(nodeBytes) > math.MaxUint32 {
		return nil, fmt.Errorf("%w: %d compiled nodes is too many", ErrArtifact, len(c.nodes))
	}
	// Slot indexes become byte offsets in a block's keys, and the leaves
	// read the constant slot.
	for i := range c.nodes {
		n := &c.nodes[i]
		if n.right == leafMark {
			n.right = uint32(i) * nodeBytes
			n.slot = uint32(c.one)
		}
		n.slot *= blockRows * 8
	}
	if err := c.verify(); err != nil {
		return nil, err
	}
	if c.slots*blockRows > stackKeys {
		c.bufs.New = func() any {
			b := make([]uint64, c.slots*blockRows)
			return &b
		}
	}
	return c, nil
}

// leafMark marks a leaf's right child until its offset is known.
const leafMark = math.MaxUint32

// checkLinear checks the linear leaves of tree ti.
func checkLinear(f *Forest, ti int, t *Tree) error {
	switch {
	case len(t.Linear) != len(t.Leaves):
		return fmt.Errorf("%w: tree %d: %d linear leaves for %d leaf values", ErrArtifact, ti, len(t.Linear), len(t.Leaves))
	case max(t.Width, 1) != 1 || t.Weight != 0 || f.Sum32:
		return fmt.Errorf("%w: tree %d: linear leaves need one value per leaf, no weight and float64 sums", ErrArtifact, ti)
	}
	for k, l := range t.Linear {
		if len(l.Features) != len(l.Coeffs) {
			return fmt.Errorf("%w: tree %d leaf %d: %d features, %d coefficients", ErrArtifact, ti, k, len(l.Features), len(l.Coeffs))
		}
		for _, feat := range l.Features {
			if feat < 0 || int(feat) >= f.Features {
				return fmt.Errorf("%w: tree %d leaf %d: feature %d of %d", ErrArtifact, ti, k, feat, f.Features)
			}
		}
	}
	return nil
}

// tree checks tree ti and appends its compiled nodes: depth first, left
// subtree first, so that a split's left child follows it.
func (cp *compiler) tree(ti int, seen []bool) ([]bool, error) {
	f, c := cp.f, cp.c
	t := &f.Trees[ti]
	w := c.width
	seen = grow(seen, len(t.Nodes))
	clear(seen)
	ct := codeTree{root: uint32(len(c.nodes)) * nodeBytes, out: int32(t.Output)}
	// A frame is a node to emit, the compiled split whose right child it
	// is (-1 for the root and left children), and its depth.
	type frame struct {
		node, from, depth int32
	}
	stack := []frame{{node: 0, from: -1}}
	for len(stack) > 0 {
		fr := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		ni := fr.node
		if ni < 0 || int(ni) >= len(t.Nodes) {
			return seen, fmt.Errorf("%w: tree %d: child %d of %d nodes", ErrArtifact, ti, ni, len(t.Nodes))
		}
		if seen[ni] {
			return seen, fmt.Errorf("%w: tree %d: node %d is reached twice", ErrArtifact, ti, ni)
		}
		seen[ni] = true
		if fr.from >= 0 {
			c.nodes[fr.from].right = uint32(len(c.nodes)) * nodeBytes
		}
		n := &t.Nodes[ni]
		if n.Feature < 0 {
			if n.Left < 0 || int(n.Left) > len(t.Leaves)-w {
				return seen, fmt.Errorf("%w: tree %d node %d: leaf value out of range", ErrArtifact, ti, ni)
			}
			if len(c.leaf32)+len(c.leaf64) > MaxForestLeafValues-w {
				return seen, fmt.Errorf("%w: more than %d leaf values", ErrArtifact, MaxForestLeafValues)
			}
			v := c.addLeaf(cp.f, t, t.Leaves[n.Left:int(n.Left)+w])
			if t.Linear != nil {
				c.lin = append(c.lin, make([]linearLeaf, len(c.leaf64)-len(c.lin))...)
				l := &t.Linear[n.Left]
				c.lin[v] = linearLeaf{konst: l.Const, feats: l.Features, coeffs: l.Coeffs, linear: true}
			}
			c.nodes = append(c.nodes, codeNode{mask: uint64(v) + 1, right: leafMark})
			ct.depth = max(ct.depth, fr.depth)
			continue
		}
		if int(n.Feature) >= f.Features {
			return seen, fmt.Errorf("%w: tree %d node %d: feature %d of %d", ErrArtifact, ti, ni, n.Feature, f.Features)
		}
		at := int32(len(c.nodes))
		c.nodes = append(c.nodes, cp.split(n))
		// The left child comes next; the right one after the left subtree.
		d := fr.depth + 1
		stack = append(stack, frame{node: n.Right, from: at, depth: d}, frame{node: n.Left, from: -1, depth: d})
	}
	c.trees = append(c.trees, ct)
	return seen, nil
}

// split returns the compiled form of split n, without its right child.
func (cp *compiler) split(n *Node) codeNode {
	if n.Cats != nil || n.CatsKnown != nil {
		s := catSplit{right: n.Cats, known: n.CatsKnown, missingR: !n.DefaultLeft}
		s.unknownR = !n.UnknownLeft && s.missingR
		if mask, ok := s.oneHot(); ok {
			col := cp.catCol(n.Feature)
			slot := &col.known
			if s.unknownR {
				slot = &col.missing
			}
			if *slot < 0 {
				*slot = cp.newSlot()
			}
			return codeNode{mask: mask, slot: uint32(*slot)}
		}
		// The key is 1 when the row goes right.
		return codeNode{mask: math.MaxUint64, slot: uint32(cp.wideSlot(n.Feature, s))}
	}
	col := cp.numCol(n.Feature)
	slot := &col.low
	switch {
	case n.ZeroMissing && n.DefaultLeft:
		slot = &col.zeroLow
	case n.ZeroMissing:
		slot = &col.zeroHigh
	case !n.DefaultLeft:
		slot = &col.high
	}
	if *slot < 0 {
		*slot = cp.newSlot()
	}
	var thr uint64
	switch {
	case math.IsNaN(n.Threshold):
		thr = keyNaNLow // every input that is not missing goes right
	case cp.f.Split == SplitLess32:
		// float32(x) < T for a float64 T is float32(x) < t for the
		// smallest float32 t >= T, that is key(x) <= key(t)-1.
		t := float32(n.Threshold)
		if float64(t) < n.Threshold {
			t = math.Nextafter32(t, float32(math.Inf(1)))
		}
		thr = ukey32(t) - 1
	default:
		thr = ukey64(n.Threshold)
	}
	return codeNode{thr: thr, mask: math.MaxUint64, slot: uint32(*slot)}
}

// newSlot returns a new slot index; compileForest refuses more than
// maxSlots.
func (cp *compiler) newSlot() int32 {
	cp.c.slots++
	return int32(cp.c.slots - 1)
}

func (cp *compiler) numCol(feat int32) *numCol {
	i, ok := cp.num[feat]
	if !ok {
		i = len(cp.c.num)
		cp.num[feat] = i
		cp.c.num = append(cp.c.num, numCol{feat: feat, low: -1, high: -1, zeroLow: -1, zeroHigh: -1})
	}
	return &cp.c.num[i]
}

func (cp *compiler) catCol(feat int32) *catCol {
	i, ok := cp.cat[feat]
	if !ok {
		i = len(cp.c.cat)
		cp.cat[feat] = i
		cp.c.cat = append(cp.c.cat, catCol{feat: feat, known: -1, missing: -1})
	}
	return &cp.c.cat[i]
}

// wideSlot returns the slot of a wide categorical split, shared by the
// splits that decide alike.
func (cp *compiler) wideSlot(feat int32, s catSplit) int32 {
	key := fmt.Sprint(feat, s.unknownR, s.missingR, s.known != nil, trimBits(s.right), trimBits(s.known))
	if slot, ok := cp.wide[key]; ok {
		return slot
	}
	slot := cp.newSlot()
	cp.wide[key] = slot
	cp.c.wide = append(cp.c.wide, wideCat{feat: feat, slot: slot, cats: s})
	return slot
}

// trimBits drops a bitset's trailing zero words.
func trimBits(b []uint64) []uint64 {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
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

// withoutLinear returns a copy of c whose linear leaves score their
// constant values; it shares c's arrays.
func (c *forestCode) withoutLinear() *forestCode {
	cc := &forestCode{
		nodes: c.nodes, trees: c.trees, width: c.width, leaf64: c.leaf64, leaf32: c.leaf32,
		scalar: c.scalar, slots: c.slots, one: c.one, num: c.num, cat: c.cat, wide: c.wide,
		f32: c.f32, trunc: c.trunc,
	}
	cc.bufs.New = c.bufs.New
	return cc
}

// verify checks what the walk relies on to stay inside its arrays: every
// right child is a node, every split has a next node (its left child),
// every key is inside a block's keys, and every leaf's value is inside the
// leaf values.
func (c *forestCode) verify() error {
	nn := uint32(len(c.nodes))
	keys := uint32(c.slots) * blockRows * 8
	values := len(c.leaf64) + len(c.leaf32)
	for i, n := range c.nodes {
		bad := n.right%nodeBytes != 0 || n.right/nodeBytes >= nn ||
			n.slot%(blockRows*8) != 0 || n.slot >= keys
		if n.right == uint32(i)*nodeBytes { // a leaf
			bad = bad || n.slot != uint32(c.one)*blockRows*8 || n.thr != 0 ||
				n.mask == 0 || n.mask-1 > uint64(values-c.width)
		} else {
			bad = bad || uint32(i)+1 >= nn
		}
		if bad {
			return fmt.Errorf("%w: compiled node %d is out of range", ErrArtifact, i)
		}
	}
	for _, t := range c.trees {
		if t.root%nodeBytes != 0 || t.root/nodeBytes >= nn || t.depth < 0 {
			return fmt.Errorf("%w: compiled tree out of range", ErrArtifact)
		}
	}
	return nil
}

// stackKeys is the size of the key buffer on the stack; forests with more
// slots use pooled buffers.
const stackKeys = 128 * blockRows

// predict scores nrows rows of x into dst, blockRows at a time.
func (c *forestCode) predict(f *Forest, dst, x []float64, nrows int) {
	var stack [stackKeys]uint64
	keys := stack[:]
	if c.slots*blockRows > stackKeys {
		b := c.bufs.Get().(*[]uint64)
		defer c.bufs.Put(b)
		keys = *b
	}
	keys = keys[:c.slots*blockRows]
	for r := range blockRows {
		keys[c.one*blockRows+r] = keyOne
	}
	// An Argmax forest sums a block's margins apart from dst.
	var margins []float64
	var buf [16 * blockRows]float64
	if f.Argmax {
		margins = buf[:]
		if f.Outputs > 16 {
			margins = make([]float64, f.Outputs*blockRows)
		}
	}
	nf, nout := f.Features, f.NumOutputs()
	for r0 := 0; r0 < nrows; r0 += blockRows {
		n := min(blockRows, nrows-r0)
		xb := x[r0*nf : (r0+n)*nf]
		c.fillKeys(keys, xb, nf, n)
		c.scoreBlock(f, dst[r0*nout:(r0+n)*nout], margins, keys, xb, n)
	}
}

// fillKeys writes the keys of n rows (n <= blockRows) of x into keys,
// slot by slot: keys[slot*blockRows+row].
func (c *forestCode) fillKeys(keys []uint64, x []float64, nf, n int) {
	put := func(slot int32, r int, k uint64) {
		if slot >= 0 {
			keys[int(slot)*blockRows+r] = k
		}
	}
	for i := range c.num {
		col := &c.num[i]
		for r := range n {
			v := x[r*nf+int(col.feat)]
			lo, hi := uint64(keyNaNLow), uint64(keyNaNHigh)
			if v == v {
				if c.f32 {
					lo = ukey32(float32(v))
				} else {
					lo = ukey64(v)
				}
				hi = lo
			}
			put(col.low, r, lo)
			put(col.high, r, hi)
			if col.zeroLow >= 0 || col.zeroHigh >= 0 {
				if v >= -zeroBand && v <= zeroBand {
					lo, hi = keyNaNLow, keyNaNHigh
				}
				put(col.zeroLow, r, lo)
				put(col.zeroHigh, r, hi)
			}
		}
	}
	for i := range c.cat {
		col := &c.cat[i]
		for r := range n {
			v := x[r*nf+int(col.feat)]
			var known, missing uint64
			switch code, ok := catCode(v, c.f32, c.trunc); {
			case v != v:
				known, missing = bitMissing, bitMissing
			case !ok:
				missing = bitMissing
			case code < 62:
				known, missing = 1<<code, 1<<code
			default:
				known, missing = bitLargeCode, bitLargeCode
			}
			put(col.known, r, known)
			put(col.missing, r, missing)
		}
	}
	for i := range c.wide {
		w := &c.wide[i]
		for r := range n {
			var k uint64
			if w.cats.goesRight(x[r*nf+int(w.feat)], c.f32, c.trunc) {
				k = 1
			}
			keys[int(w.slot)*blockRows+r] = k
		}
	}
}

// scoreBlock scores n rows (n <= blockRows) whose keys are filled into
// dst; x holds the rows, which linear leaves read. An Argmax forest sums
// the margins in buf (Outputs*blockRows values).
func (c *forestCode) scoreBlock(f *Forest, dst, buf []float64, keys []uint64, x []float64, n int) {
	nf := f.Features
	k := f.Outputs
	var idx [blockRows]uint32
	lanes := (n + 3) &^ 3 // a short last block walks only the lanes it fills
	np := unsafe.Pointer(unsafe.SliceData(c.nodes))
	kp := unsafe.Pointer(unsafe.SliceData(keys))
	if c.scalar && !f.Argmax {
		base := 0.0
		if f.Base != nil {
			base = f.Base[0]
		}
		if f.Sum32 {
			var acc [blockRows]float32
			for r := range acc {
				acc[r] = float32(base)
			}
			for t := range c.trees {
				ct := &c.trees[t]
				walk(np, kp, &idx, lanes, ct.root, ct.depth)
				for r := range n {
					acc[r] += c.leaf32[c.nodes[idx[r]/nodeBytes].mask-1]
				}
			}
			for r := range n {
				dst[r] = float64(acc[r])
			}
		} else {
			var acc [blockRows]float64
			for r := range acc {
				acc[r] = base
			}
			for t := range c.trees {
				ct := &c.trees[t]
				walk(np, kp, &idx, lanes, ct.root, ct.depth)
				if c.lin != nil {
					for r := range n {
						l := c.nodes[idx[r]/nodeBytes].mask - 1
						acc[r] += c.lin[l].value(x[r*nf:r*nf+nf], c.leaf64[l])
					}
					continue
				}
				for r := range n {
					acc[r] += c.leaf64[c.nodes[idx[r]/nodeBytes].mask-1]
				}
			}
			copy(dst, acc[:n])
		}
		if f.Link != nil {
			for r := range n {
				f.Link(dst[r : r+1])
			}
		}
		return
	}
	var margins []float64
	if f.Argmax {
		margins = buf[:n*k]
	} else {
		margins = dst[:n*k]
	}
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
	w := c.width
	for t := range c.trees {
		ct := &c.trees[t]
		walk(np, kp, &idx, lanes, ct.root, ct.depth)
		for r := range n {
			l := c.nodes[idx[r]/nodeBytes].mask - 1
			m := margins[r*k+int(ct.out) : r*k+int(ct.out)+w]
			if f.Sum32 {
				for j, v := range c.leaf32[l : l+uint64(w)] {
					m[j] = float64(float32(m[j]) + v)
				}
			} else if c.lin != nil { // width 1
				m[0] += c.lin[l].value(x[r*nf:r*nf+nf], c.leaf64[l])
			} else {
				for j, v := range c.leaf64[l : l+uint64(w)] {
					m[j] += v
				}
			}
		}
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

// walk moves the first lanes rows of a block (a multiple of 4, at most
// blockRows) from the node at byte offset root through depth levels of its
// tree, leaving in idx the byte offset of the leaf each reaches. nodes and keys point at a forestCode's nodes
// and a block's keys; verify has checked that every offset a walk can
// take from a root stays inside them, which is why the loads need no
// bounds checks.
//
// The rows go four at a time with constant key offsets, and the next
// offset is stored to idx: the compiler then selects it with a
// conditional move (it keeps a branch when the selected value feeds the
// next load directly), and keeps everything in registers.
func walk(nodes, keys unsafe.Pointer, idx *[blockRows]uint32, lanes int, root uint32, depth int32) {
	for r := range idx {
		idx[r] = root
	}
	for ; depth > 0; depth-- {
		for g := 0; g < lanes; g += 4 {
			ip := (*[4]uint32)(unsafe.Pointer(&idx[g]))
			kg := unsafe.Add(keys, g*8)
			step(nodes, kg, &ip[0], 0)
			step(nodes, kg, &ip[1], 8)
			step(nodes, kg, &ip[2], 16)
			step(nodes, kg, &ip[3], 24)
		}
	}
}

// step moves one row one level down: to the next node, the left child,
// or to the node's right child when its key goes right.
func step(nodes, keys unsafe.Pointer, at *uint32, lane uintptr) {
	i := *at
	n := (*codeNode)(unsafe.Add(nodes, uintptr(i)))
	k := *(*uint64)(unsafe.Add(keys, uintptr(n.slot)+lane))
	thr, mask, right := n.thr, n.mask, n.right
	next := i + nodeBytes
	if k&mask > thr {
		next = right
	}
	*at = next
}
