package features

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const tableCatalog = `
entities:
  store: {key: "st_{id}"}
  consumer: {key: "cx_{id}"}
features:
  - {name: store_avg_rating, entity: store, type: float, store: main}
  - {name: store_orders, entity: store, type: int, store: main}
  - {name: store_open, entity: store, type: bool, store: main}
  - {name: store_cuisine, entity: store, type: string, store: search}
  - {name: store_embedding, entity: store, type: vector, store: search}
  - {name: store_tags, entity: store, type: list, store: main}
  - {name: consumer_orders, entity: consumer, type: int, store: main}
`

// readTable reads every row of a file, returning rows as "id name=value ...".
func readTable(t testing.TB, c *Catalog, name, format, data string) ([]string, error) {
	t.Helper()
	return readTableMax(t, c, name, format, data, MaxTableLine)
}

func readTableMax(t testing.TB, c *Catalog, name, format, data string, maxLine int) ([]string, error) {
	t.Helper()
	r, err := newTableReader(strings.NewReader(data), name, format, c, "store", maxLine)
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
		s := row.ID
		for i, spec := range row.Specs {
			s += " " + spec.Name + "=" + row.Values[i].String()
		}
		rows = append(rows, s)
	}
}

func TestTableCSV(t *testing.T) {
	c := mustCatalog(t, tableCatalog)
	data := "\ufeffid,store_avg_rating,store_orders,store_open,store_cuisine,store_embedding,store_tags\r\n" +
		"1,4.5,10,true,thai,\"[1,2.5]\",\"[\"\"a\"\",\"\"b\"\"]\"\r\n" +
		"2,,,,,,\n" +
		"3,-1e2,0,0,\"pizza, pasta\",[],[]\n" +
		"\"multi, part\",1,,,\"multi\nline\",,\n"
	got, err := readTable(t, c, "stores.csv", FormatCSV, data)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`1 store_avg_rating=4.5 store_orders=10 store_open=true store_cuisine="thai" store_embedding=[1,2.5] store_tags=["a","b"]`,
		`2`,
		`3 store_avg_rating=-100 store_orders=0 store_open=false store_cuisine="pizza, pasta" store_embedding=[] store_tags=[]`,
		`multi, part store_avg_rating=1 store_cuisine="multi\nline"`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	// The id column may be anywhere.
	got, err = readTable(t, c, "s.csv", FormatCSV, "store_orders,id\n5,a\n")
	if err != nil || !cmp.Equal(got, []string{"a store_orders=5"}) {
		t.Errorf("id last: %v, %v", got, err)
	}
}

func TestTableJSONL(t *testing.T) {
	c := mustCatalog(t, tableCatalog)
	data := `{"id": "1", "store_avg_rating": 4.5, "store_orders": 10, "store_open": true, "store_cuisine": "thai", "store_embedding": [1, 2.5], "store_tags": ["a"]}
{"id": 2, "store_avg_rating": 3, "store_cuisine": ""}

   {"store_orders": null, "id": -17}
{"id": 12345678901234567890123, "store_orders": 9007199254740993}
`
	got, err := readTable(t, c, "stores.jsonl", FormatJSONL, data)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`1 store_avg_rating=4.5 store_orders=10 store_open=true store_cuisine="thai" store_embedding=[1,2.5] store_tags=["a"]`,
		`2 store_avg_rating=3 store_cuisine=""`,
		`-17`,
		`12345678901234567890123 store_orders=9007199254740993`, // ints stay exact
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
}

func TestTableLines(t *testing.T) {
	c := mustCatalog(t, tableCatalog)
	r, err := NewTableReader(strings.NewReader("id,store_cuisine\n1,x\n\na,\"b\nc\"\n4,y\n"), "s.csv", FormatCSV, c, "store")
	if err != nil {
		t.Fatal(err)
	}
	var lines []int
	for {
		row, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, row.Line)
	}
	if want := []int{2, 4, 6}; !cmp.Equal(want, lines) {
		t.Errorf("CSV row lines = %v, want %v", lines, want)
	}
	r, err = NewTableReader(strings.NewReader("\n{\"id\":1}\n\n{\"id\":2}\n"), "s.jsonl", FormatJSONL, c, "store")
	if err != nil {
		t.Fatal(err)
	}
	lines = nil
	for {
		row, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, row.Line)
	}
	if want := []int{2, 4}; !cmp.Equal(want, lines) {
		t.Errorf("JSONL row lines = %v, want %v", lines, want)
	}
}

