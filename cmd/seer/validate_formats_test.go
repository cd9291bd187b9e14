package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/seer-ml/seer/internal/oracle"
)

// validateVersion describes a version directory for seer validate: request
// inputs named after an input file's columns, an artifact (or an inline
// linear model), and golden rows.
type validateVersion struct {
	format   string
	artifact string // under ../../models/testdata, or "" for inline
	artName  string // the artifact's name in the version directory
	data     []byte // the artifact's bytes, written as artName, instead of a file
	linear   map[string]any
	columns  []string
	golden   []map[string]any
}

// writeValidateVersion writes dir/<name>/1 and returns its path.
func writeValidateVersion(t *testing.T, dir, name string, v validateVersion) string {
	t.Helper()
	vdir := filepath.Join(dir, name, "1")
	var inputs []map[string]string
	for _, col := range v.columns {
		inputs = append(inputs, map[string]string{"name": featureName(col), "source": "request", "type": "float"})
	}
	man := map[string]any{"name": name, "version": "1", "format": v.format, "inputs": inputs}
	if v.golden != nil {
		man["golden"] = v.golden
	}
	switch {
	case v.data != nil:
		writeFiles(t, vdir, map[string]string{v.artName: string(v.data)})
		man["artifact"] = v.artName
	case v.artifact != "":
		art := v.artName
		if art == "" {
			art = "model" + filepath.Ext(v.artifact)
		}
		copyFile(t, filepath.Join(modelsTestdata, v.artifact), filepath.Join(vdir, art))
		man["artifact"] = art
	default:
		man["linear"] = v.linear
	}
	text, err := yaml.Marshal(man)
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, vdir, map[string]string{"manifest.yaml": string(text)})
	return vdir
}

// oracleGolden returns row r of an input file and its expected scores as a
// golden row; missing values are left out, so that they take the input's
// default (missing).
func oracleGolden(t *testing.T, input, expected string, r int) (columns []string, golden []map[string]any) {
	t.Helper()
	in := oracle.Read(t, filepath.Join(modelsTestdata, input))
	want := oracle.Read(t, filepath.Join(modelsTestdata, expected))
	inputs := map[string]any{}
	for j, col := range in.Header {
		if x := in.Rows[r][j]; !math.IsNaN(x) {
			inputs[featureName(col)] = x
		}
	}
	return in.Header, []map[string]any{{"inputs": inputs, "scores": want.Rows[r]}}
}

