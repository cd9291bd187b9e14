package models

// Speed of seer's Forest against github.com/dmitryikh/leaves on the same
// trees: LightGBM models as Load reads them, and XGBoost models converted
// by a test-only writer into LightGBM text that leaves reads; both sides
// must give identical predictions before their speed is compared.

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/dmitryikh/leaves"

	"github.com/seer-ml/seer/internal/oracle"
)

const lgbmOracles = "lgbm-3.3.2_3ba5b7b"

// lightGBMFromForest writes a Forest loaded from XGBoost (float32 splits,
// unweighted float64 sums) as a LightGBM text model. A numerical split
// float32(x) < t becomes x <= less32(t). A categorical split whose missing
// inputs go left swaps its children (LightGBM sends listed codes left);
// one whose missing inputs go right lists instead the codes below limit
// that go left, which agrees with the Forest for codes below limit and
// missing inputs (the oracles encode unseen categories as missing).
func lightGBMFromForest(tb testing.TB, f *Forest, limit int) string {
	tb.Helper()
	var trees []string
	for ti, t := range f.Trees {
		// Number splits and leaves depth first.
		splitID := map[int32]int{}
		leafID := map[int32]int{}
		var order []int32
		stack := []int32{0}
		for len(stack) > 0 {
			n := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if t.Nodes[n].Feature < 0 {
				leafID[n] = len(leafID)
				continue
			}
			splitID[n] = len(order)
			order = append(order, n)
			stack = append(stack, t.Nodes[n].Right, t.Nodes[n].Left)
		}
		ref := func(n int32) string {
			if id, ok := splitID[n]; ok {
				return strconv.Itoa(id)
			}
			return strconv.Itoa(^leafID[n])
		}
		leafVals := make([]string, len(leafID))
		for n, id := range leafID {
			v := t.Leaves[t.Nodes[n].Left]
			if t.Weight != 0 {
				v *= t.Weight
			}
			leafVals[id] = strconv.FormatFloat(v, 'g', -1, 64)
		}
		var feat, thr, dt, left, right, catBounds, catWords []string
		catBounds = []string{"0"}
		for _, n := range order {
			node := t.Nodes[n]
			feat = append(feat, strconv.Itoa(int(node.Feature)))
			l, r := node.Left, node.Right
			if node.Cats == nil {
				th, ok := less32(float32(node.Threshold))
				if !ok {
					th = math.Inf(-1)
				}
				thr = append(thr, strconv.FormatFloat(th, 'g', -1, 64))
				d := 8 // missing type NaN
				if node.DefaultLeft {
					d |= 2
				}
				dt = append(dt, strconv.Itoa(d))
			} else {
				if !node.UnknownLeft || node.CatsKnown != nil {
					tb.Fatalf("tree %d: categorical split semantics not converted", ti)
				}
				var bits []uint64
				if node.DefaultLeft {
					bits, l, r = node.Cats, r, l
				} else {
					bits = make([]uint64, (limit+63)/64)
					for c := range limit {
						if !inBits(node.Cats, uint64(c)) {
							bits[c/64] |= 1 << (c % 64)
						}
					}
				}
				thr = append(thr, strconv.Itoa(len(catBounds)-1))
				for _, b := range bits {
					catWords = append(catWords, strconv.FormatUint(b&0xffffffff, 10), strconv.FormatUint(b>>32, 10))
				}
				catBounds = append(catBounds, strconv.Itoa(len(catWords)))
				dt = append(dt, "9") // categorical, missing type NaN: NaN goes right
			}
			left = append(left, ref(l))
			right = append(right, ref(r))
		}
		var b strings.Builder
		fmt.Fprintf(&b, "Tree=%d\nnum_leaves=%d\nnum_cat=%d\n", ti, len(leafID), len(catBounds)-1)
		if len(order) > 0 {
			fmt.Fprintf(&b, "split_feature=%s\nthreshold=%s\ndecision_type=%s\nleft_child=%s\nright_child=%s\n",
				strings.Join(feat, " "), strings.Join(thr, " "), strings.Join(dt, " "),
				strings.Join(left, " "), strings.Join(right, " "))
		}
		if len(catBounds) > 1 {
			fmt.Fprintf(&b, "cat_boundaries=%s\ncat_threshold=%s\n", strings.Join(catBounds, " "), strings.Join(catWords, " "))
		}
		fmt.Fprintf(&b, "leaf_value=%s\nshrinkage=1\n\n", strings.Join(leafVals, " "))
		trees = append(trees, b.String())
	}
	sizes := make([]string, len(trees))
	for i, t := range trees {
		sizes[i] = strconv.Itoa(len(t))
	}
	return fmt.Sprintf("tree\nversion=v3\nnum_class=%d\nnum_tree_per_iteration=%d\nlabel_index=0\nmax_feature_idx=%d\n"+
		"objective=regression\ntree_sizes=%s\n\n%s\nend of trees\n",
		f.Outputs, f.Outputs, f.Features-1, strings.Join(sizes, " "), strings.Join(trees, ""))
}

