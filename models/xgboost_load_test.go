package models

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/seer-ml/seer/internal/oracle"
)

// tinyModel writes an XGBoost JSON model document. Trees are JSON objects
// written by tinyTree; model holds extra members of the tree model.
type tinyModel struct {
	version    string // "[1,7,4]"
	objective  string
	baseScore  string // as written, quotes included
	numFeature int
	numClass   int
	numTarget  int
	booster    string
	trees      []string
	treeInfo   []int
	model      string // extra members of "model", each ending in ","
	attributes string
}

func (m tinyModel) String() string {
	if m.version == "" {
		m.version = "[1,7,4]"
	}
	if m.objective == "" {
		m.objective = "reg:squarederror"
	}
	if m.baseScore == "" {
		m.baseScore = `"5E-1"`
	}
	if m.booster == "" {
		m.booster = "gbtree"
	}
	if m.numTarget == 0 {
		m.numTarget = 1
	}
	if m.treeInfo == nil {
		m.treeInfo = make([]int, len(m.trees))
	}
	info, _ := json.Marshal(m.treeInfo)
	return fmt.Sprintf(`{"learner":{"attributes":{%s},"feature_names":[],"feature_types":[],
"gradient_booster":{"model":{%s"gbtree_model_param":{"num_parallel_tree":"1","num_trees":"%d"},
"tree_info":%s,"trees":[%s]},"name":%q},
"learner_model_param":{"base_score":%s,"num_class":"%d","num_feature":"%d","num_target":"%d"},
"objective":{"name":%q}},"version":%s}`,
		m.attributes, m.model, len(m.trees), info, strings.Join(m.trees, ","), m.booster,
		m.baseScore, m.numClass, m.numFeature, m.numTarget, m.objective, m.version)
}

// tinyNode is one node of tinyTree: a leaf when left is -1.
type tinyNode struct {
	left, right, feature int
	cond                 string // JSON number text: a threshold or a leaf value
	defaultLeft          bool
	cats                 []int // a categorical split when not nil
}

func tinyTree(id int, nodes ...tinyNode) string {
	var left, right, feat, cond, dl, typ, catNodes, catSegs, catSizes, cats []string
	for i, n := range nodes {
		left = append(left, strconv.Itoa(n.left))
		right = append(right, strconv.Itoa(n.right))
		feat = append(feat, strconv.Itoa(n.feature))
		cond = append(cond, n.cond)
		dl = append(dl, strconv.Itoa(map[bool]int{false: 0, true: 1}[n.defaultLeft]))
		t := "0"
		if n.cats != nil {
			t = "1"
			catNodes = append(catNodes, strconv.Itoa(i))
			catSegs = append(catSegs, strconv.Itoa(len(cats)))
			catSizes = append(catSizes, strconv.Itoa(len(n.cats)))
			for _, c := range n.cats {
				cats = append(cats, strconv.Itoa(c))
			}
		}
		typ = append(typ, t)
	}
	j := func(s []string) string { return "[" + strings.Join(s, ",") + "]" }
	return fmt.Sprintf(`{"base_weights":%s,"categories":%s,"categories_nodes":%s,"categories_segments":%s,
"categories_sizes":%s,"default_left":%s,"id":%d,"left_children":%s,"loss_changes":%s,"parents":%s,
"right_children":%s,"split_conditions":%s,"split_indices":%s,"split_type":%s,"sum_hessian":%s,
"tree_param":{"num_deleted":"0","num_feature":"3","num_nodes":"%d","size_leaf_vector":"0"}}`,
		j(cond), j(cats), j(catNodes), j(catSegs), j(catSizes), j(dl), id, j(left), j(cond), j(left),
		j(right), j(cond), j(feat), j(typ), j(cond), len(nodes))
}

// stump is a tree splitting feature 0 at threshold t: -1 left, 1 right.
func stump(id int, t string, defaultLeft bool) string {
	return tinyTree(id,
		tinyNode{left: 1, right: 2, feature: 0, cond: t, defaultLeft: defaultLeft},
		tinyNode{left: -1, right: -1, cond: "-1"},
		tinyNode{left: -1, right: -1, cond: "1"},
	)
}

