package features

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/seer-ml/seer/internal/parquettest"
)

const compositeCatalog = `
entities:
  consumer: {key: "cx_{id}"}
  store: {key: "st_{id}"}
  consumer_store: {key: "cs_{consumer}:{store}"}
  tagged: {key: "x{{id}}"}
features:
  - {name: cs_orders, entity: consumer_store, type: int, store: main, default: 0}
  - {name: cs_last_rating, entity: consumer_store, type: float, store: main}
  - {name: cs_tags, entity: consumer_store, type: list, store: main}
  - {name: store_rating, entity: store, type: float, store: main}
  - {name: consumer_orders, entity: consumer, type: int, store: main}
`

func TestCompositeCatalog(t *testing.T) {
	c := mustCatalog(t, compositeCatalog)
	e := c.Entity("consumer_store")
	if !e.Composite() || len(e.Components()) != 2 || e.Components()[0] != c.Entity("consumer") || e.Components()[1] != c.Entity("store") {
		t.Fatalf("consumer_store: composite %v, components %v", e.Composite(), e.Components())
	}
	if got := e.Template(); got != "cs_{consumer}:{store}" {
		t.Errorf("template %q", got)
	}
	if got := e.Pattern(); got != "cs_*:*" {
		t.Errorf("pattern %q", got)
	}
	// A simple entity whose template has braces of its own stays simple.
	if x := c.Entity("tagged"); x.Composite() || x.Key("42") != "x{42}" || x.Pattern() != `x{*}` {
		t.Errorf("tagged: %v %q %q", x.Composite(), x.Key("42"), x.Pattern())
	}
	key, err := e.AppendKeys(nil, []string{"7", "1426727"})
	if err != nil || string(key) != "cs_7:1426727" {
		t.Errorf("key %q, %v", key, err)
	}
	// The consumer id may not hold ":", which would let two pairs share a
	// key ("a:b"+"c" and "a"+"b:c"); the last id may.
	if key, err := e.AppendKeys([]byte("x"), []string{"a:b", "c"}); !errors.Is(err, ErrID) || string(key) != "x" ||
		!strings.Contains(err.Error(), `consumer id "a:b" holds ":"`) {
		t.Errorf("aliasing id: %q, %v", key, err)
	}
	if _, err := e.AppendKeys(nil, []string{"a", "b:c"}); err != nil {
		t.Errorf("a colon in the last id: %v", err)
	}
	if _, err := e.AppendKeys(nil, []string{"a"}); !errors.Is(err, ErrID) {
		t.Errorf("one id for two components: %v", err)
	}

	for _, tt := range []struct{ entities, feature, want string }{
		{`cs: {key: "cs_{consumer}:{shop}"}`, "", `names "shop", which is not a simple entity type`},
		{`cs: {key: "cs_{consumer}:{cs2}"}` + "\n  cs2: {key: \"x_{consumer}.{store}\"}", "", "which is not a simple entity type"},
		{`cs: {key: "cs_{consumer}:{consumer}"}`, "", "names consumer twice"},
		{`cs: {key: "cs_{consumer}{store}"}`, "", "{consumer} and {store} need text between them"},
		{`cs: {key: "cs_{cs}"}`, "", "names the entity type itself"},
		{`cs: {key: "cs_static"}`, "", "must hold {id} once, or name the entity types"},
		{`cs: {key: "cs_{consumer}:{store}"}`, "  - {name: store, entity: cs, type: int, store: main}", "named like a component of entity cs"},
	} {
		yaml := "entities:\n  consumer: {key: \"cx_{id}\"}\n  store: {key: \"st_{id}\"}\n  " + tt.entities + "\nfeatures:\n" + tt.feature + "\n"
		if _, err := ParseCatalog([]byte(yaml), nil); err == nil || !errors.Is(err, ErrCatalog) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error containing %q", tt.entities, err, tt.want)
		}
	}
}

