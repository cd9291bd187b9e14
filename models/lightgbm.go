package models

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unsafe"
)

// LightGBM text models (versions v2 to v4) are parsed and checked here,
// then scored by seer's Forest, which reproduces LightGBM's own predictor:
// float64 comparisons x <= threshold, its three ways with missing values
// (none: NaN counts as 0; zero: NaN and values within ±1e-35 take the
// default child; NaN: NaN takes the default child), categorical splits
// whose listed codes go left (NaN, negative codes and codes beyond the
// bitset go right, -0.5 is code 0), sums in float64 in tree order, random
// forests averaged, then the objective's output transform.
//
// github.com/dmitryikh/leaves stays as an independent second evaluator
// (Reference): validation scores golden and probe rows with both and
// refuses a version they disagree on. leaves trusts what it reads: it
// allocates from num_leaves and indexes with child, feature and category
// numbers without checking them, so a corrupt file could exhaust memory,
// crash the process or make Predict loop forever. It only ever sees a
// file this loader has checked and written again in the plain v3 layout
// leaves reads, keeping only what leaves uses (which also drops the v4
// parser section, the feature names and the parameters); it scores raw
// margins and the objective's transform is applied here.

func lgbError(format string, args ...any) error {
	return fmt.Errorf("load lightgbm: %w: %s", ErrArtifact, fmt.Sprintf(format, args...))
}

// lgbHeader is what the loader needs from a model's header block.
type lgbHeader struct {
	version       string
	numClass      int
	maxFeature    int
	objective     string
	averageOutput bool
	treeSizes     int      // number of tree_sizes values; -1 when absent
	names         []string // feature_names
}

// lgbTree is one checked tree: its splits (num_leaves-1 of each) and
// leaves.
type lgbTree struct {
	leafValue   []float64
	feature     []int32
	threshold   []float64
	decision    []uint8
	left, right []int32 // a child < 0 is the leaf ^child
	catBounds   []uint32
	catBits     []uint32
	// A linear tree (is_linear=1) has per leaf a constant and a linear
	// model of leafFeat[k]...leafFeat[k+numFeat[leaf]-1] (raw feature
	// indexes) with their coefficients, k the sum of the previous leaves'
	// counts.
	linear    bool
	leafConst []float64
	numFeat   []int32
	leafFeat  []int32
	leafCoeff []float64
}

// lgbModel is a parsed and checked LightGBM text model.
type lgbModel struct {
	h     lgbHeader
	trees []lgbTree
	// iterations is the number of iterations to score.
	iterations int
	link       func(row []float64)
}

// Decision type bits of a LightGBM split.
const (
	lgbCategorical = 1
	lgbDefaultLeft = 2
	// (decision_type >> 2) & 3 is the missing type.
	lgbMissingNone = 0
	lgbMissingZero = 1
	lgbMissingNaN  = 2
)

// loadLightGBM reads a LightGBM text model into a Forest.
func loadLightGBM(data []byte, opt Options) (Model, error) {
	lm, err := parseLightGBM(data, opt)
	if err != nil {
		return nil, err
	}
	return lm.forest()
}

