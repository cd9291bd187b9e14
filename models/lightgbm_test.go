package models

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/seer-ml/seer/internal/oracle"
)

// lgbReleases are the LightGBM oracle snapshots, one per release. Any other
// release directory found beside them is tested too.
var lgbReleases = []string{
	"lgbm-3.0.0_22c8cbf",
	"lgbm-3.3.2_3ba5b7b",
	"lgbm-4.0.0_4be9db8",
	"lgbm-4.6.0-lineartree_1121ef5",
}

type lgbCase struct {
	Model         string `json:"model"`
	Input         string `json:"input"`
	Expected      string `json:"expected"`
	NIter         int    `json:"n_iter"`
	Objective     string `json:"objective"`
	Version       string `json:"version"`
	AverageOutput bool   `json:"average_output"`
}

func lgbReleaseDirs(t *testing.T) []string {
	t.Helper()
	dir := oracle.Dir(t)
	found, err := filepath.Glob(filepath.Join(dir, "lightgbm", "*", "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	rels := slices.Clone(lgbReleases)
	for _, f := range found {
		if rel := filepath.Base(filepath.Dir(f)); !slices.Contains(rels, rel) {
			rels = append(rels, rel)
		}
	}
	return rels
}

func lgbCases(t *testing.T, rel string) []lgbCase {
	t.Helper()
	data, err := os.ReadFile(oracle.Path(t, "lightgbm", rel, "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []lgbCase
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatalf("%s/cases.json: %v", rel, err)
	}
	if len(cases) == 0 {
		t.Fatalf("%s/cases.json lists no cases", rel)
	}
	return cases
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// rowsOf flattens a table's rows into one row-major slice.
func rowsOf(tab *oracle.Table) []float64 {
	x := make([]float64, 0, len(tab.Rows)*len(tab.Header))
	for _, r := range tab.Rows {
		x = append(x, r...)
	}
	return x
}

// close reports whether got is within tol (absolute and relative) of want.
func closeTo(got, want, tol float64) bool {
	if math.IsNaN(want) || math.IsNaN(got) {
		return math.IsNaN(want) && math.IsNaN(got)
	}
	return math.Abs(got-want) <= tol+tol*math.Abs(want)
}

// compareScores checks every row and output of got against the table and
// returns the largest absolute difference.
func compareScores(t *testing.T, got []float64, want *oracle.Table, tol float64) float64 {
	t.Helper()
	no := len(want.Header)
	if len(got) != len(want.Rows)*no {
		t.Fatalf("%d scores for %d rows of %d outputs", len(got), len(want.Rows), no)
	}
	worst, bad := 0.0, 0
	for r, row := range want.Rows {
		for o, w := range row {
			g := got[r*no+o]
			if !closeTo(g, w, tol) {
				if bad++; bad <= 5 {
					t.Errorf("row %d %s: got %.17g, want %.17g", r+1, want.Header[o], g, w)
				}
			}
			if d := math.Abs(g - w); d > worst {
				worst = d
			}
		}
	}
	if bad > 5 {
		t.Errorf("... %d scores differ in all", bad)
	}
	return worst
}

// TestLightGBMOracles scores every case of every LightGBM release snapshot
// and compares with the predictions LightGBM itself made, linear trees
// included; leaves, the second evaluation, must agree on the same rows
// and on probe rows.
func TestLightGBMOracles(t *testing.T) {
	const tol = 1e-12
	for _, rel := range lgbReleaseDirs(t) {
		t.Run(rel, func(t *testing.T) {
			passed, linear, worst := 0, 0, 0.0
			for _, c := range lgbCases(t, rel) {
				name := strings.TrimSuffix(c.Expected, ".expected.tsv")
				data := readFile(t, oracle.Path(t, "lightgbm", rel, c.Model))
				in := oracle.Read(t, oracle.Path(t, "lightgbm", rel, c.Input))
				want := oracle.Read(t, oracle.Path(t, "lightgbm", rel, c.Expected))
				m, err := Load(FormatLightGBM, data, Options{Iterations: c.NIter})
				isLinear := bytes.Contains(data, []byte("\nis_linear=1"))
				if isLinear {
					linear++
				}
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				if m.NumFeatures() != len(in.Header) || m.NumOutputs() != len(want.Header) || len(in.Rows) != len(want.Rows) {
					t.Errorf("%s: model has %d features and %d outputs; oracle has %d inputs, %d outputs, %d and %d rows",
						name, m.NumFeatures(), m.NumOutputs(), len(in.Header), len(want.Header), len(in.Rows), len(want.Rows))
					continue
				}
				got := make([]float64, len(want.Rows)*m.NumOutputs())
				if err := m.Predict(got, rowsOf(in), len(in.Rows)); err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				t.Run(name, func(t *testing.T) {
					worst = max(worst, compareScores(t, got, want, tol))
					v, err := Verify(FormatLightGBM, data, Options{Iterations: c.NIter}, m, rowsOf(in), len(in.Rows))
					if err != nil || v.Rows != len(in.Rows)+ProbeCount || (v.Unchecked != "") != isLinear {
						t.Errorf("verify: %+v, %v", v, err)
					}
				})
				passed++
			}
			t.Logf("%s: %d cases reproduced (%d with linear trees), max abs diff %.3g", rel, passed, linear, worst)
		})
	}
}

// TestLightGBMRawOracle checks raw margins against the oracle through the
// inverse of each objective's link.
func TestLightGBMRawOracle(t *testing.T) {
	cases := []struct {
		file   string
		inputs string
		link   func(row []float64)
	}{
		{"ClassificationVersicolor.txt", "ClassificationVersicolor", func(r []float64) { r[0] = 1 / (1 + math.Exp(-r[0])) }},
		{"ClassificationIris.txt", "ClassificationIris", softmax},
		{"RegressionVisit.txt", "RegressionVisit", func(r []float64) { r[0] = math.Exp(r[0]) }},
		{"RegressionHousingNA.txt", "RegressionHousingNA", func([]float64) {}},
	}
	for _, c := range cases {
		t.Run(c.inputs, func(t *testing.T) {
			rel := "lgbm-4.0.0_4be9db8"
			data := readFile(t, oracle.Path(t, "lightgbm", rel, c.file))
			in := oracle.Read(t, oracle.Path(t, "lightgbm", rel, c.inputs+".input.tsv"))
			want := oracle.Read(t, oracle.Path(t, "lightgbm", rel, c.inputs+".expected.tsv"))
			m, err := Load(FormatLightGBM, data, Options{Raw: true})
			if err != nil {
				t.Fatal(err)
			}
			got := make([]float64, len(in.Rows)*m.NumOutputs())
			if err := m.Predict(got, rowsOf(in), len(in.Rows)); err != nil {
				t.Fatal(err)
			}
			for r := range len(in.Rows) {
				c.link(got[r*m.NumOutputs() : (r+1)*m.NumOutputs()])
			}
			compareScores(t, got, want, 1e-9)
		})
	}
}

const tinyLightGBM = "testdata/lightgbm/tiny.txt"

// tinyRows are inputs for testdata/lightgbm/tiny.txt (amount, category,
// score) with its raw score worked out by hand from the file:
//
//	tree 0: amount <= 0.5 (missing: none, so NaN is 0)
//	          ? category in {1, 3} (NaN, negative: right) ? 0.1 : -0.2
//	          : score <= 10 (NaN goes left) ? 0.3 : -0.4
//	tree 1: score <= 5 (NaN goes right) ? 0.05 : -0.05
//	tree 2: 0.01
var tinyRows = []struct {
	x    [3]float64
	raw  float64
	raw1 float64 // first iteration only
}{
	{[3]float64{0, 3, 1}, 0.1 + 0.05 + 0.01, 0.1},
	{[3]float64{math.NaN(), math.NaN(), math.NaN()}, -0.2 - 0.05 + 0.01, -0.2},
	{[3]float64{2, 0, math.NaN()}, 0.3 - 0.05 + 0.01, 0.3},
	{[3]float64{2, 0, 20}, -0.4 - 0.05 + 0.01, -0.4},
	{[3]float64{0, -1, 5}, -0.2 + 0.05 + 0.01, -0.2},
	{[3]float64{0, 1.9, 4}, 0.1 + 0.05 + 0.01, 0.1}, // category int(1.9) = 1
	{[3]float64{0, 1e10, 6}, -0.2 - 0.05 + 0.01, -0.2},
	{[3]float64{0.5, 2, 5.000001}, -0.2 - 0.05 + 0.01, -0.2},
	{[3]float64{0, -0.5, 0}, -0.2 + 0.05 + 0.01, -0.2}, // int(-0.5) = 0
	{[3]float64{0, 3.7, 0}, 0.1 + 0.05 + 0.01, 0.1},
	{[3]float64{math.Inf(1), 1, math.Inf(-1)}, 0.3 + 0.05 + 0.01, 0.3},
	{[3]float64{0, math.Inf(1), 0}, -0.2 + 0.05 + 0.01, -0.2},
	{[3]float64{0, -3e9, 0}, -0.2 + 0.05 + 0.01, -0.2},
}

func tinyX() []float64 {
	var x []float64
	for _, r := range tinyRows {
		x = append(x, r.x[:]...)
	}
	return x
}

func loadTiny(t testing.TB, text string, opt Options) Model {
	t.Helper()
	m, err := Load(FormatLightGBM, []byte(text), opt)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func predictAll(t testing.TB, m Model, x []float64) []float64 {
	t.Helper()
	n := len(x) / m.NumFeatures()
	got := make([]float64, n*m.NumOutputs())
	if err := m.Predict(got, x, n); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestLightGBMTiny(t *testing.T) {
	text := string(readFile(t, tinyLightGBM))
	sigmoid := func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }
	cases := []struct {
		name string
		opt  Options
		want func(raw, raw1 float64) float64
	}{
		{"transformed", Options{}, func(raw, _ float64) float64 { return sigmoid(raw) }},
		{"raw", Options{Raw: true}, func(raw, _ float64) float64 { return raw }},
		{"first iteration", Options{Raw: true, Iterations: 1}, func(_, raw1 float64) float64 { return raw1 }},
		{"all iterations", Options{Raw: true, Iterations: 3}, func(raw, _ float64) float64 { return raw }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := loadTiny(t, text, c.opt)
			if m.NumFeatures() != 3 || m.NumOutputs() != 1 {
				t.Fatalf("got %d features, %d outputs; want 3, 1", m.NumFeatures(), m.NumOutputs())
			}
			got := predictAll(t, m, tinyX())
			for i, r := range tinyRows {
				if want := c.want(r.raw, r.raw1); !closeTo(got[i], want, 1e-12) {
					t.Errorf("row %v: got %.17g, want %.17g", r.x, got[i], want)
				}
			}
		})
	}
}

// TestLightGBMLinearTree makes the tiny model's trees linear (LightGBM
// 4's linear_tree): tree 1's leaves become 0.05 + 0.01*amount - 0.5*score
// and -0.05 + 2*category, tree 2's 0.02 + 0.5*score; a leaf whose model
// reads a missing input scores its constant leaf_value.
func TestLightGBMLinearTree(t *testing.T) {
	text := string(readFile(t, tinyLightGBM))
	tree1 := "leaf_value=0.050000000000000003 -0.050000000000000003\n"
	tree2 := "leaf_value=0.01\n"
	text = strings.Replace(text, tree1+"leaf_weight=20 20\nleaf_count=20 20\ninternal_value=0\ninternal_weight=40\ninternal_count=40\nis_linear=0\n",
		tree1+"is_linear=1\nleaf_const=0.05 -0.05\nnum_features=2 1\nleaf_features=0 2  1 \nleaf_coeff=0.01 -0.5  2 \n", 1)
	text = strings.Replace(text, tree2+"leaf_weight=\nleaf_count=\ninternal_value=\ninternal_weight=\ninternal_count=\nis_linear=0\n",
		tree2+"is_linear=1\nleaf_const=0.02\nnum_features=1\nleaf_features=2 \nleaf_coeff=0.5 \n", 1)
	if strings.Count(text, "is_linear=1") != 2 {
		t.Fatal("tiny model not edited")
	}
	m := loadTiny(t, text, Options{Raw: true})
	nan := math.NaN()
	cases := []struct {
		x    [3]float64
		want float64
	}{
		// tree 0 (as before) + tree 1 + tree 2
		{[3]float64{0, 3, 1}, 0.1 + (0.05 + 0.01*0 - 0.5*1) + (0.02 + 0.5*1)},
		{[3]float64{2, 0, 20}, -0.4 + (-0.05 + 2*0) + (0.02 + 0.5*20)},
		{[3]float64{nan, 1, 4}, 0.1 + 0.05 + (0.02 + 0.5*4)},  // tree 1 leaf 0 reads amount: missing
		{[3]float64{2, nan, 6}, 0.3 + -0.05 + (0.02 + 0.5*6)}, // tree 1 leaf 1 reads category: missing
		{[3]float64{2, 0, nan}, 0.3 + -0.05 + 2*0 + 0.01},     // NaN score goes right in tree 1; tree 2 reads it
		{[3]float64{0, 1, 3}, 0.1 + (0.05 + 0.01*0 - 0.5*3) + (0.02 + 1.5)},
	}
	for _, c := range cases {
		got := predictAll(t, m, c.x[:])
		if !closeTo(got[0], c.want, 1e-15) {
			t.Errorf("row %v: got %.17g, want %.17g", c.x, got[0], c.want)
		}
	}
	v, err := Verify(FormatLightGBM, []byte(text), Options{Raw: true}, m, nil, 0)
	if err != nil || v.Unchecked == "" {
		t.Errorf("verify: %+v, %v; want agreement on the constant leaves, the linear models unchecked", v, err)
	}
	for _, bad := range []struct{ old, new, want string }{
		{"num_features=2 1", "num_features=2 2", "leaf_features has 3 values, want 4"},
		{"num_features=2 1", "num_features=2", "num_features has 1 values, want 2"},
		{"leaf_features=0 2  1", "leaf_features=0 3  1", "leaf_features"},
		{"leaf_coeff=0.01 -0.5  2", "leaf_coeff=0.01 nan  2", "leaf_coeff"},
		{"leaf_const=0.05 -0.05", "leaf_const=0.05 inf", "leaf_const"},
		{"num_features=2 1", "num_features=2 99999999999", "num_features"},
	} {
		_, err := Load(FormatLightGBM, []byte(strings.Replace(text, bad.old, bad.new, 1)), Options{})
		if !errors.Is(err, ErrArtifact) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: got %v, want an error containing %q", bad.new, err, bad.want)
		}
	}
}

// TestLightGBMVerify checks that Verify catches a model that scores
// otherwise than its artifact: here the model is loaded from a file whose
// threshold was edited, as an evaluator bug would misread it.
func TestLightGBMVerify(t *testing.T) {
	text := string(readFile(t, tinyLightGBM))
	for _, c := range []struct{ name, old, new string }{
		{"threshold", "threshold=0.5 0 10", "threshold=0.75 0 10"},
		{"missing value", "decision_type=2 9 10", "decision_type=2 9 8"},
		{"category", "cat_threshold=10", "cat_threshold=11"},
		{"leaf", "leaf_value=0.01", "leaf_value=0.0100000001"},
	} {
		t.Run(c.name, func(t *testing.T) {
			edited := strings.Replace(text, c.old, c.new, 1)
			if edited == text {
				t.Fatalf("tiny model has no %q", c.old)
			}
			m := loadTiny(t, edited, Options{})
			if _, err := Verify(FormatLightGBM, []byte(edited), Options{}, m, nil, 0); err != nil {
				t.Fatalf("the edited model against itself: %v", err)
			}
			_, err := Verify(FormatLightGBM, []byte(text), Options{}, m, tinyX(), len(tinyRows))
			if !errors.Is(err, ErrDisagree) {
				t.Fatalf("got %v, want an error wrapping ErrDisagree", err)
			}
			t.Log(err)
		})
	}
	m := loadTiny(t, text, Options{})
	if _, err := Verify(FormatLightGBM, []byte("tree\nversion=v9\n"), Options{}, m, nil, 0); !errors.Is(err, ErrArtifact) {
		t.Errorf("an unreadable reference: got %v, want an error wrapping ErrArtifact", err)
	}
	if v, err := Verify(FormatXGBoost, nil, Options{}, m, nil, 0); v.Rows != 0 || err != nil {
		t.Errorf("a format without a reference evaluator: %+v, %v", v, err)
	}
}

// TestLightGBMObjectives checks the output transform of every objective
// LightGBM can write into a model, against its raw scores.
func TestLightGBMObjectives(t *testing.T) {
	text := string(readFile(t, tinyLightGBM))
	withObjective := func(line string) string {
		return strings.Replace(text, "objective=binary sigmoid:1\n", line, 1)
	}
	raw := predictAll(t, loadTiny(t, text, Options{Raw: true}), tinyX())
	sigmoid := func(s float64) func(float64) float64 {
		return func(v float64) float64 { return 1 / (1 + math.Exp(-s*v)) }
	}
	identity := func(v float64) float64 { return v }
	cases := []struct {
		objective string
		link      func(float64) float64 // nil: refused unless raw
	}{
		{"binary sigmoid:1", sigmoid(1)},
		{"binary sigmoid:0.5", sigmoid(0.5)},
		{"cross_entropy", sigmoid(1)},
		{"xentropy", sigmoid(1)},
		{"cross_entropy_lambda", func(v float64) float64 { return math.Log(1 + math.Exp(v)) }},
		{"xentlambda", func(v float64) float64 { return math.Log(1 + math.Exp(v)) }},
		{"regression", identity},
		{"regression sqrt", func(v float64) float64 { return math.Copysign(v*v, v) }},
		{"regression_l1", identity},
		{"regression_l1 sqrt", func(v float64) float64 { return math.Copysign(v*v, v) }},
		{"quantile", identity},
		{"huber", identity},
		{"fair", identity},
		{"mape", identity},
		{"poisson", math.Exp},
		{"gamma", math.Exp},
		{"tweedie", math.Exp},
		{"lambdarank", identity},
		{"rank_xendcg", identity},
		{"custom", identity},
		{"none", identity},
		{"", identity}, // no objective line: a custom objective
		{"binary", nil},
		{"binary sigmoid:0", nil},
		{"binary sigmoid:one", nil},
		{"multiclass num_class:3", nil},
		{"multiclassova num_class:1", nil},
		{"frobnicate", nil},
	}
	for _, c := range cases {
		name, line := c.objective, "objective="+c.objective+"\n"
		if c.objective == "" {
			name, line = "no objective line", ""
		}
		t.Run(name, func(t *testing.T) {
			data := []byte(withObjective(line))
			if _, err := Load(FormatLightGBM, data, Options{Raw: true}); err != nil {
				t.Fatalf("raw: %v", err)
			}
			m, err := Load(FormatLightGBM, data, Options{})
			if c.link == nil {
				if err == nil || !errors.Is(err, ErrArtifact) || !strings.Contains(err.Error(), "objective") {
					t.Fatalf("got error %v, want a refusal naming the objective", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := predictAll(t, m, tinyX())
			for i := range got {
				if want := c.link(raw[i]); !closeTo(got[i], want, 1e-15) {
					t.Errorf("row %d: got %.17g, want %.17g", i, got[i], want)
				}
			}
		})
	}
}

// TestLightGBMMulticlass reads the tiny model's three trees as one iteration
// of three classes.
func TestLightGBMMulticlass(t *testing.T) {
	text := string(readFile(t, tinyLightGBM))
	text = strings.Replace(text, "num_class=1\nnum_tree_per_iteration=1\n", "num_class=3\nnum_tree_per_iteration=3\n", 1)
	raw := predictAll(t, loadTiny(t, strings.Replace(text, "objective=binary sigmoid:1", "objective=custom", 1), Options{Raw: true}), tinyX())
	for i, r := range tinyRows {
		want := []float64{r.raw1, r.raw - r.raw1 - 0.01, 0.01}
		if !closeTo(raw[3*i], want[0], 1e-12) || !closeTo(raw[3*i+1], want[1], 1e-12) || !closeTo(raw[3*i+2], want[2], 1e-12) {
			t.Errorf("row %v: raw %v, want %v", r.x, raw[3*i:3*i+3], want)
		}
	}
	cases := []struct {
		objective string
		link      func(row []float64)
	}{
		{"multiclass num_class:3", func(row []float64) {
			sum := 0.0
			for _, v := range row {
				sum += math.Exp(v)
			}
			for i, v := range row {
				row[i] = math.Exp(v) / sum
			}
		}},
		{"multiclassova num_class:3 sigmoid:2", func(row []float64) {
			for i, v := range row {
				row[i] = 1 / (1 + math.Exp(-2*v))
			}
		}},
		{"binary sigmoid:1", nil},
		{"regression", nil},
		{"multiclass num_class:4", nil},
		{"multiclassova num_class:3", nil},
	}
	for _, c := range cases {
		t.Run(c.objective, func(t *testing.T) {
			data := []byte(strings.Replace(text, "objective=binary sigmoid:1", "objective="+c.objective, 1))
			m, err := Load(FormatLightGBM, data, Options{})
			if c.link == nil {
				if err == nil || !errors.Is(err, ErrArtifact) {
					t.Fatalf("got error %v, want a refusal", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.NumOutputs() != 3 {
				t.Fatalf("%d outputs, want 3", m.NumOutputs())
			}
			got := predictAll(t, m, tinyX())
			want := slices.Clone(raw)
			for r := range tinyRows {
				c.link(want[3*r : 3*r+3])
			}
			for i := range got {
				if !closeTo(got[i], want[i], 1e-14) {
					t.Errorf("score %d: got %.17g, want %.17g", i, got[i], want[i])
				}
			}
		})
	}
}

// TestLightGBMGuards feeds the loader damaged and hostile variants of a
// small model: each must load or be refused with an error wrapping
// ErrArtifact, never crash.
func TestLightGBMGuards(t *testing.T) {
	text := string(readFile(t, tinyLightGBM))
	replace := func(old, new string) func(string) string {
		return func(s string) string {
			if !strings.Contains(s, old) {
				t.Fatalf("tiny model has no %q", old)
			}
			return strings.Replace(s, old, new, 1)
		}
	}
	cutAt := func(marker string, extra int) func(string) string {
		return func(s string) string {
			i := strings.Index(s, marker)
			if i < 0 {
				t.Fatalf("tiny model has no %q", marker)
			}
			return s[:i+extra]
		}
	}
	cases := []struct {
		name    string
		mutate  func(string) string
		opt     Options
		wantErr string // "" when the model must load and score like the original
	}{
		{"unchanged", func(s string) string { return s }, Options{}, ""},
		{"v2 header", replace("version=v3", "version=v2"), Options{}, ""},
		{"v4 header", replace("version=v3", "version=v4"), Options{}, ""},
		{"v4 with a parser section", func(s string) string {
			s = strings.Replace(s, "version=v3", "version=v4", 1)
			return s + "\nparser:\n{\"className\": \"Example\", \"id\": 1}\nend of parser\n"
		}, Options{}, ""},
		{"CRLF line ends", func(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }, Options{}, ""},
		{"no tree_sizes", replace("tree_sizes=424 287 224\n", ""), Options{}, ""},
		{"manifest inputs match", func(s string) string { return s }, Options{Inputs: []string{"a", "b", "c"}}, ""},
		{"v5 header", replace("version=v3", "version=v5"), Options{}, "version"},
		{"no version", replace("version=v3\n", ""), Options{}, "not a LightGBM text model"},
		{"empty", func(string) string { return "" }, Options{}, "not a LightGBM text model"},
		{"JSON dump", func(string) string { return `{"name":"tree","version":"v4"}` }, Options{}, "not a LightGBM text model"},
		{"XGBoost JSON", func(string) string { return `{"learner":{}}` }, Options{}, "an XGBoost JSON or UBJSON model (detected from its bytes)"},
		{"linear tree without its models", replace("is_linear=0", "is_linear=1"), Options{}, "leaf_const has 0 values, want 4"},
		{"linear leaf coefficients", replace("is_linear=0", "leaf_coeff=0.5 0.25"), Options{}, "leaf_coeff in a tree that is not linear"},
		{"bad is_linear", replace("is_linear=0", "is_linear=yes"), Options{}, "is_linear"},
		{"truncated in a tree", cutAt("Tree=1", 40), Options{}, "tree 1"},
		{"truncated after the header", cutAt("Tree=0", 0), Options{}, "no trees"},
		{"truncated between trees", cutAt("Tree=2", 0), Options{}, "tree_sizes lists 3 trees but the file holds 2"},
		{"truncated header", cutAt("max_feature_idx", 0), Options{}, "max_feature_idx"},
		{"absurd num_leaves", replace("num_leaves=4", "num_leaves=2000000000"), Options{}, "num_leaves"},
		{"overflowing num_leaves", replace("num_leaves=4", "num_leaves=99999999999999999999"), Options{}, "num_leaves"},
		{"zero num_leaves", replace("num_leaves=4", "num_leaves=0"), Options{}, "num_leaves"},
		{"absurd num_class", replace("num_class=1\nnum_tree_per_iteration=1", "num_class=1000000000\nnum_tree_per_iteration=1000000000"), Options{}, "num_class"},
		{"num_class not dividing the trees", replace("num_class=1\nnum_tree_per_iteration=1", "num_class=2\nnum_tree_per_iteration=2"), Options{Raw: true}, "multiple of num_class"},
		{"num_tree_per_iteration differs", replace("num_tree_per_iteration=1", "num_tree_per_iteration=3"), Options{}, "num_tree_per_iteration"},
		{"absurd max_feature_idx", replace("max_feature_idx=2", "max_feature_idx=100000000"), Options{}, "max_feature_idx"},
		{"negative max_feature_idx", replace("max_feature_idx=2", "max_feature_idx=-1"), Options{}, "max_feature_idx"},
		{"feature names missing one", replace("feature_names=amount category score", "feature_names=amount category"), Options{}, "feature_names"},
		{"absurd tree_sizes", replace("tree_sizes=424 287 224", "tree_sizes="+strings.Repeat("9 ", 100000)), Options{}, "tree_sizes"},
		{"split feature out of range", replace("split_feature=0 1 2", "split_feature=0 1 3"), Options{}, "split_feature"},
		{"negative split feature", replace("split_feature=0 1 2", "split_feature=0 -1 2"), Options{}, "split_feature"},
		{"missing thresholds", replace("threshold=0.5 0 10", "threshold=0.5 0"), Options{}, "threshold has 2 values, want 3"},
		{"NaN threshold", replace("threshold=0.5 0 10", "threshold=NaN 0 10"), Options{}, "threshold"},
		{"leaf child out of range", replace("left_child=1 -1 -3", "left_child=1 -1 -9"), Options{}, "out of range"},
		{"node child out of range", replace("left_child=1 -1 -3", "left_child=3 -1 -3"), Options{}, "out of range"},
		{"root as a child", replace("left_child=1 -1 -3", "left_child=1 -1 0"), Options{}, "out of range"},
		{"node with two parents", replace("left_child=1 -1 -3", "left_child=1 -1 1"), Options{}, "two parents"},
		{"leaf with two parents", replace("left_child=1 -1 -3", "left_child=1 -2 -3"), Options{}, "two parents"},
		{"detached cycle", func(s string) string {
			s = strings.Replace(s, "left_child=1 -1 -3", "left_child=-1 2 1", 1)
			return strings.Replace(s, "right_child=2 -2 -4", "right_child=-2 -3 -4", 1)
		}, Options{}, "reachable"},
		{"bad decision type", replace("decision_type=2 9 10", "decision_type=2 13 10"), Options{}, "decision_type"},
		{"huge decision type", replace("decision_type=2 9 10", "decision_type=2 9 4294967295"), Options{}, "decision_type"},
		{"category set out of range", replace("threshold=0.5 0 10", "threshold=0.5 1 10"), Options{}, "category set"},
		{"fractional category set", replace("threshold=0.5 0 10", "threshold=0.5 0.5 10"), Options{}, "category set"},
		{"categorical split without num_cat", replace("num_cat=1", "num_cat=0"), Options{}, "category set"},
		{"short cat_boundaries", replace("cat_boundaries=0 1", "cat_boundaries=0"), Options{}, "cat_boundaries"},
		{"decreasing cat_boundaries", replace("cat_boundaries=0 1", "cat_boundaries=1 0"), Options{}, "cat_boundaries"},
		{"cat_threshold count", replace("cat_boundaries=0 1", "cat_boundaries=0 5"), Options{}, "cat_threshold"},
		{"absurd cat_boundaries", replace("cat_boundaries=0 1", "cat_boundaries=0 4000000000"), Options{}, "cat_threshold"},
		{"empty category set", replace("cat_threshold=10", "cat_threshold=0"), Options{}, "empty category set"},
		{"NaN leaf value", replace("leaf_value=0.10000000000000001", "leaf_value=nan"), Options{}, "leaf value"},
		{"infinite leaf value", replace("leaf_value=0.10000000000000001", "leaf_value=-Inf"), Options{}, "leaf value"},
		{"duplicate key", replace("num_cat=1\n", "num_cat=1\nnum_cat=1\n"), Options{}, "twice"},
		{"line without =", replace("num_cat=1\n", "num_cat=1\ngarbage\n"), Options{}, "key=value"},
		{"trees out of order", replace("Tree=1", "Tree=5"), Options{}, "Tree=1"},
		{"too many iterations", func(s string) string { return s }, Options{Iterations: 4}, "iterations"},
		{"negative iterations", func(s string) string { return s }, Options{Iterations: -1}, "iterations"},
		{"manifest inputs differ", func(s string) string { return s }, Options{Inputs: []string{"a", "b"}}, "inputs"},
		{"unknown objective", replace("objective=binary sigmoid:1", "objective=frobnicate"), Options{}, "objective"},
		{"unknown objective, raw", replace("objective=binary sigmoid:1", "objective=frobnicate"), Options{Raw: true}, ""},
	}
	orig := loadTiny(t, text, Options{})
	origScores := predictAll(t, orig, tinyX())
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Load(FormatLightGBM, []byte(c.mutate(text)), c.opt)
			if c.wantErr != "" {
				if err == nil {
					t.Fatalf("loaded; want an error containing %q", c.wantErr)
				}
				if !errors.Is(err, ErrArtifact) || !strings.Contains(err.Error(), c.wantErr) || strings.Contains(err.Error(), "panicked") {
					t.Fatalf("got error %q, want one wrapping ErrArtifact containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := predictAll(t, m, tinyX())
			if c.opt.Raw {
				return
			}
			for i := range got {
				if got[i] != origScores[i] {
					t.Errorf("row %d: got %.17g, want %.17g as from the unchanged model", i, got[i], origScores[i])
				}
			}
		})
	}
}

func TestLightGBMPredictSizes(t *testing.T) {
	m := loadTiny(t, string(readFile(t, tinyLightGBM)), Options{})
	cases := []struct {
		name    string
		dst, x  int
		nrows   int
		wantErr bool
	}{
		{"exact", 2, 6, 2, false},
		{"no rows", 0, 0, 0, false},
		{"longer buffers", 5, 20, 2, false},
		{"short input", 2, 5, 2, true},
		{"short output", 1, 6, 2, true},
		{"negative rows", 2, 6, -1, true},
		{"overflowing rows", 2, 6, math.MaxInt, true},
		{"no input", 1, 0, 1, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := m.Predict(make([]float64, c.dst), make([]float64, c.x), c.nrows)
			if (err != nil) != c.wantErr {
				t.Fatalf("got error %v, want error %v", err, c.wantErr)
			}
		})
	}
}

func TestLightGBMConcurrentPredict(t *testing.T) {
	m := loadTiny(t, string(readFile(t, tinyLightGBM)), Options{})
	x := tinyX()
	want := predictAll(t, m, x)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			got := make([]float64, len(want))
			for range 200 {
				if err := m.Predict(got, x, len(tinyRows)); err != nil {
					errs <- err
					return
				}
				if !slices.Equal(got, want) {
					errs <- fmt.Errorf("got %v, want %v", got, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// fuzzRows are inputs that reach the corners of split decisions.
var fuzzRows = []float64{0, math.NaN(), -1, 1, 0.5, 1e-36, -1e-36, 3, 31, 32, 1e10, -1e10, math.Inf(1), math.Inf(-1), 2147483648, -0.5}

func FuzzLoadLightGBM(f *testing.F) {
	tiny := string(readFile(f, tinyLightGBM))
	f.Add([]byte(tiny), false, uint8(0))
	f.Add([]byte(strings.Replace(tiny, "version=v3", "version=v4", 1)), true, uint8(2))
	f.Add([]byte(tiny[:len(tiny)/2]), false, uint8(0))
	f.Add([]byte(strings.Replace(tiny, "left_child=1 -1 -3", "left_child=1 -1 1", 1)), false, uint8(0))
	f.Add([]byte(strings.Replace(tiny, "num_cat=1", "num_cat=0", 1)), false, uint8(1))
	// Committed models first, so that there is something to fuzz without
	// the oracles; then the oracles' when they are there.
	files := []string{"../configs/quickstart/models/store_ranker/1/model.txt"}
	if dir, ok := oracle.Find(f); ok {
		for _, name := range []string{
			"lgbm-3.0.0_22c8cbf/ClassificationVersicolor.txt",
			"lgbm-3.3.2_3ba5b7b/ClassificationAuditBinNA.txt",
			"lgbm-4.0.0_4be9db8/RFClassificationAudit.txt",
			"lgbm-4.6.0-lineartree_1121ef5/ClassificationIrisNA.txt",
			"lgbm-4.6.0-lineartree_1121ef5/LinearTreeRegressionAuto.txt",
		} {
			files = append(files, filepath.Join(dir, "lightgbm", filepath.FromSlash(name)))
		}
	}
	for _, path := range files {
		data := readFile(f, path)
		f.Add(data, false, uint8(0))
		for _, cut := range []int{len(data) / 7, len(data) / 3, len(data) - 200} {
			f.Add(data[:cut], false, uint8(1))
		}
		// Flip digits into the first tree's structure.
		at := bytes.Index(data, []byte("left_child="))
		for _, b := range []byte{'9', '-', '0'} {
			bad := bytes.Clone(data)
			bad[at+len("left_child=")+2] = b
			f.Add(bad, false, uint8(0))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, raw bool, iterations uint8) {
		opt := Options{Raw: raw, Iterations: int(iterations % 4)}
		m, err := Load(FormatLightGBM, data, opt)
		if err != nil {
			if !errors.Is(err, ErrArtifact) {
				t.Fatalf("error %v does not wrap ErrArtifact", err)
			}
			if strings.Contains(err.Error(), "panicked") {
				t.Fatalf("loader panicked: %v", err)
			}
			return
		}
		nf, no := m.NumFeatures(), m.NumOutputs()
		if nf < 1 || no < 1 || nf > len(data) || no > len(data) {
			t.Fatalf("%d features, %d outputs from %d bytes", nf, no, len(data))
		}
		x := make([]float64, len(fuzzRows)*nf)
		for i := range x {
			x[i] = fuzzRows[(i+i/nf)%len(fuzzRows)]
		}
		dst := make([]float64, len(fuzzRows)*no)
		if err := m.Predict(dst, x, len(fuzzRows)); err != nil {
			t.Fatalf("predict: %v", err)
		}
		// leaves reads every model the loader accepts and scores it alike.
		if _, err := Verify(FormatLightGBM, data, opt, m, x, len(fuzzRows)); err != nil {
			t.Fatalf("verify: %v", err)
		}
	})
}

func BenchmarkLightGBMPredict(b *testing.B) {
	const rel = "lgbm-4.6.0-lineartree_1121ef5"
	data := readFile(b, oracle.Path(b, "lightgbm", rel, "ClassificationAudit.txt"))
	in := oracle.Read(b, oracle.Path(b, "lightgbm", rel, "ClassificationAudit.input.tsv"))
	m, err := Load(FormatLightGBM, data, Options{})
	if err != nil {
		b.Fatal(err)
	}
	const rows = 200
	x := rowsOf(in)[:rows*m.NumFeatures()]
	dst := make([]float64, rows*m.NumOutputs())
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := m.Predict(dst, x, rows); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/rows, "ns/row")
}

// TestDemoModel loads the quickstart's store ranker and reproduces the
// scikit-learn predictions tools/train_demo.py recorded beside it.
func TestDemoModel(t *testing.T) {
	dir := filepath.Join("..", "configs", "quickstart", "models", "store_ranker", "1")
	data := readFile(t, filepath.Join(dir, "model.txt"))
	golden := oracle.Read(t, filepath.Join(dir, "golden.tsv"))
	inputs := []string{
		"store_avg_rating", "store_num_ratings", "store_delivery_minutes", "store_price_level",
		"store_cuisine", "consumer_order_count", "consumer_avg_spend", "hour_of_day", "distance_km",
	}
	if want := append(slices.Clone(inputs), "probability(1)"); !slices.Equal(golden.Header, want) {
		t.Fatalf("golden.tsv header %q, want %q", golden.Header, want)
	}
	m, err := Load(FormatLightGBM, data, Options{Inputs: inputs})
	if err != nil {
		t.Fatal(err)
	}
	if len(golden.Rows) < 10 {
		t.Fatalf("golden.tsv has %d rows", len(golden.Rows))
	}
	var x []float64
	want := &oracle.Table{Header: golden.Header[len(inputs):]}
	nan := 0
	for _, r := range golden.Rows {
		x = append(x, r[:len(inputs)]...)
		want.Rows = append(want.Rows, r[len(inputs):])
		if slices.ContainsFunc(r[:len(inputs)], math.IsNaN) {
			nan++
		}
	}
	if nan == 0 {
		t.Errorf("golden.tsv has no row with a missing input")
	}
	got := predictAll(t, m, x)
	t.Logf("%d golden rows (%d with missing inputs), max abs diff %.3g", len(golden.Rows), nan,
		compareScores(t, got, want, 1e-9))
}
