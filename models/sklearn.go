package models

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
)

// The seer-sklearn JSON format, written by tools/sklearn_export.py and
// described in docs/sklearn.md.
const (
	sklearnFormat  = "seer-sklearn"
	sklearnVersion = 1

	maxSklearnFeatures = 1 << 20
	maxSklearnClasses  = 4096
	maxSklearnTrees    = 1 << 20
	// maxCategory is the largest category code: scikit-learn's
	// HistGradientBoosting keeps categories in 256-bit bitsets.
	maxCategory = 255
)

type sklearnDoc struct {
	Format          string         `json:"format"`
	Version         jsonInt        `json:"version"`
	Kind            string         `json:"kind"`
	SklearnVersion  string         `json:"sklearn_version"`
	Features        jsonInt        `json:"n_features"`
	FeatureNames    []string       `json:"feature_names"`
	Classes         []any          `json:"classes"`
	Link            string         `json:"link"`
	Scaler          *sklearnScaler `json:"scaler"`
	Base            []jsonFloat    `json:"base"`
	KnownCategories [][]jsonInt    `json:"known_categories"`
	Trees           []sklearnTree  `json:"trees"`
	Coef            [][]jsonFloat  `json:"coef"`
	Intercept       []jsonFloat    `json:"intercept"`
}

type sklearnScaler struct {
	Mean  []jsonFloat `json:"mean"`
	Scale []jsonFloat `json:"scale"`
}

type sklearnTree struct {
	Output         jsonInt         `json:"output"`
	Feature        []jsonInt       `json:"feature"`
	Threshold      []jsonThreshold `json:"threshold"`
	Left           []jsonInt       `json:"left"`
	Right          []jsonInt       `json:"right"`
	MissingLeft    []jsonBool      `json:"missing_left"`
	Value          []jsonFloat     `json:"value"`
	CategoriesLeft [][]jsonInt     `json:"categories_left"`
}

// sklearnFamily groups estimators that predict the same way.
type sklearnFamily uint8

const (
	// familyBoosting: GradientBoosting. Decision trees (float32 inputs,
	// x <= threshold), one tree per output per stage, summed on a base.
	familyBoosting sklearnFamily = iota + 1
	// familyHistBoosting: HistGradientBoosting. float64 x <= threshold,
	// missing values and categorical splits, summed on a base.
	familyHistBoosting
	// familyForest: RandomForest, ExtraTrees, DecisionTree. Decision trees
	// whose leaves hold every output, averaged.
	familyForest
	// familyLinear: LogisticRegression, LinearRegression, Ridge.
	familyLinear
)

type sklearnKind struct {
	family     sklearnFamily
	classifier bool
}

var sklearnKinds = map[string]sklearnKind{
	"GradientBoostingClassifier":     {familyBoosting, true},
	"GradientBoostingRegressor":      {familyBoosting, false},
	"HistGradientBoostingClassifier": {familyHistBoosting, true},
	"HistGradientBoostingRegressor":  {familyHistBoosting, false},
	"RandomForestClassifier":         {familyForest, true},
	"RandomForestRegressor":          {familyForest, false},
	"ExtraTreesClassifier":           {familyForest, true},
	"ExtraTreesRegressor":            {familyForest, false},
	"DecisionTreeClassifier":         {familyForest, true},
	"DecisionTreeRegressor":          {familyForest, false},
	"LogisticRegression":             {familyLinear, true},
	"LinearRegression":               {familyLinear, false},
	"Ridge":                          {familyLinear, false},
}

// links returns the links a kind accepts with the given number of
// outputs (1 for regressors and binary classifiers).
func (k sklearnKind) links(outputs int) []string {
	if !k.classifier {
		switch k.family {
		case familyHistBoosting:
			return []string{"identity", "exp"}
		default:
			return []string{"identity"}
		}
	}
	binary := outputs == 1
	switch k.family {
	case familyBoosting:
		if binary {
			return []string{"logistic", "logistic_2x"}
		}
		return []string{"softmax"}
	case familyHistBoosting:
		if binary {
			return []string{"logistic"}
		}
		return []string{"softmax"}
	case familyForest:
		return []string{"identity"}
	default: // LogisticRegression
		if binary {
			return []string{"logistic", "softmax"}
		}
		return []string{"softmax", "ovr"}
	}
}

