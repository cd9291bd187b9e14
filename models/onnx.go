package models

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/seer-ml/seer/models/onnx"
)

// onnxModel scores rows with an ONNX graph (package models/onnx). A row's
// columns are the manifest's inputs in order, each as wide as its feature
// (a vector fills consecutive columns); cols says which columns fill each
// graph input.
type onnxModel struct {
	g       *onnx.Model
	columns int
	cols    [][]int
}

var _ Model = (*onnxModel)(nil)

// NumFeatures returns the number of columns of a row.
func (m *onnxModel) NumFeatures() int { return m.columns }

// NumOutputs returns the width of the scored output.
func (m *onnxModel) NumOutputs() int { return m.g.Output().Width }

// Predict scores nrows rows of x into dst.
func (m *onnxModel) Predict(dst, x []float64, nrows int) error {
	if nrows == 0 {
		return nil
	}
	if nrows < 0 || len(x) < nrows*m.columns || len(dst) < nrows*m.NumOutputs() {
		return fmt.Errorf("predict: %d inputs and %d outputs for %d rows of %d columns and %d outputs",
			len(x), len(dst), nrows, m.columns, m.NumOutputs())
	}
	if err := m.g.Run(dst, x, nrows, m.columns, m.cols); err != nil {
		if errors.Is(err, onnx.ErrInput) {
			return fmt.Errorf("%w: %v", ErrInput, err)
		}
		return fmt.Errorf("onnx: %w", err)
	}
	return nil
}

// ErrInput is wrapped by errors of input values a model cannot score,
// such as an id outside an ONNX model's embedding table.
var ErrInput = errors.New("input a model cannot score")

func loadONNX(data []byte, opt Options) (Model, error) {
	g, err := onnx.Load(data, onnx.Options{Output: opt.OutputTensor})
	if err != nil {
		return nil, fmt.Errorf("%w: onnx: %v", ErrArtifact, err)
	}
	m := &onnxModel{g: g}
	if err := m.bind(opt); err != nil {
		return nil, fmt.Errorf("%w: onnx: %v", ErrArtifact, err)
	}
	return m, nil
}

// bind lays the manifest's inputs out as columns and assigns them to the
// graph inputs: all of them to a graph of one input, and by their tensor
// name (by default their own name, when the graph has an input of that
// name) to a graph of several. Without inputs (a tool reading the bare
// artifact) the graph inputs take the columns in graph order.
func (m *onnxModel) bind(opt Options) error {
	ins := m.g.Inputs()
	m.cols = make([][]int, len(ins))
	if len(opt.Inputs) == 0 {
		for k, p := range ins {
			for range p.Width {
				m.cols[k] = append(m.cols[k], m.columns)
				m.columns++
			}
		}
		return nil
	}
	byName := make(map[string]int, len(ins))
	names := make([]string, len(ins))
	for k, p := range ins {
		byName[p.Name] = k
		names[k] = p.Name
	}
	var errs []string
	for i, name := range opt.Inputs {
		width := 1
		if i < len(opt.Widths) {
			width = opt.Widths[i]
		}
		tensor := ""
		if i < len(opt.Tensors) {
			tensor = opt.Tensors[i]
		}
		if _, ok := byName[name]; ok && tensor == "" && len(ins) > 1 {
			tensor = name // an input named like a graph input fills it
		}
		k := 0
		switch {
		case tensor != "":
			var ok bool
			if k, ok = byName[tensor]; !ok {
				errs = append(errs, fmt.Sprintf("input %s: tensor %q is not a graph input (the graph inputs are %s)", name, tensor, strings.Join(names, ", ")))
				m.columns += width
				continue
			}
		case len(ins) > 1:
			errs = append(errs, fmt.Sprintf("input %s: the graph has %d inputs (%s): name the one it fills with tensor: NAME", name, len(ins), strings.Join(names, ", ")))
			m.columns += width
			continue
		}
		if ins[k].Type == onnx.Int64 && i < len(opt.Integer) && !opt.Integer[i] {
			errs = append(errs, fmt.Sprintf("input %s: graph input %s is int64, which takes int features and categories with a default_code", name, ins[k].Name))
		}
		for range width {
			m.cols[k] = append(m.cols[k], m.columns)
			m.columns++
		}
	}
	for k, p := range ins {
		if got := len(m.cols[k]); got != p.Width && len(errs) == 0 {
			errs = append(errs, fmt.Sprintf("graph input %s (%s) has %d columns but the manifest's inputs fill %d", p.Name, p.Type, p.Width, got))
		}
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// InputNames returns the name of each column when ONNX gives every column
// one: when each graph input is a single column ([batch, 1]), the column's
// name is its graph input's. Columns inside a wider tensor have no names in
// ONNX, and then it returns nil.
func (m *onnxModel) InputNames() []string {
	names := make([]string, m.columns)
	for k, p := range m.g.Inputs() {
		if p.Width != 1 {
			return nil
		}
		for _, c := range m.cols[k] {
			names[c] = p.Name
		}
	}
	return names
}

// InputTensors returns, per column, the graph input it fills.
func (m *onnxModel) InputTensors() []string {
	tensors := make([]string, m.columns)
	for k, p := range m.g.Inputs() {
		for _, c := range m.cols[k] {
			tensors[c] = p.Name
		}
	}
	return tensors
}
