package models

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInputNames is wrapped by the error of CheckInputNames: a manifest's
// inputs differ in name or order from the names the artifact gives its
// input columns.
var ErrInputNames = errors.New("inputs do not match the artifact's names")

// Named is implemented by models whose artifact names its input columns:
// LightGBM (feature_names), XGBoost (feature_names, when trained from
// named columns) and seer's scikit-learn export (feature_names_in_). A
// format that reads names from its artifact implements it, and the
// registry then refuses a manifest whose inputs differ.
type Named interface {
	// InputNames returns the artifact's names of the model's input
	// columns, in column order, or nil when the artifact names none.
	InputNames() []string
}

// InputNames returns the names m's artifact gives its input columns, or
// nil when it gives none.
func InputNames(m Model) []string {
	if n, ok := m.(Named); ok {
		return n.InputNames()
	}
	return nil
}

// CheckInputNames compares inputs, a manifest's names of the model columns
// in column order (Options.Inputs: each input's column, else its name),
// with the names m's artifact gives them. named is false when the artifact
// gives none: then only golden rows can catch inputs in the wrong order.
// The error wraps ErrInputNames and lists every column whose names differ.
func CheckInputNames(m Model, inputs []string) (named bool, err error) {
	names := InputNames(m)
	if names == nil {
		return false, nil
	}
	if len(names) != len(inputs) {
		return true, fmt.Errorf("%w: the artifact names %d columns, the manifest lists %d inputs", ErrInputNames, len(names), len(inputs))
	}
	at := make(map[string]int, len(names))
	for i, n := range names {
		at[n] = i
	}
	var diffs []string
	for i, in := range inputs {
		if in == names[i] {
			continue
		}
		d := fmt.Sprintf("column %d is %s in the manifest, %s in the artifact", i+1, in, names[i])
		if j, ok := at[in]; ok {
			d += fmt.Sprintf(" (which has %s as column %d)", in, j+1)
		} else {
			d += fmt.Sprintf(" (which has no column %s)", in)
		}
		diffs = append(diffs, d)
	}
	if diffs == nil {
		return true, nil
	}
	const show = 10
	if len(diffs) > show {
		diffs = append(diffs[:show], fmt.Sprintf("and %d more", len(diffs)-show))
	}
	return true, fmt.Errorf("%w: %s; list the inputs in the artifact's order (an input named otherwise than its column gives the column's name as column: NAME)",
		ErrInputNames, strings.Join(diffs, "; "))
}

// Tensored is implemented by models whose columns fill named tensors:
// ONNX graph inputs.
type Tensored interface {
	// InputTensors returns, per column, the name of the tensor it fills.
	InputTensors() []string
}

// InputTensors returns, per column of m, the tensor it fills, or nil when
// m's columns fill no named tensors.
func InputTensors(m Model) []string {
	if t, ok := m.(Tensored); ok {
		return t.InputTensors()
	}
	return nil
}