// TestValidateFormats runs seer validate on a version directory of every
// format, each with golden rows from its library's predictions.
func TestValidateFormats(t *testing.T) {
	dir := t.TempDir()
	xgbCols, xgbGolden := oracleGolden(t, "xgboost/cancer.input.tsv", "xgboost/binary_logistic.expected.tsv", 2)
	multiCols, multiGolden := oracleGolden(t, "xgboost/iris.input.tsv", "xgboost/multi_softprob.expected.tsv", 0)
	skCols, skGolden := oracleGolden(t, "sklearn/hgb_clf_binary_nan.input.tsv", "sklearn/hgb_clf_binary_nan.expected.tsv", 0)
	linCols, linGolden := oracleGolden(t, "sklearn/logreg_multi.input.tsv", "sklearn/logreg_multi.expected.tsv", 3)
	regCols, regGolden := oracleGolden(t, "sklearn/linreg.input.tsv", "sklearn/linreg.expected.tsv", 5)
	if !math.IsNaN(oracle.Read(t, filepath.Join(modelsTestdata, "sklearn/hgb_clf_binary_nan.input.tsv")).Rows[0][2]) {
		t.Fatal("hgb_clf_binary_nan row 1 has no missing value to test")
	}
	// linreg as a linear JSON artifact, weights by name.
	regJSON, err := json.Marshal(linearFromSklearn(t, "linreg"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		v    validateVersion
		want string
	}{
		{"lgb_tiny", validateVersion{format: "lightgbm", artifact: "lightgbm/tiny.txt", columns: []string{"amount", "category", "score"},
			// Worked out by hand in models.tinyRows: raw 0.1 + 0.05 + 0.01.
			golden: []map[string]any{{"inputs": map[string]any{"amount": 0, "category": 3, "score": 1}, "scores": []float64{1 / (1 + math.Exp(-0.16))}}}},
			"ok: lgb_tiny@1 (lightgbm, 3 inputs, 1 outputs, 1 golden rows)\n" +
				"second evaluation: leaves (github.com/dmitryikh/leaves) agrees on the 1 golden and 256 probe rows"},
		{"xgb_json", validateVersion{format: "xgboost", artifact: "xgboost/multi_softprob.json", columns: multiCols, golden: multiGolden},
			"ok: xgb_json@1 (xgboost, 4 inputs, 3 outputs, 1 golden rows)"},
		{"xgb_ubj", validateVersion{format: "xgboost", artifact: "xgboost/binary_logistic.ubj", columns: xgbCols, golden: xgbGolden},
			"ok: xgb_ubj@1 (xgboost, 30 inputs, 1 outputs, 1 golden rows)"},
		{"sk_hgb", validateVersion{format: "sklearn", artifact: "sklearn/hgb_clf_binary_nan.json", columns: skCols, golden: skGolden},
			"ok: sk_hgb@1 (sklearn, 30 inputs, 1 outputs, 1 golden rows)"},
		{"linear_inline", validateVersion{format: "linear", linear: linearFromSklearn(t, "logreg_multi"), columns: linCols, golden: linGolden},
			"ok: linear_inline@1 (linear, 4 inputs, 3 outputs, 1 golden rows)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vdir := writeValidateVersion(t, dir, tt.name, tt.v)
			var out, errb bytes.Buffer
			if err := run(context.Background(), []string{"validate", vdir}, &out, &errb); err != nil {
				t.Fatalf("validate: %v\n%s", err, errb.String())
			}
			if got := strings.TrimSpace(out.String()); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}

	// A linear model as a JSON artifact file.
	vdir := writeValidateVersion(t, dir, "linear_file", validateVersion{format: "linear", artName: "linreg.json", data: regJSON, columns: regCols, golden: regGolden})
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"validate", vdir}, &out, &errb); err != nil {
		t.Fatalf("linear file: %v\n%s", err, errb.String())
	}
	if want := "ok: linear_file@1 (linear, 10 inputs, 1 outputs, 1 golden rows)\n"; out.String() != want {
		t.Errorf("linear file: got %q, want %q", out.String(), want)
	}

	// A golden row the model does not reproduce is a problem.
	bad := validateVersion{format: "xgboost", artifact: "xgboost/binary_logistic.ubj", columns: xgbCols, golden: xgbGolden}
	bad.golden = []map[string]any{{"inputs": xgbGolden[0]["inputs"], "scores": []float64{xgbGolden[0]["scores"].([]float64)[0] + 0.01}}}
	errb.Reset()
	if err := run(context.Background(), []string{"validate", writeValidateVersion(t, dir, "xgb_bad_golden", bad)}, &out, &errb); err == nil ||
		!strings.Contains(errb.String(), "golden row 1: score 0") {
		t.Errorf("wrong golden score: got %v, stderr %q", err, errb.String())
	}
}

