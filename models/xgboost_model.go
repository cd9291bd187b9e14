package models

import (
	"errors"
	"fmt"
	"math"
)

// xgbObjective is what prediction needs of an XGBoost objective.
type xgbObjective struct {
	// margin turns base_score into a margin (XGBoost's ProbToMargin).
	margin func(float32) float32
	// link is the prediction transform (XGBoost's PredTransform); nil
	// keeps margins.
	link func(row []float64)
	// argmax predicts the index of the largest margin (multi:softmax).
	argmax bool
}

func identity32(v float32) float32 { return v }

var xgbObjectives = map[string]xgbObjective{
	"binary:logistic":      {margin: logit32, link: sigmoid32},
	"reg:logistic":         {margin: logit32, link: sigmoid32},
	"binary:logitraw":      {margin: identity32}, // as XGBoost's LogisticRaw: base_score is a margin
	"binary:hinge":         {margin: identity32, link: hinge},
	"reg:squarederror":     {margin: identity32},
	"reg:linear":           {margin: identity32},
	"reg:squaredlogerror":  {margin: identity32},
	"reg:pseudohubererror": {margin: identity32},
	"reg:absoluteerror":    {margin: identity32},
	"reg:quantileerror":    {margin: identity32},
	"reg:expectileerror":   {margin: identity32},
	"count:poisson":        {margin: log32, link: exp32},
	"reg:gamma":            {margin: log32, link: exp32},
	"reg:tweedie":          {margin: log32, link: exp32},
	"survival:aft":         {margin: log32, link: exp32},
	"survival:cox":         {margin: log32, link: exp32},
	"multi:softprob":       {margin: identity32, link: softmax32},
	"multi:softmax":        {margin: identity32, argmax: true},
	"rank:pairwise":        {margin: identity32},
	"rank:ndcg":            {margin: identity32},
	"rank:map":             {margin: identity32},
}

// The transforms compute in float32, as XGBoost does, each operation
// rounded (the explicit conversions also keep Go from fusing them).

func log32(v float32) float32 { return float32(math.Log(float64(v))) }

func logit32(p float32) float32 {
	return -log32(float32(float32(1)/p) - 1)
}

func sigmoid32(row []float64) {
	for i, x := range row {
		e := float32(math.Exp(-float64(float32(x))))
		row[i] = float64(float32(1) / float32(e+1))
	}
}

func exp32(row []float64) {
	for i, x := range row {
		row[i] = float64(float32(math.Exp(float64(float32(x)))))
	}
}

func hinge(row []float64) {
	for i, x := range row {
		if x > 0 {
			row[i] = 1
		} else {
			row[i] = 0
		}
	}
}

// softmax32 is XGBoost's Softmax: exponentials of the differences with the
// largest margin in float32, their sum in float64, then float32 division.
func softmax32(row []float64) {
	if len(row) == 0 {
		return
	}
	top := float32(row[0])
	for _, x := range row[1:] {
		// fmaxf: a NaN argument yields the other one.
		if x32 := float32(x); x32 > top || top != top {
			top = x32
		}
	}
	var sum float64
	for i, x := range row {
		e := float32(math.Exp(float64(float32(float32(x) - top))))
		row[i] = float64(e)
		sum += float64(e)
	}
	s32 := float32(sum)
	for i, e := range row {
		row[i] = float64(float32(e) / s32)
	}
}

// version reports whether the model was written by XGBoost at least
// major.minor.patch.
func (doc *xgbDoc) atLeast(major, minor, patch int) bool {
	v := doc.version
	if v[0] != major {
		return v[0] > major
	}
	if v[1] != minor {
		return v[1] > minor
	}
	return v[2] >= patch
}

