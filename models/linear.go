package models

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Caps on the size of a linear model.
const (
	maxLinearClasses = 4096    // classes of a softmax model
	maxLinearCoefs   = 1 << 24 // classes times inputs
)

// linearModel scores rows with one or more affine functions followed by a
// link: margin j = sum_i coef[j][i] * x[i] + intercept[j]. A missing (NaN)
// input and a zero coefficient contribute nothing to the sum, so a missing
// value acts as 0 (the training mean when a StandardScaler comes first).
// Only the columns that have a weight are kept, so that its size follows
// the artifact's, not the number of inputs times the number of classes.
type linearModel struct {
	features  int
	margins   int
	cols      []int     // the weighted input columns, ascending; nil when all are
	coef      []float64 // margins rows of len(cols) values
	intercept []float64
	link      link
	names     []string // the artifact's names of the input columns (scikit-learn), or nil
}

var _ Model = (*linearModel)(nil)

// InputNames returns the artifact's names of the input columns, or nil.
func (m *linearModel) InputNames() []string { return m.names }

// NumFeatures returns the number of input columns.
func (m *linearModel) NumFeatures() int { return m.features }

// NumOutputs returns the number of scores per row.
func (m *linearModel) NumOutputs() int { return m.margins }

// Predict scores nrows rows of x into dst.
func (m *linearModel) Predict(dst, x []float64, nrows int) error {
	if nrows < 0 || len(x) < nrows*m.features || len(dst) < nrows*m.margins {
		return fmt.Errorf("predict: %d inputs and %d outputs for %d rows of %d features and %d outputs",
			len(x), len(dst), nrows, m.features, m.margins)
	}
	if m.cols == nil {
		m.predictDense(dst, x, nrows)
		return nil
	}
	nf, nc := m.features, len(m.cols)
	for r := range nrows {
		row := x[r*nf : (r+1)*nf]
		out := dst[r*m.margins : (r+1)*m.margins]
		for j := range out {
			coef := m.coef[j*nc : (j+1)*nc]
			s := 0.0
			for k, w := range coef {
				v := row[m.cols[k]]
				if w == 0 || v != v {
					continue
				}
				s += float64(w * v) // the conversion keeps the product from fusing
			}
			out[j] = s + m.intercept[j]
		}
		m.link.apply(out)
	}
	return nil
}

// predictDense is Predict when every column has a weight.
func (m *linearModel) predictDense(dst, x []float64, nrows int) {
	nf := m.features
	for r := range nrows {
		row := x[r*nf : (r+1)*nf]
		out := dst[r*m.margins : (r+1)*m.margins]
		for j := range out {
			coef := m.coef[j*nf : (j+1)*nf]
			s := 0.0
			for i, w := range coef {
				v := row[i]
				if w == 0 || v != v {
					continue
				}
				s += float64(w * v) // the conversion keeps the product from fusing
			}
			out[j] = s + m.intercept[j]
		}
		m.link.apply(out)
	}
}

// linearDoc is the format linear artifact (see docs/linear.md).
type linearDoc struct {
	Weights   *linearWeights  `json:"weights"`
	Intercept json.RawMessage `json:"intercept"`
	Link      string          `json:"link"`
}

// linearWeights keeps a JSON object's keys in order and refuses a key
// given twice, which encoding/json would silently merge.
type linearWeights struct {
	names  []string
	values []json.RawMessage
}

func (w *linearWeights) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("weights: want an object of feature names")
	}
	seen := make(map[string]bool)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		name := t.(string) // object keys are strings
		if seen[name] {
			return fmt.Errorf("weights: %q appears twice", name)
		}
		seen[name] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("weights: %q: %v", name, err)
		}
		w.names = append(w.names, name)
		w.values = append(w.values, v)
	}
	return nil
}