// treesCase is a model scored both by leaves and by a Forest.
type treesCase struct {
	leaves *leaves.Ensemble
	forest *Forest
	x      []float64 // input rows
	nrows  int
}

// lightGBMCase loads an oracle LightGBM model both ways.
func lightGBMCase(tb testing.TB, name string) treesCase {
	tb.Helper()
	path := oracle.Path(tb, "lightgbm", lgbmOracles, name+".txt")
	text, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	lv, err := leaves.LGEnsembleFromReader(bufio.NewReader(strings.NewReader(string(text))), false)
	if err != nil {
		tb.Fatal(err)
	}
	m, err := Load(FormatLightGBM, text, Options{Raw: true})
	if err != nil {
		tb.Fatal(err)
	}
	in := oracle.Read(tb, oracle.Path(tb, "lightgbm", lgbmOracles, name+".input.tsv"))
	return treesCase{leaves: lv, forest: m.(*Forest), x: flatten(in), nrows: len(in.Rows)}
}

// xgboostCase loads an oracle XGBoost model as seer does (raw margins)
// and, converted to LightGBM text, with leaves. unweighted is the same
// forest summing in float64 without a base margin, as leaves does.
func xgboostCase(tb testing.TB, name string) (c treesCase, unweighted *Forest) {
	tb.Helper()
	data, err := os.ReadFile(oracle.Path(tb, "xgboost", name+".json"))
	if err != nil {
		tb.Fatal(err)
	}
	return xgboostModelCase(tb, data, oracle.Read(tb, oracle.Path(tb, "xgboost", name+".input.tsv")))
}

// readNumeric200 returns the benchmark's 200-tree depth-6 XGBoost model
// (UBJSON) from testdata.
func readNumeric200(tb testing.TB) []byte {
	tb.Helper()
	f, err := os.Open("testdata/xgboost/numeric200.ubj.gz")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		tb.Fatal(err)
	}
	data, err := io.ReadAll(z)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// xgboostModelCase is xgboostCase for a model and its input rows.
func xgboostModelCase(tb testing.TB, data []byte, in *oracle.Table) (c treesCase, unweighted *Forest) {
	tb.Helper()
	m, err := Load(FormatXGBoost, data, Options{Raw: true})
	if err != nil {
		tb.Fatal(err)
	}
	f := m.(*Forest)
	limit := 0
	for _, t := range f.Trees {
		for _, n := range t.Nodes {
			for c := range 64 * len(n.Cats) {
				if inBits(n.Cats, uint64(c)) {
					limit = max(limit, c+1)
				}
			}
		}
	}
	for _, r := range in.Rows {
		for _, v := range r {
			if v == math.Trunc(v) && v >= 0 && v < 1<<16 {
				limit = max(limit, int(v)+1)
			}
		}
	}
	text := lightGBMFromForest(tb, f, limit)
	lv, err := leaves.LGEnsembleFromReader(bufio.NewReader(strings.NewReader(text)), false)
	if err != nil {
		tb.Fatal(err)
	}
	unweighted = &Forest{Features: f.Features, Outputs: f.Outputs, Trees: f.Trees, Split: f.Split}
	if err := unweighted.Check(); err != nil {
		tb.Fatal(err)
	}
	return treesCase{leaves: lv, forest: f, x: flatten(in), nrows: len(in.Rows)}, unweighted
}

func flatten(t *oracle.Table) []float64 {
	var x []float64
	for _, r := range t.Rows {
		x = append(x, r...)
	}
	return x
}

func predictBoth(tb testing.TB, c treesCase, f *Forest) (lv, sv []float64) {
	tb.Helper()
	nf := f.NumFeatures()
	lv = make([]float64, c.nrows*c.leaves.NOutputGroups())
	if err := c.leaves.PredictDense(c.x, c.nrows, nf, lv, 0, 1); err != nil {
		tb.Fatal(err)
	}
	sv = make([]float64, c.nrows*f.NumOutputs())
	if err := f.Predict(sv, c.x, c.nrows); err != nil {
		tb.Fatal(err)
	}
	return lv, sv
}