// TestValidateRefusesMismatchedFormat: an artifact whose bytes say another
// format than the manifest's is refused, naming what the bytes are.
func TestValidateRefusesMismatchedFormat(t *testing.T) {
	dir := t.TempDir()
	cancer := oracle.Read(t, filepath.Join(modelsTestdata, "xgboost/cancer.input.tsv")).Header
	iris := oracle.Read(t, filepath.Join(modelsTestdata, "xgboost/iris.input.tsv")).Header
	tests := []struct {
		name     string
		format   string
		artifact string
		artName  string
		columns  []string
		detected string
	}{
		{"xgboost json as sklearn", "sklearn", "xgboost/binary_logistic.json", "", cancer, "an XGBoost JSON or UBJSON model"},
		{"xgboost ubjson as lightgbm", "lightgbm", "xgboost/multi_softprob.ubj", "model.txt", iris, "an XGBoost JSON or UBJSON model"},
		{"lightgbm as xgboost", "xgboost", "lightgbm/tiny.txt", "model.json", []string{"amount", "category", "score"}, "a LightGBM text model"},
		{"sklearn as xgboost", "xgboost", "sklearn/gb_clf_binary.json", "", cancer, "a scikit-learn export"},
		{"sklearn as linear", "linear", "sklearn/logreg_multi.json", "", iris, "a scikit-learn export"},
		{"old binary xgboost", "xgboost", "xgboost/legacy.model", "", cancer, `an old binary XGBoost model (re-save it from XGBoost as JSON: booster.save_model("model.json"))`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := fmt.Sprintf("m%d", i)
			vdir := writeValidateVersion(t, dir, name, validateVersion{format: tt.format, artifact: tt.artifact, artName: tt.artName, columns: tt.columns})
			var out, errb bytes.Buffer
			err := run(context.Background(), []string{"validate", vdir}, &out, &errb)
			if err == nil || !strings.Contains(err.Error(), "1 problem(s)") {
				t.Fatalf("got %v, want one problem; stdout %q", err, out.String())
			}
			want := fmt.Sprintf("the artifact is %s (detected from its bytes), but the format is %s", tt.detected, tt.format)
			if !strings.Contains(errb.String(), want) {
				t.Errorf("stderr %q does not say %q", errb.String(), want)
			}
		})
	}
}

// TestValidateLinearTree validates a LightGBM linear-tree model: leaves,
// the second evaluation, checks its trees' paths but not the linear models
// in its leaves, so validate says so, and warns when no golden row checks
// them either.
func TestValidateLinearTree(t *testing.T) {
	const rel = "lgbm-4.6.0-lineartree_1121ef5"
	model, err := os.ReadFile(oracle.Path(t, "lightgbm", rel, "LinearTreeRegressionAutoNA.txt"))
	if err != nil {
		t.Fatal(err)
	}
	in := oracle.Read(t, oracle.Path(t, "lightgbm", rel, "LinearTreeRegressionAutoNA.input.tsv"))
	want := oracle.Read(t, oracle.Path(t, "lightgbm", rel, "LinearTreeRegressionAutoNA.expected.tsv"))
	inputs := map[string]any{}
	for j, col := range in.Header {
		if x := in.Rows[0][j]; !math.IsNaN(x) {
			inputs[featureName(col)] = x
		}
	}
	golden := []map[string]any{{"inputs": inputs, "scores": want.Rows[0], "tolerance": 1e-12}}
	const note = "second evaluation: leaves (github.com/dmitryikh/leaves) agrees on the %d golden and 256 probe rows; " +
		"it does not check the linear models in the leaves of linear trees (leaves ignores them)\n"
	dir := t.TempDir()
	for _, c := range []struct {
		name    string
		golden  []map[string]any
		stdout  string
		warning bool
	}{
		{"with_golden", golden, fmt.Sprintf("ok: with_golden@1 (lightgbm, 7 inputs, 1 outputs, 1 golden rows)\n"+note, 1), false},
		{"without_golden", nil, fmt.Sprintf("ok: without_golden@1 (lightgbm, 7 inputs, 1 outputs, 0 golden rows)\n"+note, 0), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			vdir := writeValidateVersion(t, dir, c.name, validateVersion{format: "lightgbm", artName: "model.txt", data: model, columns: in.Header, golden: c.golden})
			var out, errb bytes.Buffer
			if err := run(context.Background(), []string{"validate", vdir}, &out, &errb); err != nil {
				t.Fatalf("validate: %v\n%s", err, errb.String())
			}
			if out.String() != c.stdout {
				t.Errorf("stdout %q, want %q", out.String(), c.stdout)
			}
			warned := strings.Contains(errb.String(), "warning: the second evaluation does not check the linear models in the leaves of linear trees (leaves ignores them); only golden rows do, and the manifest has none")
			if warned != c.warning {
				t.Errorf("stderr %q; want the warning: %v", errb.String(), c.warning)
			}
		})
	}
}
