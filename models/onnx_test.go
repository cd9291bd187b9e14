package models

import (
	"math"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestONNXBindAndNames: the inputs of a graph of several inputs fill them
// by tensor name (their own by default), and a graph whose inputs are one
// column each names its columns.
func TestONNXBindAndNames(t *testing.T) {
	data, err := os.ReadFile("testdata/onnx/named_columns.opset17.onnx")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(FormatONNX, data, Options{Inputs: []string{"tenure", "age", "income"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.(*onnxModel).InputNames(), []string{"tenure", "age", "income"}; !slices.Equal(got, want) {
		t.Errorf("InputNames() = %q, want %q", got, want)
	}
	// Rows in the manifest's order score as the graph's own order does.
	x := []float64{10, 50.796932220458984, 148006.03125}
	got := make([]float64, 1)
	if err := m.Predict(got, x, 1); err != nil {
		t.Fatal(err)
	}
	// PyTorch's output for the first row of named_columns.input.tsv.
	if want := 2.053033611171262e-11; !(math.Abs(got[0]-want) <= 1e-5*want) {
		t.Errorf("score %.17g, want PyTorch's %.17g", got[0], want)
	}
	// A name that is no graph input needs tensor:.
	_, err = Load(FormatONNX, data, Options{Inputs: []string{"tenure", "age", "salary"}})
	if err == nil || !strings.Contains(err.Error(), "input salary: the graph has 3 inputs (age, income, tenure): name the one it fills with tensor: NAME") {
		t.Errorf("got %v", err)
	}
	// A tensor of 16 columns names none of them.
	data, err = os.ReadFile("testdata/onnx/two_tower.opset17.onnx")
	if err != nil {
		t.Fatal(err)
	}
	if m, err = Load(FormatONNX, data, Options{}); err != nil {
		t.Fatal(err)
	}
	if names := m.(*onnxModel).InputNames(); names != nil {
		t.Errorf("two_tower: InputNames() = %q, want nil", names)
	}
}
