package models

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
)

// ErrDisagree is wrapped by the errors of Verify: the model and the
// artifact's reference evaluator score a row differently.
var ErrDisagree = errors.New("evaluators disagree")

// ProbeCount is the number of probe rows Verify adds to the rows it is
// given.
const ProbeCount = 256

// verifyTolerance bounds the difference Verify accepts, relative (absolute
// below 1): both evaluators do the same float64 arithmetic in the same
// order, so they agree to the last bit unless one of them is wrong.
const verifyTolerance = 1e-12

// Reference loads an artifact with a second evaluator, independent of the
// one Load returns, for validation to compare the two: leaves for LightGBM.
// It returns nil and no error for the other formats. It never panics.
func Reference(format string, data []byte, opt Options) (m Model, err error) {
	if format != FormatLightGBM {
		return nil, nil
	}
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("%w: %s reference loader panicked: %v", ErrArtifact, format, r)
		}
	}()
	if limit := MaxSize(format); int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: %d bytes is over the %s limit of %d", ErrArtifact, len(data), format, limit)
	}
	return loadLightGBMLeaves(data, opt)
}

// Verification is what Verify compared.
type Verification struct {
	// Rows is the number of rows compared (the rows given and ProbeCount
	// probe rows); 0 when the format has no reference evaluator.
	Rows int
	// Reference names the reference evaluator.
	Reference string
	// Unchecked, when not empty, says what the reference evaluator cannot
	// check, which golden rows alone then do (leaves ignores linear
	// leaves: the trees' paths and constant leaves are compared).
	Unchecked string
}

// Verify scores the rows of x (nrows of them, inputs in m's column
// order) and ProbeCount probe rows (see ProbeRows) with m, the model Load
// returned for the artifact, and with the artifact's Reference evaluator,
// and returns an error wrapping ErrDisagree when a score differs.
//
// leaves ignores the linear models of LightGBM's linear trees, so for
// those the comparison is of m with each linear leaf replaced by its
// constant value (the value LightGBM gives when an input of the leaf's
// model is missing): the same walk through the same trees, checked; the
// linear models themselves are only checked by golden rows.
func Verify(format string, data []byte, opt Options, m Model, x []float64, nrows int) (Verification, error) {
	var v Verification
	ref, err := Reference(format, data, opt)
	if err != nil {
		return v, fmt.Errorf("reference evaluator: %w", err)
	}
	if ref == nil {
		return v, nil
	}
	v.Reference = ReferenceName(format)
	nf := m.NumFeatures()
	if ref.NumFeatures() != nf || ref.NumOutputs() != m.NumOutputs() {
		return v, fmt.Errorf("%w: %d features and %d outputs, the reference evaluator has %d and %d",
			ErrDisagree, nf, m.NumOutputs(), ref.NumFeatures(), ref.NumOutputs())
	}
	if nrows < 0 || len(x) < nrows*nf {
		return v, fmt.Errorf("verify: %d inputs for %d rows of %d features", len(x), nrows, nf)
	}
	probes := ProbeRows(m, ProbeCount, 1)
	if f, ok := m.(*Forest); ok && f.linearLeaves() {
		if m, err = f.constantLeaves(); err != nil {
			return v, err
		}
		v.Unchecked = "the linear models in the leaves of linear trees (leaves ignores them)"
	}
	rows := slices.Concat(x[:nrows*nf], probes)
	n := nrows + len(probes)/nf
	no := m.NumOutputs()
	got, want := make([]float64, n*no), make([]float64, n*no)
	if err := m.Predict(got, rows, n); err != nil {
		return v, err
	}
	if err := ref.Predict(want, rows, n); err != nil {
		return v, fmt.Errorf("reference evaluator: %w", err)
	}
	for r := range n {
		for j := range no {
			g, w := got[r*no+j], want[r*no+j]
			if math.Abs(g-w) <= verifyTolerance*max(1, math.Abs(w)) || (math.IsNaN(g) && math.IsNaN(w)) {
				continue
			}
			what := fmt.Sprintf("row %d", r+1)
			if r >= nrows {
				what = fmt.Sprintf("probe row %d %s", r-nrows+1, formatRow(rows[r*nf:(r+1)*nf]))
			}
			return v, fmt.Errorf("%w: %s, output %d: seer's evaluator gives %.17g, %s %.17g",
				ErrDisagree, what, j, g, v.Reference, w)
		}
	}
	v.Rows = n
	return v, nil
}

// ReferenceName names the reference evaluator of a format.
func ReferenceName(format string) string {
	if format == FormatLightGBM {
		return "leaves (github.com/dmitryikh/leaves)"
	}
	return "the reference evaluator"
}