func TestTableErrors(t *testing.T) {
	c := mustCatalog(t, tableCatalog)
	long := strings.Repeat("x", MaxIDSize+1)
	tests := []struct {
		name, file, format, data string
		want                     string
	}{
		{"csv empty", "s.csv", FormatCSV, "", "s.csv:1: empty file"},
		{"csv no id", "s.csv", FormatCSV, "store_orders\n1\n", "s.csv:1: no id column"},
		{"csv unknown column", "s.csv", FormatCSV, "id,colour\n", "s.csv:1: column colour: not a feature in the catalog"},
		{"csv other entity", "s.csv", FormatCSV, "id,consumer_orders\n", "s.csv:1: column consumer_orders: feature of entity consumer, not store"},
		{"csv column twice", "s.csv", FormatCSV, "id,store_orders,store_orders\n", "s.csv:1: column store_orders: listed twice"},
		{"csv id twice", "s.csv", FormatCSV, "id,id\n", "s.csv:1: column id: listed twice"},
		{"csv empty column", "s.csv", FormatCSV, "id,,store_orders\n", "s.csv:1: column 2: empty column name"},
		{"csv bad float", "stores.csv", FormatCSV, "id,store_avg_rating\n1,4\n2,abc\n", `stores.csv:3: column store_avg_rating: want float, got "abc"`},
		{"csv nan", "s.csv", FormatCSV, "id,store_avg_rating\n1,NaN\n", "s.csv:2: column store_avg_rating: NaN is not a finite number (allow_non_finite in the catalog lets feature store_avg_rating hold NaN and ±Inf)"},
		{"csv inf", "s.csv", FormatCSV, "id,store_avg_rating\n1,-inf\n", "s.csv:2: column store_avg_rating: -Inf is not a finite number"},
		{"csv bad int", "s.csv", FormatCSV, "id,store_orders\n1,1.5\n", `s.csv:2: column store_orders: want int, got "1.5"`},
		{"csv bad bool", "s.csv", FormatCSV, "id,store_open\n1,yes\n", `s.csv:2: column store_open: want bool, got "yes"`},
		{"csv bad vector", "s.csv", FormatCSV, "id,store_embedding\n1,1;2\n", `s.csv:2: column store_embedding: want vector as a JSON array`},
		{"csv bad list", "s.csv", FormatCSV, "id,store_tags\n1,[1]\n", `s.csv:2: column store_tags: list item 0: want a string`},
		{"csv bad string", "s.csv", FormatCSV, "id,store_cuisine\n1,a\xffb\n", `s.csv:2: column store_cuisine: want string, got text that is not valid UTF-8`},
		{"csv empty id", "s.csv", FormatCSV, "id,store_orders\n,1\n", "s.csv:2: column id: bad entity id: empty"},
		{"csv long id", "s.csv", FormatCSV, "id\n" + long + "\n", "s.csv:2: column id: bad entity id: 1025 bytes is over the limit"},
		{"csv field count", "s.csv", FormatCSV, "id,store_orders\n1,2\n3\n", "s.csv:3: wrong number of fields"},
		{"csv bare quote", "s.csv", FormatCSV, "id,store_orders\n1,2\"\n", "s.csv:2: bare \" in non-quoted-field"},
		{"csv line in quotes", "s.csv", FormatCSV, "id,store_cuisine\n1,\"a\nb\n2,\"x\"y\n", "s.csv:"},
		{"csv vector too long", "s.csv", FormatCSV, "id,store_embedding\n1,\"[" + strings.Repeat("0,", MaxItems) + "0]\"\n", "s.csv:2: column store_embedding: vector of 65537 items is over the limit"},
		{"csv string too large", "s.csv", FormatCSV, "id,store_cuisine\n1," + strings.Repeat("a", MaxValueSize+1) + "\n", "s.csv:2: column store_cuisine: corrupt value: string of 1048577 bytes is over the limit"},

		{"jsonl not an object", "s.jsonl", FormatJSONL, "[1]\n", "s.jsonl:1: want a JSON object"},
		{"jsonl not json", "s.jsonl", FormatJSONL, "{\"id\":1}\nid,x\n", "s.jsonl:2: want a JSON object"},
		{"jsonl truncated", "s.jsonl", FormatJSONL, "{\"id\":1, \"store_orders\"\n", "s.jsonl:1: column store_orders: bad JSON"},
		{"jsonl unclosed", "s.jsonl", FormatJSONL, "{\"id\":1\n", "s.jsonl:1: bad JSON"},
		{"jsonl trailing", "s.jsonl", FormatJSONL, "{\"id\":1} {\"id\":2}\n", "s.jsonl:1: more than one JSON value"},
		{"jsonl no id", "s.jsonl", FormatJSONL, "{\"store_orders\": 1}\n", `s.jsonl:1: no "id"`},
		{"jsonl float id", "s.jsonl", FormatJSONL, "{\"id\": 1.5}\n", "s.jsonl:1: column id: want a string or an integer id, got number 1.5"},
		{"jsonl exp id", "s.jsonl", FormatJSONL, "{\"id\": 1e3}\n", "s.jsonl:1: column id: want a string or an integer id"},
		{"jsonl bool id", "s.jsonl", FormatJSONL, "{\"id\": true}\n", "s.jsonl:1: column id: want a string or an integer id, got bool true"},
		{"jsonl empty id", "s.jsonl", FormatJSONL, "{\"id\": \"\"}\n", "s.jsonl:1: column id: bad entity id: empty"},
		{"jsonl null id", "s.jsonl", FormatJSONL, "{\"id\": null}\n", "s.jsonl:1: column id: want a string or an integer id, got null"},
		{"jsonl duplicate key", "s.jsonl", FormatJSONL, "{\"id\": 1, \"store_orders\": 1, \"store_orders\": 2}\n", "s.jsonl:1: column store_orders: listed twice"},
		{"jsonl unknown key", "s.jsonl", FormatJSONL, "{\"id\": 1, \"colour\": 1}\n", "s.jsonl:1: column colour: not a feature in the catalog"},
		{"jsonl other entity", "s.jsonl", FormatJSONL, "{\"id\": 1, \"consumer_orders\": 1}\n", "s.jsonl:1: column consumer_orders: feature of entity consumer, not store"},
		{"jsonl string for float", "s.jsonl", FormatJSONL, "\n\n{\"id\": 1, \"store_avg_rating\": \"4.5\"}\n", `s.jsonl:3: column store_avg_rating: want float, got string "4.5"`},
		{"jsonl float for int", "s.jsonl", FormatJSONL, "{\"id\": 1, \"store_orders\": 1.5}\n", "s.jsonl:1: column store_orders: want int, got number 1.5"},
		{"jsonl number for bool", "s.jsonl", FormatJSONL, "{\"id\": 1, \"store_open\": 1}\n", "s.jsonl:1: column store_open: want bool, got number 1"},
		{"jsonl bad vector", "s.jsonl", FormatJSONL, "{\"id\": 1, \"store_embedding\": [1, null]}\n", "s.jsonl:1: column store_embedding: vector item 1: want a number, got null"},
		{"jsonl object for list", "s.jsonl", FormatJSONL, "{\"id\": 1, \"store_tags\": {}}\n", "s.jsonl:1: column store_tags: want list, got object"},
		{"jsonl bad utf-8", "s.jsonl", FormatJSONL, "{\"id\": 1, \"store_cuisine\": \"a\xffb\"}\n", "s.jsonl:1: line is not valid UTF-8"},
		{"unknown format", "s.txt", "txt", "", `s.txt: unknown format "txt"`},
	}
	for _, tt := range tests {
		_, err := readTable(t, c, tt.file, tt.format, tt.data)
		if err == nil {
			t.Errorf("%s: no error", tt.name)
			continue
		}
		if !errors.Is(err, ErrTable) {
			t.Errorf("%s: error %v does not wrap ErrTable", tt.name, err)
		}
		if !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%s: error %q does not start with %q", tt.name, truncate(err.Error(), 200), tt.want)
		}
	}
	// Line limits, at 100 bytes.
	for _, tt := range []struct{ format, data, want string }{
		{FormatCSV, "id,store_cuisine\n1," + strings.Repeat("a", 98) + "\n", ""},
		{FormatCSV, "id,store_cuisine\n1," + strings.Repeat("a", 99) + "\n", "s:2: line is longer than 100 bytes"},
		{FormatCSV, "id,store_cuisine\n1,\"" + strings.Repeat("a\n", 60) + "\"\n", ""},
		{FormatJSONL, "{\"id\": 1}\n{\"id\": \"" + strings.Repeat("a", 90) + "\"}\n", ""},
		{FormatJSONL, "{\"id\": 1}\n{\"id\": \"" + strings.Repeat("a", 91) + "\"}\n", "s:2: line is longer than 100 bytes"},
		{FormatJSONL, "{\"id\": 1}\n{\"id\": \"" + strings.Repeat("a", 91) + "\"}", "s:2: line is longer than 100 bytes"},
	} {
		_, err := readTableMax(t, c, "s", tt.format, tt.data, 100)
		if tt.want == "" && err != nil {
			t.Errorf("%s line of 100 bytes: %v", tt.format, err)
		}
		if tt.want != "" && (err == nil || !errors.Is(err, ErrTable) || !strings.HasPrefix(err.Error(), tt.want)) {
			t.Errorf("%s line of 101 bytes: error %v, want %q", tt.format, err, tt.want)
		}
	}
	if _, err := NewTableReader(strings.NewReader(""), "x.csv", FormatCSV, c, "courier"); !errors.Is(err, ErrTable) || !strings.Contains(err.Error(), `unknown entity type "courier"`) {
		t.Errorf("unknown entity: %v", err)
	}
}

