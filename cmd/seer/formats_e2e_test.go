package main

import (
	"encoding/json"
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

	"github.com/seer-ml/seer/internal/oracle"
	"github.com/seer-ml/seer/internal/redistest"
	"github.com/seer-ml/seer/serving"
)

// formatCase is one model of the generated oracles served end to end: its
// input rows go to Redis as the features of `row` entities, and a query
// with those rows as candidates must give the library's scores.
type formatCase struct {
	name     string // model name
	format   string
	artifact string         // path under ../../models/testdata; "" for an inline linear model
	linear   map[string]any // inline linear model, weights by input name
	input    string         // input TSV under ../../models/testdata
	expected string         // expected TSV under ../../models/testdata
	close    func(got, want float64) bool
}

const modelsTestdata = "../../models/testdata"

var notNameChar = regexp.MustCompile(`[^A-Za-z0-9_]`)

// featureName turns an input column into a catalog feature name.
func featureName(column string) string {
	n := notNameChar.ReplaceAllString(column, "_")
	if n == "" || n[0] >= '0' && n[0] <= '9' {
		n = "_" + n
	}
	return n
}

// xgbFloat32 accepts XGBoost's own float32 value exactly, or one float32
// ulp off where the transform calls exp (XGBoost's expf is not correctly
// rounded; see models.TestXGBoost174).
func xgbFloat32(expLink bool) func(got, want float64) bool {
	return func(got, want float64) bool {
		g, w := float32(got), float32(want)
		if g == w {
			return true
		}
		if !expLink || (g < 0) != (w < 0) || math.IsNaN(got) || math.IsNaN(want) {
			return false
		}
		d := int64(math.Float32bits(g)) - int64(math.Float32bits(w))
		return d == 1 || d == -1
	}
}

// sklearnClose is the models package's scikit-learn tolerance.
func sklearnClose(got, want float64) bool {
	return math.Abs(got-want) <= 1e-12*math.Abs(want)+1e-15
}

