package registry

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/internal/oracle"
	"github.com/seer-ml/seer/models"
)

// onnxOracles is where tools/onnx_oracles.py writes the ONNX parity cases.
const onnxOracles = "../models/testdata/onnx"

// onnxColumn is one column of an ONNX oracle's input table: the manifest
// input it becomes and the graph input ("tensor") it fills.
type onnxColumn struct {
	input, tensor string
	integer       bool
}

// onnxColumns reads an input header of "tensor[j]" columns. ids and flags
// are the int64 graph inputs of the oracles. A tensor of one column gives
// its input its own name, which fills it without tensor: and is the
// column's name in the artifact.
func onnxColumns(header []string) ([]onnxColumn, int) {
	cols := make([]onnxColumn, len(header))
	tensors := map[string]int{}
	for _, h := range header {
		tensor, _, _ := strings.Cut(h, "[")
		tensors[tensor]++
	}
	for i, h := range header {
		tensor, _, _ := strings.Cut(h, "[")
		name := inputNames(header)[i]
		if tensors[tensor] == 1 {
			name = tensor
		}
		cols[i] = onnxColumn{input: name, tensor: tensor, integer: tensor == "ids" || tensor == "flags"}
	}
	return cols, len(tensors)
}

// writeONNXVersion writes root/<name>/1/ for an ONNX oracle: one request
// input per column (int for int64 graph inputs), named graph inputs when
// the graph has several, and the output to score.
func writeONNXVersion(t *testing.T, root, name, artifact string, header []string, output string) string {
	t.Helper()
	dir := filepath.Join(root, name, "1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cols, tensors := onnxColumns(header)
	width := map[string]int{}
	for _, c := range cols {
		width[c.tensor]++
	}
	inputs := make([]map[string]string, len(cols))
	for i, c := range cols {
		in := map[string]string{"name": c.input, "source": features.SourceRequest, "type": "float"}
		if width[c.tensor] == 1 && c.input != c.tensor {
			in["column"] = c.tensor // a one-column graph input names its column
		}
		if c.integer {
			in["type"] = "int"
		}
		if tensors > 1 && c.input != c.tensor {
			in["tensor"] = c.tensor
		}
		inputs[i] = in
	}
	data, err := os.ReadFile(artifact)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	man := map[string]any{"name": name, "version": "1", "format": models.FormatONNX, "artifact": "model.onnx", "inputs": inputs}
	if output != "" {
		man["output_tensor"] = output
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

// TestONNXOracles loads every ONNX parity case, at every opset and for
// every graph output, as a version directory, scores its rows as request
// features through the version's plan and model, and compares them with
// PyTorch's outputs within 1e-5 (relative, absolute below 1).
func TestONNXOracles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(onnxOracles, "*.onnx"))
	if err != nil || len(files) < 30 {
		t.Fatalf("%d ONNX oracles in %s: %v", len(files), onnxOracles, err)
	}
	cat := emptyCatalog(t)
	root := t.TempDir()
	tabs := tables{}
	for _, file := range files {
		stem, _, _ := strings.Cut(filepath.Base(file), ".")
		in := tabs.read(t, filepath.Join(onnxOracles, stem+".input.tsv"))
		want := tabs.read(t, filepath.Join(onnxOracles, stem+".expected.tsv"))
		outputs := []string{""} // the first output
		for _, h := range want.Header {
			name, _, _ := strings.Cut(h, "[")
			if name != outputs[len(outputs)-1] && len(outputs) < 3 {
				outputs = append(outputs, name)
			}
		}
		for i, output := range outputs {
			if i == 1 {
				continue // the first output named is the default again
			}
			name := modelName(strings.TrimSuffix(filepath.Base(file), ".onnx") + "_" + output)
			t.Run(name, func(t *testing.T) {
				dir := writeONNXVersion(t, root, name, file, in.Header, output)
				v, err := LoadVersion(dir, cat)
				if err != nil {
					t.Fatal(err)
				}
				if output == "" {
					output, _, _ = strings.Cut(want.Header[0], "[")
				}
				var cols []int
				for j, h := range want.Header {
					if n, _, _ := strings.Cut(h, "["); n == output {
						cols = append(cols, j)
					}
				}
				if v.Model.NumOutputs() != len(cols) {
					t.Fatalf("%d outputs, want %d", v.Model.NumOutputs(), len(cols))
				}
				got := scoreRequestRows(t, v, in)
				worst := 0.0
				for r, row := range want.Rows {
					for j, col := range cols {
						g, w := got[r*len(cols)+j], row[col]
						d := math.Abs(g-w) / max(1, math.Abs(w))
						worst = max(worst, d)
						if !(d <= 1e-5) {
							t.Errorf("row %d %s: got %.9g, PyTorch %.9g", r+1, want.Header[col], g, w)
						}
					}
				}
				t.Logf("%d rows of %d values: largest difference %.2g", len(want.Rows), len(cols), worst)
			})
		}
	}
}

// scoreRequestRows scores each row of in as a candidate whose request
// features are the row's values, typed as the plan's inputs are.
func scoreRequestRows(t *testing.T, v *Version, in *oracle.Table) []float64 {
	t.Helper()
	p := v.Plan
	q := &features.Query{Candidates: make([]features.Candidate, len(in.Rows))}
	for r, row := range in.Rows {
		f := make(map[string]features.Value, len(row))
		for k, x := range row {
			in := p.Inputs[k]
			var val any = x
			if in.Type == features.Int {
				val = int64(x)
			}
			fv, err := features.Coerce(in.Type, val)
			if err != nil {
				t.Fatalf("row %d input %s: %v", r+1, in.Name, err)
			}
			f[in.Name] = fv
		}
		q.Candidates[r].Features = f
	}
	var b features.Batch
	if err := p.Prepare(q, &b); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	rows := q.Rows()
	x := make([]float64, rows*v.Model.NumFeatures())
	p.Assemble(q, &b, x, nil)
	out := make([]float64, rows*v.Model.NumOutputs())
	if err := v.Model.Predict(out, x, rows); err != nil {
		t.Fatalf("predict: %v", err)
	}
	return out
}

// TestONNXRefused: a manifest that does not fit its graph is refused at
// load with what is wrong.
func TestONNXRefused(t *testing.T) {
	cat := emptyCatalog(t)
	root := t.TempDir()
	in := oracle.Read(t, filepath.Join(onnxOracles, "two_tower.input.tsv"))
	artifact := filepath.Join(onnxOracles, "two_tower.opset17.onnx")
	for _, tt := range []struct {
		name   string
		edit   func(man map[string]any)
		refuse string
	}{
		{"no tensor names", func(man map[string]any) {
			for _, in := range man["inputs"].([]any) {
				delete(in.(map[string]any), "tensor")
			}
		}, "the graph has 2 inputs (user, item): name the one it fills with tensor: NAME"},
		{"unknown tensor", func(man map[string]any) {
			man["inputs"].([]any)[0].(map[string]any)["tensor"] = "users"
		}, `tensor "users" is not a graph input (the graph inputs are user, item)`},
		{"too few columns", func(man map[string]any) {
			man["inputs"] = man["inputs"].([]any)[1:]
		}, "graph input user (float32) has 16 columns but the manifest's inputs fill 15"},
		{"unknown output", func(man map[string]any) {
			man["output_tensor"] = "scores"
		}, `no graph output named "scores" (the outputs are score)`},
		{"raw output", func(man map[string]any) {
			man["output"] = "raw"
		}, "output raw: an ONNX model scores the graph output it names"},
		{"floats for int64 ids", func(man map[string]any) {
			for _, in := range man["inputs"].([]any) {
				if in := in.(map[string]any); in["tensor"] == "user" {
					in["tensor"] = "ids"
				}
			}
		}, "graph input ids is int64, which takes int features and categories with a default_code"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			name := modelName(tt.name)
			art := artifact
			if strings.Contains(tt.refuse, "int64") {
				art = filepath.Join(onnxOracles, "embedding_ids.opset17.onnx")
			}
			dir := writeONNXVersion(t, root, name, art, in.Header, "")
			path := filepath.Join(dir, ManifestFile)
			text, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var man map[string]any
			if err := yaml.Unmarshal(text, &man); err != nil {
				t.Fatal(err)
			}
			tt.edit(man)
			if text, err = yaml.Marshal(man); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, text, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = LoadVersion(dir, cat)
			if err == nil || !strings.Contains(err.Error(), tt.refuse) {
				t.Fatalf("got %v, want an error saying %q", err, tt.refuse)
			}
		})
	}
}

