package models

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/seer-ml/seer/internal/oracle"
)

func TestLinear(t *testing.T) {
	nan := math.NaN()
	inputs := []string{"age", "clicks", "price"}
	tests := []struct {
		name string
		doc  string
		raw  bool
		x    []float64
		want []float64
	}{
		{
			name: "identity",
			doc:  `{"weights":{"price":-2,"age":0.5},"intercept":1,"link":"identity"}`,
			x:    []float64{10, 99, 3},
			want: []float64{0.5*10 + -2*3 + 1},
		},
		{
			name: "no intercept",
			doc:  `{"weights":{"clicks":0.25},"link":"identity"}`,
			x:    []float64{10, 8, 3},
			want: []float64{2},
		},
		{
			name: "missing input adds nothing",
			doc:  `{"weights":{"price":-2,"age":0.5},"intercept":1,"link":"identity"}`,
			x:    []float64{nan, 99, 3},
			want: []float64{-2*3 + 1},
		},
		{
			name: "input without weight ignores infinity",
			doc:  `{"weights":{"price":-2,"age":0.5},"intercept":1,"link":"identity"}`,
			x:    []float64{10, math.Inf(1), 3},
			want: []float64{0.5*10 + -2*3 + 1},
		},
		{
			name: "logistic",
			doc:  `{"weights":{"age":0.1,"price":-0.3},"intercept":-0.2,"link":"logistic"}`,
			x:    []float64{10, 0, 2},
			want: []float64{1 / (1 + math.Exp(-(0.1*10 + -0.3*2 + -0.2)))},
		},
		{
			name: "logistic raw",
			doc:  `{"weights":{"age":0.1,"price":-0.3},"intercept":-0.2,"link":"logistic"}`,
			raw:  true,
			x:    []float64{10, 0, 2},
			want: []float64{0.1*10 + -0.3*2 + -0.2},
		},
		{
			name: "exp",
			doc:  `{"weights":{"clicks":0.5},"intercept":0.25,"link":"exp"}`,
			x:    []float64{0, 2, 0},
			want: []float64{math.Exp(0.5*2 + 0.25)},
		},
		{
			name: "softmax",
			doc:  `{"weights":{"age":[1,0,-1],"price":[0,2,0]},"intercept":[0,0.5,1],"link":"softmax"}`,
			x:    []float64{1, 5, 0.25},
			want: softmaxOf(1+0, 0+2*0.25+0.5, -1+0+1),
		},
		{
			name: "softmax raw",
			doc:  `{"weights":{"age":[1,0,-1],"price":[0,2,0]},"intercept":[0,0.5,1],"link":"softmax"}`,
			raw:  true,
			x:    []float64{1, 5, 0.25},
			want: []float64{1, 1, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Load(FormatLinear, []byte(tt.doc), Options{Inputs: inputs, Raw: tt.raw})
			if err != nil {
				t.Fatal(err)
			}
			if m.NumFeatures() != len(inputs) || m.NumOutputs() != len(tt.want) {
				t.Fatalf("%d features, %d outputs; want %d, %d", m.NumFeatures(), m.NumOutputs(), len(inputs), len(tt.want))
			}
			got := make([]float64, len(tt.want))
			if err := m.Predict(got, tt.x, 1); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateApprox(1e-15, 0)); diff != "" {
				t.Errorf("Predict(%v) (-want +got):\n%s", tt.x, diff)
			}
		})
	}
}

func softmaxOf(m ...float64) []float64 {
	var s float64
	out := make([]float64, len(m))
	for i, v := range m {
		out[i] = math.Exp(v)
		s += out[i]
	}
	for i := range out {
		out[i] /= s
	}
	return out
}

