package models

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// XGBoost models load from the JSON and UBJSON files Booster.save_model
// writes (XGBoost 1.0 and later) into a Forest (gbtree, dart) or an
// xgbLinear (gblinear), reproducing XGBoost's float32 arithmetic: inputs
// and thresholds compare as float32, margins sum in float32 tree by tree on
// top of the base margin, and the objective's transform runs in float32.

// Limits on what an XGBoost model may declare.
const (
	maxXGBFeatures = 1 << 24
	maxXGBOutputs  = 1 << 16
	maxXGBTrees    = 1 << 22
	maxXGBCatWords = 1 << 22 // total 64-bit words of categorical bitsets
)

func loadXGBoost(data []byte, opt Options) (Model, error) {
	d, err := xgbDecoder(data)
	if err != nil {
		return nil, fmt.Errorf("%w: xgboost: %w", ErrArtifact, err)
	}
	// A first pass checks the whole document's syntax and keeps nothing,
	// so that a broken file (truncated, junk after a valid beginning) is
	// refused before any array is decoded from it.
	err = d.check()
	if err == nil {
		err = d.end()
	}
	if err != nil {
		return nil, fmt.Errorf("%w: xgboost: %w", ErrArtifact, err)
	}
	d, _ = xgbDecoder(data)
	doc, err := parseXGB(d)
	if err == nil {
		err = d.end()
	}
	if err != nil {
		return nil, fmt.Errorf("%w: xgboost: %w", ErrArtifact, err)
	}
	m, err := doc.model(opt)
	if err != nil {
		return nil, fmt.Errorf("%w: xgboost: %w", ErrArtifact, err)
	}
	return m, nil
}

// errOldXGBoost is the cause when a file is an XGBoost binary model.
var errOldXGBoost = errors.New(`this is an old binary XGBoost model, which seer does not read; ` +
	`load it with XGBoost and save it again as JSON or UBJSON: booster.save_model("model.json")`)

// xgbDecoder detects the format of data: JSON text, UBJSON or the old
// binary format, which it refuses.
func xgbDecoder(data []byte) (decoder, error) {
	if u := bytes.TrimLeft(data, "N"); len(u) >= 2 && u[0] == '{' && strings.IndexByte("iUIlL$#N", u[1]) >= 0 {
		return &ubjDecoder{b: data}, nil // UBJSON: an object whose first key has a length marker
	}
	text := bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if t := bytes.TrimLeft(text, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		return &jsonDecoder{b: text}, nil
	}
	if isOldXGBoost(data) {
		return nil, errOldXGBoost
	}
	return nil, errors.New("not an XGBoost model: want JSON or UBJSON as written by booster.save_model")
}

// isOldXGBoost reports whether data looks like XGBoost's binary model
// format: an optional "binf" magic, a 136-byte parameter block, then the
// objective's name as a 64-bit length and bytes.
func isOldXGBoost(data []byte) bool {
	if bytes.HasPrefix(data, []byte("binf")) || bytes.HasPrefix(data, []byte("bs64")) {
		return true
	}
	const params = 136
	if len(data) < params+8 {
		return false
	}
	n := binary.LittleEndian.Uint64(data[params:])
	if n == 0 || n > 64 || uint64(len(data)-params-8) < n {
		return false
	}
	name := string(data[params+8 : params+8+int(n)])
	return strings.Contains(name, ":")
}

// xgbDoc is what the loader keeps of an XGBoost model document.
type xgbDoc struct {
	version    [3]int
	numFeature int
	numClass   int
	numTarget  int
	baseScore  []float32
	objective  string
	bestIter   int // -1 when absent
	booster    string
	gbtree     *xgbTrees
	weightDrop []float32 // DART tree weights beside the tree model (older versions)
	linear     []float32 // gblinear weights
	names      []string  // feature_names; empty when trained without names
}

// xgbTrees is a tree model: gbtree's, or the one inside a dart booster.
type xgbTrees struct {
	numTrees   int
	parallel   int // num_parallel_tree
	trees      []*xgbTree
	treeInfo   []int32   // per tree: its output
	iterIndptr []int32   // per iteration: its first tree (XGBoost 2.0 and later)
	weightDrop []float32 // DART tree weights, here in recent XGBoost versions
}

