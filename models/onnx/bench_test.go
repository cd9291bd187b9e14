package onnx

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// speedModel loads the 64-256-128-1 MLP with a batch of rows of its
// oracle inputs.
func speedModel(tb testing.TB, rows int) (*Model, []float64, [][]int) {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(testdata, "mlp_64_256_128_1.opset17.onnx"))
	if err != nil {
		tb.Fatal(err)
	}
	m, err := Load(data, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	var c oracleCase
	for _, cc := range oracleCases(tb) {
		if cc.stem == "mlp_64_256_128_1" {
			c = cc
		}
	}
	cols := columns(tb, m, c.in.Header)
	x := flat(c.in)
	for len(x) < rows*64 {
		x = append(x, x...)
	}
	return m, x[:rows*64], cols
}

// BenchmarkMLP scores 200 rows through the 64-256-128-1 MLP, the speed
// goal's case; tools/bench_onnx.sh runs it beside PyTorch.
func BenchmarkMLP(b *testing.B) {
	m, x, cols := speedModel(b, 200)
	dst := make([]float64, 200)
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Run(dst, x, 200, 64, cols); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSgemm(b *testing.B) {
	const m, n, k = 200, 256, 64
	r := rand.New(rand.NewPCG(1, 2))
	a, bm, c := randFloats(r, m*k), randFloats(r, k*n), make([]float32, m*n)
	b.ReportAllocs()
	b.SetBytes(2 * m * n * k) // one "byte" per floating-point operation
	for b.Loop() {
		sgemm(m, n, k, a, k, bm, n, c, n)
	}
}

func randFloats(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}