func TestTreesMatchLeaves(t *testing.T) {
	for _, name := range []string{"RegressionVisit", "ClassificationAudit", "ClassificationAuditNA", "ClassificationIrisNA"} {
		t.Run("lightgbm/"+name, func(t *testing.T) {
			c := lightGBMCase(t, name)
			lv, sv := predictBoth(t, c, c.forest)
			for i := range lv {
				if lv[i] != sv[i] && !(math.IsNaN(lv[i]) && math.IsNaN(sv[i])) {
					t.Fatalf("value %d: leaves %v, seer %v", i, lv[i], sv[i])
				}
			}
		})
	}
	for _, name := range []string{"BinomialClassificationAudit", "GammaRegressionVisitNA", "MultinomialClassificationIrisNA", "numeric200"} {
		t.Run("xgboost/"+name, func(t *testing.T) {
			var c treesCase
			var unweighted *Forest
			if name == "numeric200" {
				c, unweighted = xgboostModelCase(t, readNumeric200(t), oracle.Read(t, "testdata/xgboost/numeric200.input.tsv"))
			} else {
				c, unweighted = xgboostCase(t, name)
			}
			lv, sv := predictBoth(t, c, unweighted)
			for i := range lv {
				if lv[i] != sv[i] {
					t.Fatalf("value %d: leaves %v, seer %v", i, lv[i], sv[i])
				}
			}
			// The float32 margins seer serves stay within float32
			// rounding of leaves' float64 sums (plus the base margin).
			_, margins := predictBoth(t, c, c.forest)
			k := c.forest.Outputs
			for i := range lv {
				want := lv[i] + c.forest.Base[i%k]
				if d := math.Abs(margins[i] - want); d > 1e-5*max(1, math.Abs(want)) {
					t.Fatalf("value %d: float32 margin %v, float64 %v", i, margins[i], want)
				}
			}
		})
	}
}

const benchRows = 200

func benchTrees(b *testing.B, c treesCase) {
	nf := c.forest.NumFeatures()
	rows := min(benchRows, c.nrows)
	x := c.x[:rows*nf]
	b.Run("leaves", func(b *testing.B) {
		dst := make([]float64, rows*c.leaves.NOutputGroups())
		b.ReportAllocs()
		cpuLoop(b, func() {
			if err := c.leaves.PredictDense(x, rows, nf, dst, 0, 1); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("seer", func(b *testing.B) {
		dst := make([]float64, rows*c.forest.NumOutputs())
		b.ReportAllocs()
		cpuLoop(b, func() {
			if err := c.forest.Predict(dst, x, rows); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// BenchmarkTreesLightGBM scores 200-row batches of a LightGBM model
// (RegressionVisit: 71 trees, 2130 splits of which 388 categorical) with
// leaves and with the Forest Load reads from the same text.
func BenchmarkTreesLightGBM(b *testing.B) {
	benchTrees(b, lightGBMCase(b, "RegressionVisit"))
}

// BenchmarkTreesLightGBMCategorical is BenchmarkTreesLightGBM on
// ClassificationAudit (31 trees, 930 splits of which 163 categorical).
func BenchmarkTreesLightGBMCategorical(b *testing.B) {
	benchTrees(b, lightGBMCase(b, "ClassificationAudit"))
}

// BenchmarkTreesXGBoost scores 200-row batches of an XGBoost model
// (BinomialClassificationAudit: 71 DART-weighted trees, 2327 splits of
// which 1134 categorical) as seer serves it (float32 sums) and with
// leaves, converted to LightGBM text.
func BenchmarkTreesXGBoost(b *testing.B) {
	c, _ := xgboostCase(b, "BinomialClassificationAudit")
	benchTrees(b, c)
}

// BenchmarkTreesXGBoostNumeric scores 200-row batches of an all-numeric
// XGBoost model of 200 trees of depth 6 (10,456 splits; 16 features, 5%
// of the inputs missing) as seer serves it and with leaves, converted to
// LightGBM text. tools/gen_xgboost_oracles.py trains it.
func BenchmarkTreesXGBoostNumeric(b *testing.B) {
	c, _ := xgboostModelCase(b, readNumeric200(b), oracle.Read(b, "testdata/xgboost/numeric200.input.tsv"))
	benchTrees(b, c)
}
