package models

import "math"

// link turns one row's margins into scikit-learn's outputs, in place. Each
// follows the float64 operations of the scikit-learn (numpy, scipy) code it
// mirrors, in the same order; only exp and log may differ from numpy's by
// an ulp.
type link uint8

const (
	linkIdentity   link = iota
	linkLogistic        // expit(m) = 1 / (1 + exp(-m))
	linkLogistic2x      // expit(2m): GradientBoosting's exponential loss
	linkExp             // exp(m): log-link regressions (Poisson)
	// linkSoftmax is sklearn.utils.extmath.softmax: exp(m - max) / sum.
	// On a single margin d it is the softmax of (-d, d) and gives the
	// second class's probability (binary multinomial LogisticRegression).
	linkSoftmax
	// linkSoftmaxLSE is GradientBoosting's multinomial deviance:
	// nan_to_num(exp(m - logsumexp(m))).
	linkSoftmaxLSE
	// linkOvR is one-vs-rest LogisticRegression: expit of each margin,
	// divided by their sum.
	linkOvR
)

var linkNames = map[string]link{
	"identity":    linkIdentity,
	"logistic":    linkLogistic,
	"logistic_2x": linkLogistic2x,
	"exp":         linkExp,
	"softmax":     linkSoftmax,
	"ovr":         linkOvR,
}

// apply transforms row in place.
func (l link) apply(row []float64) {
	switch l {
	case linkLogistic:
		for i, v := range row {
			row[i] = expit(v)
		}
	case linkLogistic2x:
		for i, v := range row {
			row[i] = expit(2 * v)
		}
	case linkExp:
		for i, v := range row {
			row[i] = math.Exp(v)
		}
	case linkSoftmax:
		sklearnSoftmax(row)
	case linkSoftmaxLSE:
		softmaxLSE(row)
	case linkOvR:
		for i, v := range row {
			row[i] = expit(v)
		}
		s := pairwiseSum(row)
		for i := range row {
			row[i] /= s
		}
	}
}

// expit is scipy.special.expit for float64.
func expit(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// sklearnSoftmax is sklearn.utils.extmath.softmax on one row.
func sklearnSoftmax(row []float64) {
	if len(row) == 1 {
		d := row[0]
		m := math.Max(-d, d)
		e0, e1 := math.Exp(-d-m), math.Exp(d-m)
		row[0] = e1 / pairwiseSum2(e0, e1)
		return
	}
	m := rowMax(row)
	for i, v := range row {
		row[i] = math.Exp(v - m)
	}
	s := pairwiseSum(row)
	for i := range row {
		row[i] /= s
	}
}

// softmaxLSE is GradientBoosting's multinomial probability on one row:
// exp(m - logsumexp(m)) with scipy's logsumexp, then nan_to_num.
func softmaxLSE(row []float64) {
	var stack [64]float64
	tmp := stack[:0]
	if len(row) > len(stack) {
		tmp = make([]float64, 0, len(row))
	}
	amax := rowMax(row)
	if math.IsInf(amax, 0) || math.IsNaN(amax) {
		amax = 0
	}
	for _, v := range row {
		tmp = append(tmp, math.Exp(v-amax))
	}
	lse := math.Log(pairwiseSum(tmp)) + amax
	for i, v := range row {
		p := math.Exp(v - lse)
		switch {
		case math.IsNaN(p):
			p = 0
		case math.IsInf(p, 1):
			p = math.MaxFloat64
		}
		row[i] = p
	}
}

// rowMax is numpy's max: NaN propagates.
func rowMax(row []float64) float64 {
	m := row[0]
	for _, v := range row[1:] {
		if v > m || math.IsNaN(v) {
			m = v
			if math.IsNaN(v) {
				break
			}
		}
	}
	return m
}

// pairwiseSum adds a as numpy's sum does along a contiguous axis: plain
// from zero below 8 values, eight interleaved partial sums up to 128,
// halves above.
func pairwiseSum(a []float64) float64 {
	n := len(a)
	switch {
	case n < 8:
		res := 0.0
		for _, v := range a {
			res += v
		}
		return res
	case n <= 128:
		var r [8]float64
		copy(r[:], a[:8])
		i := 8
		for ; i < n-n%8; i += 8 {
			for j := range r {
				r[j] += a[i+j]
			}
		}
		res := ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
		for ; i < n; i++ {
			res += a[i]
		}
		return res
	default:
		n2 := n / 2
		n2 -= n2 % 8
		return pairwiseSum(a[:n2]) + pairwiseSum(a[n2:])
	}
}

// pairwiseSum2 is pairwiseSum of two values.
func pairwiseSum2(a, b float64) float64 {
	res := 0.0
	res += a
	res += b
	return res
}
