package onnx

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad: any bytes load or fail with ErrModel, never panic (Load turns
// a panic into an error, which the fuzzer counts as a failure); a model
// that loads scores a batch of zeros without panicking.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(testdata, "*.opset1[37].onnx"))
	for _, file := range files {
		if strings.Contains(file, "mlp_64") {
			continue // large; the others cover its operators
		}
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add(linearPB().bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Load(data, Options{})
		if err != nil {
			if !errors.Is(err, ErrModel) {
				t.Fatalf("error %v does not wrap ErrModel", err)
			}
			if strings.Contains(err.Error(), "panicked") {
				t.Fatal(err)
			}
			return
		}
		var cols [][]int
		width := 0
		for _, p := range m.Inputs() {
			var c []int
			for range p.Width {
				c = append(c, width)
				width++
			}
			cols = append(cols, c)
		}
		for _, rows := range []int{1, 3} {
			x := make([]float64, rows*width)
			dst := make([]float64, rows*m.Output().Width)
			if err := m.Run(dst, x, rows, width, cols); err != nil && strings.Contains(err.Error(), "panic") {
				t.Fatal(err)
			}
		}
	})
}