// TestONNXVectorInputsByName: request vector inputs named like the graph's
// inputs fill them without tensor:, in either order, and reproduce
// PyTorch's outputs.
func TestONNXVectorInputsByName(t *testing.T) {
	cat := emptyCatalog(t)
	root := t.TempDir()
	in := oracle.Read(t, filepath.Join(onnxOracles, "two_tower.input.tsv"))
	want := oracle.Read(t, filepath.Join(onnxOracles, "two_tower.expected.tsv"))
	dir := filepath.Join(root, "two_tower", "1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(onnxOracles, "two_tower.opset17.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	man := `name: two_tower
version: "1"
format: onnx
artifact: model.onnx
inputs:
  - {name: item, source: request, type: vector, dim: 16}
  - {name: user, source: request, type: vector, dim: 16}
`
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), []byte(man), 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := LoadVersion(dir, cat)
	if err != nil {
		t.Fatal(err)
	}
	q := &features.Query{Candidates: make([]features.Candidate, len(in.Rows))}
	for r, row := range in.Rows {
		user, item := make([]float32, 16), make([]float32, 16)
		for j := range 16 {
			user[j], item[j] = float32(row[j]), float32(row[16+j])
		}
		q.Candidates[r].Features = map[string]features.Value{"user": features.VectorValue(user), "item": features.VectorValue(item)}
	}
	var b features.Batch
	if err := v.Plan.Prepare(q, &b); err != nil {
		t.Fatal(err)
	}
	x := make([]float64, len(in.Rows)*v.Plan.Columns())
	v.Plan.Assemble(q, &b, x, nil)
	out := make([]float64, len(in.Rows))
	if err := v.Model.Predict(out, x, len(in.Rows)); err != nil {
		t.Fatal(err)
	}
	for r, row := range want.Rows {
		if d := math.Abs(out[r]-row[0]) / max(1, math.Abs(row[0])); !(d <= 1e-5) {
			t.Errorf("row %d: got %.9g, PyTorch %.9g", r+1, out[r], row[0])
		}
	}
}
