package features

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
)

// ErrPlan is wrapped by every error that rejects a model's inputs.
var ErrPlan = errors.New("bad inputs")

// ErrQuery is wrapped by every error that rejects a query, such as one that
// names an unknown entity type.
var ErrQuery = errors.New("bad query")

// Input sources, as a manifest declares them.
const (
	SourceCatalog = "catalog" // read from the feature store (the default)
	SourceRequest = "request" // supplied by the caller only
)

// InputDecl declares one model input in a manifest, in column order.
type InputDecl struct {
	Name       string   `yaml:"name" json:"name"`
	Source     string   `yaml:"source,omitempty" json:"source,omitempty"`         // catalog (default) or request
	Type       string   `yaml:"type,omitempty" json:"type,omitempty"`             // request inputs only
	Default    any      `yaml:"default,omitempty" json:"default,omitempty"`       // overrides the catalog's
	Categories []string `yaml:"categories,omitempty" json:"categories,omitempty"` // string -> code
	Transform  string   `yaml:"transform,omitempty" json:"transform,omitempty"`   // log1p
	Tensor     string   `yaml:"tensor,omitempty" json:"tensor,omitempty"`         // the ONNX graph input it fills
	// Dim is the length of a request-only vector input (a catalog
	// vector's comes from the catalog).
	Dim int `yaml:"dim,omitempty" json:"dim,omitempty"`
	// DefaultCode is the code of an unknown or missing category, which
	// an int64 tensor needs (without it the column is NaN: missing).
	DefaultCode *int64 `yaml:"default_code,omitempty" json:"default_code,omitempty"`
	// Derive makes the input one column computed from two vectors.
	Derive *Derive `yaml:"derive,omitempty" json:"derive,omitempty"`
	// Column is the artifact's name for the input's model column, when it
	// is not Name (a name a manifest cannot spell, a transformed input).
	Column string `yaml:"column,omitempty" json:"column,omitempty"`
}

// Derive computes one model column from two vector features of the same
// dimension, catalog features (or request values for them) that need not
// be model inputs themselves. Exactly one of its fields is set.
type Derive struct {
	Dot    []string `yaml:"dot,omitempty" json:"dot,omitempty"`       // sum of products
	Cosine []string `yaml:"cosine,omitempty" json:"cosine,omitempty"` // dot / (|a| |b|)
}

// Origin says where a value in a row came from.
type Origin uint8

// The origins of a value, in the order they are tried.
const (
	FromDefault Origin = iota
	FromRequest
	FromRedis
	FromCache
	FromDerived // computed from other inputs (Derive)
)

var originNames = [...]string{FromDefault: "default", FromRequest: "request", FromRedis: "redis", FromCache: "cache", FromDerived: "derived"}

// String returns the origin's name as the API reports it.
func (o Origin) String() string { return originNames[o] }

// MarshalText encodes the origin's name.
func (o Origin) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// Reason says why a value took its input's default.
type Reason uint8

// The reasons a value takes the default. ReasonNone is a value that did
// not (or a lookup the store answered with the value).
const (
	ReasonNone          Reason = iota
	ReasonAbsent               // no such key or field (for a request input: not given)
	ReasonCorrupt              // the stored bytes do not decode
	ReasonWrongType            // the stored value has another type than the feature
	ReasonStale                // the stored value is older than the feature's max age
	ReasonStoreDegraded        // the store failed or missed the deadline
	ReasonNoEntity             // the query named no id for the feature's entity
)

var reasonNames = [...]string{
	ReasonNone: "", ReasonAbsent: "absent", ReasonCorrupt: "corrupt", ReasonWrongType: "wrong_type",
	ReasonStale: "stale", ReasonStoreDegraded: "store_degraded", ReasonNoEntity: "no_entity",
}

// String returns the reason's name as the API reports it ("" for none).
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// MarshalText encodes the reason's name.
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Input is one compiled model input.
type Input struct {
	Name    string
	Spec    *Spec // nil for request-only and derived inputs
	Type    Type
	Default Value
	// Width is how many model columns the input fills: a vector's
	// dimension, else 1; 0 for an operand of a derived input that is not
	// a model input itself (it is read, not scored).
	Width int
	// Dim is a vector input's length.
	Dim int

	col       int                // first model column
	codes     map[string]float64 // categories: string -> code
	code      float64            // the code of unknown categories: NaN without default_code
	transform func(float64) float64
	group     int    // catalog inputs: index in Plan.Groups
	pos       int    // catalog inputs: index in the group's Specs
	derive    int    // deriveDot or deriveCosine; 0 for other inputs
	operands  [2]int // a derived input's operands: indices in Plan.Inputs
	slot      int    // an operand's place in Assemble's scratch; -1 for others
	defaults  atomic.Uint64
}