// linearFromSklearn turns a scikit-learn linear model export without a
// scaler into a linear model, weights by feature name.
func linearFromSklearn(t *testing.T, stem string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(modelsTestdata, "sklearn", stem+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var sk struct {
		Link      string      `json:"link"`
		Coef      [][]float64 `json:"coef"`
		Intercept []float64   `json:"intercept"`
		Scaler    any         `json:"scaler"`
	}
	if err := json.Unmarshal(data, &sk); err != nil {
		t.Fatal(err)
	}
	if sk.Scaler != nil || len(sk.Coef) == 0 {
		t.Fatalf("%s: not a plain linear model", stem)
	}
	header := oracle.Read(t, filepath.Join(modelsTestdata, "sklearn", stem+".input.tsv")).Header
	weights := map[string]any{}
	for i, col := range header {
		if len(sk.Coef) == 1 {
			weights[featureName(col)] = sk.Coef[0][i]
			continue
		}
		ws := make([]float64, len(sk.Coef))
		for k := range sk.Coef {
			ws[k] = sk.Coef[k][i]
		}
		weights[featureName(col)] = ws
	}
	lin := map[string]any{"link": sk.Link, "weights": weights, "intercept": sk.Intercept}
	if len(sk.Intercept) == 1 {
		lin["intercept"] = sk.Intercept[0]
	}
	return lin
}

// formatsSetup writes a config, a catalog with one float feature of entity
// row per input column of every case, and a model version per case; then
// uploads each case's rows with seer upload, ids from 1000*(k+1) for case k.
func formatsSetup(t *testing.T, addr string, cases []formatCase) (cfg string, inputs []*oracle.Table) {
	t.Helper()
	dir := t.TempDir()
	features := map[string]bool{}
	var catalog strings.Builder
	catalog.WriteString("entities:\n  row: {key: \"row_{id}\"}\nfeatures:\n")
	for _, c := range cases {
		in := oracle.Read(t, filepath.Join(modelsTestdata, c.input))
		inputs = append(inputs, in)
		var decls []map[string]string
		for _, col := range in.Header {
			name := featureName(col)
			decls = append(decls, map[string]string{"name": name})
			if !features[name] {
				features[name] = true
				fmt.Fprintf(&catalog, "  - {name: %s, entity: row, type: float, store: main}\n", name)
			}
		}
		man := map[string]any{"name": c.name, "version": "1", "format": c.format, "inputs": decls}
		vdir := filepath.Join(dir, "models", c.name, "1")
		if c.artifact != "" {
			art := "model" + filepath.Ext(c.artifact)
			copyFile(t, filepath.Join(modelsTestdata, c.artifact), filepath.Join(vdir, art))
			man["artifact"] = art
		} else {
			man["linear"] = c.linear
		}
		text, err := yaml.Marshal(man)
		if err != nil {
			t.Fatal(err)
		}
		writeFiles(t, vdir, map[string]string{"manifest.yaml": string(text)})
	}
	writeFiles(t, dir, map[string]string{
		"catalog.yaml": catalog.String(),
		"seer.yaml": fmt.Sprintf(`listen: 127.0.0.1:0
catalog: catalog.yaml
models: models
models_poll: 0s
stores:
  main: {mode: standalone, addr: %q, read_timeout: 2s}
predict:
  timeout: 5s
  retrieval_timeout: 2s
  max_candidates: 1000
`, addr),
	})
	cfg = filepath.Join(dir, "seer.yaml")
	// One upload of every case's file: features that several cases share
	// get one generation holding all their rows.
	var files []string
	for k, in := range inputs {
		var csv strings.Builder
		csv.WriteString("id")
		for _, col := range in.Header {
			csv.WriteString("," + featureName(col))
		}
		csv.WriteString("\n")
		for r, row := range in.Rows {
			csv.WriteString(strconv.Itoa(rowID(k, r)))
			for _, v := range row {
				csv.WriteString(",")
				if !math.IsNaN(v) { // a missing value is not written: it takes the default
					csv.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
				}
			}
			csv.WriteString("\n")
		}
		file := filepath.Join(dir, cases[k].name+".csv")
		writeFiles(t, dir, map[string]string{filepath.Base(file): csv.String()})
		files = append(files, file)
	}
	out := upload(t, cfg, "row", files...)
	for k, in := range inputs {
		if !strings.Contains(out, fmt.Sprintf("%s.csv: %d rows", cases[k].name, len(in.Rows))) {
			t.Fatalf("upload %s said %q", cases[k].name, out)
		}
	}
	return cfg, inputs
}

func rowID(k, r int) int { return 1000*(k+1) + r }

// scoreRows decodes scores: a number per candidate for single-output
// models, an array per candidate otherwise; null is NaN.
func scoreRows(t *testing.T, raw []json.RawMessage, outputs int) [][]float64 {
	t.Helper()
	out := make([][]float64, len(raw))
	for i, r := range raw {
		if outputs == 1 {
			out[i] = floats(t, []json.RawMessage{r})
			continue
		}
		var cells []json.RawMessage
		if err := json.Unmarshal(r, &cells); err != nil {
			t.Fatalf("score %d: %s is not an array", i, r)
		}
		out[i] = floats(t, cells)
	}
	return out
}

// TestFormatsEndToEnd serves XGBoost (JSON, UBJSON, multi-class),
// scikit-learn (binary and multi-class classifiers, HistGradientBoosting
// with missing values) and linear models (inline in the manifest) with their
// features in a real Redis, uploaded by seer upload, and checks that
// POST /v1/predict gives the training library's scores.
func TestFormatsEndToEnd(t *testing.T) {
	cases := []formatCase{
		{name: "xgb_binary_json", format: "xgboost", artifact: "xgboost/binary_logistic.json",
			input: "xgboost/cancer.input.tsv", expected: "xgboost/binary_logistic.expected.tsv", close: xgbFloat32(true)},
		{name: "xgb_categorical_ubj", format: "xgboost", artifact: "xgboost/categorical.ubj",
			input: "xgboost/categorical.input.tsv", expected: "xgboost/categorical.expected.tsv", close: xgbFloat32(false)},
		{name: "xgb_multi_ubj", format: "xgboost", artifact: "xgboost/multi_softprob.ubj",
			input: "xgboost/iris.input.tsv", expected: "xgboost/multi_softprob.expected.tsv", close: xgbFloat32(true)},
		{name: "xgb_multi_target_json", format: "xgboost", artifact: "xgboost/multi_target.json",
			input: "xgboost/diabetes.input.tsv", expected: "xgboost/multi_target.expected.tsv", close: xgbFloat32(false)},
		{name: "sk_gb_binary", format: "sklearn", artifact: "sklearn/gb_clf_binary.json",
			input: "sklearn/gb_clf_binary.input.tsv", expected: "sklearn/gb_clf_binary.expected.tsv", close: sklearnClose},
		{name: "sk_gb_multi", format: "sklearn", artifact: "sklearn/gb_clf_multi.json",
			input: "sklearn/gb_clf_multi.input.tsv", expected: "sklearn/gb_clf_multi.expected.tsv", close: sklearnClose},
		{name: "sk_hgb_multi_nan", format: "sklearn", artifact: "sklearn/hgb_clf_multi_nan.json",
			input: "sklearn/hgb_clf_multi_nan.input.tsv", expected: "sklearn/hgb_clf_multi_nan.expected.tsv", close: sklearnClose},
		{name: "sk_hgb_reg_nan", format: "sklearn", artifact: "sklearn/hgb_reg_nan.json",
			input: "sklearn/hgb_reg_nan.input.tsv", expected: "sklearn/hgb_reg_nan.expected.tsv", close: sklearnClose},
		{name: "linear_softmax_inline", format: "linear", linear: linearFromSklearn(t, "logreg_multi"),
			input: "sklearn/logreg_multi.input.tsv", expected: "sklearn/logreg_multi.expected.tsv", close: sklearnClose},
		{name: "linear_logistic_inline", format: "linear", linear: linearFromSklearn(t, "logreg_iris_binary"),
			input: "sklearn/logreg_iris_binary.input.tsv", expected: "sklearn/logreg_iris_binary.expected.tsv", close: sklearnClose},
	}
	rs := redistest.Start(t)
	cfg, inputs := formatsSetup(t, rs.Addr, cases)
	inst := serve(t, cfg)

	var listing serving.ModelList
	if code := get(t, inst.url+"/v1/models", &listing); code != 200 || len(listing.Failures) != 0 {
		t.Fatalf("/v1/models: %d, failures %+v", code, listing.Failures)
	}
	formats := map[string]string{}
	for _, m := range listing.Models {
		formats[m.Name] = m.Versions[0].Format
	}

	for k, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if formats[c.name] != c.format {
				t.Errorf("/v1/models says format %q, want %q", formats[c.name], c.format)
			}
			in := inputs[k]
			want := oracle.Read(t, filepath.Join(modelsTestdata, c.expected))
			if len(want.Rows) != len(in.Rows) {
				t.Fatalf("%d input rows, %d expected", len(in.Rows), len(want.Rows))
			}
			cands := make([]map[string]any, len(in.Rows))
			for r := range in.Rows {
				cands[r] = map[string]any{"entities": map[string]string{"row": strconv.Itoa(rowID(k, r))}}
			}
			body, err := json.Marshal(map[string]any{"queries": []any{map[string]any{"id": c.name, "model": c.name, "candidates": cands}}})
			if err != nil {
				t.Fatal(err)
			}
			var ans predictAnswer
			if code := post(t, inst.url+"/v1/predict", string(body), &ans); code != 200 {
				t.Fatalf("status %d: %s", code, ans.Error)
			}
			res := ans.Results[0]
			if res.Version != "1" || res.Degraded || len(res.Scores) != len(in.Rows) {
				t.Fatalf("result: version %q, degraded %v, %d scores for %d rows", res.Version, res.Degraded, len(res.Scores), len(in.Rows))
			}
			got := scoreRows(t, res.Scores, len(want.Header))
			bad, missing := 0, 0
			for r, wrow := range want.Rows {
				if len(got[r]) != len(wrow) {
					t.Fatalf("row %d: %d scores, want %d", r+1, len(got[r]), len(wrow))
				}
				for j, w := range wrow {
					if !c.close(got[r][j], w) {
						if bad++; bad <= 5 {
							t.Errorf("row %d %s: got %.17g, want %.17g", r+1, want.Header[j], got[r][j], w)
						}
					}
				}
				for _, x := range in.Rows[r] {
					if math.IsNaN(x) {
						missing++
					}
				}
			}
			if bad > 5 {
				t.Errorf("%d scores differ", bad)
			}
			t.Logf("%d rows (%d missing values) x %d outputs reproduced through Redis and /v1/predict", len(in.Rows), missing, len(want.Header))
		})
	}

	// debug shows where each value came from: Redis, or the default (missing)
	// where the row's value was not written.
	k := slices.IndexFunc(cases, func(c formatCase) bool { return c.name == "sk_hgb_reg_nan" })
	c, in := cases[k], inputs[k]
	const rows = 20
	cands := make([]map[string]any, rows)
	for r := range rows {
		cands[r] = map[string]any{"entities": map[string]int{"row": rowID(k, r)}}
	}
	body, _ := json.Marshal(map[string]any{"debug": true, "queries": []any{map[string]any{"model": c.name, "candidates": cands}}})
	var ans predictAnswer
	if code := post(t, inst.url+"/v1/predict", string(body), &ans); code != 200 {
		t.Fatalf("debug: status %d: %s", code, ans.Error)
	}
	sources := map[string]int{}
	for r := range rows {
		dbg := ans.Results[0].Debug[r]
		for j, col := range in.Header {
			cell, x := dbg[featureName(col)], in.Rows[r][j]
			sources[cell.Source]++
			switch {
			case math.IsNaN(x) && (cell.Source != "default" || cell.Value != nil):
				t.Errorf("row %d %s: got %s %v, want the default (missing)", r+1, col, cell.Source, cell.Value)
			case !math.IsNaN(x) && (cell.Source != "redis" || cell.Value != x):
				t.Errorf("row %d %s: got %s %v, want redis %v", r+1, col, cell.Source, cell.Value, x)
			}
		}
	}
	if sources["redis"] == 0 || sources["default"] == 0 {
		t.Errorf("debug sources %v: want both redis and default", sources)
	}
}