// parseLightGBM parses and checks a LightGBM text model.
func parseLightGBM(data []byte, opt Options) (*lgbModel, error) {
	// The text is read in place, not copied: a copy would double what an
	// artifact costs while it loads. Load's caller leaves data alone while
	// the loader runs, and nothing kept after loading points into it (names
	// are copied, values parsed).
	text := unsafe.String(unsafe.SliceData(data), len(data))
	first, rest := lgbLine(text)
	if first != "tree" || !strings.HasPrefix(rest, "version=") {
		return nil, lgbError("not a LightGBM text model (want a line %q, then %q)", "tree", "version=")
	}
	kv := make(map[string]string, 16)
	rest, err := lgbBlock(rest, kv, "header", true)
	if err != nil {
		return nil, err
	}
	h, err := lgbParseHeader(kv, len(data))
	if err != nil {
		return nil, err
	}
	features := h.maxFeature + 1
	if len(opt.Inputs) > 0 && len(opt.Inputs) != features {
		return nil, lgbError("the manifest lists %d inputs but the model reads %d features", len(opt.Inputs), features)
	}
	lm := &lgbModel{h: h}
	if !opt.Raw {
		if lm.link, err = lgbLink(h.objective, h.numClass); err != nil {
			return nil, err
		}
	}
	// Check every tree, then parse them again into the trees kept.
	// Checking the whole file first means that a broken one (truncated,
	// junk after a valid beginning) is refused while the loader holds only
	// one tree beside the file's bytes.
	n, err := lgbTrees(rest, features, nil)
	if err != nil {
		return nil, err
	}
	switch {
	case n == 0:
		return nil, lgbError("no trees")
	case h.treeSizes >= 0 && h.treeSizes != n:
		return nil, lgbError("tree_sizes lists %d trees but the file holds %d (truncated?)", h.treeSizes, n)
	case n%h.numClass != 0:
		return nil, lgbError("%d trees is not a multiple of num_class %d", n, h.numClass)
	}
	lm.trees = make([]lgbTree, 0, n)
	if _, err := lgbTrees(rest, features, &lm.trees); err != nil {
		return nil, err
	}
	lm.iterations = n / h.numClass
	if opt.Iterations < 0 || opt.Iterations > lm.iterations {
		return nil, lgbError("iterations %d: the model has %d", opt.Iterations, lm.iterations)
	}
	if opt.Iterations > 0 {
		lm.iterations = opt.Iterations
	}
	return lm, nil
}

// forest converts the model's first iterations into a Forest.
func (lm *lgbModel) forest() (*Forest, error) {
	k := lm.h.numClass
	f := &Forest{
		Features:        lm.h.maxFeature + 1,
		Outputs:         k,
		Split:           SplitLessEqual64,
		TruncCategories: true,
		Link:            lm.link,
		Trees:           make([]Tree, lm.iterations*k),
		Names:           lm.h.names,
	}
	if lgbDefaultNames(f.Names) {
		f.Names = nil // trained without names
	}
	for i := range f.Trees {
		t, err := lm.trees[i].forestTree(i)
		if err != nil {
			return nil, err
		}
		t.Output = i % k
		f.Trees[i] = t
	}
	if lm.h.averageOutput {
		// LightGBM divides the sum by the number of iterations scored,
		// raw scores included, before the output transform.
		n, link := float64(lm.iterations), lm.link
		f.Link = func(row []float64) {
			for i := range row {
				row[i] /= n
			}
			if link != nil {
				link(row)
			}
		}
	}
	if err := f.Check(); err != nil {
		return nil, fmt.Errorf("load lightgbm: %w", err)
	}
	// Only the compiled form is kept: the trees as Nodes take three
	// times its memory, and nothing reads them once compiled.
	f.Trees = nil
	return f, nil
}

// forestTree converts tree i: splits are nodes 0..n-1, leaves follow.
// LightGBM sends a categorical split's listed codes left and a Forest
// sends them right, so those children swap.
func (t *lgbTree) forestTree(i int) (Tree, error) {
	n := len(t.feature)
	tr := Tree{Nodes: make([]Node, n+len(t.leafValue)), Leaves: t.leafValue}
	if t.linear {
		tr.Linear = make([]LinearLeaf, len(t.leafValue))
		k := 0
		for l, c := range t.numFeat {
			tr.Linear[l] = LinearLeaf{Const: t.leafConst[l], Features: t.leafFeat[k : k+int(c)], Coeffs: t.leafCoeff[k : k+int(c)]}
			k += int(c)
		}
	}
	for l := range t.leafValue {
		tr.Nodes[n+l] = Node{Feature: -1, Left: int32(l)}
	}
	child := func(c int32) int32 {
		if c < 0 {
			return int32(n) + ^c
		}
		return c
	}
	for j := range n {
		d := t.decision[j]
		node := Node{Feature: t.feature[j], Left: child(t.left[j]), Right: child(t.right[j])}
		if d&lgbCategorical != 0 {
			k := int(t.threshold[j])
			words := t.catBits[t.catBounds[k]:t.catBounds[k+1]]
			if len(words) > maxCatCode/32 {
				return Tree{}, lgbError("tree %d node %d: a category set beyond code %d", i, j, maxCatCode)
			}
			node.Cats = make([]uint64, (len(words)+1)/2)
			for w, v := range words {
				node.Cats[w/2] |= uint64(v) << (32 * (w % 2))
			}
			// What LightGBM sends right (unlisted, negative and too
			// large codes, NaN) goes left here.
			node.Left, node.Right = node.Right, node.Left
			node.DefaultLeft, node.UnknownLeft = true, true
			tr.Nodes[j] = node
			continue
		}
		node.Threshold = t.threshold[j]
		switch (d >> 2) & 3 {
		case lgbMissingNone: // NaN is 0
			node.DefaultLeft = 0 <= node.Threshold
		case lgbMissingZero:
			node.ZeroMissing = true
			node.DefaultLeft = d&lgbDefaultLeft != 0
		default:
			node.DefaultLeft = d&lgbDefaultLeft != 0
		}
		tr.Nodes[j] = node
	}
	return tr, nil
}