// formatRow writes a row's inputs, at most 20 of them.
func formatRow(row []float64) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, v := range row[:min(len(row), 20)] {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprint(&b, v)
	}
	if len(row) > 20 {
		fmt.Fprintf(&b, " ... (%d inputs)", len(row))
	}
	b.WriteByte(']')
	return b.String()
}

// ProbeRows returns n rows of inputs for m (n*NumFeatures values) that
// reach the corners of a Forest's splits: each input takes, at random
// with the given seed, a missing value, zero of either sign, an infinity,
// one of the thresholds its splits compare it with or the float64 just
// below or above one, or one of the category codes its splits list, a
// fraction above it, or a negative or far too large code. Inputs no split
// reads, and every input of other models, take small integers, fractions
// and missing values.
func ProbeRows(m Model, n int, seed uint64) []float64 {
	nf := m.NumFeatures()
	common := []float64{math.NaN(), 0, math.Copysign(0, -1), 1, -1, 0.5, 2, 1e10, math.Inf(1), math.Inf(-1)}
	cands := make([][]float64, nf)
	if f, ok := m.(*Forest); ok {
		cands = forestProbes(f)
	}
	rng := rand.New(rand.NewPCG(seed, uint64(nf)))
	x := make([]float64, n*nf)
	for r := range n {
		for c := range nf {
			var v float64
			if len(cands[c]) > 0 && rng.IntN(5) > 0 {
				v = cands[c][rng.IntN(len(cands[c]))]
			} else {
				v = common[rng.IntN(len(common))]
			}
			x[r*nf+c] = v
		}
	}
	return x
}

// forestProbes returns, per input column, the values near f's splits on
// it, read from its compiled form (a loader may have dropped its trees).
func forestProbes(f *Forest) [][]float64 {
	cands := make([][]float64, f.Features)
	c, err := f.compiled()
	if err != nil {
		return cands
	}
	seen := make([]map[float64]bool, f.Features)
	add := func(col int32, v float64) {
		// Inputs between LightGBM's zero threshold (1e-35 as float32) and
		// 1e-35 are zero to LightGBM and not to leaves: neither is probed.
		if a := math.Abs(v); a > 1e-35 && a <= zeroBand {
			return
		}
		if seen[col] == nil {
			seen[col] = make(map[float64]bool)
		}
		if !seen[col][v] && len(cands[col]) < 4096 {
			seen[col][v] = true
			cands[col] = append(cands[col], v)
		}
	}
	addCodes := func(col int32, bits []uint64) {
		for w, word := range bits[:min(len(bits), 4)] {
			for b := range 64 {
				if word&(1<<b) != 0 {
					add(col, float64(64*w+b))
					add(col, float64(64*w+b)+0.5)
				}
			}
		}
		for _, v := range []float64{-0.5, -1, -1.5, 62, 64, 1 << 24, 1e10, -1e10} {
			add(col, v)
		}
	}
	// What each slot holds: a numeric column, a categorical column's
	// one-hot code, or a wide categorical split.
	const numeric, oneHot = 1, 2
	kind := make([]uint8, c.slots)
	feat := make([]int32, c.slots)
	for _, n := range c.num {
		for _, s := range [...]int32{n.low, n.high, n.zeroLow, n.zeroHigh} {
			if s >= 0 {
				kind[s], feat[s] = numeric, n.feat
			}
		}
	}
	for _, n := range c.cat {
		for _, s := range [...]int32{n.known, n.missing} {
			if s >= 0 {
				kind[s], feat[s] = oneHot, n.feat
			}
		}
	}
	for _, w := range c.wide {
		addCodes(w.feat, w.cats.right)
		addCodes(w.feat, w.cats.known)
	}
	for i, n := range c.nodes {
		if n.right == uint32(i)*nodeBytes {
			continue // a leaf
		}
		s := n.slot / (blockRows * 8)
		switch kind[s] {
		case numeric:
			if n.thr == keyNaNLow {
				continue // no threshold: every number goes right
			}
			if c.f32 {
				t := unkey32(n.thr + 1) // the split is float32(x) < t
				add(feat[s], float64(t))
				add(feat[s], float64(math.Nextafter32(t, float32(math.Inf(-1)))))
				continue
			}
			t := unkey64(n.thr) // the split is x <= t
			add(feat[s], t)
			add(feat[s], math.Nextafter(t, math.Inf(1)))
			add(feat[s], math.Nextafter(t, math.Inf(-1)))
		case oneHot:
			addCodes(feat[s], []uint64{n.mask &^ (bitLargeCode | bitMissing)})
		}
	}
	return cands
}