// How a derived input combines its operands.
const (
	deriveDot = iota + 1
	deriveCosine
)

// Column returns the input's first model column.
func (in *Input) Column() int { return in.col }

// Derived reports whether the input is computed from other inputs.
func (in *Input) Derived() bool { return in.derive != 0 }

// Integer reports whether every column value the input gives is a whole
// number: int and bool features, and categories with a default code.
func (in *Input) Integer() bool {
	switch {
	case in.derive != 0 || in.transform != nil:
		return false
	case in.codes != nil:
		return in.code == in.code
	}
	return in.Type == Int || in.Type == Bool
}

// DefaultsUsed returns how many rows this input filled with its default.
func (in *Input) DefaultsUsed() uint64 { return in.defaults.Load() }

// Float converts a value of the input into a model column value: numbers as
// they are, categories to their codes (NaN when unknown or missing), then the
// declared transform.
func (in *Input) Float(v Value) float64 { return in.float(&v) }

// scalar converts a found scalar of the input's type, given by its bits
// (see Got), into a model column value.
func (in *Input) scalar(bits uint64) float64 {
	var f float64
	switch in.Type {
	case Float:
		f = math.Float64frombits(bits)
	case Int:
		f = float64(int64(bits))
	case Bool:
		f = float64(bits)
	default:
		return math.NaN()
	}
	if in.transform != nil {
		f = in.transform(f)
	}
	return f
}

func (in *Input) float(v *Value) float64 {
	var f float64
	if in.codes != nil {
		if v.t != String {
			return in.code
		}
		code, ok := in.codes[v.s]
		if !ok {
			return in.code
		}
		f = code
	} else {
		f = v.Float()
	}
	if in.transform != nil {
		f = in.transform(f)
	}
	return f
}

// Group is the catalog inputs of a plan that live in one entity hash of one
// store: one HMGET per entity id.
type Group struct {
	Store  string
	Entity *Entity
	Specs  []*Spec
	Inputs []int // the input index of each spec
	// objects is set when some spec is not a scalar: its lookups keep
	// Values.
	objects bool
	all     uint64 // allBits(len(Specs)): a lookup that reads them all
}

// Plan is a model's inputs compiled against the catalog: the ordered columns
// and, for each store and entity type, the features to read.
type Plan struct {
	// Inputs are the manifest's inputs in column order, then the operands
	// of derived inputs that are not inputs themselves (Width 0).
	Inputs  []*Input
	Groups  []Group
	catalog *Catalog
	byName  map[string]int
	columns int
	derived []int // indices of derived inputs
	slots   int   // operands kept while a row is assembled
	rows    atomic.Uint64
}

// Rows returns how many rows Assemble has filled with this plan. Rows are
// counted before their defaults (Input.DefaultsUsed), so that a reader who
// loads the defaults first and the rows second never sees more defaults
// than rows.
func (p *Plan) Rows() uint64 { return p.rows.Load() }

// Columns returns the number of model columns of a row: the inputs'
// widths added up.
func (p *Plan) Columns() int { return p.columns }

// Input returns the index of the input called name, or -1.
func (p *Plan) Input(name string) int {
	if i, ok := p.byName[name]; ok {
		return i
	}
	return -1
}

var transforms = map[string]func(float64) float64{
	"log1p": math.Log1p,
	"log": func(x float64) float64 {
		if x <= 0 {
			return math.NaN()
		}
		return math.Log(x)
	},
	"identity": nil,
}

// Compile resolves a model's input declarations against the catalog. Every
// input must become numbers: strings need categories, vectors need a dim
// (they fill that many columns), derived inputs two vector operands of one
// dim, and lists are refused. Errors wrap ErrPlan and name the input.
func Compile(c *Catalog, decls []InputDecl) (*Plan, error) { return compile(c, decls, true) }

// DisplayPlan returns a plan that reads the named catalog features as they
// are, for showing values rather than scoring them.
func (c *Catalog) DisplayPlan(names []string) (*Plan, error) {
	decls := make([]InputDecl, len(names))
	for i, n := range names {
		decls[i].Name = n
	}
	return compile(c, decls, false)
}

