// Package onnx loads ONNX models (opsets 13 to 17) and evaluates them in Go:
// the operators PyTorch exports for ranking models (MLPs, normalisation in
// inference mode, embedding lookups, two-tower and cross-network structure,
// and the shape arithmetic around them), in float32 like PyTorch.
//
// The protobuf is decoded field by field and every size is checked against
// the bytes that hold it before anything is allocated; unsupported
// operators, opsets, attributes and element types are refused at load with
// their names. A loaded model is run once at load on a batch of one and of
// two rows, so that shape errors show then and not while serving. Tensors
// are capped in size while the graph runs, and the buffers of a run are
// kept for the next, so that a warm model allocates nothing per call.
//
// It imports nothing of seer.
package onnx

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
)

// Errors of the package.
var (
	// ErrModel is wrapped by every error that rejects a model at load.
	ErrModel = errors.New("bad ONNX model")
	// ErrLimit is wrapped by errors of tensors over the size limits.
	ErrLimit = errors.New("over the size limit")
	// ErrInput is wrapped by errors of input values a graph cannot take,
	// such as an id outside an embedding table.
	ErrInput = errors.New("bad input value")
)

// Opsets of the default domain that the package evaluates.
const (
	MinOpset = 13
	MaxOpset = 17
)

// Limits.
const (
	// MaxElements caps the elements that the tensors of one run may hold
	// together (256 MiB of float32), and so any one tensor and every
	// graph input.
	MaxElements = 1 << 26
	// probeElements caps them for the trial runs at load, on one and two
	// rows.
	probeElements = 1 << 22
	// MaxMultiplies caps the multiply-adds of the matrix products of one
	// run (about a second of one core), so that a graph cannot hang a
	// request; the 64-256-128-1 MLP takes 10 million for 200 rows.
	MaxMultiplies   = 1 << 32
	probeMultiplies = 1 << 28
	maxNodes        = 1 << 16
	maxWidth        = 1 << 20 // columns of a graph input
)

// Type names of graph inputs and outputs.
const (
	Float32 = "float32"
	Int64   = "int64"
)

// Port is a graph input or output: its name, element type and width (the
// k of a [batch, k] tensor; 1 for [batch]).
type Port struct {
	Name  string
	Type  string
	Width int
}

// Options tune Load.
type Options struct {
	// Output names the graph output to score; the default is the first.
	Output string
}

// Model is a loaded ONNX graph. It is safe for concurrent use.
type Model struct {
	opset   int64
	inputs  []Port
	outputs []string
	out     Port

	slots   int       // values of the graph
	consts  []*tensor // by slot; nil for computed values
	inSlots []int     // by graph input
	outSlot int
	nodes   []*node // to run, in order

	mu   sync.Mutex
	free []*session
}

// node is one operator of the program.
type node struct {
	opType string
	name   string
	in     []int // slots; -1 for an absent optional input
	out    []int
	op     op
}

// describe names a node for errors: its operator and name or first output.
func (n *node) describe() string {
	if n.name != "" {
		return n.opType + " " + n.name
	}
	return n.opType + " node"
}

// op is an operator with its attributes resolved.
type op interface {
	// run computes the outputs from the inputs; an absent optional input
	// is nil.
	run(e *env, in, out []*tensor) error
}

// env is what an operator may use while it runs.
type env struct {
	budget  int // elements the run may still allocate
	macs    int // multiply-adds the run may still do
	scratch []float32
	sums    []float64
	shape   [maxRank]int
	odo     odometer
}

// session is the values of one run, kept for the next.
type session struct {
	vals  []tensor
	in    []*tensor // the graph inputs' values
	args  []*tensor // a node's inputs
	res   []*tensor // a node's outputs
	spare tensor    // receives outputs nothing reads
	env   env
}

// Inputs returns the graph inputs the caller fills, in graph order.
func (m *Model) Inputs() []Port { return m.inputs }

// Outputs returns the names of the graph outputs, in graph order.
func (m *Model) Outputs() []string { return m.outputs }

// Output returns the output the model scores.
func (m *Model) Output() Port { return m.out }

// Opset returns the model's opset of the default domain.
func (m *Model) Opset() int64 { return m.opset }

