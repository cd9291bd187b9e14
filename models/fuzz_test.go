package models

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// loadFormats are the formats FuzzLoad tries, indexed by its format byte.
var loadFormats = []string{FormatLightGBM, FormatXGBoost, FormatSklearn, FormatLinear, FormatONNX}

// loaders call a format's loader without Load's recover, so that a panic
// fails the fuzz test with its stack instead of becoming an error.
var loaders = map[string]func([]byte, Options) (Model, error){
	FormatLightGBM: loadLightGBM,
	FormatXGBoost:  loadXGBoost,
	FormatSklearn:  loadSklearn,
	FormatLinear:   loadLinear,
	FormatONNX:     loadONNX,
}

// fuzzInputs are the manifest inputs FuzzLoad gives when asked to name
// them, and always to linear models: the names its linear seeds weigh.
var fuzzInputs = []string{"a", "b", "c"}

// fuzzLinear are linear model seeds over fuzzInputs.
var fuzzLinear = []string{
	`{"weights":{"a":0.5,"c":-1},"intercept":1,"link":"logistic"}`,
	`{"weights":{"a":[1,0,-1],"b":[0,2,0]},"intercept":[0,0.5,1],"link":"softmax"}`,
	`{"weights":{"b":2},"link":"exp"}`,
	`{"link":"identity","intercept":-3.5e2,"weights":{"c":1e-300,"b":-0}}`,
}

// fuzzSeedFiles are real artifacts of every format, as their tools write them.
var fuzzSeedFiles = []struct{ format, path string }{
	{FormatLightGBM, "testdata/lightgbm/tiny.txt"},
	{FormatLightGBM, "../configs/quickstart/models/store_ranker/1/model.txt"},
	{FormatXGBoost, "testdata/xgboost/binary_logistic.json"},
	{FormatXGBoost, "testdata/xgboost/binary_logistic.ubj"},
	{FormatXGBoost, "testdata/xgboost/multi_softprob.ubj"},
	{FormatXGBoost, "testdata/xgboost/categorical.json"},
	{FormatXGBoost, "testdata/xgboost/gblinear_softprob.ubj"},
	{FormatXGBoost, "testdata/xgboost/multi_target.ubj"},
	{FormatSklearn, "testdata/sklearn/gb_clf_binary.json"},
	{FormatSklearn, "testdata/sklearn/hgb_clf_categorical.json"},
	{FormatSklearn, "testdata/sklearn/hgb_clf_multi_nan.json"},
	{FormatSklearn, "testdata/sklearn/rf_clf_multi.json"},
	{FormatSklearn, "testdata/sklearn/logreg_multi.json"},
	{FormatSklearn, "testdata/sklearn/ridge_scaled.json"},
	{FormatONNX, "testdata/onnx/two_tower.opset13.onnx"},
	{FormatONNX, "testdata/onnx/embedding_ids.opset17.onnx"},
	{FormatONNX, "testdata/onnx/softmax_multi.opset15.onnx"},
}

func formatIndex(format string) uint8 {
	for i, f := range loadFormats {
		if f == format {
			return uint8(i)
		}
	}
	panic("unknown format " + format)
}

// FuzzLoad feeds artifacts of every format, intact, truncated and with
// flipped bits, to Load under every format name. Load and each loader
// called directly must never panic, must refuse with errors wrapping
// ErrArtifact, and whatever loads must score rows of missing, extreme and
// random values.
func FuzzLoad(f *testing.F) {
	type seed struct {
		data   []byte
		format string
	}
	var seeds []seed
	for _, s := range fuzzSeedFiles {
		data, err := os.ReadFile(s.path)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, seed{data, s.format})
	}
	for _, doc := range fuzzLinear {
		seeds = append(seeds, seed{[]byte(doc), FormatLinear})
	}
	for _, s := range seeds {
		own := formatIndex(s.format)
		// Intact, under its own format and every other.
		for fi := range loadFormats {
			f.Add(s.data, uint8(fi), false, uint8(0), s.format == FormatLinear)
		}
		f.Add(s.data, own, true, uint8(2), true)
		// Truncated.
		for _, cut := range []int{len(s.data) / 5, len(s.data) / 2, len(s.data) - 3} {
			if cut > 0 {
				f.Add(s.data[:cut], own, false, uint8(0), s.format == FormatLinear)
			}
		}
		// Bit-flipped here and there.
		for _, stride := range []int{97, 1021} {
			bad := bytes.Clone(s.data)
			for i := stride / 3; i < len(bad); i += stride {
				bad[i] ^= 1 << (i % 8)
			}
			f.Add(bad, own, false, uint8(0), s.format == FormatLinear)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, format uint8, raw bool, iterations uint8, named bool) {
		name := loadFormats[int(format)%len(loadFormats)]
		opt := Options{Raw: raw, Iterations: int(iterations % 8)}
		if named || name == FormatLinear {
			opt.Inputs = fuzzInputs
		}
		m, err := Load(name, data, opt)
		checkLoaded(t, "Load", data, m, err)
		// The loader itself: a panic here fails with its stack.
		m, err = loaders[name](data, opt)
		checkLoaded(t, name+" loader", data, m, err)
	})
}

