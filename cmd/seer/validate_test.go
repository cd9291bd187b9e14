package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	if err == nil || !strings.Contains(err.Error(), "3 problem(s)") {
		t.Fatalf("got %v, want 3 problems; stderr:\n%s", err, errb.String())
	}
	for _, want := range []string{`version "1" is not its directory's "2"`, "store_num_ratingz: not in the catalog", `unknown transform "cube"`} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errb.String())
		}
	}
	if err := run(context.Background(), []string{"validate"}, &out, &errb); err == nil {
		t.Error("validate without a directory: no error")
	}
}
