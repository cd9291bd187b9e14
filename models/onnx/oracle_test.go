package onnx

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seer-ml/seer/internal/oracle"
)

const testdata = "../testdata/onnx"

// oracleCase is one architecture of tools/onnx_oracles.py: its input rows
// and PyTorch's outputs.
type oracleCase struct {
	stem  string
	in    *oracle.Table
	want  *oracle.Table
	files []string // the model at each opset
}

func oracleCases(t testing.TB) []oracleCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testdata, "*.onnx"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no ONNX oracles in %s: %v", testdata, err)
	}
	var cases []oracleCase
	for _, f := range files {
		stem, _, _ := strings.Cut(filepath.Base(f), ".")
		if len(cases) == 0 || cases[len(cases)-1].stem != stem {
			cases = append(cases, oracleCase{
				stem: stem,
				in:   oracle.Read(t, filepath.Join(testdata, stem+".input.tsv")),
				want: oracle.Read(t, filepath.Join(testdata, stem+".expected.tsv")),
			})
		}
		c := &cases[len(cases)-1]
		c.files = append(c.files, f)
	}
	return cases
}

// columns returns, for each graph input, the columns of the input table
// that fill it ("name[j]" headers).
func columns(t testing.TB, m *Model, header []string) [][]int {
	t.Helper()
	cols := make([][]int, len(m.Inputs()))
	for k, p := range m.Inputs() {
		for j, h := range header {
			if name, _, _ := strings.Cut(h, "["); name == p.Name {
				cols[k] = append(cols[k], j)
			}
		}
		if len(cols[k]) != p.Width {
			t.Fatalf("input %s: %d columns in the table, width %d", p.Name, len(cols[k]), p.Width)
		}
	}
	return cols
}

// outputColumns returns the expected table's columns of one output.
func outputColumns(header []string, name string) []int {
	var cols []int
	for j, h := range header {
		if n, _, _ := strings.Cut(h, "["); n == name {
			cols = append(cols, j)
		}
	}
	return cols
}

func flat(tab *oracle.Table) []float64 {
	var x []float64
	for _, row := range tab.Rows {
		x = append(x, row...)
	}
	return x
}

// near reports whether got is within a relative tol of want (absolute
// below 1).
func near(got, want, tol float64) bool {
	return math.Abs(got-want) <= tol*max(1, math.Abs(want))
}

// TestOracles: every architecture at every opset reproduces PyTorch's
// outputs within 1e-5, in one batch and row by row, for every output.
func TestOracles(t *testing.T) {
	for _, c := range oracleCases(t) {
		for _, file := range c.files {
			t.Run(filepath.Base(file), func(t *testing.T) {
				data, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				first, err := Load(data, Options{})
				if err != nil {
					t.Fatal(err)
				}
				for _, output := range first.Outputs() {
					m, err := Load(data, Options{Output: output})
					if err != nil {
						t.Fatal(err)
					}
					checkOracle(t, m, c, output)
				}
			})
		}
	}
}

func checkOracle(t *testing.T, m *Model, c oracleCase, output string) {
	t.Helper()
	cols := columns(t, m, c.in.Header)
	wantCols := outputColumns(c.want.Header, output)
	if len(wantCols) != m.Output().Width {
		t.Fatalf("output %s: width %d, the expected table has %d columns", output, m.Output().Width, len(wantCols))
	}
	x := flat(c.in)
	rows, stride, w := len(c.in.Rows), len(c.in.Header), m.Output().Width
	got := make([]float64, rows*w)
	if err := m.Run(got, x, rows, stride, cols); err != nil {
		t.Fatal(err)
	}
	one := make([]float64, w)
	bad, worst := 0, 0.0
	for r, row := range c.want.Rows {
		if err := m.Run(one, x[r*stride:(r+1)*stride], 1, stride, cols); err != nil {
			t.Fatal(err)
		}
		for j, col := range wantCols {
			want := row[col]
			worst = max(worst, math.Abs(got[r*w+j]-want)/max(1, math.Abs(want)), math.Abs(one[j]-want)/max(1, math.Abs(want)))
			if !near(got[r*w+j], want, 1e-5) || !near(one[j], want, 1e-5) {
				if bad++; bad <= 5 {
					t.Errorf("%s row %d column %d: batch %.9g, alone %.9g, PyTorch %.9g", output, r, j, got[r*w+j], one[j], want)
				}
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d values differ", output, bad, rows*w)
	}
	t.Logf("%s: %d rows of %d values, largest difference from PyTorch %.2g (relative, absolute below 1)", output, rows, w, worst)
}