// Load decodes and checks an ONNX model.
func Load(data []byte, opt Options) (m *Model, err error) {
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("%w: the loader panicked: %v", ErrModel, r)
		}
	}()
	mp, err := decodeModel(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrModel, err)
	}
	m, err = build(mp, opt)
	if err != nil {
		if errors.Is(err, ErrModel) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrModel, err)
	}
	return m, nil
}

func build(mp *modelProto, opt Options) (*Model, error) {
	opset, err := checkOpsets(mp)
	if err != nil {
		return nil, err
	}
	g := mp.graph
	switch {
	case g == nil:
		return nil, errors.New("no graph")
	case mp.functions > 0:
		return nil, errors.New("model-local functions are not supported")
	case g.sparse > 0:
		return nil, errors.New("sparse initializers are not supported")
	case len(g.nodes) > maxNodes:
		return nil, fmt.Errorf("%d nodes is over the limit of %d", len(g.nodes), maxNodes)
	case len(g.outputs) == 0:
		return nil, errors.New("the graph has no outputs")
	}
	m := &Model{opset: opset}
	slot := make(map[string]int)
	define := func(name string) (int, error) {
		if name == "" {
			return 0, errors.New("a value without a name")
		}
		if _, dup := slot[name]; dup {
			return 0, fmt.Errorf("value %q is defined twice", name)
		}
		slot[name] = m.slots
		m.consts = append(m.consts, nil)
		m.slots++
		return m.slots - 1, nil
	}
	for _, t := range g.initializers {
		c, err := constTensor(t)
		if err != nil {
			return nil, fmt.Errorf("initializer %q: %v", t.name, err)
		}
		s, err := define(t.name)
		if err != nil {
			return nil, err
		}
		m.consts[s] = c
	}
	for _, v := range g.inputs {
		if _, isInit := slot[v.name]; isInit {
			continue // an initializer listed as an input (IR version 3)
		}
		p, err := inputPort(v)
		if err != nil {
			return nil, err
		}
		s, err := define(v.name)
		if err != nil {
			return nil, err
		}
		m.inputs = append(m.inputs, p)
		m.inSlots = append(m.inSlots, s)
	}
	if len(m.inputs) == 0 {
		return nil, errors.New("the graph has no inputs to fill")
	}
	var unsupported []string
	for _, np := range g.nodes {
		if np.domain != "" && np.domain != "ai.onnx" {
			unsupported = append(unsupported, np.domain+"."+np.opType)
		} else if _, ok := builders[np.opType]; !ok {
			unsupported = append(unsupported, np.opType)
		}
	}
	if len(unsupported) > 0 {
		slices.Sort(unsupported)
		return nil, fmt.Errorf("unsupported operators: %s (seer evaluates %s)", strings.Join(slices.Compact(unsupported), ", "), strings.Join(Operators(), ", "))
	}
	var nodes []*node
	for i, np := range g.nodes {
		n := &node{opType: np.opType, name: np.name}
		for _, name := range np.inputs {
			if name == "" {
				n.in = append(n.in, -1)
				continue
			}
			s, ok := slot[name]
			if !ok {
				return nil, fmt.Errorf("node %d (%s) reads %q, which nothing before it defines", i+1, n.describe(), name)
			}
			n.in = append(n.in, s)
		}
		b := builders[np.opType]
		consts := make([]*tensor, len(n.in))
		for k, s := range n.in {
			if s >= 0 {
				consts[k] = m.consts[s]
			}
		}
		a := &attrs{list: np.attrs}
		n.op, err = b(&buildCtx{node: n, attrs: a, consts: consts, opset: opset, outputs: len(np.outputs)})
		if err == nil {
			err = a.check()
		}
		if err != nil {
			return nil, fmt.Errorf("node %d (%s): %v", i+1, n.describe(), err)
		}
		for _, name := range np.outputs {
			if name == "" {
				n.out = append(n.out, -1)
				continue
			}
			s, err := define(name)
			if err != nil {
				return nil, err
			}
			n.out = append(n.out, s)
		}
		nodes = append(nodes, n)
	}
	for _, v := range g.outputs {
		if _, ok := slot[v.name]; !ok {
			return nil, fmt.Errorf("graph output %q is not computed by the graph", v.name)
		}
		m.outputs = append(m.outputs, v.name)
	}
	want := opt.Output
	if want == "" {
		want = m.outputs[0]
	}
	if !slices.Contains(m.outputs, want) {
		return nil, fmt.Errorf("no graph output named %q (the outputs are %s)", want, strings.Join(m.outputs, ", "))
	}
	m.outSlot = slot[want]
	m.out.Name = want
	if err := m.fold(nodes); err != nil {
		return nil, err
	}
	if err := m.probe(); err != nil {
		return nil, err
	}
	return m, nil
}

