package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// manifestRun runs seer manifest and returns its stdout.
func manifestRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), append([]string{"manifest"}, args...), &out, &errb)
	if errb.Len() > 0 {
		t.Errorf("stderr %q", errb.String())
	}
	return out.String(), err
}

// TestManifestQuickstart writes the manifest of the quickstart's model
// against its catalog: catalog features as such, the others as request
// inputs to check; filled in, it validates.
func TestManifestQuickstart(t *testing.T) {
	const catalog = "../../configs/quickstart/catalog.yaml"
	model := "../../configs/quickstart/models/store_ranker/1/model.txt"
	// Flags and the artifact in any order.
	got, err := manifestRun(t, model, "--catalog", catalog, "--name", "store_ranker", "--version", "2")
	if err != nil {
		t.Fatal(err)
	}
	want := `# Written by seer manifest from ` + model + ` (lightgbm, 9 columns named by the artifact).
# Check every TODO and add golden rows, then: seer validate --catalog CATALOG DIR
name: store_ranker
version: "2"
format: lightgbm
artifact: model.txt
inputs:
  - name: store_avg_rating
  - name: store_num_ratings
  - name: store_delivery_minutes
  - name: store_price_level
  - name: store_cuisine
    categories: []  # TODO: the catalog's strings, in the order of the codes the model was trained on
  - name: consumer_order_count
  - name: consumer_avg_spend
  - name: hour_of_day
    source: request  # TODO: not in the catalog: the caller supplies it; check its type and add a default
    type: float
  - name: distance_km
    source: request  # TODO: not in the catalog: the caller supplies it; check its type and add a default
    type: float
# golden:  # TODO: rows the model must reproduce, with the scores its own library gave them
#   - inputs: {NAME: VALUE, ...}  # inputs left out take their defaults
#     scores: [SCORE]
#     tolerance: 1e-6
`
	if got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	again, err := manifestRun(t, "--name=store_ranker", "--catalog="+catalog, "--version", "2", model)
	if err != nil || again != got {
		t.Errorf("flags first: %v, output differs: %v", err, again != got)
	}

	// As written, validate says what is left to do; with the categories
	// filled in, the version loads.
	dir := filepath.Join(t.TempDir(), "store_ranker", "2")
	copyFile(t, model, filepath.Join(dir, "model.txt"))
	writeFiles(t, dir, map[string]string{"manifest.yaml": got})
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"validate", "--catalog", catalog, dir}, &out, &errb); err == nil ||
		!strings.Contains(errb.String(), "store_cuisine") {
		t.Errorf("validate as written: %v, stderr %q; want a problem naming store_cuisine", err, errb.String())
	}
	filled := strings.Replace(got, "categories: []", "categories: [pizza, sushi, burger, thai, mexican]", 1)
	writeFiles(t, dir, map[string]string{"manifest.yaml": filled})
	out.Reset()
	errb.Reset()
	if err := run(context.Background(), []string{"validate", "--catalog", catalog, dir}, &out, &errb); err != nil {
		t.Fatalf("validate filled in: %v\n%s", err, errb.String())
	}
	if !strings.HasPrefix(out.String(), "ok: store_ranker@2 (lightgbm, 9 inputs, 1 outputs, 0 golden rows)\n") || errb.Len() > 0 {
		t.Errorf("validate filled in: stdout %q, stderr %q", out.String(), errb.String())
	}
}