// lgbTrees checks the trees at the start of text and returns how many
// there are. When keep is not nil, it appends the parsed trees to *keep;
// otherwise it keeps nothing, and also refuses a model that splits one
// feature both as a number and as a category, which LightGBM never writes
// (a feature is categorical or not) and leaves would misread.
func lgbTrees(text string, features int, keep *[]lgbTree) (int, error) {
	var sc lgbScratch
	var kinds []uint8 // per feature: bit 0 split as a number, bit 1 as a category
	if keep == nil {
		kinds = make([]uint8, features)
	}
	kv := make(map[string]string, 16)
	for i := 0; ; i++ {
		var line string
		for text != "" && line == "" {
			line, text = lgbLine(text)
		}
		if !strings.HasPrefix(line, "Tree=") {
			return i, nil // "end of trees", then sections the model does not need
		}
		if line != "Tree="+strconv.Itoa(i) {
			return 0, lgbError("found %.40q where Tree=%d was expected", line, i)
		}
		clear(kv)
		var err error
		if text, err = lgbBlock(text, kv, "tree "+strconv.Itoa(i), false); err != nil {
			return 0, err
		}
		t, err := lgbCheckTree(i, kv, features, &sc)
		if err != nil {
			return 0, err
		}
		if keep != nil {
			*keep = append(*keep, t.clone())
			continue
		}
		for j, d := range t.decision {
			k := uint8(1)
			if d&lgbCategorical != 0 {
				k = 2
			}
			if kinds[t.feature[j]] |= k; kinds[t.feature[j]] == 3 {
				return 0, lgbError("tree %d node %d: feature %d is split both as a number and as a category", i, j, t.feature[j])
			}
		}
	}
}

// clone returns t with arrays of its own.
func (t lgbTree) clone() lgbTree {
	return lgbTree{
		leafValue: slices.Clone(t.leafValue),
		feature:   slices.Clone(t.feature),
		threshold: slices.Clone(t.threshold),
		decision:  slices.Clone(t.decision),
		left:      slices.Clone(t.left),
		right:     slices.Clone(t.right),
		catBounds: slices.Clone(t.catBounds),
		catBits:   slices.Clone(t.catBits),
		linear:    t.linear,
		leafConst: slices.Clone(t.leafConst),
		numFeat:   slices.Clone(t.numFeat),
		leafFeat:  slices.Clone(t.leafFeat),
		leafCoeff: slices.Clone(t.leafCoeff),
	}
}

// lgbLine splits off the first line of s, trimmed of spaces.
func lgbLine(s string) (line, rest string) {
	line, rest, _ = strings.Cut(s, "\n")
	return strings.TrimSpace(line), rest
}

