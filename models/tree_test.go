package models

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestLess32 checks that the float64 threshold less32 derives reproduces
// float32(x) < t for inputs at and around every rounding boundary.
func TestLess32(t *testing.T) {
	inf32 := float32(math.Inf(1))
	ts := []float32{
		0, float32(math.Copysign(0, -1)), 1, -1, 0.5, 1.5, 2.5, -2.5, 3, 1e-45, -1e-45, 1.1754944e-38,
		math.MaxFloat32, -math.MaxFloat32, inf32, -inf32, float32(math.NaN()), 16777216, 16777217, 0.1, -0.1,
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		ts = append(ts, math.Float32frombits(rng.Uint32()))
	}
	for _, tv := range ts {
		thr, ok := less32(tv)
		p := math.Nextafter32(tv, -inf32)
		xs := []float64{
			float64(tv), float64(p), math.Inf(1), math.Inf(-1), 0, math.Copysign(0, -1),
			math.MaxFloat64, -math.MaxFloat64,
		}
		if ok {
			for _, b := range []float64{thr, (float64(p) + float64(tv)) / 2} {
				xs = append(xs, b, math.Nextafter(b, math.Inf(1)), math.Nextafter(b, math.Inf(-1)))
			}
		}
		for range 4 {
			xs = append(xs, float64(tv)+rng.NormFloat64()*math.Abs(float64(tv))*1e-7)
		}
		for _, x := range xs {
			want := float32(x) < tv
			got := ok && x <= thr
			if got != want {
				t.Fatalf("t=%v (%#x) x=%v: x <= %v is %v, float32(x) < t is %v", tv, math.Float32bits(tv), x, thr, got, want)
			}
		}
	}
}

// refPredict scores one row the plain way, straight from the Node
// semantics, for comparison with the compiled forest.
func refPredict(f *Forest, row []float64) []float64 {
	m := make([]float64, f.Outputs)
	m32 := make([]float32, f.Outputs)
	if f.Base != nil {
		copy(m, f.Base)
		for i, b := range f.Base {
			m32[i] = float32(b)
		}
	}
	for _, t := range f.Trees {
		i := 0
		for t.Nodes[i].Feature >= 0 {
			n := t.Nodes[i]
			if refLeft(f, &n, row[n.Feature]) {
				i = int(n.Left)
			} else {
				i = int(n.Right)
			}
		}
		w := max(t.Width, 1)
		for k := range w {
			v := t.Leaves[int(t.Nodes[i].Left)+k]
			if t.Linear != nil {
				l := t.Linear[t.Nodes[i].Left]
				lv := l.Const
				for j, feat := range l.Features {
					if math.IsNaN(row[feat]) {
						lv = v
						break
					}
					lv += float64(l.Coeffs[j] * row[feat])
				}
				v = lv
			}
			if f.Sum32 {
				v32 := float32(v)
				if t.Weight != 0 {
					v32 *= float32(t.Weight)
				}
				m32[t.Output+k] += v32
			} else {
				if t.Weight != 0 {
					v *= t.Weight
				}
				m[t.Output+k] += v
			}
		}
	}
	if f.Sum32 {
		for i, v := range m32 {
			m[i] = float64(v)
		}
	}
	if f.Argmax {
		best := 0
		for i := range m {
			if m[i] > m[best] {
				best = i
			}
		}
		return []float64{float64(best)}
	}
	if f.Link != nil {
		f.Link(m)
	}
	return m
}

func refLeft(f *Forest, n *Node, x float64) bool {
	split := f.Split
	if math.IsNaN(x) {
		return n.DefaultLeft
	}
	if n.Cats == nil && n.CatsKnown == nil {
		if n.ZeroMissing && math.Abs(x) <= float64(float32(1e-35)) {
			return n.DefaultLeft
		}
		if split == SplitLess32 {
			return float64(float32(x)) < n.Threshold
		}
		return x <= n.Threshold
	}
	v := x
	if split == SplitLess32 {
		v = float64(float32(x))
	}
	has := func(bits []uint64, c int) bool { return c/64 < len(bits) && bits[c/64]>>(c%64)&1 == 1 }
	valid := v >= 0 || (f.TruncCategories && v > -1)
	unknown := !valid || v >= 1<<24 || (n.CatsKnown != nil && !has(n.CatsKnown, int(v)))
	if unknown {
		return n.UnknownLeft || n.DefaultLeft
	}
	return !has(n.Cats, int(v))
}