// TestLinearSklearnOracles writes scikit-learn models (oracle cases without
// a scaler) in the linear format, weights by name, and checks they give
// scikit-learn's predictions.
func TestLinearSklearnOracles(t *testing.T) {
	for _, name := range []string{"linreg", "logreg_iris_binary", "logreg_multi"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("testdata", "sklearn")
			data, err := os.ReadFile(filepath.Join(dir, name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			var sk struct {
				Link      string      `json:"link"`
				Coef      [][]float64 `json:"coef"`
				Intercept []float64   `json:"intercept"`
			}
			if err := json.Unmarshal(data, &sk); err != nil {
				t.Fatal(err)
			}
			in := oracle.Read(t, filepath.Join(dir, name+".input.tsv"))
			weights := make(map[string]any)
			for i, feature := range in.Header {
				if len(sk.Coef) == 1 {
					weights[feature] = sk.Coef[0][i]
					continue
				}
				ws := make([]float64, len(sk.Coef))
				for j := range sk.Coef {
					ws[j] = sk.Coef[j][i]
				}
				weights[feature] = ws
			}
			doc := map[string]any{"weights": weights, "link": sk.Link, "intercept": sk.Intercept}
			if len(sk.Intercept) == 1 {
				doc["intercept"] = sk.Intercept[0]
			}
			text, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			// The columns come in reverse order: weights go by name.
			rev := make([]string, len(in.Header))
			for i, h := range in.Header {
				rev[len(rev)-1-i] = h
			}
			m, err := Load(FormatLinear, text, Options{Inputs: rev})
			if err != nil {
				t.Fatal(err)
			}
			want := oracle.Read(t, filepath.Join(dir, name+".expected.tsv"))
			no := m.NumOutputs()
			if no != len(want.Header) {
				t.Fatalf("NumOutputs() = %d, want %d", no, len(want.Header))
			}
			got := make([]float64, no)
			for r, row := range in.Rows {
				x := make([]float64, len(row))
				for i, v := range row {
					x[len(x)-1-i] = v
				}
				if err := m.Predict(got, x, 1); err != nil {
					t.Fatal(err)
				}
				for j, w := range want.Rows[r] {
					if d := math.Abs(got[j] - w); !(d <= sklearnRelTol*math.Abs(w)+sklearnAbsTol) {
						t.Errorf("row %d output %d: got %v, want %v", r+1, j, got[j], w)
					}
				}
			}
		})
	}
}