func compile(c *Catalog, decls []InputDecl, numeric bool) (*Plan, error) {
	p := &Plan{catalog: c, byName: make(map[string]int, len(decls))}
	groups := make(map[[2]string]int)
	add := func(in *Input) {
		p.byName[in.Name] = len(p.Inputs)
		in.slot = -1
		if s := in.Spec; s != nil {
			k := [2]string{s.Store, s.Entity.Name}
			g, ok := groups[k]
			if !ok {
				g = len(p.Groups)
				groups[k] = g
				p.Groups = append(p.Groups, Group{Store: s.Store, Entity: s.Entity})
			}
			in.group, in.pos = g, len(p.Groups[g].Specs)
			p.Groups[g].Specs = append(p.Groups[g].Specs, s)
			p.Groups[g].Inputs = append(p.Groups[g].Inputs, len(p.Inputs))
			p.Groups[g].objects = p.Groups[g].objects || !s.Type.Scalar()
		}
		if in.Width > 0 {
			in.col = p.columns
			p.columns += in.Width
		}
		p.Inputs = append(p.Inputs, in)
	}
	var errs []error
	for i, d := range decls {
		if d.Name == "" {
			errs = append(errs, fmt.Errorf("%w: input %d has no name", ErrPlan, i+1))
			continue
		}
		if _, dup := p.byName[d.Name]; dup {
			errs = append(errs, fmt.Errorf("%w: input %s: listed twice", ErrPlan, d.Name))
			continue
		}
		in, err := compileInput(c, d, numeric)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: input %s: %v", ErrPlan, d.Name, err))
			in = &Input{Name: d.Name, Width: 1} // keep the columns of the others where they are
		}
		add(in)
	}
	// Operands of derived inputs: inputs already, or catalog vectors read
	// for the derivation alone.
	for _, d := range decls {
		k := p.Input(d.Name)
		if d.Derive == nil || k < 0 || p.Inputs[k].derive == 0 {
			continue
		}
		in := p.Inputs[k]
		names := d.Derive.Dot
		if in.derive == deriveCosine {
			names = d.Derive.Cosine
		}
		dims := [2]int{}
		for j, name := range names {
			o := p.Input(name)
			if o < 0 {
				op, err := compileInput(c, InputDecl{Name: name}, false)
				if err != nil {
					errs = append(errs, fmt.Errorf("%w: input %s: operand %s: %v", ErrPlan, d.Name, name, err))
					continue
				}
				op.Width = 0
				o = len(p.Inputs)
				add(op)
			}
			op := p.Inputs[o]
			if op.Type != Vector || op.Dim == 0 {
				errs = append(errs, fmt.Errorf("%w: input %s: operand %s is %s, want a vector with a dim", ErrPlan, d.Name, name, describeInput(op)))
				continue
			}
			if op.derive != 0 {
				errs = append(errs, fmt.Errorf("%w: input %s: operand %s is derived itself", ErrPlan, d.Name, name))
				continue
			}
			if op.slot < 0 {
				op.slot = p.slots
				p.slots++
			}
			in.operands[j], dims[j] = o, op.Dim
		}
		if dims[0] != 0 && dims[1] != 0 && dims[0] != dims[1] {
			errs = append(errs, fmt.Errorf("%w: input %s: operands of dims %d and %d", ErrPlan, d.Name, dims[0], dims[1]))
		}
		p.derived = append(p.derived, k)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for g := range p.Groups {
		p.Groups[g].all = allBits(len(p.Groups[g].Specs))
	}
	return p, nil
}

func describeInput(in *Input) string {
	if in.Type == Vector {
		return "a vector without a dim (give the catalog feature a dim)"
	}
	return in.Type.String()
}

// compileInput resolves one input declaration.
func compileInput(c *Catalog, d InputDecl, numeric bool) (*Input, error) {
	in := &Input{Name: d.Name, Width: 1, code: math.NaN()}
	if d.Derive != nil {
		return compileDerived(d)
	}
	switch d.Source {
	case SourceCatalog, "":
		in.Spec = c.Spec(d.Name)
		if in.Spec == nil {
			return nil, errors.New("not in the catalog (request-only inputs need source: request)")
		}
		if d.Type != "" && d.Type != in.Spec.Type.String() {
			return nil, fmt.Errorf("type %s does not match the catalog's %s", d.Type, in.Spec.Type)
		}
		if d.Dim != 0 {
			return nil, errors.New("dim: a catalog feature's dim is the catalog's")
		}
		in.Type, in.Default, in.Dim = in.Spec.Type, in.Spec.Default, in.Spec.Dim
	case SourceRequest:
		t, err := ParseType(d.Type)
		if err != nil {
			return nil, err
		}
		in.Type = t
		switch {
		case d.Dim != 0 && t != Vector:
			return nil, fmt.Errorf("dim is for vector inputs, not %s", t)
		case d.Dim < 0 || d.Dim > MaxItems:
			return nil, fmt.Errorf("dim %d (want 1 to %d)", d.Dim, MaxItems)
		}
		in.Dim = d.Dim
	default:
		return nil, fmt.Errorf("source %q (want catalog or request)", d.Source)
	}
	if d.Default != nil {
		v, err := Coerce(in.Type, d.Default)
		if err != nil {
			return nil, fmt.Errorf("default: %v", err)
		}
		if in.Type == Vector && in.Dim > 0 && len(v.Vector()) != in.Dim {
			return nil, fmt.Errorf("default of %d values for dim %d", len(v.Vector()), in.Dim)
		}
		in.Default = v
	}
	if len(d.Categories) > 0 {
		if in.Type != String {
			return nil, fmt.Errorf("categories need a string input, not %s", in.Type)
		}
		in.codes = make(map[string]float64, len(d.Categories))
		for code, cat := range d.Categories {
			if _, dup := in.codes[cat]; dup {
				return nil, fmt.Errorf("category %q listed twice", cat)
			}
			in.codes[cat] = float64(code)
		}
	}
	if d.DefaultCode != nil {
		if in.codes == nil {
			return nil, errors.New("default_code needs categories")
		}
		in.code = float64(*d.DefaultCode)
	}
	if d.Transform != "" {
		f, ok := transforms[d.Transform]
		if !ok {
			return nil, fmt.Errorf("unknown transform %q (want log1p, log or identity)", d.Transform)
		}
		in.transform = f
	}
	if in.Type == Vector {
		in.Width = in.Dim
	}
	if numeric {
		switch {
		case in.Type == String && in.codes == nil:
			return nil, errors.New("a string input needs a categories list")
		case in.Type == List:
			return nil, fmt.Errorf("%s inputs cannot feed a model column", in.Type)
		case in.Type == Vector && in.Dim == 0:
			return nil, errors.New("a vector input needs a dim: the catalog feature's, or dim: N for a request input")
		case in.Type == Vector && in.transform != nil:
			return nil, errors.New("a vector input takes no transform")
		}
	}
	return in, nil
}

