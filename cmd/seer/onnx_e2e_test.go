package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/seer-ml/seer/internal/oracle"
	"github.com/seer-ml/seer/internal/redistest"
)

// onnxCase is one of tools/onnx_oracles.py's models served end to end: each
// float graph input of width k is a vector feature of dim k of entity row,
// each int64 one a list of int features, all uploaded to a real Redis by
// seer upload; a query with the rows as candidates must give PyTorch's
// outputs.
type onnxCase struct {
	stem   string
	output string // output_tensor; "" for the first
}

// onnxTensor is one graph input of an oracle: its name and columns.
type onnxTensor struct {
	name    string
	cols    []int
	integer bool
}

func onnxTensors(header []string) []onnxTensor {
	var out []onnxTensor
	for j, h := range header {
		name, _, _ := strings.Cut(h, "[")
		if len(out) == 0 || out[len(out)-1].name != name {
			out = append(out, onnxTensor{name: name, integer: name == "ids" || name == "flags"})
		}
		out[len(out)-1].cols = append(out[len(out)-1].cols, j)
	}
	return out
}

// TestONNXEndToEnd serves every ONNX architecture with its inputs read
// from Redis as vector (and int) features, a linear model over dot and
// cosine inputs derived from two of those vectors, and checks the scores
// of POST /v1/predict: PyTorch's within 1e-5, and the derivations' own.
// A stored vector of another length is a wrong_type value: the default.
func TestONNXEndToEnd(t *testing.T) {
	cases := []onnxCase{
		{stem: "mlp_breast_cancer"}, {stem: "two_tower"}, {stem: "embedding_ids"}, {stem: "layernorm_gelu"},
		{stem: "softmax_multi"}, {stem: "softmax_multi", output: "logits"}, {stem: "cross_network"},
		{stem: "misc_ops", output: "features"}, {stem: "mlp_64_256_128_1"},
	}
	rs := redistest.Start(t)
	dir := t.TempDir()
	var catalog strings.Builder
	catalog.WriteString("entities:\n  row: {key: \"row_{id}\"}\nfeatures:\n")
	declared := map[string]bool{}
	inputs := map[string]*oracle.Table{}
	var lines []string // JSON lines of every row entity
	for k, c := range cases {
		in := oracle.Read(t, filepath.Join(modelsTestdata, "onnx", c.stem+".input.tsv"))
		inputs[c.stem] = in
		tensors := onnxTensors(in.Header)
		var decls []map[string]any
		for _, ts := range tensors {
			if ts.integer {
				for j := range ts.cols {
					name := fmt.Sprintf("%s_%s_%d", c.stem, ts.name, j)
					decls = append(decls, map[string]any{"name": name, "tensor": ts.name})
					if !declared[name] {
						declared[name] = true
						fmt.Fprintf(&catalog, "  - {name: %s, entity: row, type: int, store: main}\n", name)
					}
				}
				continue
			}
			name := c.stem + "_" + ts.name
			decls = append(decls, map[string]any{"name": name, "tensor": ts.name})
			if !declared[name] {
				declared[name] = true
				fmt.Fprintf(&catalog, "  - {name: %s, entity: row, type: vector, store: main, dim: %d}\n", name, len(ts.cols))
			}
		}
		if len(tensors) == 1 {
			delete(decls[0], "tensor") // one graph input: no tensor names needed
		}
		name := fmt.Sprintf("%s_%d", c.stem, k)
		man := map[string]any{"name": name, "version": "1", "format": "onnx", "artifact": "model.onnx", "inputs": decls}
		if c.output != "" {
			man["output_tensor"] = c.output
		}
		vdir := filepath.Join(dir, "models", name, "1")
		copyFile(t, filepath.Join(modelsTestdata, "onnx", c.stem+".opset17.onnx"), filepath.Join(vdir, "model.onnx"))
		text, err := yaml.Marshal(man)
		if err != nil {
			t.Fatal(err)
		}
		writeFiles(t, vdir, map[string]string{"manifest.yaml": string(text)})
	}
	// Rows: one entity per case and row, holding that case's features.
	seen := map[string]bool{}
	for k, c := range cases {
		if seen[c.stem] {
			continue
		}
		seen[c.stem] = true
		in := inputs[c.stem]
		for r, row := range in.Rows {
			obj := map[string]any{"id": strconv.Itoa(rowID(k, r))}
			for _, ts := range onnxTensors(in.Header) {
				if ts.integer {
					for j, col := range ts.cols {
						obj[fmt.Sprintf("%s_%s_%d", c.stem, ts.name, j)] = int64(row[col])
					}
					continue
				}
				vec := make([]float64, len(ts.cols))
				for j, col := range ts.cols {
					vec[j] = row[col]
				}
				obj[c.stem+"_"+ts.name] = vec
			}
			b, err := json.Marshal(obj)
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, string(b))
		}
	}
	// One stored vector of another length: wrong_type, so the default.
	lines = append(lines, `{"id": "bad", "two_tower_user": [1, 2, 3], "two_tower_item": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}`)
	// A linear model over inputs derived from two_tower's vectors, which
	// are no columns of it.
	writeFiles(t, filepath.Join(dir, "models", "affinity", "1"), map[string]string{"manifest.yaml": `name: affinity
version: "1"
format: linear
linear: {weights: {dot: 1, cos: 10}, link: identity}
inputs:
  - {name: dot, derive: {dot: [two_tower_user, two_tower_item]}}
  - {name: cos, derive: {cosine: [two_tower_user, two_tower_item]}, default: -100}
`})
	writeFiles(t, dir, map[string]string{
		"catalog.yaml": catalog.String(),
		"rows.jsonl":   strings.Join(lines, "\n") + "\n",
		"seer.yaml": fmt.Sprintf(`listen: 127.0.0.1:0
admin_token: secret
catalog: catalog.yaml
models: models
models_poll: 0s
stores:
  main: {mode: standalone, addr: %q, read_timeout: 2s}
predict:
  timeout: 10s
  retrieval_timeout: 5s
  max_candidates: 1000
`, rs.Addr),
	})
	cfg := filepath.Join(dir, "seer.yaml")
	if out := upload(t, cfg, "row", filepath.Join(dir, "rows.jsonl")); !strings.Contains(out, fmt.Sprintf(": %d rows", len(lines))) {
		t.Fatalf("upload said %q", out)
	}
	inst := serve(t, cfg)
	var listing struct{ Failures []json.RawMessage }
	if code := get(t, inst.url+"/v1/models", &listing); code != 200 || len(listing.Failures) != 0 {
		t.Fatalf("/v1/models: %d, failures %+v", code, listing.Failures)
	}

	predict := func(t *testing.T, model string, ids []string, debug bool) predictAnswer {
		t.Helper()
		cands := make([]map[string]any, len(ids))
		for r, id := range ids {
			cands[r] = map[string]any{"entities": map[string]string{"row": id}}
		}
		body, _ := json.Marshal(map[string]any{"debug": debug, "queries": []any{map[string]any{"model": model, "candidates": cands}}})
		var ans predictAnswer
		if code := post(t, inst.url+"/v1/predict", string(body), &ans); code != 200 {
			t.Fatalf("%s: status %d: %s", model, code, ans.Error)
		}
		if res := ans.Results[0]; res.Degraded || len(res.Scores) != len(ids) {
			t.Fatalf("%s: degraded %v, %d scores for %d rows", model, res.Degraded, len(res.Scores), len(ids))
		}
		return ans
	}
	for k, c := range cases {
		name := fmt.Sprintf("%s_%d", c.stem, k)
		t.Run(name, func(t *testing.T) {
			in := inputs[c.stem]
			want := oracle.Read(t, filepath.Join(modelsTestdata, "onnx", c.stem+".expected.tsv"))
			output := c.output
			if output == "" {
				output, _, _ = strings.Cut(want.Header[0], "[")
			}
			var cols []int
			for j, h := range want.Header {
				if n, _, _ := strings.Cut(h, "["); n == output {
					cols = append(cols, j)
				}
			}
			ids := make([]string, len(in.Rows))
			for r := range ids {
				ids[r] = strconv.Itoa(rowID(k0(cases, c.stem), r))
			}
			got := scoreRows(t, predict(t, name, ids, false).Results[0].Scores, len(cols))
			worst := 0.0
			for r, row := range want.Rows {
				for j, col := range cols {
					d := math.Abs(got[r][j]-row[col]) / max(1, math.Abs(row[col]))
					worst = max(worst, d)
					if !(d <= 1e-5) {
						t.Errorf("row %d %s: got %.9g, PyTorch %.9g", r+1, want.Header[col], got[r][j], row[col])
					}
				}
			}
			t.Logf("%d rows x %d values from Redis through /v1/predict: largest difference from PyTorch %.2g", len(in.Rows), len(cols), worst)
		})
	}

	t.Run("id out of range", func(t *testing.T) {
		// embedding_ids has 50 users: an id of 50 given in the request is
		// refused with what is wrong, not clamped.
		k := k0(cases, "embedding_ids")
		body := fmt.Sprintf(`{"queries": [{"model": "embedding_ids_%d", "candidates": [
			{"entities": {"row": "%d"}},
			{"entities": {"row": "%d"}, "features": {"embedding_ids_ids_0": 50}}]}]}`, k, rowID(k, 0), rowID(k, 1))
		var ans predictAnswer
		if code := post(t, inst.url+"/v1/predict", body, &ans); code != http.StatusBadRequest || !strings.Contains(ans.Error, "index 50 is out of range [-50, 50)") {
			t.Fatalf("status %d: %q, want 400 naming the index", code, ans.Error)
		}
	})

	t.Run("derived", func(t *testing.T) {
		in := inputs["two_tower"]
		k := k0(cases, "two_tower")
		ids := []string{strconv.Itoa(rowID(k, 0)), strconv.Itoa(rowID(k, 1)), "bad", "nobody"}
		ans := predict(t, "affinity", ids, true)
		got := floats(t, ans.Results[0].Scores)
		for r := range 2 {
			var dot, nu, ni float64
			for j := range 16 {
				u, v := in.Rows[r][j], in.Rows[r][16+j]
				dot, nu, ni = dot+u*v, nu+u*u, ni+v*v
			}
			want := dot + 10*dot/math.Sqrt(nu*ni)
			if !near(got[r], want, 1e-9) {
				t.Errorf("row %d: got %.12g, want %.12g", r, got[r], want)
			}
			if src := ans.Results[0].Debug[r]["dot"].Source; src != "derived" {
				t.Errorf("row %d: dot's source %q, want derived", r, src)
			}
			if src := ans.Results[0].Debug[r]["two_tower_user"].Source; src != "redis" {
				t.Errorf("row %d: the operand's source %q, want redis", r, src)
			}
		}
		// "bad" holds a user vector of 3 values for a dim of 16: wrong_type,
		// so no vector: no dot (missing, which a linear model counts as 0)
		// and the cosine's default. "nobody" has no vectors at all.
		for r := 2; r < 4; r++ {
			dbg := ans.Results[0].Debug[r]
			if src := dbg["two_tower_user"].Source; src != "default" {
				t.Errorf("row %s: the user vector's source %q, want default", ids[r], src)
			}
			if src := dbg["dot"].Source; src != "default" || dbg["dot"].Value != nil {
				t.Errorf("row %s: dot %v from %q, want the default (missing)", ids[r], dbg["dot"].Value, src)
			}
			if src := dbg["cos"].Source; src != "default" || dbg["cos"].Value != -100.0 {
				t.Errorf("row %s: cos %v from %q, want the default -100", ids[r], dbg["cos"].Value, src)
			}
			if got[r] != -1000 {
				t.Errorf("row %s: score %v, want 10 x -100", ids[r], got[r])
			}
		}
		stats := adminFeatures(t, inst.url)
		if n := stats["two_tower_user"].WrongType; n != 1 {
			t.Errorf("two_tower_user: %d wrong_type values counted, want 1", n)
		}
	})
}

// k0 returns the index of the first case of stem, whose row ids hold its
// rows.
func k0(cases []onnxCase, stem string) int {
	for k, c := range cases {
		if c.stem == stem {
			return k
		}
	}
	return -1
}