// TestLinearInline loads a linear model written in a manifest, as the
// registry does: the linear section marshalled to JSON.
func TestLinearInline(t *testing.T) {
	const manifest = `
name: ctr
version: "3"
format: linear
inputs:
  - name: age
  - name: clicks
linear:
  link: logistic
  intercept: -1
  weights:
    clicks: 0.5
`
	mf, err := ParseManifest([]byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(mf.Linear)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(mf.Format, data, mf.Options())
	if err != nil {
		t.Fatal(err)
	}
	got := make([]float64, 1)
	if err := m.Predict(got, []float64{40, 4}, 1); err != nil {
		t.Fatal(err)
	}
	if want := 1 / (1 + math.Exp(-1)); got[0] != want {
		t.Errorf("got %v, want %v", got[0], want)
	}
}

func TestLoadLinearRefuses(t *testing.T) {
	inputs := []string{"a", "b", "b"}
	tests := []struct {
		name string
		doc  string
		opt  Options
		want string
	}{
		{"not json", `{"weights":`, Options{Inputs: inputs}, "unexpected end of JSON input"},
		{"trailing", `{"weights":{},"link":"identity"} 1`, Options{Inputs: inputs}, "after top-level value"},
		{"unknown field", `{"weights":{},"link":"identity","bias":1}`, Options{Inputs: inputs}, "unknown field"},
		{"no inputs", `{"weights":{"a":1},"link":"identity"}`, Options{}, "no input names"},
		{"no weights", `{"link":"identity"}`, Options{Inputs: inputs}, "no weights"},
		{"no link", `{"weights":{"a":1}}`, Options{Inputs: inputs}, "no link"},
		{"bad link", `{"weights":{"a":1},"link":"probit"}`, Options{Inputs: inputs}, "probit"},
		{"unknown name", `{"weights":{"z":1},"link":"identity"}`, Options{Inputs: inputs}, `"z" names no input`},
		{"duplicate input", `{"weights":{"b":1},"link":"identity"}`, Options{Inputs: inputs}, "more than once"},
		{"duplicate weight", `{"weights":{"a":1,"a":2},"link":"identity"}`, Options{Inputs: inputs}, "twice"},
		{"weights array", `{"weights":[1,2],"link":"identity"}`, Options{Inputs: inputs}, "object"},
		{"weight string", `{"weights":{"a":"1"},"link":"identity"}`, Options{Inputs: inputs}, "want a number"},
		{"weight null", `{"weights":{"a":null},"link":"identity"}`, Options{Inputs: inputs}, "want a number"},
		{"weight array", `{"weights":{"a":[1]},"link":"logistic"}`, Options{Inputs: inputs}, "want a number"},
		{"intercept array", `{"weights":{"a":1},"intercept":[1],"link":"identity"}`, Options{Inputs: inputs}, "intercept"},
		{"softmax scalar intercept", `{"weights":{"a":[1,2]},"intercept":1,"link":"softmax"}`, Options{Inputs: inputs}, "intercept"},
		{"softmax one class", `{"weights":{"a":[1]},"intercept":[1],"link":"softmax"}`, Options{Inputs: inputs}, "1 classes"},
		{"softmax short weights", `{"weights":{"a":[1]},"intercept":[1,2],"link":"softmax"}`, Options{Inputs: inputs}, "array of 2"},
		{"softmax null weight", `{"weights":{"a":[1,null]},"intercept":[1,2],"link":"softmax"}`, Options{Inputs: inputs}, "array of 2"},
		{"huge", `{"weights":{"a":1e400},"link":"identity"}`, Options{Inputs: inputs}, "want a number"},
		{"iterations", `{"weights":{"a":1},"link":"identity"}`, Options{Inputs: inputs, Iterations: 3}, "iterations"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Load(FormatLinear, []byte(tt.doc), tt.opt)
			if err == nil {
				t.Fatalf("loaded %T, want an error", m)
			}
			if !errors.Is(err, ErrArtifact) {
				t.Errorf("error %v does not wrap ErrArtifact", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func FuzzLoadLinear(f *testing.F) {
	f.Add([]byte(`{"weights":{"a":0.5,"c":-1},"intercept":1,"link":"logistic"}`))
	f.Add([]byte(`{"weights":{"a":[1,0,-1],"b":[0,2,0]},"intercept":[0,0.5,1],"link":"softmax"}`))
	f.Add([]byte(`{"weights":{"b":2},"link":"exp"}`))
	inputs := []string{"a", "b", "c"}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Load(FormatLinear, data, Options{Inputs: inputs})
		if err != nil {
			if !errors.Is(err, ErrArtifact) {
				t.Fatalf("error %v does not wrap ErrArtifact", err)
			}
			return
		}
		if m.NumFeatures() != len(inputs) {
			t.Fatalf("NumFeatures() = %d, want %d", m.NumFeatures(), len(inputs))
		}
		dst := make([]float64, 2*m.NumOutputs())
		if err := m.Predict(dst, []float64{1, math.NaN(), -2, 0, math.Inf(1), 3}, 2); err != nil {
			t.Fatalf("predict: %v", err)
		}
	})
}

func BenchmarkLinearPredict(b *testing.B) {
	inputs := make([]string, 40)
	weights := make(map[string]any)
	for i := range inputs {
		inputs[i] = "f" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		weights[inputs[i]] = float64(i) / 7
	}
	data, _ := json.Marshal(map[string]any{"weights": weights, "intercept": 0.5, "link": "logistic"})
	m, err := Load(FormatLinear, data, Options{Inputs: inputs})
	if err != nil {
		b.Fatal(err)
	}
	const rows = 200
	x := make([]float64, rows*len(inputs))
	for i := range x {
		x[i] = float64(i%13) / 13
	}
	dst := make([]float64, rows)
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Predict(dst, x, rows); err != nil {
			b.Fatal(err)
		}
	}
}

// TestLinearDocExample loads both forms of the example of docs/linear.md,
// the manifest's inline section and the JSON artifact, and checks they
// agree on a row.
func TestLinearDocExample(t *testing.T) {
	path := filepath.Join("..", "docs", "linear.md")
	mf, err := ParseManifest([]byte(docBlocks(t, path, "yaml")[0]))
	if err != nil {
		t.Fatal(err)
	}
	inline, err := json.Marshal(mf.Linear)
	if err != nil {
		t.Fatal(err)
	}
	x := []float64{30, 4, 50}
	want := 1 / (1 + math.Exp(-(-1.25 + 0.5*4 - 0.02*50)))
	for name, data := range map[string][]byte{"inline": inline, "json": []byte(docBlocks(t, path, "json")[0])} {
		m, err := Load(FormatLinear, data, mf.Options())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := make([]float64, 1)
		if err := m.Predict(got, x, 1); err != nil {
			t.Fatal(err)
		}
		if got[0] != want {
			t.Errorf("%s: got %v, want %v", name, got[0], want)
		}
	}
}