// loadSklearn parses a model exported by tools/sklearn_export.py.
func loadSklearn(data []byte, opt Options) (Model, error) {
	var doc sklearnDoc
	if err := decodeStrict(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: sklearn: %v", ErrArtifact, err)
	}
	m, err := doc.model(opt)
	if err != nil {
		if errors.Is(err, ErrArtifact) { // from Forest.Check, already marked
			return nil, fmt.Errorf("sklearn: %w", err)
		}
		return nil, fmt.Errorf("%w: sklearn: %v", ErrArtifact, err)
	}
	return m, nil
}

// model validates the document and compiles it.
func (d *sklearnDoc) model(opt Options) (Model, error) {
	if d.Format != sklearnFormat {
		return nil, fmt.Errorf("format %q (want %q)", d.Format, sklearnFormat)
	}
	if d.Version != sklearnVersion {
		return nil, fmt.Errorf("version %d (this seer reads version %d)", d.Version, sklearnVersion)
	}
	kind, ok := sklearnKinds[d.Kind]
	if !ok {
		return nil, fmt.Errorf("unknown kind %q", d.Kind)
	}
	nf := int(d.Features)
	if nf < 1 || nf > maxSklearnFeatures {
		return nil, fmt.Errorf("n_features %d (want 1 to %d)", nf, maxSklearnFeatures)
	}
	if err := d.checkNames(opt.Inputs); err != nil {
		return nil, err
	}

	outputs := 1
	if kind.classifier {
		if err := checkClasses(d.Classes); err != nil {
			return nil, err
		}
		if len(d.Classes) > 2 {
			outputs = len(d.Classes)
		}
	} else if d.Classes != nil {
		return nil, fmt.Errorf("%s: classes given to a regressor", d.Kind)
	}

	allowed := kind.links(outputs)
	if !slices.Contains(allowed, d.Link) {
		return nil, fmt.Errorf("%s with %d outputs: link %q (want one of %v)", d.Kind, outputs, d.Link, allowed)
	}
	l := linkNames[d.Link]
	if kind.family == familyBoosting && l == linkSoftmax {
		l = linkSoftmaxLSE
	}
	if opt.Raw {
		if kind.family == familyForest {
			return nil, fmt.Errorf("%s has no raw margins (no decision_function)", d.Kind)
		}
		l = linkIdentity
	}
	if opt.Iterations > 0 && kind.family != familyBoosting && kind.family != familyHistBoosting {
		return nil, fmt.Errorf("%s: iterations apply to boosted models only", d.Kind)
	}

	var pre preprocess
	if d.Scaler != nil {
		if len(d.Scaler.Mean) != nf || len(d.Scaler.Scale) != nf {
			return nil, fmt.Errorf("scaler: %d means and %d scales for %d features", len(d.Scaler.Mean), len(d.Scaler.Scale), nf)
		}
		pre.mean, pre.scale = floats(d.Scaler.Mean), floats(d.Scaler.Scale)
		if slices.Contains(pre.scale, 0) {
			return nil, fmt.Errorf("scaler: a scale is zero")
		}
	}

	var inner Model
	var err error
	if kind.family == familyLinear {
		if d.Trees != nil || d.Base != nil || d.KnownCategories != nil {
			return nil, fmt.Errorf("%s: trees, base or known_categories in a linear model", d.Kind)
		}
		inner, err = d.linear(nf, outputs, l)
	} else {
		if d.Coef != nil || d.Intercept != nil {
			return nil, fmt.Errorf("%s: coef or intercept in a tree model", d.Kind)
		}
		inner, err = d.forest(kind, nf, outputs, l, opt, &pre)
	}
	if err != nil {
		return nil, err
	}
	if pre.mean == nil && pre.catCols == nil {
		return inner, nil
	}
	return newPreprocessed(inner, pre), nil
}

