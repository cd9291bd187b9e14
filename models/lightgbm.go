package models

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/dmitryikh/leaves"
)

// LightGBM text models (versions v2 to v4) are evaluated by
// github.com/dmitryikh/leaves, but only after loadLightGBM has parsed and
// checked the whole file itself. leaves trusts what it reads: it allocates
// from num_leaves and indexes with child, feature and category numbers
// without checking them, so a corrupt file could exhaust memory, crash the
// process or make Predict loop forever. Once checked, the trees are rewritten
// in the plain v3 layout leaves reads, keeping only what leaves uses (this
// also drops the v4 parser section, the feature names and the parameters),
// and leaves always scores raw margins: the objective's output transform is
// applied here, the way LightGBM's own predictor applies it.

var _ Model = (*lightGBM)(nil)

type lightGBM struct {
	ens        *leaves.Ensemble
	features   int
	outputs    int
	iterations int // 0 scores every iteration
	// catCols lists the columns read by categorical splits; Predict sends
	// their missing and out-of-range values right the same way on every
	// platform (see catRow).
	catCols []int
	// link turns one row's margins into outputs in place; nil keeps them.
	link func(row []float64)
}

// NumFeatures returns max_feature_idx+1.
func (m *lightGBM) NumFeatures() int { return m.features }

// NumOutputs returns num_class (1 for binary and regression models).
func (m *lightGBM) NumOutputs() int { return m.outputs }

// Predict scores nrows rows of x into dst, on the calling goroutine.
func (m *lightGBM) Predict(dst, x []float64, nrows int) error {
	nf, no := m.features, m.outputs
	if nrows < 0 || nrows > len(x)/nf || nrows > len(dst)/no {
		return fmt.Errorf("predict: %d inputs and %d outputs for %d rows of %d features and %d outputs",
			len(x), len(dst), nrows, nf, no)
	}
	var scratch []float64
	for r := range nrows {
		row := x[r*nf : (r+1)*nf]
		if m.catCols != nil {
			row = m.catRow(row, &scratch)
		}
		out := dst[r*no : (r+1)*no]
		if err := m.ens.Predict(row, m.iterations, out); err != nil {
			return fmt.Errorf("predict: %w", err)
		}
		if m.link != nil {
			m.link(out)
		}
	}
	return nil
}

// catRow returns row, or a copy of it in *scratch with -1 in every
// categorical column whose value LightGBM sends right without looking at
// the category: NaN, values whose integer part is negative, and values
// too large for an int32. leaves converts those with int32(x), whose result
// Go leaves to the platform (amd64 and arm64 differ for NaN), so they are
// replaced by a value every platform converts alike.
func (m *lightGBM) catRow(row []float64, scratch *[]float64) []float64 {
	fixed := false
	for _, c := range m.catCols {
		v := row[c]
		if v > -1 && v < math.MaxInt32+1 {
			continue
		}
		if !fixed {
			if *scratch == nil {
				*scratch = make([]float64, len(row))
			}
			copy(*scratch, row)
			fixed = true
		}
		(*scratch)[c] = -1
	}
	if fixed {
		return *scratch
	}
	return row
}

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
	treeSizes     int // number of tree_sizes values; -1 when absent
}

// loadLightGBM reads a LightGBM text model.
func loadLightGBM(data []byte, opt Options) (Model, error) {
	// The text is read in place, not copied: a copy would double what an
	// artifact costs while it loads. Load's caller leaves data alone while
	// the loader runs, and nothing kept after loading points into it (the
	// trees leaves reads are written anew, and names and values are parsed
	// or copied into messages).
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
	var link func([]float64)
	if !opt.Raw {
		if link, err = lgbLink(h.objective, h.numClass); err != nil {
			return nil, err
		}
	}

	// Check every tree, then write them again in the layout leaves reads.
	// Checking the whole file first means that a broken one (truncated,
	// junk after a valid beginning) is refused while the loader holds only
	// one tree beside the file's bytes.
	cats := make(map[int]bool)
	sizes, err := lgbTrees(rest, features, nil, cats)
	if err != nil {
		return nil, err
	}
	n := len(sizes)
	switch {
	case n == 0:
		return nil, lgbError("no trees")
	case h.treeSizes >= 0 && h.treeSizes != n:
		return nil, lgbError("tree_sizes lists %d trees but the file holds %d (truncated?)", h.treeSizes, n)
	case n%h.numClass != 0:
		return nil, lgbError("%d trees is not a multiple of num_class %d", n, h.numClass)
	}
	var trees strings.Builder
	if sizes, err = lgbTrees(rest, features, &trees, cats); err != nil {
		return nil, err
	}
	iterations := n / h.numClass
	if opt.Iterations < 0 || opt.Iterations > iterations {
		return nil, lgbError("iterations %d: the model has %d", opt.Iterations, iterations)
	}

	var head strings.Builder
	fmt.Fprintf(&head, "tree\nversion=v3\nnum_class=%d\nnum_tree_per_iteration=%d\nlabel_index=0\nmax_feature_idx=%d\n",
		h.numClass, h.numClass, h.maxFeature)
	if h.averageOutput {
		head.WriteString("average_output\n")
	}
	head.WriteString("tree_sizes=")
	for i, s := range sizes {
		if i > 0 {
			head.WriteByte(' ')
		}
		head.WriteString(strconv.Itoa(s))
	}
	head.WriteString("\n\n")
	r := bufio.NewReader(io.MultiReader(strings.NewReader(head.String()), strings.NewReader(trees.String())))
	ens, err := leaves.LGEnsembleFromReader(r, false)
	if err != nil {
		return nil, lgbError("leaves: %v", err)
	}
	if ens.NEstimators() != iterations || ens.NRawOutputGroups() != h.numClass {
		return nil, lgbError("leaves read %d iterations of %d outputs, want %d of %d",
			ens.NEstimators(), ens.NRawOutputGroups(), iterations, h.numClass)
	}
	m := &lightGBM{
		ens:        ens,
		features:   features,
		outputs:    h.numClass,
		iterations: opt.Iterations,
		link:       link,
	}
	for c := range features {
		if cats[c] {
			m.catCols = append(m.catCols, c)
		}
	}
	return m, nil
}