// compileDerived resolves a derived input; its operands are resolved by
// compile, once every input is known.
func compileDerived(d InputDecl) (*Input, error) {
	in := &Input{Name: d.Name, Type: Float, Width: 1, code: math.NaN()}
	switch {
	case d.Source != "" || d.Type != "" || len(d.Categories) > 0 || d.Dim != 0 || d.DefaultCode != nil:
		return nil, errors.New("a derived input takes only a name, a default, a transform and a tensor")
	case len(d.Derive.Dot) > 0 && len(d.Derive.Cosine) > 0:
		return nil, errors.New("derive: dot or cosine, not both")
	case len(d.Derive.Dot) > 0:
		in.derive = deriveDot
	case len(d.Derive.Cosine) > 0:
		in.derive = deriveCosine
	default:
		return nil, errors.New("derive: want dot: [a, b] or cosine: [a, b]")
	}
	if ops := append(d.Derive.Dot, d.Derive.Cosine...); len(ops) != 2 || ops[0] == "" || ops[1] == "" {
		return nil, fmt.Errorf("derive: want two vector features, got %q", ops)
	}
	if d.Default != nil {
		v, err := Coerce(Float, d.Default)
		if err != nil {
			return nil, fmt.Errorf("default: %v", err)
		}
		in.Default = v
	}
	if d.Transform != "" {
		f, ok := transforms[d.Transform]
		if !ok {
			return nil, fmt.Errorf("unknown transform %q (want log1p, log or identity)", d.Transform)
		}
		in.transform = f
	}
	return in, nil
}

// Query is one scoring request as the plan sees it: entity ids and request
// features for the whole query, and per candidate. Values must already have
// the input's type (see Coerce); an invalid Value counts as not supplied.
type Query struct {
	Context    map[string]string // entity type -> id, for every candidate
	Features   map[string]Value  // for every candidate
	Candidates []Candidate       // none: one row from the context alone
}

// Candidate is one row of a query; its entities and features override the
// query's.
type Candidate struct {
	Entities map[string]string
	Features map[string]Value
}

// Rows returns how many rows the query scores.
func (q *Query) Rows() int { return max(1, len(q.Candidates)) }

// Lookup is one entity hash to read. Prepare fills Store, Key and Specs and
// gives Got (and, when some spec is a string, vector or list, Values) their
// memory; the retrieval layer fills them, aligned with Specs.
type Lookup struct {
	Store string
	Key   string
	Specs []*Spec
	// Got says, for each spec, whether and where its value was found (with
	// a scalar's bits, its stamp) or why not. Prepare sets every Why to
	// ReasonStoreDegraded: a value the retrieval layer does not reach was
	// not read.
	Got []Got
	// Values holds the values found of the specs that are not scalars;
	// nil when every spec of the lookup's group is a scalar.
	Values []Value
}

// Got is what the retrieval layer found for one value of a lookup. A
// scalar (float, int, bool) is kept as its bits, straight from its
// encoding, and goes into a model's row from here; only strings, vectors
// and lists become Values (in Lookup.Values).
type Got struct {
	// Bits holds a found scalar as Value does: math.Float64bits of a
	// float, an int's 64 bits, 1 or 0 for a bool.
	Bits uint64
	// Stamp is the unix seconds the value's upload stamped it with; 0 for
	// none.
	Stamp int64
	// Origin is FromRedis or FromCache for a value found, FromDefault for
	// one that was not.
	Origin Origin
	// Why is the reason a value was not found; ReasonNone when it was.
	Why Reason
}