func (d *sklearnDoc) checkNames(inputs []string) error {
	nf := int(d.Features)
	if d.FeatureNames != nil && len(d.FeatureNames) != nf {
		return fmt.Errorf("%d feature names for %d features", len(d.FeatureNames), nf)
	}
	if inputs == nil {
		return nil
	}
	if len(inputs) != nf {
		return fmt.Errorf("%d inputs for a model of %d features", len(inputs), nf)
	}
	for i, name := range d.FeatureNames {
		if name != inputs[i] {
			return fmt.Errorf("input %d is %q, the model's feature %d is %q", i+1, inputs[i], i+1, name)
		}
	}
	return nil
}

func checkClasses(classes []any) error {
	if len(classes) < 2 || len(classes) > maxSklearnClasses {
		return fmt.Errorf("%d classes (want 2 to %d)", len(classes), maxSklearnClasses)
	}
	seen := make(map[any]bool, len(classes))
	for i, c := range classes {
		switch c.(type) {
		case string, float64:
		default:
			return fmt.Errorf("class %d: want a number or a string, got %v", i, c)
		}
		if seen[c] {
			return fmt.Errorf("class %v appears twice", c)
		}
		seen[c] = true
	}
	return nil
}

// linear compiles coef and intercept.
func (d *sklearnDoc) linear(nf, outputs int, l link) (Model, error) {
	if len(d.Coef) != outputs || len(d.Intercept) != outputs {
		return nil, fmt.Errorf("%s: %d coef rows and %d intercepts for %d outputs", d.Kind, len(d.Coef), len(d.Intercept), outputs)
	}
	m := &linearModel{
		features:  nf,
		margins:   outputs,
		coef:      make([]float64, 0, outputs*nf),
		intercept: floats(d.Intercept),
		link:      l,
		names:     d.FeatureNames,
	}
	for j, row := range d.Coef {
		if len(row) != nf {
			return nil, fmt.Errorf("coef row %d: %d values for %d features", j, len(row), nf)
		}
		for _, w := range row {
			m.coef = append(m.coef, float64(w))
		}
	}
	return m, nil
}

// forest compiles the trees into a Forest.
func (d *sklearnDoc) forest(kind sklearnKind, nf, outputs int, l link, opt Options, pre *preprocess) (Model, error) {
	if len(d.Trees) == 0 || len(d.Trees) > maxSklearnTrees {
		return nil, fmt.Errorf("%s: %d trees (want 1 to %d)", d.Kind, len(d.Trees), maxSklearnTrees)
	}
	f := &Forest{Features: nf, Outputs: outputs, Split: SplitLess32, Names: d.FeatureNames}
	width := 1
	trees := d.Trees
	switch kind.family {
	case familyForest:
		if d.Base != nil {
			return nil, fmt.Errorf("%s: an averaging forest has no base", d.Kind)
		}
		width = outputs
		n := float64(len(trees))
		f.Link = func(row []float64) {
			for i := range row {
				row[i] /= n
			}
		}
	default:
		if len(d.Base) != outputs {
			return nil, fmt.Errorf("%s: %d base values for %d outputs", d.Kind, len(d.Base), outputs)
		}
		f.Base = floats(d.Base)
		if l != linkIdentity {
			f.Link = l.apply
		}
		if len(trees)%outputs != 0 {
			return nil, fmt.Errorf("%s: %d trees is not a whole number of iterations of %d", d.Kind, len(trees), outputs)
		}
		if it := opt.Iterations; it > 0 {
			if stages := len(trees) / outputs; it > stages {
				return nil, fmt.Errorf("%s: iterations %d, the model has %d", d.Kind, it, stages)
			}
			trees = trees[:it*outputs]
		}
	}
	if kind.family == familyHistBoosting {
		f.Split = SplitLessEqual64
	}

	var known [][]uint64 // per feature: bitset of known categories, nil if numeric
	if d.KnownCategories != nil {
		if kind.family != familyHistBoosting {
			return nil, fmt.Errorf("%s: known_categories is for HistGradientBoosting", d.Kind)
		}
		if len(d.KnownCategories) != nf {
			return nil, fmt.Errorf("known_categories: %d entries for %d features", len(d.KnownCategories), nf)
		}
		known = make([][]uint64, nf)
		for i, codes := range d.KnownCategories {
			if codes == nil {
				continue
			}
			if len(codes) == 0 {
				return nil, fmt.Errorf("known_categories: feature %d: empty list (null marks a numeric feature)", i)
			}
			bits, err := categoryBitset(codes)
			if err != nil {
				return nil, fmt.Errorf("known_categories: feature %d: %v", i, err)
			}
			known[i] = bits
			pre.catCols = append(pre.catCols, i)
		}
	}

	f.Trees = make([]Tree, len(trees))
	for ti := range trees {
		t, err := compileTree(&trees[ti], kind.family, nf, width, known)
		if err != nil {
			return nil, fmt.Errorf("tree %d: %v", ti, err)
		}
		if kind.family != familyForest {
			if want := ti % outputs; t.Output != want {
				return nil, fmt.Errorf("tree %d: output %d, want %d (trees go stage by stage, output by output)", ti, t.Output, want)
			}
		}
		f.Trees[ti] = t
	}
	if err := f.Check(); err != nil {
		return nil, err
	}
	return f, nil
}