// checkOpsets returns the opset of the default domain, refusing other
// domains and opsets outside 13 to 17.
func checkOpsets(mp *modelProto) (int64, error) {
	var opset int64
	for _, o := range mp.opsets {
		switch o.domain {
		case "", "ai.onnx":
			opset = o.version
		default:
			return 0, fmt.Errorf("opset domain %q (version %d) is not supported: seer evaluates the default ONNX domain only", o.domain, o.version)
		}
	}
	if opset == 0 {
		return 0, errors.New("no opset of the default domain")
	}
	if opset < MinOpset || opset > MaxOpset {
		return 0, fmt.Errorf("opset %d is not supported (seer evaluates opsets %d to %d; re-export with opset_version=%d)", opset, MinOpset, MaxOpset, MaxOpset)
	}
	return opset, nil
}

// inputPort checks a graph input: float or int64, shape [batch, k].
func inputPort(v valueInfo) (Port, error) {
	p := Port{Name: v.name}
	switch {
	case v.notTensor:
		return p, fmt.Errorf("input %q is not a tensor", v.name)
	case v.elemType == typeFloat:
		p.Type = Float32
	case v.elemType == typeInt64:
		p.Type = Int64
	default:
		return p, fmt.Errorf("input %q has element type %s (want float or int64)", v.name, typeName(v.elemType))
	}
	if !v.hasShape || len(v.dims) != 2 {
		return p, fmt.Errorf("input %q: want the shape [batch, k], got %s", v.name, dimString(v.dims, v.hasShape))
	}
	if v.dims[0].known {
		return p, fmt.Errorf("input %q has a fixed batch dimension %d: export it with a dynamic batch axis (torch.onnx.export(..., dynamic_axes={%q: {0: \"batch\"}}))", v.name, v.dims[0].value, v.name)
	}
	if !v.dims[1].known || v.dims[1].value < 1 || v.dims[1].value > maxWidth {
		return p, fmt.Errorf("input %q: want the shape [batch, k] with k from 1 to %d, got %s", v.name, maxWidth, dimString(v.dims, true))
	}
	p.Width = int(v.dims[1].value)
	return p, nil
}