func TestTableNonFinite(t *testing.T) {
	c := mustCatalog(t, `
entities:
  store: {key: "st_{id}"}
features:
  - {name: score, entity: store, type: float, store: main, allow_non_finite: true}
`)
	rows, err := readTable(t, c, "s.csv", FormatCSV, "id,score\n1,NaN\n2,+Inf\n3,1.5\n")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"1 score=null", "2 score=null", "3 score=1.5"}, rows); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
}

func TestTableStickyError(t *testing.T) {
	c := mustCatalog(t, tableCatalog)
	r, err := NewTableReader(strings.NewReader("id,store_orders\nx,y\n1,2\n"), "s.csv", FormatCSV, c, "store")
	if err != nil {
		t.Fatal(err)
	}
	_, err1 := r.Next()
	_, err2 := r.Next()
	if err1 == nil || err1 != err2 {
		t.Errorf("errors %v then %v, want the same error twice", err1, err2)
	}
}

func TestTableFormat(t *testing.T) {
	tests := []struct{ name, want string }{
		{"a/b/stores.csv", FormatCSV},
		{"STORES.CSV", FormatCSV},
		{"x.jsonl", FormatJSONL},
		{"x.json", FormatJSONL},
		{"part-00000-1b2c.c000.snappy.parquet", FormatParquet},
		{"x.avro", ""},
		{"csv", ""},
	}
	for _, tt := range tests {
		got, err := TableFormat(tt.name)
		if got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("TableFormat(%q) = %q, %v; want %q", tt.name, got, err, tt.want)
		}
		if err != nil && !errors.Is(err, ErrTable) {
			t.Errorf("TableFormat error %v does not wrap ErrTable", err)
		}
	}
}