// model builds the evaluator the document describes.
func (doc *xgbDoc) model(opt Options) (Model, error) {
	obj, ok := xgbObjectives[doc.objective]
	if !ok {
		return nil, fmt.Errorf("unsupported objective %q", doc.objective)
	}
	if doc.numFeature < 1 {
		return nil, fmt.Errorf("num_feature %d", doc.numFeature)
	}
	if opt.Inputs != nil && len(opt.Inputs) != doc.numFeature {
		return nil, fmt.Errorf("the model reads %d features, the manifest names %d inputs", doc.numFeature, len(opt.Inputs))
	}
	if len(doc.names) > 0 && len(doc.names) != doc.numFeature {
		return nil, fmt.Errorf("feature_names lists %d names for %d features", len(doc.names), doc.numFeature)
	}
	var names []string
	if len(doc.names) > 0 {
		names = doc.names
	}
	outputs := max(doc.numTarget, 1)
	if doc.numClass > 0 {
		outputs = doc.numClass
	}
	if (doc.objective == "multi:softprob" || doc.objective == "multi:softmax") && doc.numClass < 1 {
		return nil, fmt.Errorf("objective %s without num_class", doc.objective)
	}
	base := make([]float64, outputs)
	switch len(doc.baseScore) {
	case 0:
		return nil, errors.New("no base_score")
	case 1, outputs:
		for i := range base {
			b := doc.baseScore[min(i, len(doc.baseScore)-1)]
			base[i] = float64(obj.margin(b))
			if math.IsNaN(base[i]) {
				return nil, fmt.Errorf("base_score %v is out of range for objective %s", b, doc.objective)
			}
		}
	default:
		return nil, fmt.Errorf("%d base scores for %d outputs", len(doc.baseScore), outputs)
	}
	link, argmax := obj.link, obj.argmax
	if opt.Raw {
		link, argmax = nil, false
	}
	switch doc.booster {
	case "gblinear":
		if opt.Iterations > 0 {
			return nil, errors.New("gblinear models cannot be limited to their first iterations")
		}
		if doc.linear == nil {
			return nil, errors.New("gblinear without weights")
		}
		if len(doc.linear) != (doc.numFeature+1)*outputs {
			return nil, fmt.Errorf("gblinear: %d weights for %d features and %d outputs", len(doc.linear), doc.numFeature, outputs)
		}
		return &xgbLinear{features: doc.numFeature, outputs: outputs, weights: doc.linear, base: base, link: link, argmax: argmax, names: names}, nil
	case "gbtree", "dart":
	default:
		return nil, fmt.Errorf("unsupported booster %q", doc.booster)
	}
	if doc.gbtree == nil {
		return nil, errors.New("no tree model")
	}
	trees, err := doc.gbtree.forestTrees(doc, outputs, opt)
	if err != nil {
		return nil, err
	}
	f := &Forest{
		Features: doc.numFeature,
		Outputs:  outputs,
		Base:     base,
		Trees:    trees,
		Split:    SplitLess32,
		Sum32:    true,
		Link:     link,
		Argmax:   argmax,
		Names:    names,
	}
	if err := f.Check(); err != nil {
		return nil, err
	}
	return f, nil
}

// forestTrees converts the trees of the iterations to score.
func (m *xgbTrees) forestTrees(doc *xgbDoc, outputs int, opt Options) ([]Tree, error) {
	n := len(m.trees)
	if m.numTrees != n {
		return nil, fmt.Errorf("num_trees is %d, the model has %d trees", m.numTrees, n)
	}
	// Trees go where their ids say.
	byID := make([]*xgbTree, n)
	for i, t := range m.trees {
		id := t.id
		if id < 0 {
			id = i
		}
		if id >= n || byID[id] != nil {
			return nil, fmt.Errorf("tree %d: bad id %d", i, t.id)
		}
		byID[id] = t
	}
	if len(m.treeInfo) != n {
		return nil, fmt.Errorf("tree_info has %d entries for %d trees", len(m.treeInfo), n)
	}
	weights := m.weightDrop
	if weights == nil {
		weights = doc.weightDrop
	}
	if weights != nil && len(weights) != n {
		return nil, fmt.Errorf("weight_drop has %d weights for %d trees", len(weights), n)
	}
	vector := n > 0 && byID[0].leafVector > 1
	// The trees of the first iterations: iteration_indptr bounds them
	// (XGBoost 2.0 and later); before, each iteration has
	// num_parallel_tree trees per output.
	var ends []int
	if m.iterIndptr != nil {
		if len(m.iterIndptr) == 0 || m.iterIndptr[0] != 0 || int(m.iterIndptr[len(m.iterIndptr)-1]) != n {
			return nil, fmt.Errorf("iteration_indptr does not span the %d trees", n)
		}
		for i, e := range m.iterIndptr[1:] {
			if e < m.iterIndptr[i] {
				return nil, errors.New("iteration_indptr decreases")
			}
			ends = append(ends, int(e))
		}
	} else {
		per := m.parallel
		if !vector {
			per *= outputs
		}
		if n%per != 0 {
			return nil, fmt.Errorf("%d trees is not a whole number of iterations of %d", n, per)
		}
		for e := per; e <= n; e += per {
			ends = append(ends, e)
		}
	}
	iters := len(ends)
	switch {
	case opt.Iterations > 0:
		iters = min(iters, opt.Iterations)
	case doc.bestIter >= 0:
		iters = min(iters, doc.bestIter+1)
	}
	end := 0
	if iters > 0 {
		end = ends[iters-1]
	}
	cats := &catBudget{words: maxXGBCatWords}
	out := make([]Tree, 0, end)
	for i, t := range byID[:end] {
		w := float32(1)
		if weights != nil {
			w = weights[i]
			if w == 0 {
				continue // the tree adds nothing
			}
		}
		ft, err := t.forestTree(doc, outputs, cats)
		if err != nil {
			return nil, fmt.Errorf("tree %d: %w", i, err)
		}
		if (ft.Width > 1) != vector {
			return nil, fmt.Errorf("tree %d: scalar and vector-leaf trees are mixed", i)
		}
		if !vector {
			g := m.treeInfo[i]
			if g < 0 || int(g) >= outputs {
				return nil, fmt.Errorf("tree %d: output %d of %d", i, g, outputs)
			}
			ft.Output = int(g)
		}
		if w != 1 {
			ft.Weight = float64(w)
		}
		out = append(out, ft)
	}
	return out, nil
}