// TestManifestFormats writes manifests for artifacts of other formats and
// kinds of names, and checks that each validates as written.
func TestManifestFormats(t *testing.T) {
	const catalog = "../../configs/quickstart/catalog.yaml"
	tiny, err := os.ReadFile(filepath.Join(modelsTestdata, "lightgbm/tiny.txt"))
	if err != nil {
		t.Fatal(err)
	}
	odd := t.TempDir() + "/odd.txt" // a column name a manifest cannot spell
	if err := os.WriteFile(odd, bytes.Replace(tiny, []byte("feature_names=amount category score"), []byte("feature_names=amount cat(1) score"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		artifact string
		has      []string // lines the manifest holds
		warning  string   // what validate warns, if anything
	}{
		{"lightgbm_odd", odd, []string{"  - name: cat_1_\n    column: cat(1)\n    source: request"}, ""},
		{"xgboost_named", filepath.Join(modelsTestdata, "xgboost/numeric200.ubj.gz"), []string{
			"(xgboost, 16 columns named by the artifact)", "  - name: f00\n    source: request", "  - name: f15\n"}, ""},
		{"xgboost_unnamed", filepath.Join(modelsTestdata, "xgboost/binary_logistic.ubj"), []string{
			"(xgboost, 30 columns which the artifact does not name)",
			"  - name: column_30  # TODO: the artifact does not name its columns: name this one (column 30) and say where it comes from\n    source: request\n    type: float\n"},
			"only golden rows can catch inputs listed in the wrong order"},
		{"sklearn", filepath.Join(modelsTestdata, "sklearn/gb_clf_binary.json"), []string{"  - name: mean_radius\n"}, ""},
		{"onnx_two_tower", filepath.Join(modelsTestdata, "onnx/two_tower.opset17.onnx"), []string{
			"  - name: item_15  # TODO: the artifact does not name its columns: name this one (column 16, of graph input item) and say where it comes from\n" +
				"    source: request\n    type: float\n    tensor: item\n"},
			"only golden rows can catch inputs listed in the wrong order"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			artifact := c.artifact
			if strings.HasSuffix(artifact, ".gz") { // numeric200 is kept gzipped
				artifact = filepath.Join(t.TempDir(), "model.ubj")
				if err := os.WriteFile(artifact, gunzip(t, c.artifact), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := manifestRun(t, "--catalog", catalog, "--name", c.name, artifact)
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range c.has {
				if !strings.Contains(got, h) {
					t.Errorf("manifest lacks %q:\n%s", h, got)
				}
			}
			dir := filepath.Join(t.TempDir(), c.name, "1")
			copyFile(t, artifact, filepath.Join(dir, filepath.Base(artifact)))
			writeFiles(t, dir, map[string]string{"manifest.yaml": got})
			var out, errb bytes.Buffer
			if err := run(context.Background(), []string{"validate", "--catalog", catalog, dir}, &out, &errb); err != nil {
				t.Fatalf("validate: %v\n%s", err, errb.String())
			}
			if !strings.Contains(errb.String(), c.warning) || (c.warning == "" && errb.Len() > 0) {
				t.Errorf("validate: stderr %q, want warning %q", errb.String(), c.warning)
			}
		})
	}
}

// TestManifestErrors: a usage error without a catalog or an artifact, and
// one readable line for files that are not artifacts seer can describe.
func TestManifestErrors(t *testing.T) {
	const catalog = "../../configs/quickstart/catalog.yaml"
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.bin")
	linear := filepath.Join(dir, "linear.json")
	writeFiles(t, dir, map[string]string{"junk.bin": "\x00\x01 not a model", "linear.json": `{"weights": {"a": 1}, "intercept": 0}`})
	cases := []struct {
		args  []string
		usage bool
		want  string
	}{
		{[]string{filepath.Join(modelsTestdata, "lightgbm/tiny.txt")}, true, "needs --catalog"},
		{[]string{"--catalog", catalog}, true, "needs one artifact file"},
		{[]string{"--catalog", catalog, "--name", "bad name", filepath.Join(modelsTestdata, "lightgbm/tiny.txt")}, true, `--name "bad name"`},
		{[]string{"--catalog", catalog, filepath.Join(dir, "absent.txt")}, false, "no such file"},
		{[]string{"--catalog", catalog, junk}, false, "not a model artifact seer can tell from its first bytes"},
		{[]string{"--catalog", catalog, linear}, false, "a linear model matches its weights to inputs by name"},
		{[]string{"--catalog", catalog, filepath.Join(modelsTestdata, "xgboost/legacy.model")}, false, "booster.save_model"},
		{[]string{"--catalog", catalog, dir}, false, "not a regular file"},
	}
	for _, c := range cases {
		out, err := manifestRun(t, c.args...)
		if err == nil || errors.Is(err, errUsage) != c.usage || !strings.Contains(err.Error(), c.want) || strings.Contains(oneLine(err), "\n") {
			t.Errorf("%q: got %v (usage %v), want an error containing %q (usage %v)", c.args, err, errors.Is(err, errUsage), c.want, c.usage)
		}
		if out != "" {
			t.Errorf("%q: stdout %q", c.args, out)
		}
	}
}