// lgbTrees checks the trees at the start of text, writing each in the
// layout leaves reads to w unless w is nil, and returns the size of each
// tree as written (0 when w is nil).
func lgbTrees(text string, features int, w *strings.Builder, cats map[int]bool) ([]int, error) {
	var sc lgbScratch
	var sizes []int
	kv := make(map[string]string, 16)
	for {
		var line string
		for text != "" && line == "" {
			line, text = lgbLine(text)
		}
		if !strings.HasPrefix(line, "Tree=") {
			return sizes, nil // "end of trees", then sections leaves does not need
		}
		i := len(sizes)
		if line != "Tree="+strconv.Itoa(i) {
			return nil, lgbError("found %.40q where Tree=%d was expected", line, i)
		}
		clear(kv)
		var err error
		if text, err = lgbBlock(text, kv, "tree "+strconv.Itoa(i), false); err != nil {
			return nil, err
		}
		if w == nil {
			if err := lgbCheckTree(i, kv, features, nil, cats, &sc); err != nil {
				return nil, err
			}
			sizes = append(sizes, 0)
			continue
		}
		start := w.Len()
		fmt.Fprintf(w, "Tree=%d\n", i)
		if err := lgbCheckTree(i, kv, features, w, cats, &sc); err != nil {
			return nil, err
		}
		w.WriteString("\n")
		sizes = append(sizes, w.Len()-start)
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
	if s, ok := kv["tree_sizes"]; ok {
		h.treeSizes = lgbCount(s)
	}
	_, h.averageOutput = kv["average_output"]
	return h, nil
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
	fields       [8][]string
	bounds, bits []uint32
	children     []int32
	stack        []int32
	taken        []bool
}

// lgbCheckTree checks tree i (its key=value lines in kv) so that leaves can
// neither allocate wildly, index out of range nor loop while reading or
// scoring it, and writes the keys leaves reads to w. The numbers are parsed
// with the same functions leaves uses. Columns read by categorical splits
// are added to cats. When w is nil, the tree is only checked.
func lgbCheckTree(i int, kv map[string]string, features int, w *strings.Builder, cats map[int]bool, sc *lgbScratch) error {
	_, leafConst := kv["leaf_const"]
	_, leafCoeff := kv["leaf_coeff"]
	if kv["is_linear"] == "1" || leafConst || leafCoeff {
		return lgbError("tree %d is a linear tree (a model trained with linear_tree=true): "+
			"its leaves hold linear models, which this evaluator does not support; retrain with linear_tree=false", i)
	}
	where := "tree " + strconv.Itoa(i)
	numLeaves, err := lgbInt(kv, "num_leaves", where)
	if err != nil {
		return err
	}
	numCat, err := lgbInt(kv, "num_cat", where)
	if err != nil {
		return err
	}
	if numCat < 0 {
		return lgbError("%s: num_cat %d", where, numCat)
	}
	// num_leaves must match the values actually present, which caps
	// every allocation below by the size of the file.
	leafValues := lgbFields(&sc.fields[5], kv["leaf_value"])
	if numLeaves < 1 || numLeaves != len(leafValues) {
		return lgbError("%s: num_leaves %d with %d leaf values", where, numLeaves, len(leafValues))
	}
	for _, s := range leafValues {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return lgbError("%s: leaf value %.40q", where, s)
		}
	}
	if numLeaves == 1 {
		if w != nil {
			fmt.Fprintf(w, "num_leaves=1\nnum_cat=0\nleaf_value=%s\n", leafValues[0])
		}
		return nil
	}
	nodes := numLeaves - 1
	var fields [5][]string
	for k, key := range [...]string{"split_feature", "threshold", "decision_type", "left_child", "right_child"} {
		if fields[k], err = lgbValues(kv, key, nodes, i, &sc.fields[k]); err != nil {
			return err
		}
	}
	splitFeature, threshold, decisionType, leftChild, rightChild := fields[0], fields[1], fields[2], fields[3], fields[4]

	var bounds, bits []uint32
	var catBounds, catBits []string
	if numCat > 0 {
		if catBounds, err = lgbValues(kv, "cat_boundaries", numCat+1, i, &sc.fields[6]); err != nil {
			return err
		}
		bounds = slices.Grow(sc.bounds[:0], len(catBounds))[:len(catBounds)]
		sc.bounds = bounds
		for k, s := range catBounds {
			v, err := strconv.ParseUint(s, 10, 32)
			if err != nil || (k == 0 && v != 0) || (k > 0 && uint32(v) < bounds[k-1]) {
				return lgbError("%s: cat_boundaries %.60q", where, kv["cat_boundaries"])
			}
			bounds[k] = uint32(v)
		}
		if catBits, err = lgbValues(kv, "cat_threshold", int(bounds[numCat]), i, &sc.fields[7]); err != nil {
			return err
		}
		bits = slices.Grow(sc.bits[:0], len(catBits))[:len(catBits)]
		sc.bits = bits
		for k, s := range catBits {
			v, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return lgbError("%s: cat_threshold %.40q", where, s)
			}
			bits[k] = uint32(v)
		}
	}

	// Each node other than the root and each leaf must be the child of
	// exactly one node.
	children := slices.Grow(sc.children[:0], 2*nodes)[:2*nodes] // every element is set below
	taken := slices.Grow(sc.taken[:0], nodes+numLeaves)[:nodes+numLeaves]
	clear(taken)
	sc.children, sc.taken = children, taken
	for n := range nodes {
		f, err := strconv.ParseUint(splitFeature[n], 10, 32)
		if err != nil || f >= uint64(features) {
			return lgbError("%s node %d: split_feature %.40q (the model has %d features)", where, n, splitFeature[n], features)
		}
		t, err := strconv.ParseFloat(threshold[n], 64)
		if err != nil || math.IsNaN(t) {
			return lgbError("%s node %d: threshold %.40q", where, n, threshold[n])
		}
		d, err := strconv.ParseUint(decisionType[n], 10, 32)
		if err != nil || d > 15 || (d>>2)&3 == 3 {
			return lgbError("%s node %d: decision_type %.40q", where, n, decisionType[n])
		}
		if d&1 != 0 {
			if t != math.Trunc(t) || t < 0 || t >= float64(numCat) {
				return lgbError("%s node %d: category set %.40q of %d", where, n, threshold[n], numCat)
			}
			set := bits[bounds[int(t)]:bounds[int(t)+1]]
			empty := true
			for _, b := range set {
				empty = empty && b == 0
			}
			if empty {
				return lgbError("%s node %d: empty category set", where, n)
			}
			cats[int(f)] = true
		}
		for k, s := range [2]string{leftChild[n], rightChild[n]} {
			c, err := strconv.ParseInt(s, 10, 32)
			if err != nil {
				return lgbError("%s node %d: child %.40q", where, n, s)
			}
			slot := int(c)
			if c < 0 {
				slot = nodes + int(^c)
			}
			if c == 0 || c >= int64(nodes) || slot >= len(taken) {
				return lgbError("%s node %d: child %d out of range", where, n, c)
			}
			if taken[slot] {
				return lgbError("%s node %d: child %d has two parents", where, n, c)
			}
			taken[slot] = true
			children[2*n+k] = int32(c)
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
		for _, c := range children[2*n : 2*n+2] {
			if c > 0 {
				stack = append(stack, c)
			}
		}
	}
	if seen != nodes {
		return lgbError("%s: %d of %d nodes are reachable from the root", where, seen, nodes)
	}
	if w == nil {
		return nil
	}

	fmt.Fprintf(w, "num_leaves=%d\nnum_cat=%d\n", numLeaves, numCat)
	for _, kf := range [...]struct {
		key    string
		values []string
	}{
		{"split_feature", splitFeature},
		{"threshold", threshold},
		{"decision_type", decisionType},
		{"left_child", leftChild},
		{"right_child", rightChild},
		{"leaf_value", leafValues},
		{"cat_boundaries", catBounds},
		{"cat_threshold", catBits},
	} {
		if kf.values == nil {
			continue
		}
		w.WriteString(kf.key)
		w.WriteByte('=')
		for k, v := range kf.values {
			if k > 0 {
				w.WriteByte(' ')
			}
			w.WriteString(v)
		}
		w.WriteByte('\n')
	}
	return nil
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