// checkLoaded checks a load's result: a refusal wrapping ErrArtifact that
// is no recovered panic, or a model that scores.
func checkLoaded(t *testing.T, what string, data []byte, m Model, err error) {
	t.Helper()
	if err != nil {
		if m != nil {
			t.Fatalf("%s: a model and an error: %v", what, err)
		}
		if !errors.Is(err, ErrArtifact) {
			t.Fatalf("%s: error %v does not wrap ErrArtifact", what, err)
		}
		if strings.Contains(err.Error(), "panicked") {
			t.Fatalf("%s: %v", what, err)
		}
		return
	}
	nf, no := m.NumFeatures(), m.NumOutputs()
	if nf < 1 || no < 1 {
		t.Fatalf("%s: a model of %d features and %d outputs", what, nf, no)
	}
	if nf > 1<<16 || no > 1<<12 {
		return // within the caps, but too large to score here on every input
	}
	x, rows := fuzzRowsFor(data, nf)
	dst := make([]float64, rows*no)
	// Values a model cannot take (NaN for an ONNX model's int64 ids, an
	// id outside its embedding table) are errors wrapping ErrInput.
	if err := m.Predict(dst, x, rows); err != nil && !errors.Is(err, ErrInput) {
		t.Fatalf("%s: predict: %v", what, err)
	}
}

// fuzzRowsFor returns rows of nf inputs: all missing, extremes, and random
// values drawn from a generator seeded by data.
func fuzzRowsFor(data []byte, nf int) ([]float64, int) {
	h := fnv.New64a()
	h.Write(data)
	rng := rand.New(rand.NewPCG(h.Sum64(), 1))
	extremes := []float64{0, math.Copysign(0, -1), -1, 1, 0.5, 1e-36, 255, 256, 2147483648, -3e9,
		math.MaxFloat64, -math.MaxFloat64, math.Inf(1), math.Inf(-1), math.NaN()}
	const rows = 4
	x := make([]float64, rows*nf)
	for i := range nf {
		x[i] = math.NaN()
		x[nf+i] = extremes[i%len(extremes)]
		x[2*nf+i] = rng.NormFloat64() * 100
		x[3*nf+i] = float64(rng.IntN(40) - 5)
	}
	return x, rows
}