// lgbBlock reads key=value lines into kv up to a blank line or the end of
// the text and returns the text after it. In the header a line without "="
// is a flag (average_output).
func lgbBlock(text string, kv map[string]string, name string, flags bool) (string, error) {
	for text != "" {
		var line string
		line, text = lgbLine(text)
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok && !flags {
			return "", lgbError("%s: line %.40q is not key=value", name, line)
		}
		if _, dup := kv[k]; dup {
			return "", lgbError("%s: %s appears twice", name, k)
		}
		kv[k] = v
	}
	return text, nil
}

func lgbParseHeader(kv map[string]string, size int) (lgbHeader, error) {
	h := lgbHeader{version: kv["version"], objective: kv["objective"], treeSizes: -1}
	switch h.version {
	case "v2", "v3", "v4":
	default:
		return h, lgbError("version %q is not supported (want v2, v3 or v4)", h.version)
	}
	var err error
	if h.numClass, err = lgbInt(kv, "num_class", "header"); err != nil {
		return h, err
	}
	perIteration, err := lgbInt(kv, "num_tree_per_iteration", "header")
	if err != nil {
		return h, err
	}
	if h.maxFeature, err = lgbInt(kv, "max_feature_idx", "header"); err != nil {
		return h, err
	}
	// Every count is capped by the file's size before anything is
	// allocated from it: a tree takes more than 16 bytes, a feature name
	// at least 2.
	if h.numClass < 1 || h.numClass > size/16 {
		return h, lgbError("num_class %d", h.numClass)
	}
	if perIteration != h.numClass {
		return h, lgbError("num_tree_per_iteration %d differs from num_class %d", perIteration, h.numClass)
	}
	if h.maxFeature < 0 || h.maxFeature >= size/2 {
		return h, lgbError("max_feature_idx %d", h.maxFeature)
	}
	if names := lgbCount(kv["feature_names"]); names != h.maxFeature+1 {
		return h, lgbError("feature_names lists %d names, max_feature_idx %d wants %d", names, h.maxFeature, h.maxFeature+1)
	}
	for name := range strings.FieldsSeq(kv["feature_names"]) {
		h.names = append(h.names, strings.Clone(name))
	}
	if s, ok := kv["tree_sizes"]; ok {
		h.treeSizes = lgbCount(s)
	}
	_, h.averageOutput = kv["average_output"]
	return h, nil
}

// lgbDefaultNames reports whether names are LightGBM's own for a model
// trained without feature names: Column_0, Column_1, ...
func lgbDefaultNames(names []string) bool {
	for i, n := range names {
		if n != "Column_"+strconv.Itoa(i) {
			return false
		}
	}
	return true
}

// lgbCount counts the space-separated values of s without allocating.
func lgbCount(s string) int {
	n := 0
	for range strings.FieldsSeq(s) {
		n++
	}
	return n
}

func lgbInt(kv map[string]string, key, where string) (int, error) {
	s, ok := kv[key]
	if !ok {
		return 0, lgbError("%s: no %s", where, key)
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, lgbError("%s: %s=%.40q is not an integer", where, key, s)
	}
	return v, nil
}

// lgbValues splits the value of key into exactly n fields, into *dst's
// array.
func lgbValues(kv map[string]string, key string, n int, tree int, dst *[]string) ([]string, error) {
	f := lgbFields(dst, kv[key])
	if len(f) != n {
		return nil, lgbError("tree %d: %s has %d values, want %d", tree, key, len(f), n)
	}
	return f, nil
}

// lgbFields splits s around spaces into *dst's array, which it keeps.
func lgbFields(dst *[]string, s string) []string {
	f := (*dst)[:0]
	for v := range strings.FieldsSeq(s) {
		f = append(f, v)
	}
	*dst = f
	return f
}

// lgbScratch keeps lgbCheckTree's buffers from one tree to the next, so
// that checking a whole file leaves little garbage behind: while the
// file's bytes are live, the garbage collector lets garbage grow to about
// their size before it runs, which would double what a load costs.
type lgbScratch struct {
	fields [8][]string
	tree   lgbTree // its arrays
	stack  []int32
	taken  []bool
}