// randomForest builds a forest with random shapes: split nodes in random
// order (children before or after their parent), unreachable nodes,
// categorical splits, several outputs.
func randomForest(rng *rand.Rand, split Split, sum32 bool, outputs, width int) *Forest {
	f := &Forest{Features: 5, Outputs: outputs, Split: split, Sum32: sum32}
	if rng.IntN(2) == 0 {
		f.Base = make([]float64, outputs)
		for i := range f.Base {
			f.Base[i] = float64(float32(rng.NormFloat64()))
		}
	}
	for range 1 + rng.IntN(8) {
		var t Tree
		t.Width = width
		t.Output = rng.IntN(outputs - width + 1)
		if rng.IntN(4) == 0 {
			t.Weight = rng.Float64()
		}
		// Grow a shape, then shuffle node positions.
		type proto struct {
			leaf        bool
			left, right int
		}
		protos := []proto{{leaf: true}}
		for range rng.IntN(12) {
			// Split a random leaf.
			var leaves []int
			for i, p := range protos {
				if p.leaf {
					leaves = append(leaves, i)
				}
			}
			li := leaves[rng.IntN(len(leaves))]
			protos = append(protos, proto{leaf: true}, proto{leaf: true})
			protos[li] = proto{left: len(protos) - 2, right: len(protos) - 1}
		}
		perm := rng.Perm(len(protos))
		// Keep the root at 0.
		for i, p := range perm {
			if p == 0 {
				perm[i], perm[0] = perm[0], perm[i]
				break
			}
		}
		pos := make([]int, len(protos)) // proto -> position
		for i, p := range perm {
			pos[p] = i
		}
		t.Nodes = make([]Node, len(protos)+rng.IntN(2)) // maybe one unreachable node
		for i := range t.Nodes {
			t.Nodes[i] = Node{Feature: -1}
		}
		for pi, p := range protos {
			n := &t.Nodes[pos[pi]]
			if p.leaf {
				n.Feature = -1
				n.Left = int32(len(t.Leaves))
				for range width {
					t.Leaves = append(t.Leaves, math.Round(rng.NormFloat64()*1e4)/1e4)
				}
				continue
			}
			n.Feature = int32(rng.IntN(f.Features))
			n.Left, n.Right = int32(pos[p.left]), int32(pos[p.right])
			n.DefaultLeft = rng.IntN(2) == 0
			switch rng.IntN(5) {
			case 0:
				n.Cats = randomCats(rng)
				if rng.IntN(2) == 0 {
					n.CatsKnown = [][]uint64{{0x3f}, {0x3f, 1 << 5}, {1<<62 | 1, 0}, randomCats(rng)}[rng.IntN(4)]
				}
				n.UnknownLeft = rng.IntN(2) == 0
			default:
				n.ZeroMissing = rng.IntN(6) == 0
				n.Threshold = float64(float32(rng.NormFloat64() * 3))
				switch rng.IntN(10) {
				case 0:
					n.Threshold = []float64{math.NaN(), math.Inf(-1), math.Inf(1), 1e300, -1e300}[rng.IntN(5)]
				case 1:
					n.Threshold = rng.NormFloat64() * 3 // not a float32
				}
			}
		}
		if len(t.Nodes) > len(protos) {
			t.Leaves = append(t.Leaves, make([]float64, width)...)
			t.Nodes[len(t.Nodes)-1] = Node{Feature: -1, Left: int32(len(t.Leaves) - width)}
		}
		if width == 1 && !sum32 && t.Weight == 0 && rng.IntN(3) == 0 {
			for range t.Leaves {
				var l LinearLeaf
				if rng.IntN(4) > 0 {
					l.Const = math.Round(rng.NormFloat64()*1e4) / 1e4
					for range rng.IntN(3) {
						l.Features = append(l.Features, int32(rng.IntN(f.Features)))
						l.Coeffs = append(l.Coeffs, rng.NormFloat64())
					}
				}
				t.Linear = append(t.Linear, l)
			}
		}
		f.Trees = append(f.Trees, t)
	}
	return f
}