// TestCompositePrepare: composite keys come from the candidate's ids, then
// the context's; one lookup per distinct key; a missing component leaves
// the features at their defaults with why no_entity.
func TestCompositePrepare(t *testing.T) {
	c := mustCatalog(t, compositeCatalog)
	p := mustCompile(t, c, []InputDecl{{Name: "cs_orders"}, {Name: "cs_last_rating"}, {Name: "store_rating"}, {Name: "consumer_orders"}})
	q := &Query{
		Context: map[string]string{"consumer": "7"},
		Candidates: []Candidate{
			{Entities: map[string]string{"store": "1"}},
			{Entities: map[string]string{"store": "2"}},
			{Entities: map[string]string{"store": "1"}},                  // the same pair: read once
			{Entities: map[string]string{"store": "1", "consumer": "8"}}, // the candidate's consumer wins
			{}, // no store: no consumer_store either
		},
	}
	redis := store{
		"cs_7:1": {"cs_orders": IntValue(3), "cs_last_rating": FloatValue(4.5)},
		"cs_8:1": {"cs_orders": IntValue(9)},
		"st_1":   {"store_rating": FloatValue(4)},
		"cx_7":   {"consumer_orders": IntValue(30)},
	}
	var b Batch
	if err := p.Prepare(q, &b); err != nil {
		t.Fatal(err)
	}
	wantReads := []string{
		"main cs_7:1 cs_orders,cs_last_rating",
		"main cs_7:2 cs_orders,cs_last_rating",
		"main cs_8:1 cs_orders,cs_last_rating",
		"main cx_7 consumer_orders",
		"main cx_8 consumer_orders",
		"main st_1 store_rating",
		"main st_2 store_rating",
	}
	if diff := cmp.Diff(wantReads, redis.fill(&b)); diff != "" {
		t.Errorf("reads (-want +got):\n%s", diff)
	}
	ni := len(p.Inputs)
	cells := make([]Cell, q.Rows()*ni)
	dst := make([]float64, len(cells))
	p.Assemble(q, &b, dst, cells)
	var got []string
	for r := range q.Rows() {
		var row []string
		for _, cell := range cells[r*ni : (r+1)*ni] {
			row = append(row, cell.Source.String()+" "+cell.Value.String()+" "+cell.Why.String())
		}
		got = append(got, strings.Join(row, "|"))
	}
	want := []string{
		"redis 3 |redis 4.5 |redis 4 |redis 30 ",
		"default 0 absent|default null absent|default null absent|redis 30 ",
		"redis 3 |redis 4.5 |redis 4 |redis 30 ",
		"redis 9 |default null absent|redis 4 |default null absent",
		"default 0 no_entity|default null no_entity|default null no_entity|redis 30 ",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("cells (-want +got):\n%s", diff)
	}

	// Ids that would alias, and composite types named in a query, are the
	// caller's mistakes.
	for _, bad := range []*Query{
		{Context: map[string]string{"consumer": "7:8", "store": "1"}},
		{Context: map[string]string{"consumer_store": "7:1"}},
		{Candidates: []Candidate{{Entities: map[string]string{"consumer_store": "7:1"}}}},
	} {
		if err := p.Prepare(bad, &b); !errors.Is(err, ErrQuery) {
			t.Errorf("%+v: %v, want an error wrapping ErrQuery", bad, err)
		}
	}
}

// TestCompositeTables: uploads of a composite entity type take one id
// column per component, named by its entity type.
func TestCompositeTables(t *testing.T) {
	c := mustCatalog(t, compositeCatalog)
	read := func(r *TableReader, err error) ([]string, error) {
		if err != nil {
			return nil, err
		}
		var rows []string
		for {
			row, err := r.Next()
			if err == io.EOF {
				return rows, nil
			}
			if err != nil {
				return rows, err
			}
			s := row.Key + " " + strings.Join(row.IDs, ",")
			for i, sp := range row.Specs {
				s += " " + sp.Name + "=" + row.Values[i].String()
			}
			rows = append(rows, s)
		}
	}
	csv := func(data string) ([]string, error) {
		return read(NewTableReader(strings.NewReader(data), "cs.csv", FormatCSV, c, "consumer_store"))
	}
	jsonl := func(data string) ([]string, error) {
		return read(NewTableReader(strings.NewReader(data), "cs.jsonl", FormatJSONL, c, "consumer_store"))
	}
	got, err := csv("store,consumer,cs_orders,cs_tags\n1,7,3,\"[\"\"a\"\"]\"\n2,7,,\n")
	want := []string{`cs_7:1 7,1 cs_orders=3 cs_tags=["a"]`, "cs_7:2 7,2"}
	if err != nil || !cmp.Equal(got, want) {
		t.Errorf("CSV: %v, %v", got, err)
	}
	got, err = jsonl(`{"consumer": 7, "store": "1", "cs_orders": 3}` + "\n" + `{"store": 2, "consumer": "7"}` + "\n")
	if want := []string{"cs_7:1 7,1 cs_orders=3", "cs_7:2 7,2"}; err != nil || !cmp.Equal(got, want) {
		t.Errorf("JSON Lines: %v, %v", got, err)
	}
	data := func() []byte {
		var b bytes.Buffer
		cols := []parquettest.Column{{Name: "consumer", Type: "int64"}, {Name: "store", Type: "string"}, {Name: "cs_orders", Type: "int64"}}
		if err := parquettest.Write(&b, cols, [][]any{{int64(7), "1", int64(3)}, {int64(8), "2", nil}}, parquettest.Options{}); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}()
	got, err = read(NewParquetReader(bytes.NewReader(data), int64(len(data)), "cs.parquet", c, "consumer_store"))
	if want := []string{"cs_7:1 7,1 cs_orders=3", "cs_8:2 8,2"}; err != nil || !cmp.Equal(got, want) {
		t.Errorf("Parquet: %v, %v", got, err)
	}
	for _, tt := range []struct {
		got  func() ([]string, error)
		want string
	}{
		{func() ([]string, error) { return csv("consumer,cs_orders\n1,2\n") }, "cs.csv:1: no store column: want a header line like consumer,store,<feature>"},
		{func() ([]string, error) { return csv("consumer,store,id\n1,2,3\n") }, "cs.csv:1: column id: not a feature in the catalog"},
		{func() ([]string, error) { return csv("consumer,store\n1:2,3\n") }, `cs.csv:2: column consumer: bad entity id: ':' at byte 1`},
		{func() ([]string, error) { return csv("consumer,store\n1,\n") }, "cs.csv:2: column store: bad entity id: empty"},
		{func() ([]string, error) { return jsonl(`{"consumer": 1}`) }, `cs.jsonl:1: no "store"`},
		{func() ([]string, error) { return jsonl(`{"consumer": 1, "store": 2, "store": 3}`) }, "cs.jsonl:1: column store: listed twice"},
	} {
		if _, err := tt.got(); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("got %v, want %s", err, tt.want)
		}
	}
}
