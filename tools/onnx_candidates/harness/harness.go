// Package harness runs seer's ONNX oracles (models/testdata/onnx) through a
// candidate ONNX runtime: every model at every opset is loaded, run on its
// input rows and compared with PyTorch's outputs (relative 1e-5, absolute
// below 1), and the 64-256-128-1 MLP is timed on 200 rows.
//
// Each candidate is a module of its own beside this one (their gorgonia
// versions conflict), and none of them is a dependency of seer.
package harness

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// Input is one graph input's values, row-major [rows, cols]: Int64 for the
// int64 inputs (ids, flags), Float32 otherwise.
type Input struct {
	Name    string
	Rows    int
	Cols    int
	Float32 []float32
	Int64   []int64
}

// Runtime is a candidate ONNX runtime.
type Runtime interface {
	Load(model []byte) error
	// Run returns the first graph output's values.
	Run(in []Input) ([]float32, error)
}

type table struct {
	header []string
	rows   [][]float64
}

func readTSV(path string) (*table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	var t table
	for sc.Scan() {
		cells := strings.Split(sc.Text(), "\t")
		if t.header == nil {
			t.header = cells
			continue
		}
		row := make([]float64, len(cells))
		for i, c := range cells {
			if row[i], err = strconv.ParseFloat(c, 64); err != nil {
				return nil, err
			}
		}
		t.rows = append(t.rows, row)
	}
	return &t, sc.Err()
}

// inputs groups the input table's columns by graph input and repeats its
// rows up to rows.
func inputs(t *table, rows int) []Input {
	var out []Input
	var cols [][]int
	for j, h := range t.header {
		name, _, _ := strings.Cut(h, "[")
		if len(out) == 0 || out[len(out)-1].Name != name {
			out = append(out, Input{Name: name, Rows: rows})
			cols = append(cols, nil)
		}
		cols[len(cols)-1] = append(cols[len(cols)-1], j)
	}
	for i := range out {
		in := &out[i]
		in.Cols = len(cols[i])
		for r := range rows {
			for _, j := range cols[i] {
				v := t.rows[r%len(t.rows)][j]
				if in.Name == "ids" || in.Name == "flags" {
					in.Int64 = append(in.Int64, int64(v))
				} else {
					in.Float32 = append(in.Float32, float32(v))
				}
			}
		}
	}
	return out
}

// compare returns the largest error, relative above 1 and absolute below,
// of the first output's columns.
func compare(got []float32, want *table) (float64, error) {
	cols := 0
	first, _, _ := strings.Cut(want.header[0], "[")
	for _, h := range want.header {
		if name, _, _ := strings.Cut(h, "["); name == first {
			cols++
		}
	}
	if len(got) != len(want.rows)*cols {
		return 0, fmt.Errorf("%d values, want %d", len(got), len(want.rows)*cols)
	}
	worst := 0.0
	for r, row := range want.rows {
		for j, w := range row[:cols] {
			g := float64(got[r*cols+j])
			if math.IsNaN(g) {
				return math.Inf(1), nil
			}
			worst = max(worst, math.Abs(g-w)/max(1, math.Abs(w)))
		}
	}
	return worst, nil
}

func short(err error) string {
	s := strings.ReplaceAll(err.Error(), "\n", " ")
	if len(s) > 110 {
		s = s[:110] + "..."
	}
	return s
}

// Run checks every oracle in dir with fresh runtimes from newRuntime and
// prints one line per model file.
func Run(dir string, newRuntime func() Runtime) error {
	paths, err := filepath.Glob(filepath.Join(dir, "*.onnx"))
	if err != nil {
		return err
	}
	sort.Strings(paths)
	for _, p := range paths {
		base := filepath.Base(p)
		stem, _, _ := strings.Cut(base, ".")
		in, err := readTSV(filepath.Join(dir, stem+".input.tsv"))
		if err != nil {
			return err
		}
		want, err := readTSV(filepath.Join(dir, stem+".expected.tsv"))
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rt := newRuntime()
		if err := safe(func() error { return rt.Load(b) }); err != nil {
			fmt.Printf("%-32s load failed: %s\n", base, short(err))
			continue
		}
		var got []float32
		if err := safe(func() (err error) { got, err = rt.Run(inputs(in, len(in.rows))); return err }); err != nil {
			fmt.Printf("%-32s run failed: %s\n", base, short(err))
			continue
		}
		worst, err := compare(got, want)
		if err != nil {
			fmt.Printf("%-32s wrong: %s\n", base, short(err))
			continue
		}
		verdict := "ok"
		if worst > 1e-5 {
			verdict = "wrong"
		}
		fmt.Printf("%-32s %s: largest error %.3g\n", base, verdict, worst)
		if stem == "mlp_64_256_128_1" && verdict == "ok" {
			batch := inputs(in, 200)
			res := testing.Benchmark(func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := rt.Run(batch); err != nil {
						b.Fatal(err)
					}
				}
			})
			fmt.Printf("%-32s 200 rows: %s %s\n", base, res, res.MemString())
		}
	}
	return nil
}

// safe calls f, turning a panic into an error.
func safe(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f()
}