// NewLookup returns a lookup of specs in the hash key of store, with the
// memory the retrieval layer fills, for reads without a plan.
func NewLookup(store, key string, specs []*Spec) Lookup {
	l := Lookup{Store: store, Key: key, Specs: specs, Got: make([]Got, len(specs))}
	for j, s := range specs {
		l.Got[j].Why = ReasonStoreDegraded
		if !s.Type.Scalar() && l.Values == nil {
			l.Values = make([]Value, len(specs))
		}
	}
	return l
}

// Found reports whether the value was found.
func (g *Got) Found() bool { return g.Origin != FromDefault }

// Set records that value j is v, from origin o, stamped stamp.
func (l *Lookup) Set(j int, v Value, stamp int64, o Origin) {
	if v.t.Scalar() {
		l.SetScalar(j, v.bits, stamp, o)
		return
	}
	l.Values[j] = v
	l.Got[j] = Got{Stamp: stamp, Origin: o}
}

// SetScalar records that value j, a scalar of its spec's type, has the
// given bits (see Got), from origin o, stamped stamp.
func (l *Lookup) SetScalar(j int, bits uint64, stamp int64, o Origin) {
	l.Got[j] = Got{Bits: bits, Stamp: stamp, Origin: o}
}

// Miss records that value j was not found, and why.
func (l *Lookup) Miss(j int, why Reason) {
	l.Got[j] = Got{Why: why}
	if l.Values != nil {
		l.Values[j] = Value{}
	}
}

// Value returns value j as a Value: invalid when it was not found.
func (l *Lookup) Value(j int) Value {
	g := &l.Got[j]
	switch t := l.Specs[j].Type; {
	case !g.Found():
		return Value{}
	case t.Scalar():
		return Value{t: t, bits: g.Bits}
	}
	return l.Values[j]
}

// Batch is the working set of one query: the lookups it needs and which
// lookup serves each row and group. A Batch may be reused: Prepare empties
// it first and keeps its memory.
type Batch struct {
	Lookups []Lookup
	slots   []int32  // row*len(Groups)+group -> lookup, -1 none
	need    []uint64 // per lookup: bit j set when spec j of its group is read; all ones when every spec is
	got     []Got
	values  []Value
	specs   []*Spec             // backing array of narrowed lookups' Specs
	keys    []byte              // every distinct key, one after the other
	keySpan [][2]int32          // per lookup: where its key is in keys
	byHash  map[uint64]int32    // within one group: key hash -> lookup
	keyHash map[uint64][2]int32 // across groups: key hash -> where in keys
	ids     []string            // scratch: a composite key's component ids
	shared  bool                // the plan has several groups: keys may repeat across them
}

// Reset empties the batch for reuse, keeping its memory.
func (b *Batch) Reset() {
	clear(b.Lookups)
	b.Lookups = b.Lookups[:0]
	clear(b.values)
	b.values = b.values[:0]
	b.got = b.got[:0]
	b.slots = b.slots[:0]
	b.need = b.need[:0]
	clear(b.specs)
	b.specs = b.specs[:0]
	b.keys = b.keys[:0]
	b.keySpan = b.keySpan[:0]
	clear(b.byHash)
	clear(b.keyHash)
}