// randomCats returns a random categorical bitset: usually codes below 8,
// sometimes codes up to 200 (wide splits) or none at all.
func randomCats(rng *rand.Rand) []uint64 {
	switch rng.IntN(6) {
	case 0:
		return []uint64{rng.Uint64(), rng.Uint64() & 0xff, 0, rng.Uint64()}
	case 1:
		return []uint64{rng.Uint64() & 0xff, 1 << rng.IntN(64)}
	case 2:
		return []uint64{1 << (60 + rng.IntN(4))}
	case 3:
		return []uint64{}
	}
	return []uint64{rng.Uint64() & 0xff}
}

func randomRows(rng *rand.Rand, nrows, nf int) []float64 {
	x := make([]float64, nrows*nf)
	for i := range x {
		switch rng.IntN(10) {
		case 0:
			x[i] = math.NaN()
		case 1:
			x[i] = float64(rng.IntN(10) - 1) // category codes, -1 included
		case 2:
			x[i] = []float64{math.Inf(1), math.Inf(-1), 1 << 24, 2.5, 7.9999999999, -0.5, -1, -0.9999,
				math.Copysign(0, -1), 1e-36, -1e-36, 1e-35, 1e-34, 61, 62, 63, 64, 65, 130, 191.5, 255, 256}[rng.IntN(22)]
		default:
			x[i] = rng.NormFloat64() * 3
		}
	}
	return x
}

func TestForestMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for it := range 3000 {
		split := Split(rng.IntN(2))
		sum32 := rng.IntN(2) == 0
		outputs := 1 + rng.IntN(3)
		width := 1
		if rng.IntN(3) == 0 {
			width = outputs
		}
		f := randomForest(rng, split, sum32, outputs, width)
		f.TruncCategories = rng.IntN(3) == 0
		switch rng.IntN(4) {
		case 0:
			f.Link = func(row []float64) {
				for i := range row {
					row[i] = math.Exp(row[i])
				}
			}
		case 1:
			f.Argmax = true
		}
		if err := f.Check(); err != nil {
			t.Fatalf("forest %d: %v", it, err)
		}
		nrows := 1 + rng.IntN(5*blockRows+3)
		x := randomRows(rng, nrows, f.Features)
		got := make([]float64, nrows*f.NumOutputs())
		if err := f.Predict(got, x, nrows); err != nil {
			t.Fatal(err)
		}
		var want []float64
		for r := range nrows {
			want = append(want, refPredict(f, x[r*f.Features:(r+1)*f.Features])...)
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateNaNs()); diff != "" {
			t.Fatalf("forest %d (split %d, sum32 %v): prediction mismatch (-want +got):\n%s", it, split, sum32, diff)
		}
	}
}

func TestForestCategorical(t *testing.T) {
	// Codes 1 and 3 go right; 0..5 are known to the second forest.
	node := func(known []uint64, unknownLeft, defaultLeft bool) *Forest {
		return &Forest{
			Features: 1, Outputs: 1, Split: SplitLess32,
			Trees: []Tree{{
				Nodes: []Node{
					{Feature: 0, Left: 1, Right: 2, Cats: []uint64{0b1010}, CatsKnown: known, UnknownLeft: unknownLeft, DefaultLeft: defaultLeft},
					{Feature: -1, Left: 0},
					{Feature: -1, Left: 1},
				},
				Leaves: []float64{-1, 1}, // left, right
			}},
		}
	}
	nan := math.NaN()
	inputs := []float64{0, 1, 2, 3, 1.5, 2.9999999999, 3.5, 6, 64, 1 << 24, -1, -0.5, nan}
	tests := []struct {
		name string
		f    *Forest
		want []float64
	}{
		{"xgboost", node(nil, true, false), []float64{-1, 1, -1, 1, 1, 1, 1, -1, -1, -1, -1, -1, 1}},
		{"unknown as missing", node(nil, false, false), []float64{-1, 1, -1, 1, 1, 1, 1, -1, -1, 1, 1, 1, 1}},
		{"known codes", node([]uint64{0b111111}, false, true), []float64{-1, 1, -1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1}},
		{"known codes, missing right", node([]uint64{0b111111}, false, false), []float64{-1, 1, -1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make([]float64, len(inputs))
			if err := tt.f.Predict(got, inputs, len(inputs)); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("inputs %v (-want +got):\n%s", inputs, diff)
			}
		})
	}
}

