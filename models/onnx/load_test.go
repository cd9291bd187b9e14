package onnx

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// A small ONNX writer for tests: models the PyTorch exporter would not
// write, and broken ones.

type pb []byte

func (b pb) str(num protowire.Number, s string) pb {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func (b pb) msg(num protowire.Number, m pb) pb {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

func (b pb) varint(num protowire.Number, v int64) pb {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(v))
}

// valueInfoPB is a graph input or output: dims of 0 are the batch.
func valueInfoPB(name string, elem int64, dims ...int64) pb {
	var shape pb
	for _, d := range dims {
		if d == 0 {
			shape = shape.msg(1, pb(nil).str(2, "batch"))
		} else {
			shape = shape.msg(1, pb(nil).varint(1, d))
		}
	}
	tt := pb(nil).varint(1, elem).msg(2, shape)
	return pb(nil).str(1, name).msg(2, pb(nil).msg(1, tt))
}

func floatTensorPB(name string, dims []int64, vals []float32) pb {
	t := pb(nil)
	for _, d := range dims {
		t = t.varint(1, d)
	}
	t = t.varint(2, typeFloat).str(8, name)
	raw := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	t = protowire.AppendTag(t, 9, protowire.BytesType)
	return protowire.AppendBytes(t, raw)
}

func int64TensorPB(name string, dims []int64, vals []int64) pb {
	t := pb(nil)
	for _, d := range dims {
		t = t.varint(1, d)
	}
	t = t.varint(2, typeInt64).str(8, name)
	for _, v := range vals {
		t = t.varint(7, v)
	}
	return t
}

func nodePB(op string, in, out []string, attrs ...pb) pb {
	n := pb(nil)
	for _, s := range in {
		n = n.str(1, s)
	}
	for _, s := range out {
		n = n.str(2, s)
	}
	n = n.str(4, op)
	for _, a := range attrs {
		n = n.msg(5, a)
	}
	return n
}

func intAttr(name string, v int64) pb {
	return pb(nil).str(1, name).varint(20, attrInt).varint(3, v)
}

type graphPB struct {
	nodes, inits, inputs, outputs []pb
	opset                         int64
	domains                       []string
}

func (g graphPB) bytes() []byte {
	gr := pb(nil)
	for _, n := range g.nodes {
		gr = gr.msg(1, n)
	}
	for _, t := range g.inits {
		gr = gr.msg(5, t)
	}
	for _, v := range g.inputs {
		gr = gr.msg(11, v)
	}
	for _, v := range g.outputs {
		gr = gr.msg(12, v)
	}
	opset := g.opset
	if opset == 0 {
		opset = 17
	}
	m := pb(nil).varint(1, 8).msg(8, pb(nil).str(1, "").varint(2, opset))
	for _, d := range g.domains {
		m = m.msg(8, pb(nil).str(1, d).varint(2, 1))
	}
	return m.msg(7, gr)
}

// linearPB is y = x·W + b for x [batch, 3]: a Gemm with transB.
func linearPB() graphPB {
	return graphPB{
		nodes: []pb{nodePB("Gemm", []string{"x", "W", "b"}, []string{"y"}, intAttr("transB", 1))},
		inits: []pb{
			floatTensorPB("W", []int64{2, 3}, []float32{1, 2, 3, -1, 0.5, 0}),
			floatTensorPB("b", []int64{2}, []float32{0.25, -1}),
		},
		inputs:  []pb{valueInfoPB("x", typeFloat, 0, 3)},
		outputs: []pb{valueInfoPB("y", typeFloat, 0, 2)},
	}
}

func TestLoadSmallGraph(t *testing.T) {
	m, err := Load(linearPB().bytes(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Inputs(); len(got) != 1 || got[0] != (Port{Name: "x", Type: Float32, Width: 3}) {
		t.Fatalf("inputs %+v", got)
	}
	if got := m.Output(); got != (Port{Name: "y", Type: Float32, Width: 2}) {
		t.Fatalf("output %+v", got)
	}
	// Columns are picked from a wider row, in the order given.
	x := []float64{9, 1, 2, 3, 9, 0, -1, 4}
	got := make([]float64, 4)
	if err := m.Run(got, x, 2, 4, [][]int{{1, 2, 3}}); err != nil {
		t.Fatal(err)
	}
	want := []float64{1 + 4 + 9 + 0.25, -1 + 1 - 1, 0 - 2 + 12 + 0.25, 0 - 0.5 - 1}
	for i := range want {
		if !near(got[i], want[i], 1e-6) {
			t.Errorf("value %d: got %g, want %g", i, got[i], want[i])
		}
	}
}

func TestLoadRefuses(t *testing.T) {
	tests := []struct {
		name  string
		graph func() graphPB
		want  string
	}{
		{"unsupported operators listed", func() graphPB {
			g := linearPB()
			g.nodes = append(g.nodes,
				nodePB("TopK", []string{"y", "k"}, []string{"v", "i"}),
				nodePB("NonMaxSuppression", []string{"y"}, []string{"z"}),
				nodePB("TopK", []string{"y", "k"}, []string{"v2", "i2"}))
			return g
		}, "unsupported operators: NonMaxSuppression, TopK (seer evaluates Abs, Add"},
		{"old opset", func() graphPB { g := linearPB(); g.opset = 12; return g }, "opset 12 is not supported"},
		{"new opset", func() graphPB { g := linearPB(); g.opset = 18; return g }, "opset 18 is not supported"},
		{"other domain", func() graphPB { g := linearPB(); g.domains = []string{"ai.onnx.ml"}; return g }, `opset domain "ai.onnx.ml"`},
		{"fixed batch", func() graphPB {
			g := linearPB()
			g.inputs = []pb{valueInfoPB("x", typeFloat, 1, 3)}
			return g
		}, "fixed batch dimension 1: export it with a dynamic batch axis"},
		{"input of rank 3", func() graphPB {
			g := linearPB()
			g.inputs = []pb{valueInfoPB("x", typeFloat, 0, 3, 1)}
			return g
		}, "want the shape [batch, k], got [batch, 3, 1]"},
		{"double input", func() graphPB {
			g := linearPB()
			g.inputs = []pb{valueInfoPB("x", typeDouble, 0, 3)}
			return g
		}, `input "x" has element type double`},
		{"unknown attribute", func() graphPB {
			g := linearPB()
			g.nodes = []pb{nodePB("Gemm", []string{"x", "W", "b"}, []string{"y"}, intAttr("transB", 1), intAttr("fancy", 1))}
			return g
		}, "attribute fancy is not supported"},
		{"undefined value", func() graphPB {
			g := linearPB()
			g.nodes = []pb{nodePB("Gemm", []string{"x", "V", "b"}, []string{"y"}, intAttr("transB", 1))}
			return g
		}, `reads "V", which nothing before it defines`},
		{"raw data of the wrong size", func() graphPB {
			g := linearPB()
			g.inits[0] = floatTensorPB("W", []int64{2, 3}, []float32{1, 2, 3})
			return g
		}, "raw_data of 12 bytes for the shape [2 3]"},
		{"huge dims", func() graphPB {
			g := linearPB()
			g.inits[0] = floatTensorPB("W", []int64{1 << 30, 1 << 30}, nil)
			return g
		}, "over the size limit: dimension 1073741824"},
		{"wrong shapes", func() graphPB {
			g := linearPB()
			g.inputs = []pb{valueInfoPB("x", typeFloat, 0, 4)}
			return g
		}, "a trial run on 1 rows: Gemm node: input A[1 4] and B with 3 rows"},
		{"output of rank 3", func() graphPB {
			g := linearPB()
			g.nodes = append(g.nodes, nodePB("Unsqueeze", []string{"y", "axes"}, []string{"z"}))
			g.inits = append(g.inits, int64TensorPB("axes", []int64{1}, []int64{2}))
			g.outputs = []pb{valueInfoPB("z", typeFloat, 0, 2, 1)}
			return g
		}, "want [batch] or [batch, k]"},
		{"no such output", func() graphPB { return linearPB() }, `no graph output named "nope" (the outputs are y)`},
		{"training BatchNormalization", func() graphPB {
			g := linearPB()
			g.nodes = append(g.nodes, nodePB("BatchNormalization", []string{"y", "b", "b", "b", "b"}, []string{"z"}, intAttr("training_mode", 1)))
			return g
		}, "training_mode is not supported"},
		{"Cast to double", func() graphPB {
			g := linearPB()
			g.nodes = append(g.nodes, nodePB("Cast", []string{"y"}, []string{"z"}, intAttr("to", typeDouble)))
			return g
		}, "node 2 (Cast node): cast to double is not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opt := Options{}
			if tt.name == "no such output" {
				opt.Output = "nope"
			}
			_, err := Load(tt.graph().bytes(), opt)
			if !errors.Is(err, ErrModel) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an ErrModel saying %q", err, tt.want)
			}
		})
	}
}

// TestRunRefusesBadValues: an id outside an embedding table and a value
// that is not a whole number for an int64 input are errors wrapping
// ErrInput.
func TestRunRefusesBadValues(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(testdata, "embedding_ids.opset17.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(data, Options{})
	if err != nil {
		t.Fatal(err)
	}
	cols := [][]int{{0, 1}, {2, 3, 4, 5}}
	dst := make([]float64, 1)
	for _, tt := range []struct {
		row  []float64
		want string
	}{
		{[]float64{50, 1, 0, 0, 0, 0}, "Gather /users/Gather: bad input value: index 50 is out of range [-50, 50)"},
		{[]float64{1.5, 1, 0, 0, 0, 0}, "input ids column 0: 1.5 is not an int64"},
		{[]float64{math.NaN(), 1, 0, 0, 0, 0}, "input ids column 0: NaN is not an int64"},
	} {
		err := m.Run(dst, tt.row, 1, 6, cols)
		if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: got %v, want ErrInput saying %q", tt.row, err, tt.want)
		}
	}
	// The model still scores after the errors.
	if err := m.Run(dst, []float64{49, 9, 0, 0, 0, 0}, 1, 6, cols); err != nil {
		t.Fatal(err)
	}
}

// TestSgemm compares sgemm (the assembly kernel where the CPU has it)
// with a float64 triple loop, on sizes around the 4x16 blocks and with
// padded leading dimensions.
func TestSgemm(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 300 {
		m, n, k := 1+r.IntN(13), 1+r.IntN(40), 1+r.IntN(20)
		lda, ldb, ldc := k+r.IntN(3), n+r.IntN(3), n+r.IntN(3)
		a, b, c := randFloats(r, (m-1)*lda+k), randFloats(r, (k-1)*ldb+n), randFloats(r, (m-1)*ldc+n)
		want := make([]float64, len(c))
		for i := range c {
			want[i] = float64(c[i])
		}
		for i := range m {
			for j := range n {
				for p := range k {
					want[i*ldc+j] += float64(a[i*lda+p]) * float64(b[p*ldb+j])
				}
			}
		}
		if m >= 4 && n >= 16 {
			// The block kernel against its Go form, on copies of C.
			c1, c2 := append([]float32(nil), c...), append([]float32(nil), c...)
			gemmBlock(k, a, lda, b, ldb, c1, ldc)
			gemmBlockGo(k, a, lda, b, ldb, c2, ldc)
			for i := range 4 {
				for j := range 16 {
					if d := math.Abs(float64(c1[i*ldc+j] - c2[i*ldc+j])); d > 1e-4*max(1, math.Abs(float64(c2[i*ldc+j]))) {
						t.Fatalf("block C[%d,%d]: kernel %g, Go %g", i, j, c1[i*ldc+j], c2[i*ldc+j])
					}
				}
			}
		}
		sgemm(m, n, k, a, lda, b, ldb, c, ldc)
		for i := range m {
			for j := range n {
				if got := float64(c[i*ldc+j]); math.Abs(got-want[i*ldc+j]) > 1e-4*max(1, math.Abs(want[i*ldc+j])) {
					t.Fatalf("m=%d n=%d k=%d: C[%d,%d] = %g, want %g", m, n, k, i, j, got, want[i*ldc+j])
				}
			}
		}
		// Padding between rows is left alone.
		for i := range m - 1 {
			for j := n; j < ldc; j++ {
				if float64(c[i*ldc+j]) != want[i*ldc+j] {
					t.Fatalf("m=%d n=%d k=%d: padding C[%d,%d] written", m, n, k, i, j)
				}
			}
		}
	}
}

// TestRunConcurrent: goroutines sharing a model get the answers of one
// alone, with batches of different sizes.
func TestRunConcurrent(t *testing.T) {
	m, x, cols := speedModel(t, 64)
	want := make([]float64, 64)
	if err := m.Run(want, x, 64, 64, cols); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			got := make([]float64, 64)
			for i := range 20 {
				rows := 1 + (g*7+i*13)%64
				if err := m.Run(got, x, rows, 64, cols); err != nil {
					t.Error(err)
					return
				}
				for r := range rows {
					if !near(got[r], want[r], 1e-6) {
						t.Errorf("rows %d, row %d: got %g, want %g", rows, r, got[r], want[r])
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// TestRunAllocs: a warm model allocates nothing per call.
func TestRunAllocs(t *testing.T) {
	for _, c := range oracleCases(t) {
		data, err := os.ReadFile(c.files[len(c.files)-1])
		if err != nil {
			t.Fatal(err)
		}
		m, err := Load(data, Options{})
		if err != nil {
			t.Fatal(err)
		}
		cols := columns(t, m, c.in.Header)
		x := flat(c.in)
		rows, stride := len(c.in.Rows), len(c.in.Header)
		dst := make([]float64, rows*m.Output().Width)
		run := func() {
			if err := m.Run(dst, x, rows, stride, cols); err != nil {
				t.Fatal(err)
			}
		}
		run()
		if n := testing.AllocsPerRun(20, run); n != 0 {
			t.Errorf("%s: %.1f allocations per run", c.stem, n)
		}
	}
}

// TestGemmForms: Gemm with transA and transB, a constant B (packed at
// load) and one computed while running, alpha and beta or the row-bias
// path, and a C of every shape that broadcasts to [M, N], against the
// definition in float64.
func TestGemmForms(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const m, n, k = 5, 19, 7
	for _, transA := range []bool{false, true} {
		for _, transB := range []bool{false, true} {
			for _, bConst := range []bool{false, true} {
				for _, cShape := range [][]int{nil, {1}, {n}, {1, n}, {m, 1}, {m, n}} {
					for _, scaled := range []bool{false, true} {
						a := &tensor{dt: tFloat, shape: []int{m, k}, f: randFloats(r, m*k)}
						if transA {
							a.shape = []int{k, m}
						}
						b := &tensor{dt: tFloat, shape: []int{k, n}, f: randFloats(r, k*n)}
						if transB {
							b.shape = []int{n, k}
						}
						in := []*tensor{a, b}
						list := []*attrProto{
							{name: "transA", typ: attrInt, i: b2i(transA)},
							{name: "transB", typ: attrInt, i: b2i(transB)},
						}
						alpha, beta := float32(1), float32(1)
						if scaled {
							alpha, beta = 0.5, -2
							list = append(list, &attrProto{name: "alpha", typ: attrFloat, f: alpha}, &attrProto{name: "beta", typ: attrFloat, f: beta})
						}
						var c *tensor
						if cShape != nil {
							c = &tensor{dt: tFloat, shape: cShape, f: randFloats(r, prod(cShape))}
							in = append(in, c)
						}
						consts := make([]*tensor, len(in))
						if bConst {
							consts[1] = b
						}
						nodeIn := []int{0, 1, 2}[:len(in)]
						o, err := buildGemm(&buildCtx{node: &node{in: nodeIn}, attrs: &attrs{list: list}, consts: consts, opset: 17, outputs: 1})
						if err != nil {
							t.Fatal(err)
						}
						y := &tensor{}
						if err := o.run(&env{budget: MaxElements, macs: MaxMultiplies}, in, []*tensor{y}); err != nil {
							t.Fatal(err)
						}
						if !sameShape(y.shape, []int{m, n}) {
							t.Fatalf("shape %v", y.shape)
						}
						for i := range m {
							for j := range n {
								s := 0.0
								for p := range k {
									av, bv := a.f[i*k+p], b.f[p*n+j]
									if transA {
										av = a.f[p*m+i]
									}
									if transB {
										bv = b.f[j*k+p]
									}
									s += float64(av) * float64(bv)
								}
								want := float64(alpha) * s
								if c != nil {
									ci, cj := i, j
									if len(cShape) == 2 && cShape[0] == 1 {
										ci = 0
									}
									if cShape[len(cShape)-1] == 1 {
										cj = 0
									}
									idx := cj
									if len(cShape) == 2 {
										idx = ci*cShape[1] + cj
									}
									want += float64(beta) * float64(c.f[idx])
								}
								if got := float64(y.f[i*n+j]); !near(got, want, 1e-5) {
									t.Fatalf("transA %v transB %v const %v C %v scaled %v: y[%d, %d] = %g, want %g",
										transA, transB, bConst, cShape, scaled, i, j, got, want)
								}
							}
						}
					}
				}
			}
		}
	}
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