// Prepare empties b and fills it with the lookups q needs: per group, one
// lookup per distinct entity key, reading only the features some row of
// that key does not get from the request. It rejects entity types the
// catalog lacks.
func (p *Plan) Prepare(q *Query, b *Batch) error {
	b.Reset()
	if err := p.checkEntities(q); err != nil {
		return err
	}
	rows, ng := q.Rows(), len(p.Groups)
	b.shared = ng > 1
	b.slots = grow(b.slots, rows*ng)
	if b.byHash == nil {
		b.byHash = make(map[uint64]int32)
		b.keyHash = make(map[uint64][2]int32)
	}
	for g := range p.Groups {
		grp := &p.Groups[g]
		clear(b.byHash)
		ctxID := q.Context[grp.Entity.Name]
		base := grp.all &^ supplied(q.Features, grp)
		for r := range rows {
			id := ctxID
			var cand *Candidate
			if len(q.Candidates) > 0 {
				cand = &q.Candidates[r]
				if cid, ok := cand.Entities[grp.Entity.Name]; ok {
					id = cid
				}
			}
			var li int32
			if grp.Entity.Composite() {
				var err error
				if li, err = b.compositeLookup(grp, q, cand); err != nil {
					where := "context"
					if cand != nil {
						where = fmt.Sprintf("candidates[%d]", r)
					}
					return fmt.Errorf("%w: %s: %w", ErrQuery, where, err)
				}
			} else if id != "" {
				li = b.lookup(grp, id)
			} else {
				li = -1
			}
			if li < 0 {
				b.slots[r*ng+g] = -1
				continue
			}
			b.slots[r*ng+g] = li
			need := base
			if cand != nil && len(cand.Features) > 0 {
				need &^= supplied(cand.Features, grp)
			}
			b.need[li] |= need
		}
	}
	// The keys become one string, which each lookup's Key is a part of.
	keys := string(b.keys)
	for i := range b.Lookups {
		b.Lookups[i].Key = keys[b.keySpan[i][0]:b.keySpan[i][1]]
	}
	// Narrow each lookup to the specs some row needs.
	for i := range b.Lookups {
		l := &b.Lookups[i]
		need, all := b.need[i], allBits(len(l.Specs))
		if need == all {
			continue
		}
		from := len(b.specs)
		for j, s := range l.Specs {
			if need&(1<<j) != 0 {
				b.specs = append(b.specs, s)
			}
		}
		l.Specs = b.specs[from:len(b.specs):len(b.specs)]
	}
	// Lay out Got and Values in one backing array each. Until the
	// retrieval layer says otherwise, a value was not read: its store
	// failed.
	n, nv := 0, 0
	for i := range b.Lookups {
		n += len(b.Lookups[i].Specs)
		if b.Lookups[i].Values != nil {
			nv += len(b.Lookups[i].Specs)
		}
	}
	b.got = grow(b.got, n)
	for i := range b.got {
		b.got[i] = Got{Why: ReasonStoreDegraded}
	}
	b.values = grow(b.values, nv)
	off, voff := 0, 0
	for i := range b.Lookups {
		l := &b.Lookups[i]
		end := off + len(l.Specs)
		l.Got = b.got[off:end:end]
		off = end
		if l.Values != nil {
			vend := voff + len(l.Specs)
			l.Values = b.values[voff:vend:vend]
			voff = vend
		}
	}
	return nil
}

// compositeLookup returns the lookup of composite group grp for a row,
// its key built from the ids of the components that the candidate, or
// else the query's context, gives; -1 when one is missing.
func (b *Batch) compositeLookup(grp *Group, q *Query, cand *Candidate) (int32, error) {
	comps := grp.Entity.Components()
	b.ids = b.ids[:0]
	for _, e := range comps {
		id, ok := "", false
		if cand != nil {
			id, ok = cand.Entities[e.Name]
		}
		if !ok {
			id = q.Context[e.Name]
		}
		if id == "" {
			return -1, nil
		}
		b.ids = append(b.ids, id)
	}
	start := len(b.keys)
	var err error
	if b.keys, err = grp.Entity.AppendKeys(b.keys, b.ids); err != nil {
		return -1, err
	}
	return b.lookupAt(grp, int32(start)), nil
}

// lookup returns the lookup of group grp for entity id, adding it when the
// group has none yet. Keys are told apart by their hashes, checked against
// the keys' bytes; two keys whose hashes collide are both read, and one of
// them is stored twice.
func (b *Batch) lookup(grp *Group, id string) int32 {
	start := int32(len(b.keys))
	b.keys = grp.Entity.AppendKey(b.keys, id)
	return b.lookupAt(grp, start)
}

// lookupAt is lookup of the key that b.keys holds from start on.
func (b *Batch) lookupAt(grp *Group, start int32) int32 {
	key := b.keys[start:]
	h := xxhash.Sum64(key)
	if li, ok := b.byHash[h]; ok {
		if sp := b.keySpan[li]; string(b.keys[sp[0]:sp[1]]) == string(key) {
			b.keys = b.keys[:start]
			return li
		}
	}
	span := [2]int32{start, int32(len(b.keys))}
	if b.shared { // with one group, byHash has every key
		if sp, ok := b.keyHash[h]; ok && string(b.keys[sp[0]:sp[1]]) == string(key) {
			// The same entity in another store: the key is there already.
			span = sp
			b.keys = b.keys[:start]
		} else {
			b.keyHash[h] = span
		}
	}
	li := int32(len(b.Lookups))
	b.byHash[h] = li
	b.keySpan = append(b.keySpan, span)
	b.need = append(b.need, 0)
	l := Lookup{Store: grp.Store, Specs: grp.Specs}
	if grp.objects {
		l.Values = []Value{} // not nil: Prepare gives it its memory
	}
	b.Lookups = append(b.Lookups, l)
	return li
}

// supplied returns the bits of the group's specs that features holds.
// Groups of more than 64 specs are read whole: nothing counts as supplied.
func supplied(features map[string]Value, grp *Group) uint64 {
	if len(features) == 0 || len(grp.Specs) > 64 {
		return 0
	}
	var bits uint64
	for j, s := range grp.Specs {
		if v, ok := features[s.Name]; ok && v.Valid() {
			bits |= 1 << j
		}
	}
	return bits
}