func dimString(dims []dimProto, has bool) string {
	if !has {
		return "no shape"
	}
	parts := make([]string, len(dims))
	for i, d := range dims {
		switch {
		case d.known:
			parts[i] = fmt.Sprint(d.value)
		case d.param != "":
			parts[i] = d.param
		default:
			parts[i] = "?"
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// fold runs, once, every node whose inputs are all constants, and keeps
// the nodes the scored output needs.
func (m *Model) fold(nodes []*node) error {
	e := &env{budget: MaxElements, macs: MaxMultiplies} // for all the constants computed at load together
	for _, n := range nodes {
		constant := true
		for _, s := range n.in {
			if s >= 0 && m.consts[s] == nil {
				constant = false
				break
			}
		}
		if !constant {
			m.nodes = append(m.nodes, n)
			continue
		}
		in := make([]*tensor, len(n.in))
		for k, s := range n.in {
			if s >= 0 {
				in[k] = m.consts[s]
			}
		}
		out := make([]*tensor, len(n.out))
		for k := range out {
			out[k] = &tensor{}
		}
		if err := n.op.run(e, in, out); err != nil {
			return fmt.Errorf("%s: %v", n.describe(), err)
		}
		for k, s := range n.out {
			if s >= 0 {
				m.consts[s] = out[k].clone()
			}
		}
	}
	// Keep only what the scored output depends on.
	need := make([]bool, m.slots)
	need[m.outSlot] = true
	var keep []*node
	for i := len(m.nodes) - 1; i >= 0; i-- {
		n := m.nodes[i]
		used := false
		for _, s := range n.out {
			if s >= 0 && need[s] {
				used = true
			}
		}
		if !used {
			continue
		}
		for _, s := range n.in {
			if s >= 0 {
				need[s] = true
			}
		}
		keep = append(keep, n)
	}
	slices.Reverse(keep)
	m.nodes = keep
	return nil
}

// probe runs the graph on batches of one and two rows of zeros, which
// checks every operator's shapes, and finds the width of the output.
func (m *Model) probe() error {
	for _, rows := range []int{1, 2} {
		s := m.newSession()
		for k, p := range m.inputs {
			t := s.in[k]
			dt := tFloat
			if p.Type == Int64 {
				dt = tInt64
			}
			if err := t.allocN(dt, []int{rows, p.Width}, rows*p.Width); err != nil {
				return err
			}
			clear(t.f)
			clear(t.i)
		}
		out, err := m.run(s, probeElements, probeMultiplies)
		if err != nil {
			return fmt.Errorf("a trial run on %d rows: %v", rows, err)
		}
		width, err := outputWidth(out, rows)
		if err != nil {
			return fmt.Errorf("output %q: %v", m.out.Name, err)
		}
		if rows > 1 && width != m.out.Width {
			return fmt.Errorf("output %q: %d columns for one row but %d for two", m.out.Name, m.out.Width, width)
		}
		m.out.Width = width
		switch out.dt {
		case tFloat:
			m.out.Type = Float32
		case tInt64:
			m.out.Type = Int64
		default:
			return fmt.Errorf("output %q has element type %s (want float or int64)", m.out.Name, out.dt)
		}
		m.put(s)
	}
	return nil
}

// outputWidth checks that an output is [rows] or [rows, k] and returns k.
func outputWidth(t *tensor, rows int) (int, error) {
	switch {
	case len(t.shape) == 1 && t.shape[0] == rows:
		return 1, nil
	case len(t.shape) == 2 && t.shape[0] == rows && t.shape[1] > 0:
		return t.shape[1], nil
	}
	return 0, fmt.Errorf("shape %v for a batch of %d rows: want [batch] or [batch, k]", t.shape, rows)
}

func (m *Model) newSession() *session {
	s := &session{vals: make([]tensor, m.slots)}
	s.in = make([]*tensor, len(m.inSlots))
	for k, sl := range m.inSlots {
		s.in[k] = &s.vals[sl]
	}
	for sl, c := range m.consts {
		if c != nil {
			s.vals[sl] = *c // shares the constant's elements, which nothing writes
		}
	}
	return s
}

func (m *Model) session() *session {
	m.mu.Lock()
	if n := len(m.free); n > 0 {
		s := m.free[n-1]
		m.free = m.free[:n-1]
		m.mu.Unlock()
		return s
	}
	m.mu.Unlock()
	return m.newSession()
}

// maxFree caps the sessions kept between runs.
const maxFree = 64

func (m *Model) put(s *session) {
	m.mu.Lock()
	if len(m.free) < maxFree {
		m.free = append(m.free, s)
	}
	m.mu.Unlock()
}

// run evaluates the program on a session whose inputs are filled and
// returns the scored output. Its tensors may hold budget elements, and
// its matrix products do at most macs multiply-adds.
func (m *Model) run(s *session, budget, macs int) (*tensor, error) {
	s.env.budget, s.env.macs = budget, macs
	for _, n := range m.nodes {
		s.args = s.args[:0]
		for _, sl := range n.in {
			if sl < 0 {
				s.args = append(s.args, nil)
			} else {
				s.args = append(s.args, &s.vals[sl])
			}
		}
		s.res = s.res[:0]
		for _, sl := range n.out {
			if sl < 0 {
				s.res = append(s.res, &s.spare)
			} else {
				s.res = append(s.res, &s.vals[sl])
			}
		}
		if err := n.op.run(&s.env, s.args, s.res); err != nil {
			return nil, fmt.Errorf("%s: %w", n.describe(), err)
		}
	}
	return &s.vals[m.outSlot], nil
}

// Operators returns the names of the operators the package evaluates.
func Operators() []string {
	names := make([]string, 0, len(builders))
	for name := range builders {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Run scores nrows rows. Row r is x[r*stride:(r+1)*stride]; cols[k] lists,
// in order, the columns of a row that fill graph input k (as many as its
// width). dst receives nrows*Output().Width values, row-major. A value
// for an int64 input must be a whole number; errors about values wrap
// ErrInput.
func (m *Model) Run(dst, x []float64, nrows, stride int, cols [][]int) (err error) {
	// The graph passed the trial runs at load, but no panic on another
	// batch may take the process down.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("run: panic: %v", r)
		}
	}()
	if len(cols) != len(m.inputs) {
		return fmt.Errorf("%d column lists for %d graph inputs", len(cols), len(m.inputs))
	}
	if nrows < 1 || len(x) < nrows*stride || len(dst) < nrows*m.out.Width {
		return fmt.Errorf("run: %d values in and %d out for %d rows of %d and %d", len(x), len(dst), nrows, stride, m.out.Width)
	}
	s := m.session()
	defer m.put(s) // after a panic too: a session holds only buffers
	for k, p := range m.inputs {
		if len(cols[k]) != p.Width {
			return fmt.Errorf("input %s: %d columns for a width of %d", p.Name, len(cols[k]), p.Width)
		}
		if err := fill(s.in[k], p, x, nrows, stride, cols[k]); err != nil {
			return err
		}
	}
	out, err := m.run(s, MaxElements, MaxMultiplies)
	if err != nil {
		return err
	}
	if width, err := outputWidth(out, nrows); err != nil || width != m.out.Width {
		return fmt.Errorf("output %s: shape %v for %d rows, want width %d", m.out.Name, out.shape, nrows, m.out.Width)
	}
	n := nrows * m.out.Width
	if out.dt == tInt64 {
		for i, v := range out.i[:n] {
			dst[i] = float64(v)
		}
		return nil
	}
	for i, v := range out.f[:n] {
		dst[i] = float64(v)
	}
	return nil
}

// fill writes the columns of nrows rows of x into an input tensor.
func fill(t *tensor, p Port, x []float64, nrows, stride int, cols []int) error {
	w := p.Width
	var shape [2]int
	shape[0], shape[1] = nrows, w
	n, err := shapeSize(shape[:], MaxElements)
	if err != nil {
		return fmt.Errorf("input %s: %w", p.Name, err)
	}
	if p.Type == Int64 {
		if err := t.allocN(tInt64, shape[:], n); err != nil {
			return err
		}
		for r := range nrows {
			row := x[r*stride : (r+1)*stride]
			dst := t.i[r*w : (r+1)*w]
			for j, c := range cols {
				v := row[c]
				if v != math.Trunc(v) || v < -0x1p63 || v >= 0x1p63 {
					return fmt.Errorf("%w: input %s column %d: %v is not an int64", ErrInput, p.Name, j, v)
				}
				dst[j] = int64(v)
			}
		}
		return nil
	}
	if err := t.allocN(tFloat, shape[:], n); err != nil {
		return err
	}
	for r := range nrows {
		row := x[r*stride : (r+1)*stride]
		dst := t.f[r*w : (r+1)*w]
		for j, c := range cols {
			dst[j] = float32(row[c])
		}
	}
	return nil
}

// Sniff reports whether data, the first bytes of a file (4 KiB suffice),
// start as an ONNX model does: a protobuf ModelProto whose first field is
// ir_version (3 to 12) and whose next fields are ModelProto's with their
// wire types. A field that runs past the end of data counts: data may be
// a head cut short.
func Sniff(data []byte) bool {
	b := data[:min(len(data), 4096)]
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num != 1 || typ != protowire.VarintType {
		return false
	}
	b = b[n:]
	v, n := protowire.ConsumeVarint(b)
	if n < 0 || v < 3 || v > 12 {
		return false
	}
	b = b[n:]
	for fields := 0; len(b) > 0 && fields < 4; fields++ {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		switch num {
		case 2, 3, 4, 6, 7, 8, 14, 20, 25: // names, doc, graph, opsets, metadata, training, functions
			if typ != protowire.BytesType {
				return false
			}
		case 5: // model_version
			if typ != protowire.VarintType {
				return false
			}
		default:
			return false
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			_, k := protowire.ConsumeVarint(b[n:]) // a length that runs past data
			return typ == protowire.BytesType && k > 0
		}
		b = b[n+m:]
	}
	return true
}