// catBudget bounds the memory categorical bitsets may take.
type catBudget struct{ words int }

// forestTree converts one tree; Forest.Check validates its shape.
func (t *xgbTree) forestTree(doc *xgbDoc, outputs int, budget *catBudget) (Tree, error) {
	nn := t.numNodes
	for _, a := range []struct {
		name string
		n    int
	}{
		{"left_children", len(t.left)}, {"right_children", len(t.right)},
		{"split_indices", len(t.splitIdx)}, {"default_left", len(t.dftLeft)},
		{"split_conditions", len(t.cond)},
	} {
		if a.n != nn {
			return Tree{}, fmt.Errorf("%s has %d entries for %d nodes", a.name, a.n, nn)
		}
	}
	if t.splitType != nil && len(t.splitType) != nn {
		return Tree{}, fmt.Errorf("split_type has %d entries for %d nodes", len(t.splitType), nn)
	}
	var ft Tree
	ft.Nodes = make([]Node, nn)
	width := 1
	if t.leafVector > 1 {
		width = t.leafVector
		if width != outputs {
			return Tree{}, fmt.Errorf("leaves of %d values for %d outputs", width, outputs)
		}
		ft.Width = width
		if t.hasLeafWeights {
			ft.Leaves = toFloat64(t.leafWeights)
		} else {
			if len(t.baseWeights) != nn*width {
				return Tree{}, fmt.Errorf("base_weights has %d values for %d nodes of %d", len(t.baseWeights), nn, width)
			}
			ft.Leaves = toFloat64(t.baseWeights)
		}
	} else {
		ft.Leaves = toFloat64(t.cond)
	}
	cats, err := t.catSegments()
	if err != nil {
		return Tree{}, err
	}
	var leafUsed []bool // leaf_weights entries taken, each by one leaf
	if width > 1 && t.hasLeafWeights {
		leafUsed = make([]bool, len(ft.Leaves)/width)
	}
	for i := range nn {
		n := &ft.Nodes[i]
		if t.left[i] == -1 {
			n.Feature = -1
			switch {
			case width == 1:
				n.Left = int32(i)
			case t.hasLeafWeights:
				// XGBoost keeps a leaf's index among leaves in its right child.
				if t.right[i] < 0 || int(t.right[i]) >= len(leafUsed) || leafUsed[t.right[i]] {
					return Tree{}, fmt.Errorf("node %d: leaf %d of %d, or taken twice", i, t.right[i], len(leafUsed))
				}
				leafUsed[t.right[i]] = true
				n.Left = t.right[i] * int32(width)
			default:
				n.Left = int32(i * width)
			}
			continue
		}
		if t.splitIdx[i] < 0 {
			return Tree{}, fmt.Errorf("node %d: split index %d", i, t.splitIdx[i])
		}
		n.Feature, n.Left, n.Right = t.splitIdx[i], t.left[i], t.right[i]
		n.DefaultLeft = t.dftLeft[i] != 0
		if t.splitType == nil || t.splitType[i] == 0 {
			n.Threshold = float64(t.cond[i])
			continue
		}
		if t.splitType[i] != 1 {
			return Tree{}, fmt.Errorf("node %d: split type %d", i, t.splitType[i])
		}
		seg, ok := cats[int32(i)]
		if !ok {
			return Tree{}, fmt.Errorf("node %d: categorical split without categories", i)
		}
		if err := doc.catSplit(n, seg, budget); err != nil {
			return Tree{}, fmt.Errorf("node %d: %w", i, err)
		}
	}
	return ft, nil
}

