package models

import (
	"fmt"
	"math"
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
	// category codes that go right; every other code goes left, and a
	// missing or invalid one follows DefaultLeft.
	Cats []uint64
}

// Tree is one decision tree of a Forest.
type Tree struct {
	Nodes []Node
	// Leaves holds Width values per leaf, added to outputs Output ..
	// Output+Width-1.
	Leaves []float64
	Output int
	Width  int
	// Weight scales the tree's leaves (DART, averaging forests); 0 means 1.
	Weight float64
}

// Forest is a compiled ensemble of decision trees that tree formats load
// into: the sum of its trees' leaves on top of a base margin, then a link.
type Forest struct {
	Features int
	Outputs  int
	// Base is the initial margin of each output; nil means zeros.
	Base  []float64
	Trees []Tree
	Split Split
	// Sum32 accumulates margins in float32, tree by tree, as XGBoost does.
	Sum32 bool
	// Link turns one row's margins into outputs in place; nil keeps margins.
	Link func(row []float64)
}

var _ Model = (*Forest)(nil)

// NumFeatures returns the number of input columns.
func (f *Forest) NumFeatures() int { return f.Features }

// NumOutputs returns the number of scores per row.
func (f *Forest) NumOutputs() int { return f.Outputs }

// Check verifies the forest's structure so that Predict cannot index out of
// range or loop: children point forward inside the tree, leaves inside
// Leaves, features inside the row.
func (f *Forest) Check() error {
	if f.Features <= 0 || f.Outputs <= 0 {
		return fmt.Errorf("%w: %d features, %d outputs", ErrArtifact, f.Features, f.Outputs)
	}
	if f.Base != nil && len(f.Base) != f.Outputs {
		return fmt.Errorf("%w: %d base scores for %d outputs", ErrArtifact, len(f.Base), f.Outputs)
	}
	for ti := range f.Trees {
		t := &f.Trees[ti]
		w := max(t.Width, 1)
		if t.Output < 0 || t.Output+w > f.Outputs {
			return fmt.Errorf("%w: tree %d: outputs %d..%d of %d", ErrArtifact, ti, t.Output, t.Output+w-1, f.Outputs)
		}
		if len(t.Nodes) == 0 {
			return fmt.Errorf("%w: tree %d: no nodes", ErrArtifact, ti)
		}
		for ni, n := range t.Nodes {
			if n.Feature < 0 {
				if n.Left < 0 || int(n.Left)+w > len(t.Leaves) {
					return fmt.Errorf("%w: tree %d node %d: leaf value out of range", ErrArtifact, ti, ni)
				}
				continue
			}
			if int(n.Feature) >= f.Features {
				return fmt.Errorf("%w: tree %d node %d: feature %d of %d", ErrArtifact, ti, ni, n.Feature, f.Features)
			}
			if int(n.Left) <= ni || int(n.Right) <= ni || int(n.Left) >= len(t.Nodes) || int(n.Right) >= len(t.Nodes) {
				return fmt.Errorf("%w: tree %d node %d: bad children %d, %d", ErrArtifact, ti, ni, n.Left, n.Right)
			}
		}
	}
	return nil
}

// Predict scores nrows rows of x into dst.
func (f *Forest) Predict(dst, x []float64, nrows int) error {
	if len(x) < nrows*f.Features || len(dst) < nrows*f.Outputs {
		return fmt.Errorf("predict: %d inputs and %d outputs for %d rows of %d features and %d outputs",
			len(x), len(dst), nrows, f.Features, f.Outputs)
	}
	var acc32 [16]float32
	for r := range nrows {
		row := x[r*f.Features : (r+1)*f.Features]
		out := dst[r*f.Outputs : (r+1)*f.Outputs]
		if f.Base != nil {
			copy(out, f.Base)
		} else {
			clear(out)
		}
		if f.Sum32 && f.Outputs <= len(acc32) {
			acc := acc32[:f.Outputs]
			for i := range acc {
				acc[i] = float32(out[i])
			}
			for ti := range f.Trees {
				t := &f.Trees[ti]
				leaf := t.Leaves[t.leaf(row, f.Split):]
				for i := range max(t.Width, 1) {
					v := leaf[i]
					if t.Weight != 0 {
						v = float64(float32(v) * float32(t.Weight))
					}
					acc[t.Output+i] += float32(v)
				}
			}
			for i := range acc {
				out[i] = float64(acc[i])
			}
		} else {
			for ti := range f.Trees {
				t := &f.Trees[ti]
				leaf := t.Leaves[t.leaf(row, f.Split):]
				for i := range max(t.Width, 1) {
					v := leaf[i]
					if t.Weight != 0 {
						v *= t.Weight
					}
					out[t.Output+i] += v
				}
			}
		}
		if f.Link != nil {
			f.Link(out)
		}
	}
	return nil
}

// leaf walks the tree for one row and returns the index of the reached
// leaf's first value in t.Leaves.
func (t *Tree) leaf(row []float64, split Split) int {
	nodes := t.Nodes
	i := int32(0)
	for {
		n := &nodes[i]
		if n.Feature < 0 {
			return int(n.Left)
		}
		x := row[n.Feature]
		var left bool
		switch {
		case math.IsNaN(x):
			left = n.DefaultLeft
		case n.Cats != nil:
			left = !inCats(n.Cats, x)
		case split == SplitLess32:
			left = float64(float32(x)) < n.Threshold
		default:
			left = x <= n.Threshold
		}
		if left {
			i = n.Left
		} else {
			i = n.Right
		}
	}
}

func inCats(cats []uint64, x float64) bool {
	if x < 0 || x != math.Trunc(x) || x >= float64(64*len(cats)) {
		return false
	}
	c := uint64(x)
	return cats[c/64]&(1<<(c%64)) != 0
}
