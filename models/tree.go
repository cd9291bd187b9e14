package models

import (
	"fmt"
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
	// negative (at most -1 under Forest.TruncCategories) or at least 2^24,
	// or when CatsKnown is set and does not list it; an unknown code
	// follows DefaultLeft, like a missing input, unless UnknownLeft is set.
	Cats []uint64
	// CatsKnown, when not nil, is the bitset of the codes a categorical
	// split knows (scikit-learn's known categories); nil knows every code
	// below 2^24.
	CatsKnown []uint64
	// UnknownLeft sends unknown codes of a categorical split left instead
	// of the way of missing inputs (XGBoost since 1.7.3).
	UnknownLeft bool
	// ZeroMissing makes a numeric split treat inputs within ±1e-35 (as
	// float32) like missing ones (LightGBM's zero_as_missing).
	ZeroMissing bool
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
	// Linear, when not nil, holds a linear model per leaf value (LightGBM's
	// linear trees): the leaf whose value is Leaves[k] scores Linear[k].
	// Only in trees of Width 1 without Weight, in a forest without Sum32.
	Linear []LinearLeaf
}

// LinearLeaf is a leaf whose value is a linear function of the inputs:
// Const, plus each Coeffs[i] times input Features[i], added in order
// (LightGBM's linear trees). When one of those inputs is missing, the leaf
// scores its constant value in Tree.Leaves instead.
type LinearLeaf struct {
	Const    float64
	Features []int32
	Coeffs   []float64
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
	Base []float64
	// Trees may be set to nil once the forest is compiled: it then keeps
	// only the compiled form (the LightGBM loader does, to halve what a
	// loaded model holds).
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
	// TruncCategories makes every input above -1 a category code, its
	// truncation toward zero (LightGBM: -0.5 is code 0); otherwise
	// negative inputs are unknown codes.
	TruncCategories bool
	// Names are the artifact's names of the input columns, in column
	// order; nil when it names none.
	Names []string

	code atomic.Pointer[forestCode]
}

var _ Model = (*Forest)(nil)

// NumFeatures returns the number of input columns.
func (f *Forest) NumFeatures() int { return f.Features }

// InputNames returns the artifact's names of the input columns, or nil.
func (f *Forest) InputNames() []string { return f.Names }

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
// for Predict. Once it has succeeded, Check does nothing more. Errors wrap
// ErrArtifact.
func (f *Forest) Check() error {
	if f.code.Load() != nil {
		return nil
	}
	c, err := compileForest(f)
	if err != nil {
		return err
	}
	f.code.Store(c)
	return nil
}

// Predict scores nrows rows of x into dst.
func (f *Forest) Predict(dst, x []float64, nrows int) error {
	c, err := f.compiled()
	if err != nil {
		return fmt.Errorf("predict: %w", err)
	}
	nout := f.NumOutputs()
	if nrows < 0 || len(x) < nrows*f.Features || len(dst) < nrows*nout {
		return fmt.Errorf("predict: %d inputs and %d outputs for %d rows of %d features and %d outputs",
			len(x), len(dst), nrows, f.Features, nout)
	}
	c.predict(f, dst, x, nrows)
	return nil
}

// linearLeaves reports whether some leaves of f are linear.
func (f *Forest) linearLeaves() bool {
	c, err := f.compiled()
	return err == nil && c.lin != nil
}

// compiled returns f's compiled form, compiling it first when needed.
func (f *Forest) compiled() (*forestCode, error) {
	if c := f.code.Load(); c != nil {
		return c, nil
	}
	if err := f.Check(); err != nil {
		return nil, err
	}
	return f.code.Load(), nil
}

// constantLeaves returns a forest that scores like f except that each
// linear leaf scores its constant value. It shares f's compiled form.
func (f *Forest) constantLeaves() (*Forest, error) {
	c, err := f.compiled()
	if err != nil {
		return nil, err
	}
	g := &Forest{
		Features: f.Features, Outputs: f.Outputs, Base: f.Base, Split: f.Split, Sum32: f.Sum32,
		Link: f.Link, Argmax: f.Argmax, TruncCategories: f.TruncCategories, Names: f.Names,
	}
	g.code.Store(c.withoutLinear())
	return g, nil
}