func predictRows(t *testing.T, m Model, rows ...[]float64) []float64 {
	t.Helper()
	var x []float64
	for _, r := range rows {
		x = append(x, r...)
	}
	out := make([]float64, len(rows)*m.NumOutputs())
	if err := m.Predict(out, x, len(rows)); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestXGBoostJSONSyntax(t *testing.T) {
	// NaN, Infinity and -Infinity tokens, escapes in strings, a byte order
	// mark and spacing: XGBoost writes the tokens, editors the rest.
	trees := []string{
		stump(0, "Infinity", false), // every finite input goes left
		stump(1, "-Infinity", true), // none does; missing goes left
		stump(2, "NaN", false),      // none does
		stump(3, "2.5E0", false),    // x < 2.5
		stump(4, "-0", true),        // x < 0
	}
	doc := tinyModel{numFeature: 3, trees: trees, baseScore: `"0"`}.String()
	doc = strings.Replace(doc, `"feature_names":[]`, `"feature_names":["a\"b","caf\u00e9","x\\y"]`, 1)
	doc = "\xef\xbb\xbf \n\t" + strings.ReplaceAll(doc, ",", " ,\r\n ") + "\n"
	m, err := Load(FormatXGBoost, []byte(doc), Options{})
	if err != nil {
		t.Fatal(err)
	}
	nan := math.NaN()
	got := predictRows(t, m, []float64{1, 0, 0}, []float64{3, 0, 0}, []float64{-1, 0, 0}, []float64{nan, 0, 0}, []float64{math.Inf(1), 0, 0})
	// Each tree adds -1 (left) or 1 (right); per row, the five trees:
	want := []float64{
		1,  // 1: left, right, right, left, right
		3,  // 3: left, right, right, right, right
		-1, // -1: left, right, right, left, left
		1,  // NaN: right, left, right, right, left (default_left)
		5,  // +Inf: right everywhere (+Inf < Inf is false)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("predictions (-want +got):\n%s", diff)
	}
}

func TestXGBoostRefusesOldBinary(t *testing.T) {
	legacy, err := os.ReadFile("testdata/xgboost/legacy.model")
	if err != nil {
		t.Fatal(err)
	}
	// Without the "binf" magic, as XGBoost before 1.0 wrote it.
	bare := make([]byte, 136+8, 200)
	binary.LittleEndian.PutUint64(bare[136:], 15)
	bare = append(bare, "binary:logistic"...)
	bare = append(bare, 6, 0, 0, 0, 0, 0, 0, 0, 'g', 'b', 't', 'r', 'e', 'e')
	for name, data := range map[string][]byte{"binf": legacy, "bare": bare} {
		_, err := Load(FormatXGBoost, data, Options{})
		if !errors.Is(err, ErrArtifact) {
			t.Fatalf("%s: error %v does not wrap ErrArtifact", name, err)
		}
		if !strings.Contains(err.Error(), `save_model("model.json")`) {
			t.Errorf("%s: error %q does not say how to re-save the model", name, err)
		}
	}
}

func TestXGBoostBadModels(t *testing.T) {
	good := tinyModel{numFeature: 3, trees: []string{stump(0, "1", false)}}
	if _, err := Load(FormatXGBoost, []byte(good.String()), Options{}); err != nil {
		t.Fatalf("the base model does not load: %v", err)
	}
	edit := func(f func(*tinyModel)) string {
		m := good
		f(&m)
		return m.String()
	}
	deep := strings.Repeat("[", 100) + strings.Repeat("]", 100)
	tests := []struct {
		name string
		data string
		opt  Options
	}{
		{"empty", "", Options{}},
		{"not a model", "hello", Options{}},
		{"array", "[1,2]", Options{}},
		{"empty object", "{}", Options{}},
		{"truncated", good.String()[:len(good.String())/2], Options{}},
		{"trailing data", good.String() + "{}", Options{}},
		{"deep nesting", `{"learner":{"junk":` + deep + `}}`, Options{}},
		{"bad token", strings.Replace(good.String(), `"id":0`, `"id":nul`, 1), Options{}},
		{"bad number", strings.Replace(good.String(), `"split_conditions":[1,`, `"split_conditions":[1e999999x,`, 1), Options{}},
		{"unknown objective", edit(func(m *tinyModel) { m.objective = "reg:magic" }), Options{}},
		{"unknown booster", edit(func(m *tinyModel) { m.booster = "gbmagic" }), Options{}},
		{"no features", edit(func(m *tinyModel) { m.numFeature = 0 }), Options{}},
		{"feature out of range", edit(func(m *tinyModel) {
			m.trees = []string{strings.Replace(stump(0, "1", false), `"split_indices":[0,`, `"split_indices":[7,`, 1)}
		}), Options{}},
		{"negative feature", edit(func(m *tinyModel) {
			m.trees = []string{strings.Replace(stump(0, "1", false), `"split_indices":[0,`, `"split_indices":[-1,`, 1)}
		}), Options{}},
		{"cycle", edit(func(m *tinyModel) {
			m.trees = []string{strings.Replace(stump(0, "1", false), `"left_children":[1,`, `"left_children":[0,`, 1)}
		}), Options{}},
		{"child out of range", edit(func(m *tinyModel) {
			m.trees = []string{strings.Replace(stump(0, "1", false), `"right_children":[2,`, `"right_children":[9,`, 1)}
		}), Options{}},
		{"short array", edit(func(m *tinyModel) {
			m.trees = []string{strings.Replace(stump(0, "1", false), `"default_left":[0,0,0]`, `"default_left":[0]`, 1)}
		}), Options{}},
		{"num_trees", strings.Replace(good.String(), `"num_trees":"1"`, `"num_trees":"2"`, 1), Options{}},
		{"tree_info", edit(func(m *tinyModel) { m.treeInfo = []int{0, 0} }), Options{}},
		{"output out of range", edit(func(m *tinyModel) { m.treeInfo = []int{3} }), Options{}},
		{"duplicate tree id", edit(func(m *tinyModel) { m.trees = []string{stump(0, "1", false), stump(0, "1", false)} }), Options{}},
		{"weight_drop size", edit(func(m *tinyModel) { m.model = `"weight_drop":[1,1],` }), Options{}},
		{"iteration_indptr", edit(func(m *tinyModel) { m.model = `"iteration_indptr":[0,2],` }), Options{}},
		{"base_score size", edit(func(m *tinyModel) { m.baseScore = `"[1,2]"` }), Options{}},
		{"base_score text", edit(func(m *tinyModel) { m.baseScore = `"half"` }), Options{}},
		{"base_score range", edit(func(m *tinyModel) { m.objective, m.baseScore = "count:poisson", `"-1"` }), Options{}},
		{"softmax without classes", edit(func(m *tinyModel) { m.objective = "multi:softmax" }), Options{}},
		{"category out of range", edit(func(m *tinyModel) {
			m.trees = []string{tinyTree(0, tinyNode{left: 1, right: 2, cond: "0", cats: []int{1 << 24}}, tinyNode{left: -1, cond: "1"}, tinyNode{left: -1, cond: "2"})}
		}), Options{}},
		{"inputs", good.String(), Options{Inputs: []string{"a", "b"}}},
		{"gblinear iterations", `{"learner":{"gradient_booster":{"model":{"weights":[1,2,3,4]},"name":"gblinear"},
			"learner_model_param":{"base_score":"0","num_class":"0","num_feature":"3"},"objective":{"name":"reg:squarederror"}},
			"version":[1,7,4]}`, Options{Iterations: 2}},
		{"gblinear weights", `{"learner":{"gradient_booster":{"model":{"weights":[1,2,3]},"name":"gblinear"},
			"learner_model_param":{"base_score":"0","num_class":"0","num_feature":"3"},"objective":{"name":"reg:squarederror"}},
			"version":[1,7,4]}`, Options{}},
		{"ubjson count", "{L\x00\x00\x00\x00\x00\x00\x00\x07learner[$d#L\x00\x00\x00\x00\xff\xff\xff\xff", Options{}},
		{"ubjson typed object", "{$d#i\x01i\x01a\x00\x00\x00\x00", Options{}},
		{"ubjson no-payload type", "{i\x07learner[$Z#L\x7f\xff\xff\xff\xff\xff\xff\xff", Options{}},
		{"ubjson truncated", "{i\x07learner{i\x0alearner_mo", Options{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Load(FormatXGBoost, []byte(tt.data), tt.opt)
			if err == nil {
				t.Fatalf("loaded %T; want an error", m)
			}
			if !errors.Is(err, ErrArtifact) {
				t.Fatalf("error %v does not wrap ErrArtifact", err)
			}
		})
	}
}

func TestXGBoostBaseScore(t *testing.T) {
	tests := []struct {
		objective, base string
		raw             bool
		want            float64 // prediction for input 0 (trees add -1)
	}{
		{"reg:squarederror", `"5E-1"`, false, -0.5},
		{"reg:squarederror", `"[5E-1]"`, false, -0.5},
		{"reg:squarederror", `0.5`, false, -0.5},
		{"reg:squarederror", `" 2.5 "`, false, 1.5},
		{"binary:logitraw", `"5E-1"`, false, -0.5},    // a margin already
		{"binary:logistic", `"[5E-1]"`, true, -1},     // logit(0.5) = 0
		{"binary:logistic", `"7.310586E-1"`, true, 0}, // logit(0.731) ≈ 1
		{"count:poisson", `"1"`, true, -1},            // log(1) = 0
		{"binary:hinge", `"5E-1"`, true, -0.5},
	}
	for _, tt := range tests {
		t.Run(tt.objective+" "+tt.base, func(t *testing.T) {
			doc := tinyModel{numFeature: 3, objective: tt.objective, baseScore: tt.base, trees: []string{stump(0, "1", false)}}
			m, err := Load(FormatXGBoost, []byte(doc.String()), Options{Raw: tt.raw})
			if err != nil {
				t.Fatal(err)
			}
			got := predictRows(t, m, []float64{0, 0, 0})[0]
			if math.Abs(got-tt.want) > 1e-6 {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	// A vector base_score gives each output its own margin.
	doc := tinyModel{numFeature: 3, numTarget: 2, baseScore: `"[1E0,2E0]"`,
		trees: []string{stump(0, "1", false), stump(1, "1", false)}, treeInfo: []int{0, 1}}
	m, err := Load(FormatXGBoost, []byte(doc.String()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]float64{0, 1}, predictRows(t, m, []float64{0, 0, 0})); diff != "" {
		t.Errorf("vector base_score (-want +got):\n%s", diff)
	}
}

// TestXGBoostCategoricalVersions checks the treatment of codes a
// categorical split does not know, which changed in XGBoost 1.7.3: before,
// negative codes and codes past the split's 32-bit words followed
// default_left; since, they go left.
func TestXGBoostCategoricalVersions(t *testing.T) {
	tree := tinyTree(0,
		tinyNode{left: 1, right: 2, feature: 0, cond: "NaN", cats: []int{1, 3}, defaultLeft: false},
		tinyNode{left: -1, right: -1, cond: "-1"},
		tinyNode{left: -1, right: -1, cond: "1"},
	)
	nan := math.NaN()
	inputs := []float64{0, 1, 2, 3, 3.9, 31, 32, 40, -1, -0.5, 1 << 24, nan}
	tests := []struct {
		version string
		want    []float64
	}{
		{"[1,7,4]", []float64{-1, 1, -1, 1, 1, -1, -1, -1, -1, -1, -1, 1}},
		{"[3,4,1]", []float64{-1, 1, -1, 1, 1, -1, -1, -1, -1, -1, -1, 1}},
		{"[1,7,2]", []float64{-1, 1, -1, 1, 1, -1, 1, 1, 1, 1, 1, 1}},
		{"[1,6,0]", []float64{-1, 1, -1, 1, 1, -1, 1, 1, 1, 1, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			doc := tinyModel{version: tt.version, numFeature: 1, baseScore: `"0"`, trees: []string{tree}}
			m, err := Load(FormatXGBoost, []byte(doc.String()), Options{})
			if err != nil {
				t.Fatal(err)
			}
			var rows [][]float64
			for _, v := range inputs {
				rows = append(rows, []float64{v})
			}
			if diff := cmp.Diff(tt.want, predictRows(t, m, rows...)); diff != "" {
				t.Errorf("inputs %v (-want +got):\n%s", inputs, diff)
			}
		})
	}
}

// TestXGBoostTreeLayout checks trees whose children come before their
// parent (XGBoost reuses the slots of pruned nodes), unreachable nodes,
// and trees listed out of id order.
func TestXGBoostTreeLayout(t *testing.T) {
	// Node 0 splits feature 0 at 0: left is node 3, a split of feature 1
	// at 0 into leaves 1 (-10) and 4 (10); right is leaf 2 (100). Node 5
	// is unreachable garbage.
	tree := tinyTree(1,
		tinyNode{left: 3, right: 2, feature: 0, cond: "0"},
		tinyNode{left: -1, right: -1, cond: "-10"},
		tinyNode{left: -1, right: -1, cond: "100"},
		tinyNode{left: 1, right: 4, feature: 1, cond: "0"},
		tinyNode{left: -1, right: -1, cond: "10"},
		tinyNode{left: 5, right: 99, feature: 9, cond: "0"},
	)
	doc := tinyModel{numFeature: 3, numTarget: 2, baseScore: `"0"`,
		trees: []string{tree, stump(0, "1", false)}, treeInfo: []int{0, 1}}
	m, err := Load(FormatXGBoost, []byte(doc.String()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := predictRows(t, m, []float64{-1, -1, 0}, []float64{-1, 1, 0}, []float64{1, 0, 0})
	// Tree id 0 (listed second) is the stump, on output 0; tree 1 on output 1.
	want := []float64{-1, -10, -1, 10, 1, 100}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestXGBoostVectorLeaves checks multi-target trees with vector leaves,
// as XGBoost 2.0 to 3.0 write them (leaf values per node in base_weights)
// and as later versions do (leaf_weights, indexed by the leaf's right
// child).
func TestXGBoostVectorLeaves(t *testing.T) {
	common := `"default_left":[0,0,0],"left_children":[1,-1,-1],"parents":[2147483647,0,0],
"split_conditions":[5E-1,NaN,NaN],"split_indices":[0,0,0],"split_type":[0,0,0],
"categories":[],"categories_nodes":[],"categories_segments":[],"categories_sizes":[],
"tree_param":{"num_deleted":"0","num_feature":"1","num_nodes":"3","size_leaf_vector":"2"}`
	old := `{` + common + `,"id":0,"right_children":[2,-1,-1],"base_weights":[0,0,1,2,3,4]}`
	leafWeights := `{` + common + `,"id":0,"right_children":[2,1,0],"base_weights":[0,0],"leaf_weights":[3,4,1,2]}`
	for name, tree := range map[string]string{"base_weights": old, "leaf_weights": leafWeights} {
		t.Run(name, func(t *testing.T) {
			doc := tinyModel{version: "[3,0,0]", numFeature: 1, numTarget: 2, baseScore: `"[0,0]"`,
				trees: []string{tree}, model: `"iteration_indptr":[0,1],`}
			m, err := Load(FormatXGBoost, []byte(doc.String()), Options{})
			if err != nil {
				t.Fatal(err)
			}
			got := predictRows(t, m, []float64{0}, []float64{1})
			if diff := cmp.Diff([]float64{1, 2, 3, 4}, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	// Two leaves may not share leaf_weights.
	shared := strings.Replace(leafWeights, `"right_children":[2,1,0]`, `"right_children":[2,0,0]`, 1)
	doc := tinyModel{numFeature: 1, numTarget: 2, baseScore: `"0"`, trees: []string{shared}, model: `"iteration_indptr":[0,1],`}
	if _, err := Load(FormatXGBoost, []byte(doc.String()), Options{}); !errors.Is(err, ErrArtifact) {
		t.Errorf("shared leaf weights: error %v", err)
	}
}

// ubjEncode writes a JSON value (decoded with UseNumber) as UBJSON in one
// of several styles, to check that the decoder reads what the
// specification allows and not only what XGBoost writes.
type ubjStyle struct {
	typed   byte // element type of numeric arrays ('d', 'D', 'l', 'L', ...); 0: untyped
	counted bool // containers with a count instead of an end marker
	noops   bool // no-op markers between values
	huge    bool // numbers as high-precision strings
}

func ubjEncode(buf *bytes.Buffer, v any, s ubjStyle) {
	if s.noops {
		buf.WriteByte('N')
	}
	switch v := v.(type) {
	case nil:
		buf.WriteByte('Z')
	case bool:
		buf.WriteByte(map[bool]byte{false: 'F', true: 'T'}[v])
	case string:
		buf.WriteByte('S')
		ubjLength(buf, len(v))
		buf.WriteString(v)
	case json.Number:
		ubjNumber(buf, string(v), s)
	case []any:
		if s.typed != 0 && len(v) > 0 && allNumbers(v, s.typed) {
			buf.WriteString("[$")
			buf.WriteByte(s.typed)
			buf.WriteByte('#')
			ubjLength(buf, len(v))
			for _, e := range v {
				ubjPayload(buf, string(e.(json.Number)), s.typed)
			}
			return
		}
		buf.WriteByte('[')
		if s.counted {
			buf.WriteByte('#')
			ubjLength(buf, len(v))
		}
		for _, e := range v {
			ubjEncode(buf, e, s)
		}
		if !s.counted {
			buf.WriteByte(']')
		}
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		buf.WriteByte('{')
		if s.counted {
			buf.WriteByte('#')
			ubjLength(buf, len(keys))
		}
		for _, k := range keys {
			ubjLength(buf, len(k))
			buf.WriteString(k)
			ubjEncode(buf, v[k], s)
		}
		if !s.counted {
			buf.WriteByte('}')
		}
	default:
		panic(fmt.Sprintf("ubjEncode: %T", v))
	}
}

func ubjLength(buf *bytes.Buffer, n int) {
	if n < 128 {
		buf.WriteByte('i')
		buf.WriteByte(byte(n))
		return
	}
	buf.WriteByte('L')
	binary.Write(buf, binary.BigEndian, int64(n))
}

// allNumbers reports whether every element is a number the type can hold
// exactly.
func allNumbers(v []any, typ byte) bool {
	for _, e := range v {
		n, ok := e.(json.Number)
		if !ok {
			return false
		}
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil {
			return false
		}
		switch typ {
		case 'd':
			if float64(float32(f)) != f && !math.IsNaN(f) {
				return false
			}
		case 'D':
		default:
			if f != math.Trunc(f) || f < -1<<31 || f >= 1<<31 {
				return false
			}
			if typ == 'U' && (f < 0 || f > 255) || typ == 'i' && (f < -128 || f > 127) || typ == 'I' && (f < -32768 || f > 32767) {
				return false
			}
		}
	}
	return true
}

func ubjNumber(buf *bytes.Buffer, text string, s ubjStyle) {
	if s.huge {
		buf.WriteByte('H')
		ubjLength(buf, len(text))
		buf.WriteString(text)
		return
	}
	f, _ := strconv.ParseFloat(text, 64)
	switch {
	case f == math.Trunc(f) && f >= -1<<31 && f < 1<<31:
		buf.WriteByte('l')
		ubjPayload(buf, text, 'l')
	case float64(float32(f)) == f:
		buf.WriteByte('d')
		ubjPayload(buf, text, 'd')
	default:
		buf.WriteByte('D')
		ubjPayload(buf, text, 'D')
	}
}

func ubjPayload(buf *bytes.Buffer, text string, typ byte) {
	f, _ := strconv.ParseFloat(text, 64)
	switch typ {
	case 'i':
		buf.WriteByte(byte(int8(f)))
	case 'U':
		buf.WriteByte(byte(f))
	case 'I':
		binary.Write(buf, binary.BigEndian, int16(f))
	case 'l':
		binary.Write(buf, binary.BigEndian, int32(f))
	case 'L':
		binary.Write(buf, binary.BigEndian, int64(f))
	case 'd':
		binary.Write(buf, binary.BigEndian, float32(f))
	case 'D':
		binary.Write(buf, binary.BigEndian, f)
	}
}

func TestXGBoostUBJSONStyles(t *testing.T) {
	for _, name := range []string{"binary_logistic", "multi_softmax", "gblinear", "dart"} {
		data, err := os.ReadFile("testdata/xgboost/" + name + ".json")
		if err != nil {
			t.Fatal(err)
		}
		in := readTable(t, "testdata/xgboost/"+inputOf(t, name))
		ref, err := Load(FormatXGBoost, data, Options{Raw: true})
		if err != nil {
			t.Fatal(err)
		}
		want := predictRows(t, ref, in...)
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var doc any
		if err := dec.Decode(&doc); err != nil {
			t.Fatal(err)
		}
		styles := []ubjStyle{
			{},
			{typed: 'd'},
			{typed: 'D', counted: true},
			{typed: 'l', noops: true},
			{typed: 'L'},
			{typed: 'I', counted: true},
			{typed: 'U'},
			{typed: 'i', noops: true, counted: true},
			{huge: true},
		}
		for _, s := range styles {
			var buf bytes.Buffer
			ubjEncode(&buf, doc, s)
			m, err := Load(FormatXGBoost, buf.Bytes(), Options{Raw: true})
			if err != nil {
				t.Fatalf("%s %+v: %v", name, s, err)
			}
			if diff := cmp.Diff(want, predictRows(t, m, in...)); diff != "" {
				t.Errorf("%s %+v: predictions differ (-json +ubjson):\n%s", name, s, diff)
			}
		}
	}
}

// inputOf returns the input file of a generated case.
func inputOf(t *testing.T, name string) string {
	t.Helper()
	raw, err := os.ReadFile("testdata/xgboost/manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	var man xgb174Manifest
	if err := json.Unmarshal(raw, &man); err != nil {
		t.Fatal(err)
	}
	for _, c := range man.Cases {
		if c.Case == name {
			return c.Input
		}
	}
	t.Fatalf("no case %s", name)
	return ""
}

func readTable(t *testing.T, path string) [][]float64 {
	t.Helper()
	return oracle.Read(t, path).Rows
}

func FuzzLoadXGBoost(f *testing.F) {
	for _, name := range []string{"binary_logistic", "multi_softmax", "gblinear_softprob", "categorical", "dart", "multi_target", "random_forest"} {
		for _, ext := range []string{".json", ".ubj"} {
			data, err := os.ReadFile("testdata/xgboost/" + name + ext)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
			f.Add(data[:len(data)/3])
			bad := bytes.Clone(data)
			for i := 100; i < len(bad); i += 997 {
				bad[i] ^= 0x5a
			}
			f.Add(bad)
		}
	}
	f.Add([]byte(tinyModel{numFeature: 3, trees: []string{stump(0, "NaN", true)}}.String()))
	f.Add([]byte(tinyModel{numFeature: 1, numTarget: 2, baseScore: `"[0,0]"`, model: `"iteration_indptr":[0,1],`,
		trees: []string{tinyTree(0, tinyNode{left: 1, right: 2, cond: "0", cats: []int{1, 3}}, tinyNode{left: -1, cond: "1"}, tinyNode{left: -1, cond: "2"})}}.String()))
	legacy, err := os.ReadFile("testdata/xgboost/legacy.model")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(legacy)
	f.Fuzz(func(t *testing.T, data []byte) {
		// loadXGBoost, not Load: Load would turn a panic into an error.
		m, err := loadXGBoost(data, Options{})
		if err != nil {
			if !errors.Is(err, ErrArtifact) {
				t.Fatalf("error %v does not wrap ErrArtifact", err)
			}
			return
		}
		nf, no := m.NumFeatures(), m.NumOutputs()
		if nf < 1 || no < 1 {
			t.Fatalf("loaded a model of %d features and %d outputs", nf, no)
		}
		if nf > 1<<12 || no > 1<<12 {
			return
		}
		x := make([]float64, 3*nf)
		for i := range nf {
			x[i] = math.NaN()
			x[nf+i] = float64(i%7) - 1.5
			x[2*nf+i] = math.Inf(1 - 2*(i%2))
		}
		if err := m.Predict(make([]float64, 3*no), x, 3); err != nil {
			t.Fatalf("predict: %v", err)
		}
	})
}

// BenchmarkXGBoostPredict scores 200-row batches of generated models.
func BenchmarkXGBoostPredict(b *testing.B) {
	for _, name := range []string{"binary_logistic", "multi_softprob", "categorical", "gblinear"} {
		b.Run(name, func(b *testing.B) {
			data, err := os.ReadFile("testdata/xgboost/" + name + ".ubj")
			if err != nil {
				b.Fatal(err)
			}
			m, err := Load(FormatXGBoost, data, Options{})
			if err != nil {
				b.Fatal(err)
			}
			raw, err := os.ReadFile("testdata/xgboost/manifest.json")
			if err != nil {
				b.Fatal(err)
			}
			var man xgb174Manifest
			if err := json.Unmarshal(raw, &man); err != nil {
				b.Fatal(err)
			}
			var input string
			for _, c := range man.Cases {
				if c.Case == name {
					input = c.Input
				}
			}
			tab, err := oracle.ReadTSV("testdata/xgboost/" + input)
			if err != nil {
				b.Fatal(err)
			}
			var x []float64
			for len(x) < 200*m.NumFeatures() {
				for _, r := range tab.Rows {
					x = append(x, r...)
				}
			}
			x = x[:200*m.NumFeatures()]
			dst := make([]float64, 200*m.NumOutputs())
			b.ReportAllocs()
			for b.Loop() {
				if err := m.Predict(dst, x, 200); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLoadXGBoost loads a generated model from JSON and UBJSON.
func BenchmarkLoadXGBoost(b *testing.B) {
	for _, ext := range []string{".json", ".ubj"} {
		b.Run(ext[1:], func(b *testing.B) {
			data, err := os.ReadFile("testdata/xgboost/multi_softprob" + ext)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := Load(FormatXGBoost, data, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
