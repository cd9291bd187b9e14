// Package shadow keeps the statistics of shadow models: for each pair of a
// live model version and a version that shadows it, how far the shadow's
// scores are from the live ones and how much the two rankings agree, over
// every query compared and over a recent window.
//
// It imports no other seer package; the request path (serving) scores the
// shadows and hands their scores here.
package shadow

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
)

// ErrOutputs is wrapped by the error of a comparison whose two models give
// different numbers of scores per row.
var ErrOutputs = errors.New("live and shadow outputs differ")

// Comparison is what one query's scores, live and shadow, say.
type Comparison struct {
	Rows int
	// SumAbsDiff and MaxAbsDiff are over every score of every row whose
	// two values are numbers; Compared counts them.
	SumAbsDiff float64
	MaxAbsDiff float64
	Compared   int
	// TopKOverlap is the share of the live top k rows that are also in the
	// shadow's top k; NaN for a query of fewer than 2 rows.
	TopKOverlap float64
	// RankCorrelation is Spearman's rank correlation of the two rankings;
	// NaN for fewer than 2 rows, or when either model gives every row the
	// same score (the correlation is undefined).
	RankCorrelation float64
}

// Compare compares the scores two models gave the same rows: live and
// shadow hold outputs scores per row, row-major. Rows are ranked by their
// last score (for a classifier giving one probability per class, the last
// class's), highest first; k bounds the top-k overlap (the row count when
// smaller).
//
// Ties: rows of equal score share the mean of the ranks they span, as
// Spearman's coefficient requires, and a NaN score ranks below every
// number. Where a tie straddles the k-th place, the row given first in the
// query wins the place.
func Compare(live, shadow []float64, outputs, k int) (Comparison, error) {
	if outputs <= 0 || len(live)%outputs != 0 {
		return Comparison{}, fmt.Errorf("%d live scores are not rows of %d outputs", len(live), outputs)
	}
	if len(shadow) != len(live) {
		return Comparison{}, fmt.Errorf("%w: %d live scores, %d shadow scores", ErrOutputs, len(live), len(shadow))
	}
	c := Comparison{Rows: len(live) / outputs, TopKOverlap: math.NaN(), RankCorrelation: math.NaN()}
	for i, l := range live {
		d := math.Abs(l - shadow[i])
		if math.IsNaN(d) {
			continue
		}
		c.SumAbsDiff += d
		c.MaxAbsDiff = max(c.MaxAbsDiff, d)
		c.Compared++
	}
	if c.Rows < 2 {
		return c, nil
	}
	ls := column(live, outputs)
	ss := column(shadow, outputs)
	c.TopKOverlap = overlap(ls, ss, min(k, c.Rows))
	c.RankCorrelation = spearman(ls, ss)
	return c, nil
}

// column returns the last score of each row.
func column(scores []float64, outputs int) []float64 {
	if outputs == 1 {
		return scores
	}
	out := make([]float64, len(scores)/outputs)
	for r := range out {
		out[r] = scores[(r+1)*outputs-1]
	}
	return out
}

// order returns the row indices from the highest score to the lowest,
// NaN last, ties in row order.
func order(scores []float64) []int {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return compareDesc(scores[a], scores[b]) })
	return idx
}

// compareDesc orders scores from the highest to the lowest, NaN last.
func compareDesc(a, b float64) int {
	switch an, bn := math.IsNaN(a), math.IsNaN(b); {
	case an && bn:
		return 0
	case an:
		return 1
	case bn:
		return -1
	}
	return cmp.Compare(b, a)
}

// overlap returns the share of the live top k that is in the shadow's.
func overlap(live, shadow []float64, k int) float64 {
	if k <= 0 {
		return math.NaN()
	}
	inShadow := make([]bool, len(shadow))
	for _, i := range order(shadow)[:k] {
		inShadow[i] = true
	}
	n := 0
	for _, i := range order(live)[:k] {
		if inShadow[i] {
			n++
		}
	}
	return float64(n) / float64(k)
}

// ranks returns each row's rank, 1 for the highest score, tied rows
// sharing the mean of the ranks they span.
func ranks(scores []float64) []float64 {
	idx := order(scores)
	r := make([]float64, len(scores))
	for i := 0; i < len(idx); {
		j := i + 1
		for j < len(idx) && compareDesc(scores[idx[i]], scores[idx[j]]) == 0 {
			j++
		}
		mean := float64(i+j+1) / 2 // ranks i+1 .. j
		for _, p := range idx[i:j] {
			r[p] = mean
		}
		i = j
	}
	return r
}

// spearman returns the Pearson correlation of the two rankings' ranks:
// Spearman's coefficient with ties handled by mean ranks. It is NaN when
// either ranking is all one tie.
func spearman(a, b []float64) float64 {
	ra, rb := ranks(a), ranks(b)
	n := float64(len(ra))
	mean := (n + 1) / 2 // the mean of ranks is the same with or without ties
	var sab, saa, sbb float64
	for i := range ra {
		da, db := ra[i]-mean, rb[i]-mean
		sab += da * db
		saa += da * da
		sbb += db * db
	}
	if saa == 0 || sbb == 0 {
		return math.NaN()
	}
	return max(-1, min(1, sab/math.Sqrt(saa*sbb)))
}