// lgbCheckTree parses and checks tree i (its key=value lines in kv) so
// that neither seer's Forest nor leaves can allocate wildly, index out of
// range or loop while reading or scoring it: counts match the values
// present, features, children and category sets are in range, and every
// node is reached from the root exactly once. The tree's arrays are sc's,
// reused for the next tree.
func lgbCheckTree(i int, kv map[string]string, features int, sc *lgbScratch) (lgbTree, error) {
	var t lgbTree
	where := "tree " + strconv.Itoa(i)
	numLeaves, err := lgbInt(kv, "num_leaves", where)
	if err != nil {
		return t, err
	}
	numCat, err := lgbInt(kv, "num_cat", where)
	if err != nil {
		return t, err
	}
	if numCat < 0 {
		return t, lgbError("%s: num_cat %d", where, numCat)
	}
	// num_leaves must match the values actually present, which caps
	// every allocation below by the size of the file.
	leafValues := lgbFields(&sc.fields[5], kv["leaf_value"])
	if numLeaves < 1 || numLeaves != len(leafValues) {
		return t, lgbError("%s: num_leaves %d with %d leaf values", where, numLeaves, len(leafValues))
	}
	st := &sc.tree
	t.leafValue = resize(&st.leafValue, numLeaves)
	for k, s := range leafValues {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return t, lgbError("%s: leaf value %.40q", where, s)
		}
		t.leafValue[k] = v
	}
	if err := t.parseLinear(kv, i, features, sc); err != nil {
		return t, err
	}
	if numLeaves == 1 {
		return t, nil
	}
	nodes := numLeaves - 1
	var fields [5][]string
	for k, key := range [...]string{"split_feature", "threshold", "decision_type", "left_child", "right_child"} {
		if fields[k], err = lgbValues(kv, key, nodes, i, &sc.fields[k]); err != nil {
			return t, err
		}
	}
	splitFeature, threshold, decisionType, leftChild, rightChild := fields[0], fields[1], fields[2], fields[3], fields[4]

	if numCat > 0 {
		catBounds, err := lgbValues(kv, "cat_boundaries", numCat+1, i, &sc.fields[6])
		if err != nil {
			return t, err
		}
		t.catBounds = resize(&st.catBounds, len(catBounds))
		for k, s := range catBounds {
			v, err := strconv.ParseUint(s, 10, 32)
			if err != nil || (k == 0 && v != 0) || (k > 0 && uint32(v) < t.catBounds[k-1]) {
				return t, lgbError("%s: cat_boundaries %.60q", where, kv["cat_boundaries"])
			}
			t.catBounds[k] = uint32(v)
		}
		catBits, err := lgbValues(kv, "cat_threshold", int(t.catBounds[numCat]), i, &sc.fields[7])
		if err != nil {
			return t, err
		}
		t.catBits = resize(&st.catBits, len(catBits))
		for k, s := range catBits {
			v, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return t, lgbError("%s: cat_threshold %.40q", where, s)
			}
			t.catBits[k] = uint32(v)
		}
	}

	// Each node other than the root and each leaf must be the child of
	// exactly one node.
	t.feature = resize(&st.feature, nodes)
	t.threshold = resize(&st.threshold, nodes)
	t.decision = resize(&st.decision, nodes)
	t.left = resize(&st.left, nodes)
	t.right = resize(&st.right, nodes)
	taken := resize(&sc.taken, nodes+numLeaves)
	clear(taken)
	for n := range nodes {
		f, err := strconv.ParseUint(splitFeature[n], 10, 32)
		if err != nil || f >= uint64(features) {
			return t, lgbError("%s node %d: split_feature %.40q (the model has %d features)", where, n, splitFeature[n], features)
		}
		th, err := strconv.ParseFloat(threshold[n], 64)
		if err != nil || math.IsNaN(th) {
			return t, lgbError("%s node %d: threshold %.40q", where, n, threshold[n])
		}
		d, err := strconv.ParseUint(decisionType[n], 10, 32)
		if err != nil || d > 15 || (d>>2)&3 == 3 {
			return t, lgbError("%s node %d: decision_type %.40q", where, n, decisionType[n])
		}
		if d&lgbCategorical != 0 {
			if th != math.Trunc(th) || th < 0 || th >= float64(numCat) {
				return t, lgbError("%s node %d: category set %.40q of %d", where, n, threshold[n], numCat)
			}
			empty := true
			for _, b := range t.catBits[t.catBounds[int(th)]:t.catBounds[int(th)+1]] {
				empty = empty && b == 0
			}
			if empty {
				return t, lgbError("%s node %d: empty category set", where, n)
			}
		}
		t.feature[n], t.threshold[n], t.decision[n] = int32(f), th, uint8(d)
		for k, s := range [2]string{leftChild[n], rightChild[n]} {
			c, err := strconv.ParseInt(s, 10, 32)
			if err != nil {
				return t, lgbError("%s node %d: child %.40q", where, n, s)
			}
			slot := int(c)
			if c < 0 {
				slot = nodes + int(^c)
			}
			if c == 0 || c >= int64(nodes) || slot >= len(taken) {
				return t, lgbError("%s node %d: child %d out of range", where, n, c)
			}
			if taken[slot] {
				return t, lgbError("%s node %d: child %d has two parents", where, n, c)
			}
			taken[slot] = true
			if k == 0 {
				t.left[n] = int32(c)
			} else {
				t.right[n] = int32(c)
			}
		}
	}
	// With one parent each, the nodes reachable from the root form a tree;
	// every node must be reachable (no detached cycles).
	stack := append(sc.stack[:0], 0)
	defer func() { sc.stack = stack }()
	seen := 0
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		seen++
		for _, c := range [2]int32{t.left[n], t.right[n]} {
			if c > 0 {
				stack = append(stack, c)
			}
		}
	}
	if seen != nodes {
		return t, lgbError("%s: %d of %d nodes are reachable from the root", where, seen, nodes)
	}
	return t, nil
}