// catSegments maps categorical nodes to their categories.
func (t *xgbTree) catSegments() (map[int32][]int32, error) {
	if len(t.catNodes) != len(t.catSegs) || len(t.catNodes) != len(t.catLen) {
		return nil, fmt.Errorf("categories_nodes, _segments and _sizes have %d, %d and %d entries",
			len(t.catNodes), len(t.catSegs), len(t.catLen))
	}
	if len(t.catNodes) == 0 {
		return nil, nil
	}
	m := make(map[int32][]int32, len(t.catNodes))
	for k, node := range t.catNodes {
		beg, size := int64(t.catSegs[k]), int64(t.catLen[k])
		if beg < 0 || size < 0 || beg+size > int64(len(t.cats)) {
			return nil, fmt.Errorf("categories of node %d: %d at %d of %d", node, size, beg, len(t.cats))
		}
		m[node] = t.cats[beg : beg+size]
	}
	return m, nil
}

// catSplit sets the categorical split of n, whose listed categories go
// right, with the version's treatment of unknown categories: since 1.7.3
// a negative code, one beyond the largest listed or one of 2^24 or more
// goes left; from 1.6.0 to 1.7.2 a negative code or one beyond the
// 32-bit words of the split's bitset followed default_left.
func (doc *xgbDoc) catSplit(n *Node, cats []int32, budget *catBudget) error {
	if len(cats) == 0 {
		return errors.New("categorical split without categories")
	}
	top := int32(0)
	for _, c := range cats {
		if c < 0 || c >= maxCatCode {
			return fmt.Errorf("category %d", c)
		}
		top = max(top, c)
	}
	words := int(top)/64 + 1
	legacy := doc.atLeast(1, 6, 0) && !doc.atLeast(1, 7, 3)
	if legacy {
		words *= 2
	}
	if budget.words -= words; budget.words < 0 {
		return fmt.Errorf("categorical splits take more than %d bytes", 8*maxXGBCatWords)
	}
	n.Cats = make([]uint64, int(top)/64+1)
	for _, c := range cats {
		n.Cats[c/64] |= 1 << (c % 64)
	}
	if !legacy {
		n.UnknownLeft = true
		return nil
	}
	// Known: the bits of the 32-bit words holding codes 0..top.
	limit := (int(top)/32 + 1) * 32
	n.CatsKnown = make([]uint64, (limit+63)/64)
	for c := range limit {
		n.CatsKnown[c/64] |= 1 << (c % 64)
	}
	return nil
}

func toFloat64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// xgbLinear is an XGBoost gblinear model: per output, a bias and one
// weight per feature, summed in float32 over the inputs present.
type xgbLinear struct {
	features, outputs int
	weights           []float32 // (features+1) x outputs, feature-major; the biases last
	base              []float64
	link              func(row []float64)
	argmax            bool
	names             []string // nil when the artifact names no features
}

var _ Model = (*xgbLinear)(nil)

// InputNames returns the artifact's feature names, or nil.
func (m *xgbLinear) InputNames() []string { return m.names }

func (m *xgbLinear) NumFeatures() int { return m.features }

func (m *xgbLinear) NumOutputs() int {
	if m.argmax {
		return 1
	}
	return m.outputs
}

func (m *xgbLinear) Predict(dst, x []float64, nrows int) error {
	k, nout := m.outputs, m.NumOutputs()
	if nrows < 0 || len(x) < nrows*m.features || len(dst) < nrows*nout {
		return fmt.Errorf("predict: %d inputs and %d outputs for %d rows of %d features and %d outputs",
			len(x), len(dst), nrows, m.features, nout)
	}
	for r := range nrows {
		row := x[r*m.features : (r+1)*m.features]
		if m.argmax {
			best, top := 0, 0.0
			for g := range k {
				if v := m.margin(g, row); g == 0 || v > top {
					best, top = g, v
				}
			}
			dst[r] = float64(best)
			continue
		}
		out := dst[r*k : (r+1)*k]
		for g := range out {
			out[g] = m.margin(g, row)
		}
		if m.link != nil {
			m.link(out)
		}
	}
	return nil
}

// margin returns output g's margin for row: XGBoost's float32 sum of the
// bias, the base margin and each present input times its weight, in
// feature order.
func (m *xgbLinear) margin(g int, row []float64) float64 {
	k := m.outputs
	sum := float32(m.weights[m.features*k+g] + float32(m.base[g]))
	for j, v := range row {
		if v != v {
			continue
		}
		sum += float32(float32(v) * m.weights[j*k+g])
	}
	return float64(sum)
}