func TestForestCheck(t *testing.T) {
	leaf := Node{Feature: -1}
	ok := func() *Forest {
		return &Forest{Features: 2, Outputs: 1, Trees: []Tree{{
			Nodes:  []Node{{Feature: 1, Left: 1, Right: 2}, leaf, {Feature: -1, Left: 1}},
			Leaves: []float64{1, 2},
		}}}
	}
	if err := ok().Check(); err != nil {
		t.Fatalf("valid forest: %v", err)
	}
	tests := []struct {
		name   string
		break_ func(f *Forest)
	}{
		{"no features", func(f *Forest) { f.Features = 0 }},
		{"no outputs", func(f *Forest) { f.Outputs = 0 }},
		{"base size", func(f *Forest) { f.Base = []float64{1, 2} }},
		{"split mode", func(f *Forest) { f.Split = 7 }},
		{"no nodes", func(f *Forest) { f.Trees[0].Nodes = nil }},
		{"output range", func(f *Forest) { f.Trees[0].Output = 1 }},
		{"width", func(f *Forest) { f.Trees[0].Width = 2 }},
		{"weight", func(f *Forest) { f.Trees[0].Weight = math.NaN() }},
		{"feature", func(f *Forest) { f.Trees[0].Nodes[0].Feature = 2 }},
		{"child range", func(f *Forest) { f.Trees[0].Nodes[0].Right = 3 }},
		{"negative child", func(f *Forest) { f.Trees[0].Nodes[0].Left = -1 }},
		{"cycle", func(f *Forest) { f.Trees[0].Nodes[0].Left = 0 }},
		{"shared child", func(f *Forest) { f.Trees[0].Nodes[0].Right = 1 }},
		{"leaf range", func(f *Forest) { f.Trees[0].Nodes[2].Left = 2 }},
		{"negative leaf", func(f *Forest) { f.Trees[0].Nodes[1].Left = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := ok()
			tt.break_(f)
			err := f.Check()
			if !errors.Is(err, ErrArtifact) {
				t.Fatalf("Check() = %v, want an error wrapping ErrArtifact", err)
			}
			if err := f.Predict(make([]float64, 1), make([]float64, 2), 1); err == nil {
				t.Fatal("Predict on a broken forest succeeded")
			}
		})
	}
}

func TestForestPredictSizes(t *testing.T) {
	f := &Forest{Features: 2, Outputs: 1, Trees: []Tree{{Nodes: []Node{{Feature: -1}}, Leaves: []float64{1}}}}
	if err := f.Predict(make([]float64, 2), make([]float64, 3), 2); err == nil {
		t.Error("Predict with too few inputs succeeded")
	}
	if err := f.Predict(make([]float64, 1), make([]float64, 4), 2); err == nil {
		t.Error("Predict with too few outputs succeeded")
	}
	if err := f.Predict(nil, nil, -1); err == nil {
		t.Error("Predict with negative rows succeeded")
	}
}

func TestForestPredictAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, outputs := range []int{1, 3} {
		f := randomForest(rng, SplitLess32, true, outputs, 1)
		f.Argmax = outputs > 1
		x := randomRows(rng, 200, f.Features)
		dst := make([]float64, 200*f.NumOutputs())
		if err := f.Check(); err != nil {
			t.Fatal(err)
		}
		allocs := testing.AllocsPerRun(20, func() {
			if err := f.Predict(dst, x, 200); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%d outputs: Predict allocates %v times per call", outputs, allocs)
		}
	}
}