// loadLinear parses a linear model: weights by input name, an intercept
// and a link (docs/linear.md).
func loadLinear(data []byte, opt Options) (Model, error) {
	var doc linearDoc
	if err := decodeStrict(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: linear: %v", ErrArtifact, err)
	}
	if opt.Iterations > 0 {
		return nil, fmt.Errorf("%w: linear: iterations do not apply to a linear model", ErrArtifact)
	}
	if len(opt.Inputs) == 0 {
		return nil, fmt.Errorf("%w: linear: no input names to map the weights onto", ErrArtifact)
	}
	if doc.Weights == nil {
		return nil, fmt.Errorf("%w: linear: no weights", ErrArtifact)
	}
	var l link
	switch doc.Link {
	case "identity", "logistic", "exp", "softmax":
		l = linkNames[doc.Link]
	case "":
		return nil, fmt.Errorf("%w: linear: no link (identity, logistic, exp or softmax)", ErrArtifact)
	default:
		return nil, fmt.Errorf("%w: linear: link %q (want identity, logistic, exp or softmax)", ErrArtifact, doc.Link)
	}

	// A softmax model has one margin per class: arrays everywhere.
	var intercept []float64
	noIntercept := doc.Intercept == nil || string(doc.Intercept) == "null"
	switch {
	case l == linkSoftmax:
		var b []jsonFloat
		if noIntercept || json.Unmarshal(doc.Intercept, &b) != nil {
			return nil, fmt.Errorf("%w: linear: softmax: intercept: want an array of one number per class", ErrArtifact)
		}
		if len(b) < 2 || len(b) > maxLinearClasses {
			return nil, fmt.Errorf("%w: linear: softmax: %d classes (want 2 to %d)", ErrArtifact, len(b), maxLinearClasses)
		}
		intercept = floats(b)
	case noIntercept:
		intercept = []float64{0}
	default:
		var b jsonFloat
		if err := json.Unmarshal(doc.Intercept, &b); err != nil {
			return nil, fmt.Errorf("%w: linear: intercept: want a number", ErrArtifact)
		}
		intercept = []float64{float64(b)}
	}
	margins := len(intercept)

	index := make(map[string]int, len(opt.Inputs))
	for i, name := range opt.Inputs {
		if _, dup := index[name]; dup {
			index[name] = -1 // ambiguous; an error only if a weight names it
			continue
		}
		index[name] = i
	}
	nf := len(opt.Inputs)
	if margins*nf > maxLinearCoefs {
		return nil, fmt.Errorf("%w: linear: %d classes of %d inputs is over the limit of %d weights", ErrArtifact, margins, nf, maxLinearCoefs)
	}
	// The weighted columns in input order, which is the order the margins
	// add their terms in.
	cols := make([]int, 0, len(doc.Weights.names))
	for _, name := range doc.Weights.names {
		col, ok := index[name]
		switch {
		case !ok:
			return nil, fmt.Errorf("%w: linear: weight %q names no input (inputs: %s)", ErrArtifact, name, inputList(opt.Inputs))
		case col < 0:
			return nil, fmt.Errorf("%w: linear: weight %q: the input appears more than once", ErrArtifact, name)
		}
		cols = append(cols, col)
	}
	order := slices.Clone(cols)
	slices.Sort(order)
	nc := len(order)
	m := &linearModel{
		features:  nf,
		margins:   margins,
		cols:      order,
		coef:      make([]float64, margins*nc),
		intercept: intercept,
		link:      l,
	}
	for k, name := range doc.Weights.names {
		at, _ := slices.BinarySearch(order, cols[k])
		raw := doc.Weights.values[k]
		if margins == 1 {
			var w jsonFloat
			if err := json.Unmarshal(raw, &w); err != nil {
				return nil, fmt.Errorf("%w: linear: weight %q: want a number", ErrArtifact, name)
			}
			m.coef[at] = float64(w)
			continue
		}
		var ws []jsonFloat
		if err := json.Unmarshal(raw, &ws); err != nil || len(ws) != margins {
			return nil, fmt.Errorf("%w: linear: weight %q: want an array of %d numbers, one per class", ErrArtifact, name, margins)
		}
		for j, w := range ws {
			m.coef[j*nc+at] = float64(w)
		}
	}
	if nc == nf {
		m.cols = nil // every column has a weight: index rows directly
	}
	if opt.Raw {
		m.link = linkIdentity
	}
	return m, nil
}

func inputList(names []string) string {
	const show = 8
	if len(names) > show {
		return strings.Join(names[:show], ", ") + fmt.Sprintf(", ... (%d in all)", len(names))
	}
	return strings.Join(names, ", ")
}

// decodeStrict decodes one JSON value into v: unknown fields and trailing
// data are errors.
//
// The syntax of the whole of data is checked first, which allocates
// nothing: a Decoder copies the value it decodes into its own buffer, and a
// broken file (truncated, junk after a valid beginning) is refused before
// that copy is made.
func decodeStrict(data []byte, v any) error {
	if !json.Valid(data) {
		var x struct{}
		return json.Unmarshal(data, &x) // the syntax error, with its offset
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}