// parseLinear reads the linear models of a linear tree's leaves:
// leaf_const, num_features, leaf_features and leaf_coeff, LightGBM 4's
// layout (Tree::ToString when is_linear_).
func (t *lgbTree) parseLinear(kv map[string]string, i int, features int, sc *lgbScratch) error {
	where := "tree " + strconv.Itoa(i)
	switch kv["is_linear"] {
	case "", "0":
		for _, key := range [...]string{"leaf_const", "num_features", "leaf_features", "leaf_coeff"} {
			if _, ok := kv[key]; ok {
				return lgbError("%s: %s in a tree that is not linear (is_linear=0)", where, key)
			}
		}
		return nil
	case "1":
	default:
		return lgbError("%s: is_linear=%.40q", where, kv["is_linear"])
	}
	st := &sc.tree
	n := len(t.leafValue)
	t.linear = true
	t.leafConst = resize(&st.leafConst, n)
	t.numFeat = resize(&st.numFeat, n)
	consts, err := lgbValues(kv, "leaf_const", n, i, &sc.fields[6])
	if err != nil {
		return err
	}
	for k, s := range consts {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return lgbError("%s: leaf_const %.40q", where, s)
		}
		t.leafConst[k] = v
	}
	counts, err := lgbValues(kv, "num_features", n, i, &sc.fields[6])
	if err != nil {
		return err
	}
	total := 0
	for k, s := range counts {
		v, err := strconv.ParseUint(s, 10, 31)
		if err != nil {
			return lgbError("%s: num_features %.40q", where, s)
		}
		t.numFeat[k] = int32(v)
		total += int(v) // capped below by the values present
		if total > len(kv["leaf_features"]) {
			return lgbError("%s: num_features add up to more than leaf_features holds", where)
		}
	}
	feats, err := lgbValues(kv, "leaf_features", total, i, &sc.fields[6])
	if err != nil {
		return err
	}
	t.leafFeat = resize(&st.leafFeat, total)
	for k, s := range feats {
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil || v >= uint64(features) {
			return lgbError("%s: leaf_features %.40q (the model has %d features)", where, s, features)
		}
		t.leafFeat[k] = int32(v)
	}
	coeffs, err := lgbValues(kv, "leaf_coeff", total, i, &sc.fields[6])
	if err != nil {
		return err
	}
	t.leafCoeff = resize(&st.leafCoeff, total)
	for k, s := range coeffs {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return lgbError("%s: leaf_coeff %.40q", where, s)
		}
		t.leafCoeff[k] = v
	}
	return nil
}