// TestLoadRefusesHugeClaims gives every format small artifacts whose
// counts claim far more than their bytes hold: each must be refused with
// an error wrapping ErrArtifact, quickly and without allocating for the
// claim. A claim within the caps that costs no memory may load (a model
// of a million features is refused later if its manifest disagrees), but
// must not allocate for it either.
func TestLoadRefusesHugeClaims(t *testing.T) {
	tiny, err := os.ReadFile(tinyLightGBM)
	if err != nil {
		t.Fatal(err)
	}
	lgb := func(old, new string) string {
		s := string(tiny)
		if !strings.Contains(s, old) {
			t.Fatalf("tiny model has no %q", old)
		}
		return strings.Replace(s, old, new, 1)
	}
	xgb := func(f func(*tinyModel)) string {
		m := tinyModel{numFeature: 3, trees: []string{stump(0, "1", false)}}
		f(&m)
		return m.String()
	}
	bigTree := strings.Replace(stump(0, "1", false), `"num_nodes":"3"`, `"num_nodes":"2147483647"`, 1)
	sk := func(old, new string) string {
		if !strings.Contains(sklearnSmall, old) {
			t.Fatalf("%q not in the base document", old)
		}
		return strings.Replace(sklearnSmall, old, new, 1)
	}
	manyInputs := make([]string, 4096)
	for i := range manyInputs {
		manyInputs[i] = fmt.Sprintf("f%d", i)
	}
	zeros := strings.TrimSuffix(strings.Repeat("0,", 4096), ",")
	junk := "{i\x07learner{i\x04junk" // UBJSON: the learner, then a member XGBoost does not read
	tests := []struct {
		name, format, doc string
		opt               Options
		mayLoad           bool
	}{
		{"lightgbm num_leaves", FormatLightGBM, lgb("num_leaves=4", "num_leaves=2000000000"), Options{}, false},
		{"lightgbm num_cat", FormatLightGBM, lgb("num_cat=1", "num_cat=1000000000"), Options{}, false},
		{"lightgbm max_feature_idx", FormatLightGBM, lgb("max_feature_idx=2", "max_feature_idx=2147483646"), Options{}, false},
		{"lightgbm num_class", FormatLightGBM, lgb("num_class=1\nnum_tree_per_iteration=1", "num_class=1000000000\nnum_tree_per_iteration=1000000000"), Options{}, false},
		{"lightgbm cat_boundaries", FormatLightGBM, lgb("cat_boundaries=0 1", "cat_boundaries=0 4000000000"), Options{}, false},
		{"xgboost num_feature", FormatXGBoost, xgb(func(m *tinyModel) { m.numFeature = 2147483647 }), Options{}, false},
		{"xgboost num_class", FormatXGBoost, xgb(func(m *tinyModel) { m.numClass, m.objective = 2147483647, "multi:softprob" }), Options{}, false},
		{"xgboost num_target", FormatXGBoost, xgb(func(m *tinyModel) { m.numTarget = 2147483647 }), Options{}, false},
		{"xgboost num_trees", FormatXGBoost, strings.Replace(xgb(func(*tinyModel) {}), `"num_trees":"1"`, `"num_trees":"4194304"`, 1), Options{}, false},
		{"xgboost num_nodes", FormatXGBoost, xgb(func(m *tinyModel) { m.trees = []string{bigTree} }), Options{}, false},
		{"xgboost iteration_indptr", FormatXGBoost, xgb(func(m *tinyModel) { m.model = `"iteration_indptr":[0,2147483647],` }), Options{}, false},
		{"ubjson typed array count", FormatXGBoost, junk + "[$d#L\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00}}", Options{}, false},
		{"ubjson typed array of no-payload type", FormatXGBoost, junk + "[$Z#L\x00\x00\x01\x00\x00\x00\x00\x00}}", Options{}, false},
		{"ubjson array count", FormatXGBoost, junk + "[#L\x00\x00\x01\x00\x00\x00\x00\x00i\x01}}", Options{}, false},
		{"ubjson object count", FormatXGBoost, junk + "{#L\x00\x00\x01\x00\x00\x00\x00\x00i\x01ai\x01}}", Options{}, false},
		{"ubjson string length", FormatXGBoost, junk + "SL\x3f\xff\xff\xff\xff\xff\xff\xffabc}}", Options{}, false},
		{"ubjson key length", FormatXGBoost, "{L\x3f\xff\xff\xff\xff\xff\xff\xffabc", Options{}, false},
		{"ubjson high-precision length", FormatXGBoost, junk + "HL\x3f\xff\xff\xff\xff\xff\xff\xff1}}", Options{}, false},
		{"sklearn n_features", FormatSklearn, sk(`"n_features":2`, `"n_features":2147483647`), Options{}, false},
		{"sklearn n_features at the cap", FormatSklearn, sk(`"n_features":2`, `"n_features":1048576`), Options{}, true},
		{"sklearn classes", FormatSklearn, sk(`"classes":[0,1]`, `"classes":[`+zeros+`,1]`), Options{}, false},
		{"sklearn child index", FormatSklearn, sk(`"right":[2,-1,-1]`, `"right":[2147483647,-1,-1]`), Options{}, false},
		{"linear classes", FormatLinear, `{"weights":{"a":[1,2]},"intercept":[` + zeros + `,0],"link":"softmax"}`, Options{Inputs: []string{"a"}}, false},
		{"linear classes times inputs", FormatLinear, `{"weights":{"f0":[` + zeros + `]},"intercept":[` + zeros + `],"link":"softmax"}`, Options{Inputs: manyInputs}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			m, err := Load(tt.format, []byte(tt.doc), tt.opt)
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d bytes: %v in %v, %d KiB allocated", len(tt.doc), err, took, alloc>>10)
			switch {
			case err == nil && !tt.mayLoad:
				t.Errorf("loaded a model of %d features and %d outputs; want a refusal", m.NumFeatures(), m.NumOutputs())
			case err == nil:
				checkLoaded(t, "Load", []byte(tt.doc), m, nil)
			case !errors.Is(err, ErrArtifact) || strings.Contains(err.Error(), "panicked"):
				t.Errorf("error %v: want a refusal wrapping ErrArtifact", err)
			}
			if limit := uint64(16 << 20); alloc > limit {
				t.Errorf("allocated %d MiB for a %d-byte artifact; want under %d MiB", alloc>>20, len(tt.doc), limit>>20)
			}
			if took > 2*time.Second {
				t.Errorf("took %v", took)
			}
		})
	}
}

// TestFuzzSeedsLoad checks that the intact seeds of FuzzLoad load under
// their own format, so that the fuzzer starts from models that work.
func TestFuzzSeedsLoad(t *testing.T) {
	for _, s := range fuzzSeedFiles {
		data, err := os.ReadFile(s.path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Load(s.format, data, Options{}); err != nil {
			t.Errorf("%s: %v", filepath.Base(s.path), err)
		}
	}
	for _, doc := range fuzzLinear {
		if _, err := Load(FormatLinear, []byte(doc), Options{Inputs: fuzzInputs}); err != nil {
			t.Errorf("%s: %v", doc, err)
		}
	}
}