func compileTree(st *sklearnTree, family sklearnFamily, nf, width int, known [][]uint64) (Tree, error) {
	n := len(st.Feature)
	if n == 0 {
		return Tree{}, fmt.Errorf("no nodes")
	}
	if len(st.Threshold) != n || len(st.Left) != n || len(st.Right) != n || len(st.MissingLeft) != n {
		return Tree{}, fmt.Errorf("feature, threshold, left, right and missing_left differ in length")
	}
	if len(st.Value) != n*width {
		return Tree{}, fmt.Errorf("%d values for %d nodes of width %d", len(st.Value), n, width)
	}
	if st.CategoriesLeft != nil && (family != familyHistBoosting || len(st.CategoriesLeft) != n) {
		return Tree{}, fmt.Errorf("categories_left: want one entry per node, in HistGradientBoosting only")
	}
	out := int(st.Output)
	if out < 0 || (family == familyForest && out != 0) {
		return Tree{}, fmt.Errorf("output %d", out)
	}
	t := Tree{Nodes: make([]Node, n), Output: out, Width: width}
	for i := range n {
		left, right, feat := st.Left[i], st.Right[i], st.Feature[i]
		if left == -1 {
			if right != -1 || feat != -1 {
				return Tree{}, fmt.Errorf("node %d: a leaf (left -1) needs right -1 and feature -1", i)
			}
			if st.CategoriesLeft != nil && st.CategoriesLeft[i] != nil {
				return Tree{}, fmt.Errorf("node %d: a leaf with categories", i)
			}
			t.Nodes[i] = Node{Feature: -1, Left: int32(len(t.Leaves))}
			for _, v := range st.Value[i*width : (i+1)*width] {
				t.Leaves = append(t.Leaves, float64(v))
			}
			continue
		}
		if feat < 0 || int(feat) >= nf {
			return Tree{}, fmt.Errorf("node %d: feature %d of %d", i, feat, nf)
		}
		// Children must come after their parent: Forest.Check verifies it,
		// which also rules out cycles.
		node := Node{Feature: int32(feat), Left: int32(left), Right: int32(right), DefaultLeft: bool(st.MissingLeft[i])}
		var cats []jsonInt
		if st.CategoriesLeft != nil {
			cats = st.CategoriesLeft[i]
		}
		categorical := known != nil && known[feat] != nil
		switch {
		case categorical && cats == nil:
			return Tree{}, fmt.Errorf("node %d: a numeric split on categorical feature %d", i, feat)
		case !categorical && cats != nil:
			return Tree{}, fmt.Errorf("node %d: a categorical split on numeric feature %d", i, feat)
		case categorical:
			bits, err := categoryBitset(cats)
			if err != nil {
				return Tree{}, fmt.Errorf("node %d: categories_left: %v", i, err)
			}
			node.Cats = rightCategories(bits, known[feat], node.DefaultLeft)
		default:
			th := float64(st.Threshold[i])
			if family == familyHistBoosting {
				node.Threshold = th
			} else {
				if math.IsInf(th, 0) {
					return Tree{}, fmt.Errorf("node %d: threshold %v of a decision tree", i, th)
				}
				node.Threshold = lessEqual32(th)
			}
		}
		t.Nodes[i] = node
	}
	return t, nil
}

