package features

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const planCatalog = `
entities:
  store: {key: "st_{id}"}
  consumer: {key: "cx_{id}"}
features:
  - {name: store_rating, entity: store, type: float, store: main, default: 4.0}
  - {name: store_orders, entity: store, type: int, store: main, default: 0}
  - {name: store_cuisine, entity: store, type: string, store: search, default: unknown}
  - {name: store_open, entity: store, type: bool, store: search}
  - {name: store_embedding, entity: store, type: vector, store: search}
  - {name: consumer_orders, entity: consumer, type: int, store: main, default: 1}
  - {name: consumer_avg_spend, entity: consumer, type: float, store: main, default: 10}
  - {name: consumer_tags, entity: consumer, type: list, store: main}
`

func mustCatalog(t testing.TB, yaml string) *Catalog {
	t.Helper()
	c, err := ParseCatalog([]byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustCompile(t testing.TB, c *Catalog, decls []InputDecl) *Plan {
	t.Helper()
	p, err := Compile(c, decls)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCompileErrors(t *testing.T) {
	c := mustCatalog(t, planCatalog)
	tests := []struct {
		name  string
		decls []InputDecl
		want  string
	}{
		{"no name", []InputDecl{{Name: ""}}, "input 1 has no name"},
		{"listed twice", []InputDecl{{Name: "store_rating"}, {Name: "store_rating"}}, "input store_rating: listed twice"},
		{"not in catalog", []InputDecl{{Name: "nope"}}, "input nope: not in the catalog"},
		{"type mismatch", []InputDecl{{Name: "store_rating", Type: "int"}}, "type int does not match the catalog's float"},
		{"request without type", []InputDecl{{Name: "hour", Source: SourceRequest}}, "input hour: unknown type"},
		{"unknown source", []InputDecl{{Name: "store_rating", Source: "redis"}}, `source "redis"`},
		{"bad default", []InputDecl{{Name: "store_rating", Default: "x"}}, "input store_rating: default: want float"},
		{"bad request default", []InputDecl{{Name: "hour", Source: SourceRequest, Type: "int", Default: 1.5}}, "input hour: default: want int"},
		{"categories on a float", []InputDecl{{Name: "store_rating", Categories: []string{"a"}}}, "categories need a string input, not float"},
		{"category twice", []InputDecl{{Name: "store_cuisine", Categories: []string{"a", "b", "a"}}}, `category "a" listed twice`},
		{"unknown transform", []InputDecl{{Name: "store_rating", Transform: "sqrt"}}, `unknown transform "sqrt"`},
		{"string without categories", []InputDecl{{Name: "store_cuisine"}}, "a string input needs a categories list"},
		{"vector without a dim", []InputDecl{{Name: "store_embedding"}}, "a vector input needs a dim"},
		{"dim on a catalog input", []InputDecl{{Name: "store_rating", Dim: 3}}, "dim: a catalog feature's dim is the catalog's"},
		{"dim on a float", []InputDecl{{Name: "x", Source: SourceRequest, Type: "float", Dim: 3}}, "dim is for vector inputs, not float"},
		{"default code without categories", []InputDecl{{Name: "store_rating", DefaultCode: new(int64)}}, "default_code needs categories"},
		{"derive both", []InputDecl{{Name: "a", Derive: &Derive{Dot: []string{"u", "v"}, Cosine: []string{"u", "v"}}}}, "dot or cosine, not both"},
		{"derive one operand", []InputDecl{{Name: "a", Derive: &Derive{Dot: []string{"u"}}}}, "want two vector features"},
		{"derive typed", []InputDecl{{Name: "a", Type: "float", Derive: &Derive{Dot: []string{"u", "v"}}}}, "a derived input takes only"},
		{"derive unknown operand", []InputDecl{{Name: "a", Derive: &Derive{Dot: []string{"nope", "store_embedding"}}}}, "operand nope: not in the catalog"},
		{"derive from a float", []InputDecl{{Name: "a", Derive: &Derive{Cosine: []string{"store_rating", "store_rating"}}}}, "operand store_rating is float, want a vector"},
		{"derive without dims", []InputDecl{{Name: "a", Derive: &Derive{Dot: []string{"store_embedding", "store_embedding"}}}}, "operand store_embedding is a vector without a dim"},
		{"list request input", []InputDecl{{Name: "tags", Source: SourceRequest, Type: "list"}}, "list inputs cannot feed"},
	}
	for _, tt := range tests {
		p, err := Compile(c, tt.decls)
		if err == nil {
			t.Errorf("%s: Compile = %d inputs, want an error", tt.name, len(p.Inputs))
			continue
		}
		if !errors.Is(err, ErrPlan) {
			t.Errorf("%s: error %v does not wrap ErrPlan", tt.name, err)
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %q does not contain %q", tt.name, err, tt.want)
		}
	}
}

func TestCompileGroups(t *testing.T) {
	c := mustCatalog(t, planCatalog)
	p := mustCompile(t, c, []InputDecl{
		{Name: "store_rating"},
		{Name: "hour", Source: SourceRequest, Type: "int"},
		{Name: "consumer_orders"},
		{Name: "store_open"},
		{Name: "store_orders", Type: "int"},
	})
	type group struct {
		Store, Entity string
		Specs         []string
		Inputs        []int
	}
	var got []group
	for _, g := range p.Groups {
		var names []string
		for _, s := range g.Specs {
			names = append(names, s.Name)
		}
		got = append(got, group{g.Store, g.Entity.Name, names, g.Inputs})
	}
	want := []group{
		{"main", "store", []string{"store_rating", "store_orders"}, []int{0, 4}},
		{"main", "consumer", []string{"consumer_orders"}, []int{2}},
		{"search", "store", []string{"store_open"}, []int{3}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
	if p.Input("hour") != 1 || p.Input("nope") != -1 {
		t.Errorf("Input: hour at %d, nope at %d", p.Input("hour"), p.Input("nope"))
	}
	if p.Inputs[1].Spec != nil || p.Inputs[1].Type != Int {
		t.Errorf("request input: %+v", p.Inputs[1])
	}
	// A display plan takes vectors and strings as they are.
	d, err := c.DisplayPlan([]string{"store_embedding", "store_cuisine", "consumer_tags"})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Inputs) != 3 {
		t.Errorf("display plan has %d inputs", len(d.Inputs))
	}
	if _, err := c.DisplayPlan([]string{"nope"}); !errors.Is(err, ErrPlan) {
		t.Errorf("display plan of an unknown feature: %v", err)
	}
}

// store is a fake feature store: key -> feature -> value. It records which
// features each key was read for, like the retrieval layer would.
type store map[string]map[string]Value

func (s store) fill(b *Batch) (reads []string) {
	for i := range b.Lookups {
		l := &b.Lookups[i]
		if len(l.Specs) == 0 {
			continue
		}
		var names []string
		for j, spec := range l.Specs {
			names = append(names, spec.Name)
			if v, ok := s[l.Key][spec.Name]; ok {
				l.Set(j, v, 0, FromRedis)
			} else {
				l.Miss(j, ReasonAbsent)
			}
		}
		reads = append(reads, l.Store+" "+l.Key+" "+strings.Join(names, ","))
	}
	slices.Sort(reads)
	return reads
}

func TestPrepareAssemble(t *testing.T) {
	c := mustCatalog(t, planCatalog)
	p := mustCompile(t, c, []InputDecl{
		{Name: "store_rating"},
		{Name: "store_orders", Transform: "log1p"},
		{Name: "store_cuisine", Categories: []string{"thai", "pizza"}},
		{Name: "store_open"},
		{Name: "consumer_orders"},
		{Name: "consumer_avg_spend", Default: 20},
		{Name: "hour", Source: SourceRequest, Type: "int", Default: -1},
	})
	q := &Query{
		Context:  map[string]string{"consumer": "7"},
		Features: map[string]Value{"store_open": BoolValue(true), "hour": IntValue(13)},
		Candidates: []Candidate{
			{Entities: map[string]string{"store": "1"}},
			{Entities: map[string]string{"store": "2"}, Features: map[string]Value{"store_rating": FloatValue(5)}},
			{Entities: map[string]string{"store": "1"}, Features: map[string]Value{"store_rating": FloatValue(3)}},
			{Entities: map[string]string{"store": "2"}, Features: map[string]Value{"store_rating": FloatValue(1)}},
			{Entities: map[string]string{"store": "3", "consumer": "8"}, Features: map[string]Value{"hour": IntValue(2)}},
			{},
		},
	}
	redis := store{
		"st_1": {"store_rating": FloatValue(4.5), "store_orders": IntValue(100), "store_cuisine": StringValue("thai")},
		"st_2": {"store_rating": FloatValue(9), "store_orders": IntValue(5), "store_cuisine": StringValue("burgers")},
		"cx_7": {"consumer_orders": IntValue(3)},
		"cx_8": {"consumer_avg_spend": FloatValue(55)},
	}
	var b Batch
	if err := p.Prepare(q, &b); err != nil {
		t.Fatal(err)
	}
	// The consumer of the context is read once; st_1 and st_2 once each;
	// store_open is never read (the query supplies it) and st_2 skips
	// store_rating, which every row of st_2 supplies.
	wantReads := []string{
		"main cx_7 consumer_orders,consumer_avg_spend",
		"main cx_8 consumer_orders,consumer_avg_spend",
		"main st_1 store_rating,store_orders",
		"main st_2 store_orders",
		"main st_3 store_rating,store_orders",
		"search st_1 store_cuisine",
		"search st_2 store_cuisine",
		"search st_3 store_cuisine",
	}
	if diff := cmp.Diff(wantReads, redis.fill(&b)); diff != "" {
		t.Errorf("reads (-want +got):\n%s", diff)
	}

	nan := math.NaN()
	ni := len(p.Inputs)
	dst := make([]float64, q.Rows()*ni)
	cells := make([]Cell, q.Rows()*ni)
	p.Assemble(q, &b, dst, cells)
	want := [][]float64{
		{4.5, math.Log1p(100), 0, 1, 3, 20, 13},
		{5, math.Log1p(5), nan, 1, 3, 20, 13},
		{3, math.Log1p(100), 0, 1, 3, 20, 13},
		{1, math.Log1p(5), nan, 1, 3, 20, 13},
		{4, 0, nan, 1, 1, 55, 2},
		{4, 0, nan, 1, 3, 20, 13},
	}
	const d, q_, r = FromDefault, FromRequest, FromRedis
	wantOrigins := [][]Origin{
		{r, r, r, q_, r, d, q_},
		{q_, r, r, q_, r, d, q_},
		{q_, r, r, q_, r, d, q_},
		{q_, r, r, q_, r, d, q_},
		{d, d, d, q_, d, r, q_},
		{d, d, d, q_, r, d, q_},
	}
	for row := range want {
		got := dst[row*ni : (row+1)*ni]
		if !cmp.Equal(want[row], got, cmp.Comparer(sameFloat)) {
			t.Errorf("row %d = %v, want %v", row, got, want[row])
		}
		var origins []Origin
		for _, cell := range cells[row*ni : (row+1)*ni] {
			origins = append(origins, cell.Source)
		}
		if diff := cmp.Diff(wantOrigins[row], origins); diff != "" {
			t.Errorf("row %d origins (-want +got):\n%s", row, diff)
		}
	}
	if got := cells[1*ni+2].Value; !got.Equal(StringValue("burgers")) {
		t.Errorf("cell of an unknown category = %v, want the stored string", got)
	}
	if got := cells[4*ni+2].Value; !got.Equal(StringValue("unknown")) {
		t.Errorf("cell of a defaulted string = %v, want the catalog default", got)
	}

	wantDefaults := []uint64{2, 2, 2, 0, 1, 5, 0}
	var gotDefaults []uint64
	for _, in := range p.Inputs {
		gotDefaults = append(gotDefaults, in.DefaultsUsed())
	}
	if diff := cmp.Diff(wantDefaults, gotDefaults); diff != "" {
		t.Errorf("defaults used (-want +got):\n%s", diff)
	}
	if got := c.Spec("consumer_avg_spend").Stats().Defaults.Load(); got != 5 {
		t.Errorf("consumer_avg_spend spec defaults = %d, want 5", got)
	}

	// Assembling without cells gives the same numbers and counts again.
	dst2 := make([]float64, len(dst))
	p.Assemble(q, &b, dst2, nil)
	if !cmp.Equal(dst, dst2, cmp.Comparer(sameFloat)) {
		t.Errorf("Assemble without cells = %v, want %v", dst2, dst)
	}
	if got := p.Inputs[0].DefaultsUsed(); got != 4 {
		t.Errorf("store_rating defaults after two assemblies = %d, want 4", got)
	}
	if got, want := p.Rows(), uint64(2*q.Rows()); got != want {
		t.Errorf("rows after two assemblies = %d, want %d", got, want)
	}
}

func sameFloat(a, b float64) bool { return a == b || (math.IsNaN(a) && math.IsNaN(b)) }

func TestPrepareContextOnly(t *testing.T) {
	c := mustCatalog(t, planCatalog)
	p := mustCompile(t, c, []InputDecl{{Name: "consumer_orders"}, {Name: "store_rating"}})
	q := &Query{Context: map[string]string{"consumer": "7"}}
	var b Batch
	if err := p.Prepare(q, &b); err != nil {
		t.Fatal(err)
	}
	reads := store{"cx_7": {"consumer_orders": IntValue(9)}}.fill(&b)
	if diff := cmp.Diff([]string{"main cx_7 consumer_orders"}, reads); diff != "" {
		t.Errorf("reads (-want +got):\n%s", diff)
	}
	dst := make([]float64, 2)
	p.Assemble(q, &b, dst, nil)
	if want := []float64{9, 4}; !cmp.Equal(want, dst) {
		t.Errorf("row = %v, want %v", dst, want)
	}
}

func TestPrepareUnknownEntity(t *testing.T) {
	c := mustCatalog(t, planCatalog)
	p := mustCompile(t, c, []InputDecl{{Name: "store_rating"}})
	ents := func(kv ...string) Candidate {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return Candidate{Entities: m}
	}
	for _, tt := range []struct {
		q     *Query
		where string
	}{
		{&Query{Context: map[string]string{"courier": "1"}}, "context"},
		{&Query{Candidates: []Candidate{{}, {Entities: map[string]string{"courier": "1"}}}}, "candidates[1]"},
		// Candidates naming as many entity types as the one before,
		// and some of its names, are checked all the same.
		{&Query{Candidates: []Candidate{ents("store", "1"), ents("store", "2"), ents("courier", "3")}}, "candidates[2]"},
		{&Query{Candidates: []Candidate{ents("store", "1", "consumer", "1"), ents("store", "2", "courier", "1")}}, "candidates[1]"},
		{&Query{Candidates: []Candidate{ents("store", "1"), {}, ents("courier", "1")}}, "candidates[2]"},
		{&Query{Candidates: []Candidate{ents("a", "1", "b", "1", "c", "1", "d", "1", "store", "1")}}, "candidates[0]"},
	} {
		var b Batch
		err := p.Prepare(tt.q, &b)
		if !errors.Is(err, ErrQuery) || !strings.Contains(err.Error(), tt.where+": unknown entity type") {
			t.Errorf("Prepare = %v, want an ErrQuery naming an unknown entity type at %s", err, tt.where)
		}
	}
}

// TestPrepareReuse prepares different queries on one Batch: nothing of the
// earlier query may leak into the later one.
func TestPrepareReuse(t *testing.T) {
	c := mustCatalog(t, planCatalog)
	p := mustCompile(t, c, []InputDecl{{Name: "store_rating"}, {Name: "store_orders"}})
	redis := store{
		"st_1": {"store_rating": FloatValue(1), "store_orders": IntValue(10)},
		"st_2": {"store_rating": FloatValue(2)},
	}
	var b Batch
	run := func(q *Query) []float64 {
		t.Helper()
		if err := p.Prepare(q, &b); err != nil {
			t.Fatal(err)
		}
		redis.fill(&b)
		dst := make([]float64, q.Rows()*2)
		p.Assemble(q, &b, dst, nil)
		return dst
	}
	many := &Query{Candidates: []Candidate{
		{Entities: map[string]string{"store": "1"}},
		{Entities: map[string]string{"store": "3"}, Features: map[string]Value{"store_rating": FloatValue(7)}},
	}}
	if got, want := run(many), []float64{1, 10, 7, 0}; !cmp.Equal(want, got) {
		t.Errorf("first query = %v, want %v", got, want)
	}
	one := &Query{Context: map[string]string{"store": "2"}}
	if got, want := run(one), []float64{2, 0}; !cmp.Equal(want, got) {
		t.Errorf("second query = %v, want %v", got, want)
	}
	if len(b.Lookups) != 1 {
		t.Errorf("second query has %d lookups, want 1", len(b.Lookups))
	}
	if got, want := run(many), []float64{1, 10, 7, 0}; !cmp.Equal(want, got) {
		t.Errorf("third query = %v, want %v", got, want)
	}
}

// TestPrepareWideGroup checks groups of more than 64 features, which read
// everything rather than narrowing.
func TestPrepareWideGroup(t *testing.T) {
	var y strings.Builder
	y.WriteString("entities:\n  store: {key: \"st_{id}\"}\nfeatures:\n")
	var decls []InputDecl
	for i := range 70 {
		fmt.Fprintf(&y, "  - {name: f%d, entity: store, type: float, store: main, default: -1}\n", i)
		decls = append(decls, InputDecl{Name: "f" + strconv.Itoa(i)})
	}
	c := mustCatalog(t, y.String())
	p := mustCompile(t, c, decls)
	q := &Query{
		Context:  map[string]string{"store": "1"},
		Features: map[string]Value{"f3": FloatValue(33)},
	}
	redis := store{"st_1": {"f3": FloatValue(3), "f69": FloatValue(69)}}
	var b Batch
	if err := p.Prepare(q, &b); err != nil {
		t.Fatal(err)
	}
	redis.fill(&b)
	dst := make([]float64, 70)
	p.Assemble(q, &b, dst, nil)
	if dst[3] != 33 || dst[69] != 69 || dst[0] != -1 {
		t.Errorf("row = %v", dst)
	}
}

// benchQuery returns a plan of 30 features over two entities in two stores
// and a query of n candidates with a filled batch.
func benchQuery(tb testing.TB, n int) (*Plan, *Query, store) {
	var y strings.Builder
	y.WriteString("entities:\n  store: {key: \"st_{id}\"}\n  consumer: {key: \"cx_{id}\"}\nfeatures:\n")
	var decls []InputDecl
	for i := range 20 {
		st := "main"
		if i >= 15 {
			st = "search"
		}
		fmt.Fprintf(&y, "  - {name: store_f%d, entity: store, type: float, store: %s, default: 0}\n", i, st)
		decls = append(decls, InputDecl{Name: fmt.Sprintf("store_f%d", i)})
	}
	for i := range 10 {
		fmt.Fprintf(&y, "  - {name: consumer_f%d, entity: consumer, type: int, store: main}\n", i)
		decls = append(decls, InputDecl{Name: fmt.Sprintf("consumer_f%d", i)})
	}
	p := mustCompile(tb, mustCatalog(tb, y.String()), decls)
	redis := store{"cx_1": {}}
	q := &Query{Context: map[string]string{"consumer": "1"}, Features: map[string]Value{"consumer_f9": IntValue(1)}}
	for i := range n {
		id := strconv.Itoa(1000 + i)
		q.Candidates = append(q.Candidates, Candidate{Entities: map[string]string{"store": id}})
		m := map[string]Value{}
		for j := range 20 {
			if (i+j)%7 != 0 {
				m[fmt.Sprintf("store_f%d", j)] = FloatValue(float64(i * j))
			}
		}
		redis["st_"+id] = m
	}
	for j := range 9 {
		redis["cx_1"][fmt.Sprintf("consumer_f%d", j)] = IntValue(int64(j))
	}
	return p, q, redis
}

func BenchmarkPrepareAssemble(b *testing.B) {
	p, q, redis := benchQuery(b, 200)
	var batch Batch
	dst := make([]float64, q.Rows()*len(p.Inputs))
	if err := p.Prepare(q, &batch); err != nil {
		b.Fatal(err)
	}
	redis.fill(&batch)
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Prepare(q, &batch); err != nil {
			b.Fatal(err)
		}
		p.Assemble(q, &batch, dst, nil)
	}
}

// TestPrepareAssembleAllocs pins the allocations of a reused Batch: one
// string holding every entity key, nothing else.
func TestPrepareAssembleAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	p, q, redis := benchQuery(t, 200)
	var b Batch
	if err := p.Prepare(q, &b); err != nil {
		t.Fatal(err)
	}
	redis.fill(&b)
	dst := make([]float64, q.Rows()*len(p.Inputs))
	got := testing.AllocsPerRun(20, func() {
		_ = p.Prepare(q, &b)
		p.Assemble(q, &b, dst, nil)
	})
	if got > 1 {
		t.Errorf("Prepare+Assemble of 200 candidates: %v allocs, want at most 1", got)
	}
}

// TestLookupGot checks how a lookup keeps what was found: scalars as bits,
// other values as Values, with stamps, origins and reasons.
func TestLookupGot(t *testing.T) {
	c := mustCatalog(t, planCatalog)
	specs := []*Spec{c.Spec("store_rating"), c.Spec("store_orders"), c.Spec("store_open"), c.Spec("store_cuisine"), c.Spec("store_embedding")}
	l := NewLookup("main", "st_1", specs)
	if len(l.Got) != 5 || len(l.Values) != 5 {
		t.Fatalf("NewLookup: %d got, %d values", len(l.Got), len(l.Values))
	}
	for j := range specs {
		if l.Got[j].Found() || l.Got[j].Why != ReasonStoreDegraded || l.Value(j).Valid() {
			t.Errorf("new lookup, value %d: %+v", j, l.Got[j])
		}
	}
	want := []Value{FloatValue(-2.5), IntValue(-7), BoolValue(true), StringValue("thai"), VectorValue([]float32{1, 2})}
	for j, v := range want {
		l.Set(j, v, int64(100+j), FromRedis)
	}
	l.SetScalar(1, uint64(1<<63), 7, FromCache) // math.MinInt64
	want[1] = IntValue(math.MinInt64)
	for j, v := range want {
		if got := l.Value(j); !got.Equal(v) {
			t.Errorf("value %d = %v, want %v", j, got, v)
		}
		if g := l.Got[j]; !g.Found() || g.Why != ReasonNone {
			t.Errorf("value %d: %+v", j, g)
		}
	}
	if l.Got[0].Stamp != 100 || l.Got[1].Stamp != 7 || l.Got[1].Origin != FromCache || l.Got[3].Stamp != 103 {
		t.Errorf("stamps and origins: %+v", l.Got)
	}
	l.Miss(3, ReasonWrongType)
	if g := l.Got[3]; g.Found() || g.Why != ReasonWrongType || l.Value(3).Valid() || l.Values[3].Valid() {
		t.Errorf("missed value: %+v %v", g, l.Values[3])
	}
	// Scalars only: no Values.
	if l := NewLookup("main", "st_1", specs[:3]); l.Values != nil {
		t.Errorf("a lookup of scalars has Values")
	}
}

// TestPlanColumns checks each input's columns and the plan's width.
func TestPlanColumns(t *testing.T) {
	c := mustCatalog(t, planCatalog)
	p := mustCompile(t, c, []InputDecl{{Name: "store_rating"}, {Name: "hour", Source: SourceRequest, Type: "int"}, {Name: "consumer_orders"}})
	for k, in := range p.Inputs {
		if in.Column() != k || in.Width != 1 {
			t.Errorf("input %s: columns %d+%d", in.Name, in.Column(), in.Width)
		}
	}
	if p.Columns() != 3 {
		t.Errorf("columns %d", p.Columns())
	}
}

const vectorCatalog = `
entities:
  store: {key: "st_{id}"}
  consumer: {key: "cx_{id}"}
features:
  - {name: store_emb, entity: store, type: vector, store: main, dim: 3}
  - {name: consumer_emb, entity: consumer, type: vector, store: main, dim: 3, default: [0, 0, 1]}
  - {name: consumer_wide, entity: consumer, type: vector, store: main, dim: 4}
  - {name: store_rating, entity: store, type: float, store: main, default: 4.0}
  - {name: store_cuisine, entity: store, type: string, store: main}
`

func TestCatalogDim(t *testing.T) {
	for _, tt := range []struct{ yaml, want string }{
		{"  - {name: x, entity: s, type: float, store: main, dim: 3}", "dim is for vector features, not float"},
		{"  - {name: x, entity: s, type: vector, store: main, dim: -1}", "dim -1"},
		{"  - {name: x, entity: s, type: vector, store: main, dim: 2, default: [1, 2, 3]}", "default of 3 values for dim 2"},
	} {
		_, err := ParseCatalog([]byte("entities:\n  s: {key: \"s_{id}\"}\nfeatures:\n"+tt.yaml+"\n"), nil)
		if !errors.Is(err, ErrCatalog) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want %q", tt.yaml, err, tt.want)
		}
	}
}

// TestAssembleVectors: a vector fills as many columns as its dim, derived
// inputs compute dot products and cosines of catalog vectors that are no
// columns themselves, request values count for operands, and a vector of
// another length takes the default.
func TestAssembleVectors(t *testing.T) {
	c := mustCatalog(t, vectorCatalog)
	code := int64(7)
	p := mustCompile(t, c, []InputDecl{
		{Name: "store_rating"},
		{Name: "consumer_emb"},
		{Name: "affinity", Derive: &Derive{Dot: []string{"consumer_emb", "store_emb"}}},
		{Name: "similar", Derive: &Derive{Cosine: []string{"store_emb", "consumer_emb"}}, Default: -2},
		{Name: "cuisine", Source: SourceRequest, Type: "string", Categories: []string{"thai", "pizza"}, DefaultCode: &code},
		{Name: "query_emb", Source: SourceRequest, Type: "vector", Dim: 2},
	})
	if got, want := p.Columns(), 1+3+1+1+1+2; got != want {
		t.Fatalf("Columns() = %d, want %d", got, want)
	}
	if n := len(p.Inputs); n != 7 {
		t.Fatalf("%d inputs, want the 6 declared and store_emb as an operand", n)
	}
	if op := p.Inputs[6]; op.Name != "store_emb" || op.Width != 0 {
		t.Fatalf("operand input %+v", op)
	}
	if !p.Inputs[4].Integer() || p.Inputs[0].Integer() || p.Inputs[2].Integer() {
		t.Errorf("Integer: cuisine %v, store_rating %v, affinity %v", p.Inputs[4].Integer(), p.Inputs[0].Integer(), p.Inputs[2].Integer())
	}
	q := &Query{
		Context: map[string]string{"consumer": "c1"},
		Candidates: []Candidate{
			{Entities: map[string]string{"store": "s1"}, Features: map[string]Value{"cuisine": StringValue("pizza"), "query_emb": VectorValue([]float32{1, 2})}},
			{Entities: map[string]string{"store": "s2"}, Features: map[string]Value{"cuisine": StringValue("sushi")}},
			{Features: map[string]Value{"store_emb": VectorValue([]float32{2, 0, 0}), "query_emb": VectorValue([]float32{1, 2, 3})}},
		},
	}
	var b Batch
	if err := p.Prepare(q, &b); err != nil {
		t.Fatal(err)
	}
	for i := range b.Lookups {
		l := &b.Lookups[i]
		for k, s := range l.Specs {
			switch {
			case l.Key == "cx_c1" && s.Name == "consumer_emb":
				l.Set(k, VectorValue([]float32{1, 2, 2}), 0, FromRedis)
			case l.Key == "st_s1" && s.Name == "store_emb":
				l.Set(k, VectorValue([]float32{3, 0, 4}), 0, FromRedis)
			case l.Key == "st_s2" && s.Name == "store_emb":
				l.Set(k, VectorValue([]float32{0, 0, 0}), 0, FromRedis)
			}
		}
	}
	x := make([]float64, 3*p.Columns())
	cells := make([]Cell, 3*len(p.Inputs))
	p.Assemble(q, &b, x, cells)
	nan := math.NaN()
	want := []float64{
		// store_rating, consumer_emb (3), affinity, similar, cuisine, query_emb (2)
		4, 1, 2, 2, 3 + 8, 11.0 / 15, 1, 1, 2,
		4, 1, 2, 2, 0, -2, 7, nan, nan, // a zero vector has no cosine: the default
		4, 1, 2, 2, 2, 2.0 / 6, 7, nan, nan, // store_emb from the request; query_emb of another length
	}
	if diff := cmp.Diff(want, x, cmp.Comparer(func(a, b float64) bool {
		return a == b || (a != a && b != b) || math.Abs(a-b) < 1e-12
	})); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	ni := len(p.Inputs)
	if got := cells[2].Source; got != FromDerived {
		t.Errorf("affinity's source %v, want derived", got)
	}
	if got := cells[ni+3].Source; got != FromDefault {
		t.Errorf("similar of a zero vector: source %v, want default", got)
	}
	if got := cells[2*ni+5].Source; got != FromDefault {
		t.Errorf("query_emb of 3 values for dim 2: source %v, want default", got)
	}
	if got := p.Inputs[5].DefaultsUsed(); got != 2 {
		t.Errorf("query_emb defaults %d, want 2", got)
	}
}

// BenchmarkPrepareDisplay measures planning and assembling the cells of a
// /v1/features query of 100 drivers and 3 features (one group), values
// read.
func BenchmarkPrepareDisplay(b *testing.B) {
	c := mustCatalog(b, `entities: {driver: {key: "driver_{id}"}}
features:
  - {name: conv_rate, entity: driver, type: float, store: main}
  - {name: acc_rate, entity: driver, type: float, store: main}
  - {name: avg_daily_trips, entity: driver, type: int, store: main}
`)
	p, err := c.DisplayPlan([]string{"conv_rate", "acc_rate", "avg_daily_trips"})
	if err != nil {
		b.Fatal(err)
	}
	redis := store{}
	q := &Query{}
	for i := range 100 {
		id := strconv.Itoa(1000 + i*37)
		q.Candidates = append(q.Candidates, Candidate{Entities: map[string]string{"driver": id}})
		redis["driver_"+id] = map[string]Value{"conv_rate": FloatValue(0.5), "acc_rate": FloatValue(0.25), "avg_daily_trips": IntValue(int64(i))}
	}
	var batch Batch
	cells := make([]Cell, q.Rows()*len(p.Inputs))
	dst := make([]float64, q.Rows()*len(p.Inputs))
	if err := p.Prepare(q, &batch); err != nil {
		b.Fatal(err)
	}
	redis.fill(&batch)
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Prepare(q, &batch); err != nil {
			b.Fatal(err)
		}
		p.Assemble(q, &batch, dst, cells)
	}
}