// resize returns *s resized to n, keeping its array in *s for the next
// call when it is large enough; the values are not cleared.
func resize[T any](s *[]T, n int) []T {
	*s = slices.Grow((*s)[:0], n)[:n]
	return *s
}

// lgbLink returns the output transform LightGBM applies to a model's raw
// scores for its objective line (ObjectiveFunction::ConvertOutput after
// loading the objective from the model's text), or nil for none.
func lgbLink(objective string, numClass int) (func(row []float64), error) {
	f := strings.Fields(objective)
	if len(f) == 0 {
		// Written without an objective (a custom objective in LightGBM 4):
		// LightGBM predicts raw scores.
		return nil, nil
	}
	name := f[0]
	sqrt := false
	params := make(map[string]float64)
	for _, p := range f[1:] {
		if p == "sqrt" {
			sqrt = true
			continue
		}
		k, v, ok := strings.Cut(p, ":")
		x, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil {
			return nil, lgbError("objective %q: parameter %q", objective, p)
		}
		params[k] = x
	}
	single := func(link func([]float64)) (func([]float64), error) {
		if numClass != 1 {
			return nil, lgbError("objective %q with num_class %d", objective, numClass)
		}
		return link, nil
	}
	sigmoid := func() (float64, error) {
		s, ok := params["sigmoid"]
		if !ok || !(s > 0) {
			return 0, lgbError("objective %q: want a positive sigmoid parameter", objective)
		}
		return s, nil
	}
	classes := func() error {
		if c, ok := params["num_class"]; !ok || c != float64(numClass) {
			return lgbError("objective %q: num_class does not match the header's %d", objective, numClass)
		}
		return nil
	}
	switch name {
	case "regression", "regression_l1", "quantile", "fair", "mape", "mean_absolute_percentage_error":
		// RegressionL2loss::ConvertOutput: sign(x)*x*x when trained on
		// square roots of the labels (reg_sqrt), x otherwise.
		if sqrt {
			return single(func(row []float64) { row[0] *= math.Abs(row[0]) })
		}
		return single(nil)
	case "huber", "lambdarank", "rank_xendcg":
		return single(nil)
	case "none", "null", "custom", "na":
		return nil, nil
	case "poisson", "gamma", "tweedie":
		return single(func(row []float64) { row[0] = math.Exp(row[0]) })
	case "binary":
		s, err := sigmoid()
		if err != nil {
			return nil, err
		}
		return single(func(row []float64) { row[0] = 1 / (1 + math.Exp(-s*row[0])) })
	case "cross_entropy", "xentropy":
		return single(func(row []float64) { row[0] = 1 / (1 + math.Exp(-row[0])) })
	case "cross_entropy_lambda", "xentlambda":
		return single(func(row []float64) { row[0] = math.Log(1 + math.Exp(row[0])) })
	case "multiclass":
		if err := classes(); err != nil {
			return nil, err
		}
		return softmax, nil
	case "multiclassova":
		if err := classes(); err != nil {
			return nil, err
		}
		s, err := sigmoid()
		if err != nil {
			return nil, err
		}
		return func(row []float64) {
			for i, v := range row {
				row[i] = 1 / (1 + math.Exp(-s*v))
			}
		}, nil
	}
	return nil, lgbError("objective %q has no known output transform (load it with raw output)", objective)
}

// softmax is LightGBM's Common::Softmax, in place.
func softmax(row []float64) {
	hi := row[0]
	for _, v := range row[1:] {
		hi = max(hi, v)
	}
	sum := 0.0
	for i, v := range row {
		row[i] = math.Exp(v - hi)
		sum += row[i]
	}
	for i := range row {
		row[i] /= sum
	}
}