// TestForestLess32Float64 checks SplitLess32 with thresholds that are not
// float32 values: float32(x) < t in float64.
func TestForestLess32Float64(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for range 2000 {
		thr := rng.NormFloat64() * math.Pow(10, float64(rng.IntN(20)-10))
		f := &Forest{Features: 1, Outputs: 1, Split: SplitLess32, Trees: []Tree{{
			Nodes:  []Node{{Feature: 0, Left: 1, Right: 2, Threshold: thr}, {Feature: -1, Left: 0}, {Feature: -1, Left: 1}},
			Leaves: []float64{1, 0},
		}}}
		t32 := float32(thr)
		xs := []float64{thr, float64(t32), float64(math.Nextafter32(t32, float32(math.Inf(1)))), float64(math.Nextafter32(t32, float32(math.Inf(-1))))}
		for _, x := range xs[:] {
			xs = append(xs, math.Nextafter(x, math.Inf(1)), math.Nextafter(x, math.Inf(-1)))
		}
		got := make([]float64, len(xs))
		if err := f.Predict(got, xs, len(xs)); err != nil {
			t.Fatal(err)
		}
		for i, x := range xs {
			want := 0.0
			if float64(float32(x)) < thr {
				want = 1
			}
			if got[i] != want {
				t.Fatalf("threshold %v, x %v: left %v, want %v", thr, x, got[i] == 1, want == 1)
			}
		}
	}
}