// xgbTree is one tree of a tree model, its arrays as the file has them.
type xgbTree struct {
	id                                   int
	numNodes                             int
	leafVector                           int // size_leaf_vector
	left, right, splitIdx, dftLeft       []int32
	splitType, catNodes, catSegs, catLen []int32
	cats                                 []int32
	cond, baseWeights, leafWeights       []float32
	hasLeafWeights                       bool
}

// members reads an object whose members are handled by the functions in
// fields; other members are skipped.
func members(d decoder, fields map[string]func() error) error {
	return d.object(func(key string) error {
		if f, ok := fields[key]; ok {
			return f()
		}
		return d.skip()
	})
}

// intParam reads a dmlc parameter: a string holding an integer (or an
// integer).
func intParam(d decoder, name string, dst *int, lo, hi int) error {
	k, err := d.kind()
	if err != nil {
		return err
	}
	var v int64
	if k == kindString {
		s, err := d.str()
		if err != nil {
			return err
		}
		if v, err = strconv.ParseInt(strings.TrimSpace(s), 10, 64); err != nil {
			return fmt.Errorf("%s: %q is not an integer", name, s)
		}
	} else if v, err = d.int(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if v < int64(lo) || v > int64(hi) {
		return fmt.Errorf("%s: %d is out of range [%d, %d]", name, v, lo, hi)
	}
	*dst = int(v)
	return nil
}

// parseBaseScore reads base_score: a float32 in a string ("5E-1"), or
// since XGBoost 3.1 a vector in a string ("[5E-1,2E-1]"), or a number.
func parseBaseScore(d decoder) ([]float32, error) {
	k, err := d.kind()
	if err != nil {
		return nil, err
	}
	if k != kindString {
		v, err := d.float(true)
		return []float32{float32(v)}, err
	}
	s, err := d.str()
	if err != nil {
		return nil, err
	}
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
	}
	parts := strings.Split(s, ",")
	if len(parts) > maxXGBOutputs {
		return nil, fmt.Errorf("base_score: %d values", len(parts))
	}
	out := make([]float32, len(parts))
	for i, p := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 32)
		if err != nil {
			return nil, fmt.Errorf("base_score: %q is not a number", p)
		}
		out[i] = float32(v)
	}
	return out, nil
}

func parseXGB(d decoder) (*xgbDoc, error) {
	doc := &xgbDoc{bestIter: -1, numTarget: 1}
	sawLearner := false
	err := members(d, map[string]func() error{
		"version": func() error {
			vs, err := d.ints()
			if err != nil {
				return fmt.Errorf("version: %w", err)
			}
			copy(doc.version[:], toInts(vs))
			return nil
		},
		"learner": func() error {
			sawLearner = true
			return doc.parseLearner(d)
		},
	})
	if err != nil {
		return nil, err
	}
	if !sawLearner {
		return nil, errors.New("no learner")
	}
	return doc, nil
}

func toInts(vs []int32) []int {
	out := make([]int, len(vs))
	for i, v := range vs {
		out[i] = int(v)
	}
	return out
}

func (doc *xgbDoc) parseLearner(d decoder) error {
	return members(d, map[string]func() error{
		"learner_model_param": func() error {
			return members(d, map[string]func() error{
				"base_score": func() error {
					var err error
					doc.baseScore, err = parseBaseScore(d)
					return err
				},
				"num_feature": func() error { return intParam(d, "num_feature", &doc.numFeature, 0, maxXGBFeatures) },
				"num_class":   func() error { return intParam(d, "num_class", &doc.numClass, 0, maxXGBOutputs) },
				"num_target":  func() error { return intParam(d, "num_target", &doc.numTarget, 0, maxXGBOutputs) },
			})
		},
		"objective": func() error {
			return members(d, map[string]func() error{
				"name": func() error {
					var err error
					doc.objective, err = d.str()
					return err
				},
			})
		},
		"attributes": func() error {
			return members(d, map[string]func() error{
				"best_iteration": func() error {
					return intParam(d, "best_iteration", &doc.bestIter, 0, math.MaxInt32)
				},
			})
		},
		"gradient_booster": func() error { return doc.parseBooster(d, false) },
		"feature_names": func() error {
			return d.array(func() error {
				if len(doc.names) >= maxXGBFeatures {
					return fmt.Errorf("feature_names: more than %d names", maxXGBFeatures)
				}
				name, err := d.str()
				doc.names = append(doc.names, name)
				return err
			})
		},
	})
}