func fuzzTable(t *testing.T, c *Catalog, format string, data []byte) {
	r, err := NewTableReader(strings.NewReader(string(data)), "fuzz", format, c, "store")
	for err == nil {
		var row *Row
		row, err = r.Next()
		if err != nil {
			break
		}
		if row.ID == "" || len(row.Specs) != len(row.Values) {
			t.Fatalf("bad row %+v", row)
		}
		for i, s := range row.Specs {
			v := row.Values[i]
			if s.Entity.Name != "store" || v.Type() != s.Type {
				t.Fatalf("row %s: %s (%s of %s) holds %v", row.ID, s.Name, s.Type, s.Entity.Name, v)
			}
			if got, derr := Decode(Encode(nil, v)); derr != nil || !got.Equal(v) {
				t.Fatalf("row %s: %s does not round trip: %v, %v", row.ID, s.Name, got, derr)
			}
		}
	}
	if err != io.EOF && !errors.Is(err, ErrTable) {
		t.Fatalf("error %v does not wrap ErrTable", err)
	}
}

func FuzzTableCSV(f *testing.F) {
	c := mustCatalog(f, tableCatalog)
	f.Add([]byte("id,store_avg_rating,store_orders,store_open,store_cuisine,store_embedding,store_tags\n1,4.5,10,true,thai,\"[1,2.5]\",\"[\"\"a\"\"]\"\n2,,,,,,\n"))
	f.Add([]byte("store_orders,id\n5,a\n\"x\ny\",b\n"))
	f.Add([]byte("id,consumer_orders\n1,1\n"))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzTable(t, c, FormatCSV, data) })
}

func FuzzTableJSONL(f *testing.F) {
	c := mustCatalog(f, tableCatalog)
	f.Add([]byte(`{"id": "1", "store_avg_rating": 4.5, "store_orders": 10, "store_open": true, "store_cuisine": "thai", "store_embedding": [1, 2.5], "store_tags": ["a"]}` + "\n{\"id\": 2, \"store_orders\": null}\n"))
	f.Add([]byte("{\"id\": 1e3}\n"))
	f.Add([]byte("{\"id\": 1, \"id\": 2}\n"))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzTable(t, c, FormatJSONL, data) })
}