func allBits(n int) uint64 {
	if n >= 64 {
		return math.MaxUint64
	}
	return 1<<n - 1
}

func (p *Plan) checkEntities(q *Query) error {
	for name := range q.Context {
		if err := p.catalog.checkEntity(name); err != nil {
			return fmt.Errorf("%w: context: %w", ErrQuery, err)
		}
	}
	// The candidates of a query name the same entity types, as a rule:
	// a map holding as many entries as the last one checked, all of that
	// one's names, holds the same names, and is not walked again (ranging
	// over a map draws a random number, which showed in profiles).
	var checked [4]string
	nc := -1 // names in checked; -1: none
	for i := range q.Candidates {
		m := q.Candidates[i].Entities
		if len(m) == nc && hasAll(m, checked[:nc]) {
			continue
		}
		nc = 0
		for name := range m {
			if err := p.catalog.checkEntity(name); err != nil {
				return fmt.Errorf("%w: candidates[%d]: %w", ErrQuery, i, err)
			}
			if nc >= 0 && nc < len(checked) {
				checked[nc] = name
				nc++
			} else {
				nc = -1
			}
		}
	}
	return nil
}

// hasAll reports whether m holds every one of names.
func hasAll(m map[string]string, names []string) bool {
	for _, n := range names {
		if _, ok := m[n]; !ok {
			return false
		}
	}
	return true
}

// checkEntity says what is wrong with a query naming the entity type
// called name: unknown, or composite (whose key comes from its components).
func (c *Catalog) checkEntity(name string) error {
	e := c.Entities[name]
	switch {
	case e == nil:
		return fmt.Errorf("unknown entity type %q", name)
	case e.Composite():
		names := make([]string, len(e.components))
		for i, ce := range e.components {
			names[i] = ce.Name
		}
		return fmt.Errorf("entity type %s is composite: give the ids of %s instead", name, strings.Join(names, " and "))
	}
	return nil
}

// Cell is one input value of a row with its origin, for debugging: why it
// took the default, or when a stored value was written.
type Cell struct {
	Value  Value  `json:"value"`
	Source Origin `json:"source"`
	// Why is the reason a default value took the default.
	Why Reason `json:"why,omitzero"`
	// Updated is when the upload that wrote a value read from the store
	// or the cache stamped it; 0 when unknown.
	Updated Stamp `json:"updated,omitzero"`
}

// Stamp is the time an upload wrote a value, in unix seconds (the stamp of
// the value's encoding, docs/format.md); 0 is none.
type Stamp int64

// Time returns the stamp as a UTC time.
func (s Stamp) Time() time.Time { return time.Unix(int64(s), 0).UTC() }

// AppendText appends the stamp in RFC 3339.
func (s Stamp) AppendText(b []byte) ([]byte, error) {
	return s.Time().AppendFormat(b, time.RFC3339), nil
}

// MarshalText encodes the stamp in RFC 3339.
func (s Stamp) MarshalText() ([]byte, error) { return s.AppendText(nil) }

