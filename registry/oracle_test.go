package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/internal/oracle"
	"github.com/seer-ml/seer/models"
)

// The oracle tests below run every parity case of the models package again,
// but as a data scientist ships it: a version directory with a manifest
// whose inputs are request features, loaded by LoadVersion and by Open over
// a root holding every case of a set, scored through the version's Plan
// (Prepare, Assemble) and Model, and compared with the predictions the
// training library made, at the tolerances the models tests use.

// oracleCase is one model version to build and the scores it must give.
type oracleCase struct {
	name       string // model name in the registry
	format     string
	artifact   string         // path of the model file; "" for an inline linear model
	linear     map[string]any // the inline linear model
	input      string         // path of the input TSV
	expected   string         // path of the expected TSV
	raw        bool
	iterations int
	// refuse, when not empty, is text the LoadVersion error must hold.
	refuse string
	// check compares the scores with the expected table.
	check scoreCheck
}

// scoreCheck compares got (row-major) with want, reporting through t, and
// returns a note on how close they came.
type scoreCheck func(t *testing.T, got []float64, want *oracle.Table) string

func emptyCatalog(t *testing.T) *features.Catalog {
	t.Helper()
	c, err := features.ParseCatalog([]byte("{}"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_]`)

// inputNames turns an input header into manifest input names: characters
// other than letters, digits and _ become _, and repeats get a suffix.
func inputNames(header []string) []string {
	out := make([]string, len(header))
	seen := make(map[string]bool)
	for i, h := range header {
		n := unsafeName.ReplaceAllString(h, "_")
		if n == "" || n[0] >= '0' && n[0] <= '9' {
			n = "_" + n
		}
		for base, k := n, 2; seen[n]; k++ {
			n = base + "_" + strconv.Itoa(k)
		}
		seen[n] = true
		out[i] = n
	}
	return out
}

var unsafeModelName = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// modelName turns a case label into a registry model name.
func modelName(label string) string {
	return unsafeModelName.ReplaceAllString(strings.ReplaceAll(label, "@", "_at"), "_")
}

// tables caches the TSV files of a set: many cases share an input file.
type tables map[string]*oracle.Table

func (tb tables) read(t *testing.T, path string) *oracle.Table {
	t.Helper()
	if tab, ok := tb[path]; ok {
		return tab
	}
	tab := oracle.Read(t, path)
	tb[path] = tab
	return tab
}

// writeOracleVersion writes root/<name>/1/ with a manifest reading one
// float request input per input column and a copy of the artifact.
func writeOracleVersion(t *testing.T, root string, c *oracleCase, header []string) string {
	t.Helper()
	dir := filepath.Join(root, c.name, "1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	inputs := make([]map[string]string, len(header))
	for i, n := range inputNames(header) {
		inputs[i] = map[string]string{"name": n, "source": features.SourceRequest, "type": "float"}
		if n != header[i] {
			inputs[i]["column"] = header[i] // the artifact's name for the column
		}
	}
	man := map[string]any{
		"name":    c.name,
		"version": "1",
		"format":  c.format,
		"output":  models.OutputTransformed,
		"inputs":  inputs,
	}
	if c.raw {
		man["output"] = models.OutputRaw
	}
	if c.iterations > 0 {
		man["iterations"] = c.iterations
	}
	if c.artifact != "" {
		data, err := os.ReadFile(c.artifact)
		if err != nil {
			t.Fatal(err)
		}
		name := "model" + filepath.Ext(c.artifact)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		man["artifact"] = name
	} else {
		man["linear"] = c.linear
	}
	text, err := yaml.Marshal(man)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), text, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// scoreThroughPlan scores the rows of in the way a request does: each row
// is a candidate whose request features are the row's values (NaN: not
// supplied, so the input's default, missing, applies), prepared and
// assembled by the version's plan and scored by its model. It also checks
// that the assembled rows are the input rows.
func scoreThroughPlan(t *testing.T, v *Version, in *oracle.Table) []float64 {
	t.Helper()
	p := v.Plan
	ni := len(p.Inputs)
	if ni != len(in.Header) {
		t.Fatalf("the plan has %d inputs, the input file %d columns", ni, len(in.Header))
	}
	q := &features.Query{Candidates: make([]features.Candidate, len(in.Rows))}
	for r, row := range in.Rows {
		f := make(map[string]features.Value, ni)
		for k, x := range row {
			if !math.IsNaN(x) {
				f[p.Inputs[k].Name] = features.FloatValue(x)
			}
		}
		q.Candidates[r].Features = f
	}
	var b features.Batch
	if err := p.Prepare(q, &b); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	if len(b.Lookups) != 0 {
		t.Fatalf("%d store lookups for request-only inputs", len(b.Lookups))
	}
	rows := q.Rows()
	x := make([]float64, rows*ni)
	p.Assemble(q, &b, x, nil)
	for r, row := range in.Rows {
		for k, want := range row {
			if got := x[r*ni+k]; got != want && !(math.IsNaN(got) && math.IsNaN(want)) {
				t.Fatalf("row %d column %s: assembled %v, input %v", r+1, in.Header[k], got, want)
			}
		}
	}
	out := make([]float64, rows*v.Model.NumOutputs())
	if err := v.Model.Predict(out, x, rows); err != nil {
		t.Fatalf("predict: %v", err)
	}
	return out
}

// runOracleSet builds a version directory per case under one root, loads
// each with LoadVersion and then the whole root with Open, scores every
// case through both and compares with its expected file. Cases that must
// be refused go to a root of their own, which Open must refuse too. It
// returns how many cases were reproduced and refused.
func runOracleSet(t *testing.T, cases []oracleCase) (passed, refused int) {
	t.Helper()
	if len(cases) == 0 {
		t.Fatal("no cases")
	}
	cat := emptyCatalog(t)
	root, badRoot := t.TempDir(), t.TempDir()
	tabs := tables{}
	var good []*oracleCase
	t.Run("LoadVersion", func(t *testing.T) {
		for i := range cases {
			c := &cases[i]
			in := tabs.read(t, c.input)
			if c.refuse != "" {
				dir := writeOracleVersion(t, badRoot, c, in.Header)
				_, err := LoadVersion(dir, cat)
				if err == nil || !errors.Is(err, models.ErrArtifact) || !strings.Contains(err.Error(), c.refuse) {
					t.Errorf("%s: got error %v, want a refusal wrapping ErrArtifact naming %q", c.name, err, c.refuse)
					continue
				}
				refused++
				continue
			}
			dir := writeOracleVersion(t, root, c, in.Header)
			v, err := LoadVersion(dir, cat)
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				continue
			}
			if t.Run(c.name, func(t *testing.T) { checkOracleCase(t, c, v, in, tabs) }) {
				good = append(good, c)
			}
		}
	})
	t.Run("Open", func(t *testing.T) {
		if refused > 0 {
			if _, err := Open(cat, Options{Root: badRoot}); err == nil || !errors.Is(err, models.ErrArtifact) {
				t.Errorf("open over refused versions: got %v, want an error wrapping ErrArtifact", err)
			}
		}
		r, err := Open(cat, Options{Root: root})
		if err != nil {
			t.Fatalf("open the root of %d versions: %v", len(cases)-refused, err)
		}
		snap := r.Snapshot()
		if n := len(snap.Models()); n != len(cases)-refused {
			t.Errorf("the registry holds %d models, want %d", n, len(cases)-refused)
		}
		for _, c := range good {
			v, err := snap.Resolve(c.name)
			if err != nil {
				t.Errorf("resolve %s: %v", c.name, err)
				continue
			}
			if t.Run(c.name, func(t *testing.T) { checkOracleCase(t, c, v, tabs.read(t, c.input), tabs) }) {
				passed++
			}
		}
	})
	return passed, refused
}

func checkOracleCase(t *testing.T, c *oracleCase, v *Version, in *oracle.Table, tabs tables) {
	t.Helper()
	want := tabs.read(t, c.expected)
	if len(want.Rows) != len(in.Rows) || len(in.Rows) == 0 {
		t.Fatalf("%d input rows, %d expected rows", len(in.Rows), len(want.Rows))
	}
	if no := v.Model.NumOutputs(); no != len(want.Header) {
		t.Fatalf("the model gives %d outputs, the expected file has %d (%q)", no, len(want.Header), want.Header)
	}
	got := scoreThroughPlan(t, v, in)
	if note := c.check(t, got, want); note != "" {
		t.Log(note)
	}
}

// compareEach checks every score with close(got, want, column) and
// reports the first few that differ.
func compareEach(t *testing.T, got []float64, want *oracle.Table, close func(g, w float64, col int) bool) (maxAbs float64) {
	t.Helper()
	no := len(want.Header)
	bad := 0
	for r, row := range want.Rows {
		for j, w := range row {
			g := got[r*no+j]
			if !close(g, w, j) {
				if bad++; bad <= 5 {
					t.Errorf("row %d %s: got %.17g, want %.17g", r+1, want.Header[j], g, w)
				}
			}
			if d := math.Abs(g - w); d > maxAbs {
				maxAbs = d
			}
		}
	}
	if bad > 5 {
		t.Errorf("... %d of %d scores differ", bad, len(got))
	}
	return maxAbs
}

// absRel accepts |got-want| <= abs + rel*|want|; NaN only matches NaN.
func absRel(abs, rel float64) scoreCheck {
	return func(t *testing.T, got []float64, want *oracle.Table) string {
		t.Helper()
		d := compareEach(t, got, want, func(g, w float64, _ int) bool {
			if math.IsNaN(g) || math.IsNaN(w) {
				return math.IsNaN(g) && math.IsNaN(w)
			}
			return math.Abs(g-w) <= abs+rel*math.Abs(w)
		})
		return fmt.Sprintf("%d rows: max abs diff %.3g", len(want.Rows), d)
	}
}

// xgbPrinted is the tolerance of XGBoost's oracles, printed at float32
// precision: a relative 2e-7, with an absolute floor of 2e-7 times the
// largest magnitude in the output column (a float32 sum that cancels to
// near zero is exact only to the units of its terms).
func xgbPrinted(t *testing.T, got []float64, want *oracle.Table) string {
	t.Helper()
	scale := make([]float64, len(want.Header))
	for _, r := range want.Rows {
		for j, v := range r {
			scale[j] = max(scale[j], math.Abs(v))
		}
	}
	d := compareEach(t, got, want, func(g, w float64, j int) bool {
		if math.IsNaN(w) {
			return math.IsNaN(g)
		}
		diff := math.Abs(g - w)
		return diff <= 2e-7*math.Abs(w) || diff <= 2e-7*scale[j]
	})
	return fmt.Sprintf("%d rows: max abs diff %.3g", len(want.Rows), d)
}

// ulp32 returns how many float32 steps apart a and b are once rounded to
// float32; 1<<30 across signs or infinities.
func ulp32(a, b float64) int {
	x, y := float32(a), float32(b)
	if x == y || x != x && y != y {
		return 0
	}
	if math.IsInf(float64(x), 0) || math.IsInf(float64(y), 0) || (x < 0) != (y < 0) {
		return 1 << 30
	}
	d := int64(math.Float32bits(x)) - int64(math.Float32bits(y))
	return int(min(max(d, -d), 1<<30))
}

// xgbExact accepts XGBoost 1.7.4's own float32 values exactly, except one
// float32 ulp where the transform calls exp: XGBoost uses glibc's expf,
// which is not correctly rounded (see the models package's TestXGBoost174).
func xgbExact(expLink bool) scoreCheck {
	return func(t *testing.T, got []float64, want *oracle.Table) string {
		t.Helper()
		off := 0
		compareEach(t, got, want, func(g, w float64, _ int) bool {
			switch ulp32(g, w) {
			case 0:
				return true
			case 1:
				off++
				return expLink
			}
			return false
		})
		if off > 0 {
			return fmt.Sprintf("%d rows: %d values one float32 ulp off through expf", len(want.Rows), off)
		}
		return fmt.Sprintf("%d rows: every value exact in float32", len(want.Rows))
	}
}

// lgbReleases lists the LightGBM oracle releases: every directory with a
// cases.json, at least the four known ones.
func lgbReleases(t *testing.T) []string {
	t.Helper()
	known := []string{"lgbm-3.0.0_22c8cbf", "lgbm-3.3.2_3ba5b7b", "lgbm-4.0.0_4be9db8", "lgbm-4.6.0-lineartree_1121ef5"}
	for _, rel := range known {
		oracle.Path(t, "lightgbm", rel, "cases.json")
	}
	found, err := filepath.Glob(filepath.Join(oracle.Dir(t), "lightgbm", "*", "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range found {
		if rel := filepath.Base(filepath.Dir(f)); !slices.Contains(known, rel) {
			known = append(known, rel)
		}
	}
	return known
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestLightGBMOraclesThroughRegistry runs every case of every LightGBM
// release through the registry, linear-tree models included.
func TestLightGBMOraclesThroughRegistry(t *testing.T) {
	for _, rel := range lgbReleases(t) {
		t.Run(rel, func(t *testing.T) {
			var list []struct {
				Model    string `json:"model"`
				Input    string `json:"input"`
				Expected string `json:"expected"`
				NIter    int    `json:"n_iter"`
			}
			readJSON(t, oracle.Path(t, "lightgbm", rel, "cases.json"), &list)
			var cases []oracleCase
			for _, lc := range list {
				cases = append(cases, oracleCase{
					name:       modelName(rel + "_" + strings.TrimSuffix(lc.Expected, ".expected.tsv")),
					format:     models.FormatLightGBM,
					artifact:   oracle.Path(t, "lightgbm", rel, lc.Model),
					input:      oracle.Path(t, "lightgbm", rel, lc.Input),
					expected:   oracle.Path(t, "lightgbm", rel, lc.Expected),
					iterations: lc.NIter,
					check:      absRel(1e-12, 1e-12),
				})
			}
			passed, refused := runOracleSet(t, cases)
			t.Logf("%s: %d of %d cases reproduced through the registry", rel, passed, len(cases))
			if passed != len(cases) || refused != 0 {
				t.Errorf("%d cases not reproduced", len(cases)-passed)
			}
		})
	}
}

// TestXGBoostOraclesThroughRegistry runs every case of the XGBoost 3.4.1
// oracles through the registry.
func TestXGBoostOraclesThroughRegistry(t *testing.T) {
	var list []struct {
		Case            string `json:"case"`
		Outputs         int    `json:"outputs"`
		LimitIterations int    `json:"limit_iterations"`
	}
	readJSON(t, oracle.Path(t, "xgboost", "manifest.json"), &list)
	var cases []oracleCase
	for _, xc := range list {
		cases = append(cases, oracleCase{
			name:       modelName("xgboost_" + xc.Case),
			format:     models.FormatXGBoost,
			artifact:   oracle.Path(t, "xgboost", xc.Case+".json"),
			input:      oracle.Path(t, "xgboost", xc.Case+".input.tsv"),
			expected:   oracle.Path(t, "xgboost", xc.Case+".expected.tsv"),
			iterations: xc.LimitIterations,
			check:      xgbPrinted,
		})
	}
	passed, _ := runOracleSet(t, cases)
	t.Logf("XGBoost 3.4.1 oracles: %d of %d cases reproduced through the registry", passed, len(cases))
	if passed != len(cases) {
		t.Errorf("%d cases not reproduced", len(cases)-passed)
	}
}

// TestXGBoost174ThroughRegistry runs the cases generated with XGBoost
// 1.7.4 (models/testdata/xgboost), as JSON and as UBJSON, raw and
// transformed, and limited to their first iterations where they say so.
func TestXGBoost174ThroughRegistry(t *testing.T) {
	dir := filepath.Join("..", "models", "testdata", "xgboost")
	var man struct {
		Version string `json:"xgboost_version"`
		Cases   []struct {
			Case      string `json:"case"`
			Input     string `json:"input"`
			Objective string `json:"objective"`
			Limit     int    `json:"limit"`
		} `json:"cases"`
	}
	readJSON(t, filepath.Join(dir, "manifest.json"), &man)
	if man.Version != "1.7.4" || len(man.Cases) == 0 {
		t.Fatalf("manifest: version %q, %d cases", man.Version, len(man.Cases))
	}
	expLink := map[string]bool{
		"binary:logistic": true, "reg:logistic": true, "multi:softprob": true,
		"count:poisson": true, "reg:gamma": true, "reg:tweedie": true,
		"survival:aft": true, "survival:cox": true,
	}
	var cases []oracleCase
	for _, xc := range man.Cases {
		for _, ext := range []string{".json", ".ubj"} {
			base := oracleCase{
				format:   models.FormatXGBoost,
				artifact: filepath.Join(dir, xc.Case+ext),
				input:    filepath.Join(dir, xc.Input),
			}
			raw, tr := base, base
			raw.name, raw.raw, raw.expected, raw.check = modelName("xgb174_"+xc.Case+ext+"_raw"), true, filepath.Join(dir, xc.Case+".raw.tsv"), xgbExact(false)
			tr.name, tr.expected, tr.check = modelName("xgb174_"+xc.Case+ext), filepath.Join(dir, xc.Case+".expected.tsv"), xgbExact(expLink[xc.Objective])
			cases = append(cases, raw, tr)
			if xc.Limit > 0 {
				lim := tr
				lim.name = modelName(fmt.Sprintf("xgb174_%s%s@%d", xc.Case, ext, xc.Limit))
				lim.iterations = xc.Limit
				lim.expected = filepath.Join(dir, fmt.Sprintf("%s@%d.expected.tsv", xc.Case, xc.Limit))
				cases = append(cases, lim)
			}
		}
	}
	passed, _ := runOracleSet(t, cases)
	t.Logf("XGBoost 1.7.4 generated cases: %d of %d (JSON and UBJSON, raw, transformed, limited) reproduced through the registry", passed, len(cases))
	if passed != len(cases) {
		t.Errorf("%d cases not reproduced", len(cases)-passed)
	}
}

// sklearnTolerance is the models package's: 1e-12 relative plus 1e-15
// absolute (exp, log and BLAS summation order differ by an ulp or two).
var sklearnTolerance = absRel(1e-15, 1e-12)

// TestSklearnThroughRegistry runs every case generated with scikit-learn
// 1.2.1 (models/testdata/sklearn): transformed, raw and staged.
func TestSklearnThroughRegistry(t *testing.T) {
	dir := filepath.Join("..", "models", "testdata", "sklearn")
	arts, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(arts) < 20 {
		t.Fatalf("%d scikit-learn cases in %s, want at least 20", len(arts), dir)
	}
	staged := regexp.MustCompile(`@(\d+)\.expected\.tsv$`)
	var cases []oracleCase
	for _, art := range arts {
		stem := strings.TrimSuffix(filepath.Base(art), ".json")
		base := oracleCase{
			name:     modelName("sklearn_" + stem),
			format:   models.FormatSklearn,
			artifact: art,
			input:    filepath.Join(dir, stem+".input.tsv"),
			expected: filepath.Join(dir, stem+".expected.tsv"),
			check:    sklearnTolerance,
		}
		cases = append(cases, base)
		if p := filepath.Join(dir, stem+".raw.expected.tsv"); fileExists(p) {
			raw := base
			raw.name, raw.raw, raw.expected = base.name+"_raw", true, p
			cases = append(cases, raw)
		}
		more, _ := filepath.Glob(filepath.Join(dir, stem+"@*.expected.tsv"))
		for _, p := range more {
			n, _ := strconv.Atoi(staged.FindStringSubmatch(p)[1])
			st := base
			st.name, st.iterations, st.expected = modelName(fmt.Sprintf("%s@%d", base.name, n)), n, p
			cases = append(cases, st)
		}
	}
	passed, _ := runOracleSet(t, cases)
	t.Logf("scikit-learn 1.2.1 cases: %d of %d (%d models; transformed, raw, staged) reproduced through the registry", passed, len(cases), len(arts))
	if passed != len(cases) {
		t.Errorf("%d cases not reproduced", len(cases)-passed)
	}
}

// TestLinearThroughRegistry writes the scikit-learn linear and logistic
// models without a scaler as inline linear models in their manifests,
// weights by input name, and checks they give scikit-learn's predictions.
func TestLinearThroughRegistry(t *testing.T) {
	dir := filepath.Join("..", "models", "testdata", "sklearn")
	var cases []oracleCase
	for _, stem := range []string{"linreg", "logreg_iris_binary", "logreg_multi"} {
		var sk struct {
			Link      string      `json:"link"`
			Coef      [][]float64 `json:"coef"`
			Intercept []float64   `json:"intercept"`
			Scaler    any         `json:"scaler"`
		}
		readJSON(t, filepath.Join(dir, stem+".json"), &sk)
		if sk.Scaler != nil || len(sk.Coef) == 0 {
			t.Fatalf("%s: not a plain linear model", stem)
		}
		in := oracle.Read(t, filepath.Join(dir, stem+".input.tsv"))
		weights := make(map[string]any) // by the artifact's column names
		for i, name := range in.Header {
			if len(sk.Coef) == 1 {
				weights[name] = sk.Coef[0][i]
				continue
			}
			ws := make([]float64, len(sk.Coef))
			for k := range sk.Coef {
				ws[k] = sk.Coef[k][i]
			}
			weights[name] = ws
		}
		lin := map[string]any{"link": sk.Link, "weights": weights, "intercept": sk.Intercept}
		if len(sk.Intercept) == 1 {
			lin["intercept"] = sk.Intercept[0]
		}
		c := oracleCase{
			name:     modelName("linear_" + stem),
			format:   models.FormatLinear,
			linear:   lin,
			input:    filepath.Join(dir, stem+".input.tsv"),
			expected: filepath.Join(dir, stem+".expected.tsv"),
			check:    sklearnTolerance,
		}
		cases = append(cases, c)
		if p := filepath.Join(dir, stem+".raw.expected.tsv"); fileExists(p) {
			raw := c
			raw.name, raw.raw, raw.expected = c.name+"_raw", true, p
			cases = append(cases, raw)
		}
	}
	passed, _ := runOracleSet(t, cases)
	t.Logf("linear models (scikit-learn coefficients, inline): %d of %d cases reproduced through the registry", passed, len(cases))
	if passed != len(cases) {
		t.Errorf("%d cases not reproduced", len(cases)-passed)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
