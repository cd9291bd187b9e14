package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/seer-ml/seer/internal/oracle"
)

func TestValidate(t *testing.T) {
	const catalog = "../../configs/quickstart/catalog.yaml"
	good := "../../configs/quickstart/models/store_ranker/1"
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"validate", "--catalog", catalog, good}, &out, &errb); err != nil {
		t.Fatalf("validate: %v\n%s", err, errb.String())
	}
	if want := "ok: store_ranker@1 (lightgbm, 9 inputs, 1 outputs, 2 golden rows)\n" +
		"second evaluation: leaves (github.com/dmitryikh/leaves) agrees on the 2 golden and 256 probe rows\n"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
	out.Reset()
	if err := run(context.Background(), []string{"validate", "--config", "../../configs/quickstart.yaml", good}, &out, &errb); err != nil {
		t.Errorf("validate --config: %v", err)
	}

	// A broken copy: every problem is listed, one per line.
	dir := filepath.Join(t.TempDir(), "store_ranker", "2")
	copyFile(t, good+"/model.txt", filepath.Join(dir, "model.txt"))
	manifest, err := os.ReadFile(good + "/manifest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(manifest), "- name: store_num_ratings", "- name: store_num_ratingz", 1)
	text = strings.Replace(text, "categories: [pizza", "transform: cube\n    categories: [pizza", 1)
	writeFiles(t, dir, map[string]string{"manifest.yaml": text})
	out.Reset()
	errb.Reset()
	err = run(context.Background(), []string{"validate", "--catalog", catalog, dir}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "4 problem(s)") {
		t.Fatalf("got %v, want 4 problems; stderr:\n%s", err, errb.String())
	}
	for _, want := range []string{`version "1" is not its directory's "2"`, "store_num_ratingz: not in the catalog", `unknown transform "cube"`,
		"inputs do not match the artifact's names: column 2 is store_num_ratingz in the manifest, store_num_ratings in the artifact"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errb.String())
		}
	}
	if err := run(context.Background(), []string{"validate"}, &out, &errb); err == nil {
		t.Error("validate without a directory: no error")
	}
}

// TestValidateInputNames: a manifest whose inputs are not the artifact's
// column names, in its order, is refused with the differences; one that
// names a column otherwise loads with column:; an artifact that names no
// columns loads with a warning that only golden rows check the order.
func TestValidateInputNames(t *testing.T) {
	const catalog = "../../configs/quickstart/catalog.yaml"
	good := "../../configs/quickstart/models/store_ranker/1"
	manifest, err := os.ReadFile(good + "/manifest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The quickstart's model with two inputs swapped and no golden rows,
	// which passed validate before names were checked.
	text := string(manifest)
	text = text[:strings.Index(text, "golden:")]
	text = strings.Replace(text, "  - name: store_avg_rating\n  - name: store_num_ratings\n", "  - name: store_num_ratings\n  - name: store_avg_rating\n", 1)
	lgb := filepath.Join(t.TempDir(), "store_ranker", "1")
	copyFile(t, good+"/model.txt", filepath.Join(lgb, "model.txt"))
	writeFiles(t, lgb, map[string]string{"manifest.yaml": text})

	numeric := gunzip(t, filepath.Join(modelsTestdata, "xgboost/numeric200.ubj.gz"))
	cols := []string{"f00", "f01", "f02", "f03", "f04", "f05", "f06", "f07", "f08", "f09", "f10", "f11", "f12", "f13", "f14", "f15"}
	swapped := slices.Clone(cols)
	swapped[3], swapped[4] = swapped[4], swapped[3]
	dir := t.TempDir()
	xgbSwapped := writeValidateVersion(t, dir, "xgb_swapped", validateVersion{format: "xgboost", artName: "model.ubj", data: numeric, columns: swapped})
	xgbUnnamed := writeValidateVersion(t, dir, "xgb_unnamed", validateVersion{format: "xgboost", artifact: "xgboost/binary_logistic.ubj",
		columns: oracle.Read(t, filepath.Join(modelsTestdata, "xgboost/cancer.input.tsv")).Header})
	// Inputs named otherwise than the columns, each mapped with column:.
	renamed := filepath.Join(dir, "xgb_renamed", "1")
	mtext := "name: xgb_renamed\nversion: \"1\"\nformat: xgboost\nartifact: model.ubj\ninputs:\n"
	for _, c := range cols {
		mtext += "  - {name: input_" + c + ", source: request, type: float, column: " + c + "}\n"
	}
	writeFiles(t, renamed, map[string]string{"manifest.yaml": mtext, "model.ubj": string(numeric)})

	for _, c := range []struct {
		name, dir string
		stdout    string // "" when refused
		stderr    string
	}{
		{"lightgbm swapped", lgb, "", "column 1 is store_num_ratings in the manifest, store_avg_rating in the artifact (which has store_num_ratings as column 2); " +
			"column 2 is store_avg_rating in the manifest, store_num_ratings in the artifact (which has store_avg_rating as column 1)"},
		{"xgboost swapped", xgbSwapped, "", "column 4 is f04 in the manifest, f03 in the artifact (which has f04 as column 5); " +
			"column 5 is f03 in the manifest, f04 in the artifact (which has f03 as column 4)"},
		{"xgboost renamed with column:", renamed, "ok: xgb_renamed@1 (xgboost, 16 inputs, 1 outputs, 0 golden rows)\n", ""},
		{"xgboost unnamed", xgbUnnamed, "ok: xgb_unnamed@1 (xgboost, 30 inputs, 1 outputs, 0 golden rows)\n",
			"warning: the artifact does not name its input columns: only golden rows can catch inputs listed in the wrong order"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := run(context.Background(), []string{"validate", "--catalog", catalog, c.dir}, &out, &errb)
			t.Logf("stdout:\n%sstderr:\n%s", out.String(), errb.String())
			if (err == nil) != (c.stdout != "") || out.String() != c.stdout {
				t.Errorf("got %v, stdout %q; want stdout %q", err, out.String(), c.stdout)
			}
			if !strings.Contains(errb.String(), c.stderr) {
				t.Errorf("stderr %q lacks %q", errb.String(), c.stderr)
			}
			if c.stdout != "" && c.stderr == "" && errb.Len() > 0 {
				t.Errorf("stderr %q, want nothing", errb.String())
			}
		})
	}
}

// gunzip returns the content of a gzipped file.
func gunzip(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(z)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