// parseBooster reads a gradient booster: gbtree {"name","model"}, dart
// {"name","gbtree","weight_drop"} (up to XGBoost 3.0; later versions keep
// weight_drop in the tree model) or gblinear {"name","model"}.
func (doc *xgbDoc) parseBooster(d decoder, nested bool) error {
	return members(d, map[string]func() error{
		"name": func() error {
			name, err := d.str()
			if !nested {
				doc.booster = name
			}
			return err
		},
		"model": func() error {
			// Linear and tree models share the key; their members differ.
			return members(d, map[string]func() error{
				"weights": func() error {
					var err error
					doc.linear, err = d.floats()
					if doc.linear == nil {
						doc.linear = []float32{}
					}
					return err
				},
				"gbtree_model_param": func() error { return doc.trees().parseParam(d) },
				"trees":              func() error { return doc.trees().parseTrees(d) },
				"tree_info":          func() error { return doc.trees().parseInts(d, &doc.trees().treeInfo) },
				"iteration_indptr":   func() error { return doc.trees().parseInts(d, &doc.trees().iterIndptr) },
				"weight_drop": func() error {
					var err error
					doc.trees().weightDrop, err = d.floats()
					return err
				},
			})
		},
		"gbtree": func() error { return doc.parseBooster(d, true) },
		"weight_drop": func() error {
			var err error
			doc.weightDrop, err = d.floats()
			return err
		},
	})
}

// trees returns the tree model being read, creating it.
func (doc *xgbDoc) trees() *xgbTrees {
	if doc.gbtree == nil {
		doc.gbtree = &xgbTrees{parallel: 1}
	}
	return doc.gbtree
}

func (m *xgbTrees) parseParam(d decoder) error {
	return members(d, map[string]func() error{
		"num_trees":         func() error { return intParam(d, "num_trees", &m.numTrees, 0, maxXGBTrees) },
		"num_parallel_tree": func() error { return intParam(d, "num_parallel_tree", &m.parallel, 1, maxXGBTrees) },
	})
}

func (m *xgbTrees) parseInts(d decoder, dst *[]int32) error {
	v, err := d.ints()
	*dst = v
	return err
}

func (m *xgbTrees) parseTrees(d decoder) error {
	return d.array(func() error {
		if len(m.trees) >= maxXGBTrees {
			return fmt.Errorf("more than %d trees", maxXGBTrees)
		}
		t := &xgbTree{id: -1}
		m.trees = append(m.trees, t)
		if err := t.parse(d); err != nil {
			return fmt.Errorf("tree %d: %w", len(m.trees)-1, err)
		}
		return nil
	})
}

func (t *xgbTree) parse(d decoder) error {
	ints := func(dst *[]int32) func() error {
		return func() error {
			var err error
			*dst, err = d.ints()
			return err
		}
	}
	floats := func(dst *[]float32) func() error {
		return func() error {
			var err error
			*dst, err = d.floats()
			return err
		}
	}
	return members(d, map[string]func() error{
		"id": func() error { return intParam(d, "id", &t.id, 0, maxXGBTrees) },
		"tree_param": func() error {
			return members(d, map[string]func() error{
				"num_nodes":        func() error { return intParam(d, "num_nodes", &t.numNodes, 1, MaxForestNodes) },
				"size_leaf_vector": func() error { return intParam(d, "size_leaf_vector", &t.leafVector, 0, maxXGBOutputs) },
			})
		},
		"left_children":       ints(&t.left),
		"right_children":      ints(&t.right),
		"split_indices":       ints(&t.splitIdx),
		"default_left":        ints(&t.dftLeft),
		"split_type":          ints(&t.splitType),
		"categories_nodes":    ints(&t.catNodes),
		"categories_segments": ints(&t.catSegs),
		"categories_sizes":    ints(&t.catLen),
		"categories":          ints(&t.cats),
		"split_conditions":    floats(&t.cond),
		"base_weights":        floats(&t.baseWeights),
		"leaf_weights": func() error {
			t.hasLeafWeights = true
			return floats(&t.leafWeights)()
		},
	})
}