// Assemble writes every row of q into dst, row-major with p.Columns()
// columns, after the lookups of b were filled. When cells is not nil it also
// receives each value, its origin, and why it defaulted or when it was
// written: len(p.Inputs) cells a row, operands of derived inputs included.
// Values come from the candidate, then the query, then the lookup, then
// the input's default.
func (p *Plan) Assemble(q *Query, b *Batch, dst []float64, cells []Cell) {
	rows, ng, ni := q.Rows(), len(p.Groups), len(p.Inputs)
	p.rows.Add(uint64(rows))
	var localCounts [64]uint32
	var localQuery [64]Value
	var defaults []uint32
	var query []Value
	if ni <= len(localCounts) {
		defaults, query = localCounts[:ni], localQuery[:ni]
	} else {
		defaults, query = make([]uint32, ni), make([]Value, ni)
	}
	// Query-level values, looked up once for all rows.
	queryValues := false
	if len(q.Features) > 0 {
		for k, in := range p.Inputs {
			query[k] = q.Features[in.Name]
			queryValues = queryValues || query[k].Valid()
		}
	}
	// The operands of derived inputs, kept while a row is assembled.
	var localOps [8]Value
	var ops []Value
	if p.slots <= len(localOps) {
		ops = localOps[:p.slots]
	} else {
		ops = make([]Value, p.slots)
	}
	nc := p.columns
	for r := range rows {
		row := dst[r*nc : (r+1)*nc]
		var cellRow []Cell
		if cells != nil {
			cellRow = cells[r*ni : (r+1)*ni]
		}
		var candFeatures map[string]Value
		if len(q.Candidates) > 0 {
			candFeatures = q.Candidates[r].Features
		}
		slots := b.slots[r*ng : (r+1)*ng]
		for k, in := range p.Inputs {
			if in.derive != 0 {
				continue // once the row's other inputs are known
			}
			// Values are large; work with pointers to them.
			var v *Value
			origin, why, stamp := FromRequest, ReasonNone, int64(0)
			if len(candFeatures) > 0 || queryValues {
				if cv, ok := candFeatures[in.Name]; ok && cv.Valid() {
					v = &cv
				} else if query[k].Valid() {
					v = &query[k]
				}
			}
			if v == nil {
				why = ReasonAbsent // a request input the request did not give
				if in.Spec != nil {
					why = ReasonNoEntity
					if li := slots[in.group]; li >= 0 {
						l := &b.Lookups[li]
						j := in.pos
						if need := b.need[li]; need != p.Groups[in.group].all {
							j = bits.OnesCount64(need & (1<<j - 1))
							if need&(1<<in.pos) == 0 {
								j = -1 // every row of the key gave it in the request
							}
						}
						why = ReasonAbsent
						if j >= 0 {
							switch g := &l.Got[j]; {
							case g.Found() && in.Type.Scalar() && in.slot < 0:
								// A stored number: from its slot into its
								// column, without a Value.
								row[in.col] = in.scalar(g.Bits)
								if cellRow != nil {
									cellRow[k] = Cell{Value: l.Value(j), Source: g.Origin, Updated: Stamp(g.Stamp)}
								}
								continue
							case g.Found():
								v, origin, why, stamp = &l.Values[j], g.Origin, ReasonNone, g.Stamp
							case g.Why != ReasonNone:
								why = g.Why
							}
						}
					}
				}
				if v == nil {
					v, origin = &in.Default, FromDefault
					defaults[k]++
				}
			}
			if !in.fits(v) && origin != FromDefault {
				// A vector of another length (from the request: the
				// stores count theirs as of the wrong type).
				v, origin, why, stamp = &in.Default, FromDefault, ReasonWrongType, 0
				defaults[k]++
			}
			if in.slot >= 0 {
				ops[in.slot] = *v
			}
			in.put(row, v)
			if cellRow != nil {
				cellRow[k] = Cell{Value: *v, Source: origin, Why: why, Updated: Stamp(stamp)}
			}
		}
		for _, k := range p.derived {
			in := p.Inputs[k]
			a, b := p.Inputs[in.operands[0]], p.Inputs[in.operands[1]]
			f, ok := in.combine(&ops[a.slot], &ops[b.slot])
			if !ok {
				row[in.col] = in.float(&in.Default)
				defaults[k]++
				if cellRow != nil {
					cellRow[k] = Cell{Value: in.Default, Source: FromDefault, Why: ReasonAbsent}
				}
				continue
			}
			if in.transform != nil {
				f = in.transform(f)
			}
			row[in.col] = f
			if cellRow != nil {
				cellRow[k] = Cell{Value: FloatValue(f), Source: FromDerived}
			}
		}
	}
	for k, n := range defaults {
		if n == 0 {
			continue
		}
		in := p.Inputs[k]
		in.defaults.Add(uint64(n))
		if in.Spec != nil {
			in.Spec.stats.Defaults.Add(uint64(n))
		}
	}
}

// fits reports whether v has the input's dimension, when it has one.
func (in *Input) fits(v *Value) bool {
	return v.t != Vector || in.Dim == 0 || len(v.vec) == in.Dim
}

// put writes the columns of value v of the input into row: a vector's
// values, NaN (missing) for a vector of another length, or one number.
func (in *Input) put(row []float64, v *Value) {
	switch {
	case in.Width == 0:
	case in.Type == Vector:
		dst := row[in.col : in.col+in.Width]
		if len(v.vec) != len(dst) {
			for i := range dst {
				dst[i] = math.NaN()
			}
			return
		}
		for i, x := range v.vec {
			dst[i] = float64(x)
		}
	default:
		row[in.col] = in.float(v)
	}
}

// combine derives the input's value from its operands' values, in float64;
// false when an operand has no vector of the dimension, or a cosine has a
// zero vector.
func (in *Input) combine(a, b *Value) (float64, bool) {
	if a.t != Vector || b.t != Vector || len(a.vec) != len(b.vec) || len(a.vec) == 0 {
		return 0, false
	}
	y := b.vec[:len(a.vec)]
	var dot, na, nb float64
	for i, x := range a.vec {
		dot += float64(x) * float64(y[i])
	}
	if in.derive == deriveDot {
		return dot, true
	}
	for i, x := range a.vec {
		na += float64(x) * float64(x)
		nb += float64(y[i]) * float64(y[i])
	}
	if na == 0 || nb == 0 {
		return 0, false
	}
	return dot / math.Sqrt(na*nb), true
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