// categoryBitset returns the 256-bit set of codes.
func categoryBitset(codes []jsonInt) ([]uint64, error) {
	bits := make([]uint64, (maxCategory+1)/64)
	for _, c := range codes {
		if c < 0 || c > maxCategory {
			return nil, fmt.Errorf("category %d (want 0 to %d)", c, maxCategory)
		}
		bits[c/64] |= 1 << (c % 64)
	}
	return bits, nil
}

// rightCategories returns the codes a HistGradientBoosting categorical
// split sends right, as Forest's bitset. scikit-learn sends a listed code
// left, another known code right, and an unknown code the way of missing
// values.
func rightCategories(left, known []uint64, missingLeft bool) []uint64 {
	right := make([]uint64, len(left))
	for i := range right {
		if missingLeft {
			right[i] = known[i] &^ left[i]
		} else {
			right[i] = ^left[i]
		}
	}
	return right
}

// lessEqual32 turns scikit-learn's decision-tree test float32(x) <= t
// (t a float64) into Forest's float32(x) < t': t' is the float32 after the
// largest float32 not above t. Both tests agree on every float32, ±Inf
// included.
func lessEqual32(t float64) float64 {
	f := float32(t)
	if float64(f) > t {
		f = math.Nextafter32(f, float32(math.Inf(-1)))
	}
	return float64(math.Nextafter32(f, float32(math.Inf(1))))
}

// preprocess is what runs on a row before the estimator: a StandardScaler
// and the check of category codes.
type preprocess struct {
	mean, scale []float64 // nil without a scaler
	// catCols are the categorical columns: a code that is not an integer
	// in 0..255 becomes missing.
	catCols []int
}

// preprocessed is a Model behind a preprocess step.
type preprocessed struct {
	inner Model
	pre   preprocess
	nf    int
	chunk int // rows per buffer
	bufs  sync.Pool
}

var _ Model = (*preprocessed)(nil)

func newPreprocessed(inner Model, pre preprocess) *preprocessed {
	nf := inner.NumFeatures()
	p := &preprocessed{inner: inner, pre: pre, nf: nf, chunk: max(1, min(64, 8192/nf))}
	p.bufs.New = func() any {
		b := make([]float64, p.chunk*nf)
		return &b
	}
	return p
}

// NumFeatures returns the number of input columns.
func (p *preprocessed) NumFeatures() int { return p.nf }

// NumOutputs returns the number of scores per row.
func (p *preprocessed) NumOutputs() int { return p.inner.NumOutputs() }

// InputNames returns the estimator's input names, or nil.
func (p *preprocessed) InputNames() []string { return InputNames(p.inner) }

// Predict scales and checks the rows, then scores them with the estimator.
func (p *preprocessed) Predict(dst, x []float64, nrows int) error {
	no := p.inner.NumOutputs()
	if nrows < 0 || len(x) < nrows*p.nf || len(dst) < nrows*no {
		return fmt.Errorf("predict: %d inputs and %d outputs for %d rows of %d features and %d outputs",
			len(x), len(dst), nrows, p.nf, no)
	}
	bp := p.bufs.Get().(*[]float64)
	defer p.bufs.Put(bp)
	buf := *bp
	for start := 0; start < nrows; start += p.chunk {
		n := min(p.chunk, nrows-start)
		in := buf[:n*p.nf]
		copy(in, x[start*p.nf:(start+n)*p.nf])
		for r := range n {
			row := in[r*p.nf : (r+1)*p.nf]
			if p.pre.mean != nil {
				for i := range row {
					row[i] = (row[i] - p.pre.mean[i]) / p.pre.scale[i]
				}
			}
			for _, c := range p.pre.catCols {
				if v := row[c]; !(v >= 0 && v <= maxCategory && v == math.Trunc(v)) {
					row[c] = math.NaN()
				}
			}
		}
		if err := p.inner.Predict(dst[start*no:(start+n)*no], in, n); err != nil {
			return err
		}
	}
	return nil
}