func TestForestConcurrentPredict(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	f := randomForest(rng, SplitLess32, true, 2, 1) // not checked: the first Predicts compile it
	x := randomRows(rng, 50, f.Features)
	want := make([]float64, 50*f.NumOutputs())
	for r := range 50 {
		copy(want[r*f.NumOutputs():], refPredict(f, x[r*f.Features:(r+1)*f.Features]))
	}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			got := make([]float64, len(want))
			err := f.Predict(got, x, 50)
			if err == nil && !cmp.Equal(want, got) {
				err = errors.New("predictions differ")
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// less32 returns the float64 threshold T such that, for every float64 x
// that is not NaN, float32(x) < t exactly when x <= T, and ok false when no
// x goes left (t is NaN or -Inf). The XGBoost-to-LightGBM converter of the
// benchmarks writes float32 splits with it.
//
// float32(x) rounds to nearest, ties to even. With p the float32 just
// below t, float32(x) < t means float32(x) <= p, which holds for x below
// the midpoint m of p and t, and at m itself when the tie rounds to p,
// that is when p's last mantissa bit is 0. Both m and its neighbours are
// exact in float64. Infinities act as ±2^128 (with an even mantissa), the
// values float32 rounding treats them as.
func less32(t float32) (thr float64, ok bool) {
	if t != t || math.IsInf(float64(t), -1) {
		return 0, false
	}
	p := math.Nextafter32(t, float32(math.Inf(-1)))
	const big = 0x1p128
	hi, lo := float64(t), float64(p)
	if math.IsInf(hi, 1) {
		hi = big
	}
	if math.IsInf(lo, -1) {
		lo = -big
	}
	m := lo/2 + hi/2 // exact: both halves are exact and so is their sum
	pEven := math.IsInf(float64(p), 0) || math.Float32bits(p)&1 == 0
	if pEven {
		return m, true
	}
	return math.Nextafter(m, math.Inf(-1)), true
}

// TestForestWideInputs scores forests that read many input columns (their
// keys do not fit Predict's stack buffer) and forests with many outputs
// under Argmax, against the reference.
func TestForestWideInputs(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	pooled := 0
	for it := range 200 {
		outputs := 1 + rng.IntN(3)
		if it%4 == 0 {
			outputs = 17 + rng.IntN(5)
		}
		f := randomForest(rng, Split(rng.IntN(2)), rng.IntN(2) == 0, outputs, 1)
		f.Features = 300
		for ti := range f.Trees {
			for ni := range f.Trees[ti].Nodes {
				if n := &f.Trees[ti].Nodes[ni]; n.Feature >= 0 {
					n.Feature = int32(rng.IntN(f.Features))
				}
			}
		}
		for range 20 { // enough trees to read most columns
			g := randomForest(rng, f.Split, f.Sum32, outputs, 1)
			for _, tr := range g.Trees {
				for ni := range tr.Nodes {
					if n := &tr.Nodes[ni]; n.Feature >= 0 {
						n.Feature = int32(rng.IntN(f.Features))
					}
				}
				f.Trees = append(f.Trees, tr)
			}
		}
		f.Argmax = outputs > 1 && rng.IntN(2) == 0
		nrows := 1 + rng.IntN(3*blockRows)
		x := randomRows(rng, nrows, f.Features)
		got := make([]float64, nrows*f.NumOutputs())
		if err := f.Predict(got, x, nrows); err != nil {
			t.Fatal(err)
		}
		var want []float64
		for r := range nrows {
			want = append(want, refPredict(f, x[r*f.Features:(r+1)*f.Features])...)
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateNaNs()); diff != "" {
			t.Fatalf("forest %d (%d outputs, argmax %v): prediction mismatch (-want +got):\n%s", it, outputs, f.Argmax, diff)
		}
		if f.code.Load().slots*blockRows > stackKeys {
			pooled++
		}
	}
	if pooled < 50 {
		t.Errorf("only %d forests used pooled key buffers", pooled)
	}
}

// TestForestVerify breaks compiled forests the walk would leave its
// arrays with: verify must refuse each.
func TestForestVerify(t *testing.T) {
	f := &Forest{Features: 2, Outputs: 1, Trees: []Tree{{
		Nodes:  []Node{{Feature: 1, Left: 1, Right: 2}, {Feature: -1}, {Feature: -1, Left: 1}},
		Leaves: []float64{1, 2},
	}}}
	breaks := []func(c *forestCode){
		func(c *forestCode) { c.nodes[0].right = 3 * nodeBytes },
		func(c *forestCode) { c.nodes[0].right = nodeBytes + 1 },
		func(c *forestCode) { c.nodes[0].slot = uint32(c.slots) * blockRows * 8 },
		func(c *forestCode) { c.nodes[0].slot = 8 },
		func(c *forestCode) { c.nodes[1].mask = 0 },
		func(c *forestCode) { c.nodes[2].mask = 3 },
		func(c *forestCode) { c.nodes[2].slot = 0 },
		func(c *forestCode) { c.nodes = c.nodes[:1]; c.nodes[0].right = 0 },
		func(c *forestCode) { c.nodes[2].right = 0; c.nodes = c.nodes[:3] },
		func(c *forestCode) { c.trees[0].root = 3 * nodeBytes },
	}
	for i, b := range breaks {
		c, err := compileForest(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.verify(); err != nil {
			t.Fatalf("the unbroken forest: %v", err)
		}
		b(c)
		if err := c.verify(); !errors.Is(err, ErrArtifact) {
			t.Errorf("break %d: verify = %v, want an error wrapping ErrArtifact", i, err)
		}
	}
}

// TestKeysRoundTrip: unkey64 and unkey32 invert ukey64 and ukey32, and
// the keys keep the order of the numbers.
func TestKeysRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	prev64, prev32 := uint64(keyNaNLow), uint64(keyNaNLow)
	for i, x := range []float64{math.Inf(-1), -math.MaxFloat64, -1, -math.SmallestNonzeroFloat64, 0, math.SmallestNonzeroFloat64, 1, math.MaxFloat64, math.Inf(1)} {
		k64, k32 := ukey64(x), ukey32(float32(x))
		if k64 <= prev64 || (i > 0 && k32 < prev32) || k64 == keyNaNHigh || k32 == keyNaNHigh {
			t.Errorf("%v: keys %#x, %#x out of order", x, k64, k32)
		}
		prev64, prev32 = k64, k32
	}
	for range 100000 {
		x := math.Float64frombits(rng.Uint64())
		if x != x {
			continue
		}
		if got := unkey64(ukey64(x)); got != x || (x == 0 && math.Signbit(got)) {
			t.Fatalf("unkey64(ukey64(%v)) = %v", x, got)
		}
		x32 := math.Float32frombits(rng.Uint32())
		if x32 != x32 {
			continue
		}
		if got := unkey32(ukey32(x32)); got != x32 {
			t.Fatalf("unkey32(ukey32(%v)) = %v", x32, got)
		}
	}
}
