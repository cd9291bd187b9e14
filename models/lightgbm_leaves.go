package models

import (
	"bufio"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/dmitryikh/leaves"
)

// leavesModel scores a checked LightGBM model with
// github.com/dmitryikh/leaves: the second, independent evaluation of
// LightGBM models that validation compares seer's Forest with.
type leavesModel struct {
	ens        *leaves.Ensemble
	features   int
	outputs    int
	iterations int
	// catCols lists the columns read by categorical splits; Predict sends
	// their missing and out-of-range values right the same way on every
	// platform (see catRow).
	catCols []int
	// average divides the sums by the iterations scored (random forests),
	// as LightGBM does, before link.
	average bool
	link    func(row []float64)
}

var _ Model = (*leavesModel)(nil)

// loadLightGBMLeaves reads a LightGBM text model, checks it with the same
// parser as loadLightGBM, and loads it into leaves.
func loadLightGBMLeaves(data []byte, opt Options) (*leavesModel, error) {
	lm, err := parseLightGBM(data, opt)
	if err != nil {
		return nil, err
	}
	ens, err := leaves.LGEnsembleFromReader(bufio.NewReader(strings.NewReader(lm.leavesText())), false)
	if err != nil {
		return nil, lgbError("leaves: %v", err)
	}
	n := len(lm.trees) / lm.h.numClass
	if ens.NEstimators() != n || ens.NRawOutputGroups() != lm.h.numClass {
		return nil, lgbError("leaves read %d iterations of %d outputs, want %d of %d",
			ens.NEstimators(), ens.NRawOutputGroups(), n, lm.h.numClass)
	}
	m := &leavesModel{
		ens:        ens,
		features:   lm.h.maxFeature + 1,
		outputs:    lm.h.numClass,
		iterations: lm.iterations,
		average:    lm.h.averageOutput,
		link:       lm.link,
	}
	cats := make([]bool, m.features)
	for _, t := range lm.trees {
		for j, d := range t.decision {
			if d&lgbCategorical != 0 {
				cats[t.feature[j]] = true
			}
		}
	}
	for c, ok := range cats {
		if ok {
			m.catCols = append(m.catCols, c)
		}
	}
	return m, nil
}

// leavesText writes the model again in the plain v3 layout leaves reads,
// with only what leaves uses. average_output is left out: leaves would
// multiply every tree by 1/n, and the sum is divided instead, as LightGBM
// does.
func (lm *lgbModel) leavesText() string {
	var trees strings.Builder
	sizes := make([]string, len(lm.trees))
	for i := range lm.trees {
		start := trees.Len()
		lm.trees[i].writeLeaves(&trees, i)
		sizes[i] = strconv.Itoa(trees.Len() - start)
	}
	h := lm.h
	return fmt.Sprintf("tree\nversion=v3\nnum_class=%d\nnum_tree_per_iteration=%d\nlabel_index=0\nmax_feature_idx=%d\ntree_sizes=%s\n\n%s",
		h.numClass, h.numClass, h.maxFeature, strings.Join(sizes, " "), trees.String())
}

// writeLeaves writes tree i in the layout leaves reads. Floats are written
// so that they parse back to the same float64.
func (t *lgbTree) writeLeaves(w *strings.Builder, i int) {
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	list := func(key string, n int, item func(int) string) {
		w.WriteString(key)
		w.WriteByte('=')
		for k := range n {
			if k > 0 {
				w.WriteByte(' ')
			}
			w.WriteString(item(k))
		}
		w.WriteByte('\n')
	}
	fmt.Fprintf(w, "Tree=%d\nnum_leaves=%d\nnum_cat=%d\n", i, len(t.leafValue), max(len(t.catBounds)-1, 0))
	if n := len(t.feature); n > 0 {
		list("split_feature", n, func(k int) string { return strconv.Itoa(int(t.feature[k])) })
		list("threshold", n, func(k int) string { return f(t.threshold[k]) })
		list("decision_type", n, func(k int) string { return strconv.Itoa(int(t.decision[k])) })
		list("left_child", n, func(k int) string { return strconv.Itoa(int(t.left[k])) })
		list("right_child", n, func(k int) string { return strconv.Itoa(int(t.right[k])) })
	}
	list("leaf_value", len(t.leafValue), func(k int) string { return f(t.leafValue[k]) })
	if len(t.catBounds) > 0 {
		list("cat_boundaries", len(t.catBounds), func(k int) string { return strconv.FormatUint(uint64(t.catBounds[k]), 10) })
		list("cat_threshold", len(t.catBits), func(k int) string { return strconv.FormatUint(uint64(t.catBits[k]), 10) })
	}
	w.WriteByte('\n')
}

// NumFeatures returns max_feature_idx+1.
func (m *leavesModel) NumFeatures() int { return m.features }

// NumOutputs returns num_class (1 for binary and regression models).
func (m *leavesModel) NumOutputs() int { return m.outputs }

// Predict scores nrows rows of x into dst, on the calling goroutine.
func (m *leavesModel) Predict(dst, x []float64, nrows int) error {
	nf, no := m.features, m.outputs
	if nrows < 0 || nrows > len(x)/nf || nrows > len(dst)/no {
		return fmt.Errorf("predict: %d inputs and %d outputs for %d rows of %d features and %d outputs",
			len(x), len(dst), nrows, nf, no)
	}
	var scratch []float64
	for r := range nrows {
		row := x[r*nf : (r+1)*nf]
		if m.catCols != nil {
			row = m.catRow(row, &scratch)
		}
		out := dst[r*no : (r+1)*no]
		if err := m.ens.Predict(row, m.iterations, out); err != nil {
			return fmt.Errorf("predict: %w", err)
		}
		if m.average {
			for i := range out {
				out[i] /= float64(m.iterations)
			}
		}
		if m.link != nil {
			m.link(out)
		}
	}
	return nil
}

// catRow returns row, or a copy of it in *scratch with -1 in every
// categorical column whose value LightGBM sends right without looking at
// the category: NaN, values whose integer part is negative, and values
// too large for an int32. leaves converts those with int32(x), whose result
// Go leaves to the platform (amd64 and arm64 differ for NaN), so they are
// replaced by a value every platform converts alike.
func (m *leavesModel) catRow(row []float64, scratch *[]float64) []float64 {
	fixed := false
	for _, c := range m.catCols {
		v := row[c]
		if v > -1 && v < math.MaxInt32+1 {
			continue
		}
		if !fixed {
			if *scratch == nil {
				*scratch = make([]float64, len(row))
			}
			copy(*scratch, row)
			fixed = true
		}
		(*scratch)[c] = -1
	}
	if fixed {
		return *scratch
	}
	return row
}
