package features

import (
	"bytes"
	"errors"
	"io"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/seer-ml/seer/internal/parquettest"
)

// parquetFile writes a Parquet file in memory with the Go writer of
// internal/parquettest.
func parquetFile(t testing.TB, cols []parquettest.Column, rows [][]any, opt parquettest.Options) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := parquettest.Write(&b, cols, rows, opt); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// readParquet reads every row of a Parquet file as readTable does, the
// features of a row in catalog order.
func readParquet(t testing.TB, c *Catalog, data []byte) ([]string, error) {
	t.Helper()
	r, err := NewParquetReader(bytes.NewReader(data), int64(len(data)), "part-0.parquet", c, "store")
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
		for _, spec := range c.Specs {
			if i := slices.Index(row.Specs, spec); i >= 0 {
				s += " " + spec.Name + "=" + row.Values[i].String()
			}
		}
		rows = append(rows, s)
	}
}

func TestParquetTypes(t *testing.T) {
	c := mustCatalog(t, tableCatalog)
	cols := []parquettest.Column{
		{Name: "id", Type: "int64"},
		{Name: "store_avg_rating", Type: "double"},
		{Name: "store_orders", Type: "int32"},
		{Name: "store_open", Type: "bool"},
		{Name: "store_cuisine", Type: "string"},
		{Name: "store_embedding", Type: "list<float>"},
		{Name: "store_tags", Type: "list<string>"},
	}
	rows := [][]any{
		{int64(1), 4.5, int32(10), true, "thaï", []float32{1, 2.5}, []string{"a", "b"}},
		{int64(2), nil, nil, nil, nil, nil, nil},
		{int64(-3), -100.0, int32(0), false, "", []float32{}, []string{}},
	}
	for _, opt := range []parquettest.Options{{}, {RowGroupRows: 1, Uncompressed: true}} {
		got, err := readParquet(t, c, parquetFile(t, cols, rows, opt))
		if err != nil {
			t.Fatal(err)
		}
		want := []string{
			`1 store_avg_rating=4.5 store_orders=10 store_open=true store_cuisine="thaï" store_embedding=[1,2.5] store_tags=["a","b"]`,
			`2`,
			`-3 store_avg_rating=-100 store_orders=0 store_open=false store_cuisine="" store_embedding=[] store_tags=[]`,
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%+v: rows (-want +got):\n%s", opt, diff)
		}
	}
}

// TestParquetConversions covers the columns that convert: integers into
// float features, doubles into vectors, string ids, unannotated binary
// strings, required columns and the legacy two-level lists.
func TestParquetConversions(t *testing.T) {
	c := mustCatalog(t, tableCatalog)
	cols := []parquettest.Column{
		{Name: "id", Type: "string", Required: true},
		{Name: "store_avg_rating", Type: "int64", Required: true},
		{Name: "store_orders", Type: "int64"},
		{Name: "store_cuisine", Type: "binary"},
		{Name: "store_embedding", Type: "list<double>", Required: true},
		{Name: "store_tags", Type: "repeated<string>"},
	}
	rows := [][]any{
		{"s1", int64(3), int64(math.MaxInt64), []byte("pho"), []float64{0.5, -1e10}, []string{"x"}},
		{"s2", int64(-7), nil, nil, []float64{}, nil},
	}
	got, err := readParquet(t, c, parquetFile(t, cols, rows, parquettest.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`s1 store_avg_rating=3 store_orders=9223372036854775807 store_cuisine="pho" store_embedding=[0.5,-1e+10] store_tags=["x"]`,
		`s2 store_avg_rating=-7 store_embedding=[] store_tags=[]`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	// Two-level vectors.
	cols = []parquettest.Column{{Name: "id", Type: "int32"}, {Name: "store_embedding", Type: "repeated<float>"}}
	got, err = readParquet(t, c, parquetFile(t, cols, [][]any{{int32(9), []float32{1, 2, 3}}}, parquettest.Options{}))
	if err != nil || !cmp.Equal(got, []string{"9 store_embedding=[1,2,3]"}) {
		t.Errorf("repeated<float>: %v, %v", got, err)
	}
}

func TestParquetErrors(t *testing.T) {
	c := mustCatalog(t, tableCatalog)
	id := parquettest.Column{Name: "id", Type: "int64"}
	for _, tc := range []struct {
		name string
		cols []parquettest.Column
		rows [][]any
		want string
	}{
		{"no id", []parquettest.Column{{Name: "store_orders", Type: "int64"}}, nil,
			`part-0.parquet: no "id" column`},
		{"unknown column", []parquettest.Column{id, {Name: "nope", Type: "double"}}, nil,
			"part-0.parquet: column nope: not a feature in the catalog"},
		{"other entity", []parquettest.Column{id, {Name: "consumer_orders", Type: "int64"}}, nil,
			"part-0.parquet: column consumer_orders: feature of entity consumer, not store"},
		{"double for int", []parquettest.Column{id, {Name: "store_orders", Type: "double"}}, nil,
			"part-0.parquet: column store_orders: a double column cannot hold a int feature"},
		{"string for float", []parquettest.Column{id, {Name: "store_avg_rating", Type: "string"}}, nil,
			"part-0.parquet: column store_avg_rating: a string column cannot hold a float feature"},
		{"list of strings for a vector", []parquettest.Column{id, {Name: "store_embedding", Type: "list<string>"}}, nil,
			"part-0.parquet: column store_embedding: a list<string> column cannot hold a vector feature"},
		{"float id", []parquettest.Column{{Name: "id", Type: "double"}}, nil,
			"part-0.parquet: column id: an id column must hold integers or strings, not double"},
		{"null id", []parquettest.Column{id, {Name: "store_orders", Type: "int64"}}, [][]any{{int64(1), int64(1)}, {nil, int64(2)}},
			"part-0.parquet: row 2: column id: empty id"},
		{"null item", []parquettest.Column{id, {Name: "store_embedding", Type: "list<float>"}}, [][]any{{int64(1), []any{float32(1), nil}}},
			"part-0.parquet: row 1: column store_embedding: item 1 is null"},
		{"bad UTF-8", []parquettest.Column{id, {Name: "store_cuisine", Type: "binary"}}, [][]any{{int64(1), []byte{0xff}}},
			"part-0.parquet: row 1: column store_cuisine: want string, got text that is not valid UTF-8"},
		{"double out of float32 range", []parquettest.Column{id, {Name: "store_embedding", Type: "list<double>"}}, [][]any{{int64(1), []float64{1e300}}},
			"part-0.parquet: row 1: column store_embedding: vector item 0: 1e+300 is out of float32 range"},
		{"NaN", []parquettest.Column{id, {Name: "store_avg_rating", Type: "double"}}, [][]any{{int64(1), math.NaN()}},
			"part-0.parquet: row 1: column store_avg_rating: NaN is not a finite number (allow_non_finite in the catalog lets feature store_avg_rating hold NaN and ±Inf)"},
		{"infinite item", []parquettest.Column{id, {Name: "store_embedding", Type: "list<float>"}}, [][]any{{int64(1), []float32{1, float32(math.Inf(1))}}},
			"part-0.parquet: row 1: column store_embedding: vector item 1, +Inf, is not a finite number (allow_non_finite in the catalog lets feature store_embedding hold NaN and ±Inf)"},
		{"long id", []parquettest.Column{{Name: "id", Type: "string"}}, [][]any{{strings.Repeat("x", MaxIDSize+1)}},
			"part-0.parquet: row 1: column id: bad entity id: 1025 bytes is over the limit of 1024"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readParquet(t, c, parquetFile(t, tc.cols, tc.rows, parquettest.Options{}))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got %v, want %s", err, tc.want)
			}
			if !errors.Is(err, ErrTable) {
				t.Errorf("%v does not wrap ErrTable", err)
			}
		})
	}
}

func TestParquetNotParquet(t *testing.T) {
	c := mustCatalog(t, tableCatalog)
	good := parquetFile(t, []parquettest.Column{{Name: "id", Type: "int64"}}, [][]any{{int64(1)}}, parquettest.Options{})
	huge := bytes.Clone(good)
	copy(huge[len(huge)-8:], []byte{0xff, 0xff, 0xff, 0x7f})
	for name, data := range map[string][]byte{
		"empty":          nil,
		"csv":            []byte("id,store_orders\n1,2\n3,4\n"),
		"truncated":      good[:len(good)-1],
		"footer too big": huge,
	} {
		_, err := readParquet(t, c, data)
		if err == nil || !errors.Is(err, ErrTable) {
			t.Errorf("%s: got %v, want an error wrapping ErrTable", name, err)
		}
	}
}

func TestParquetRowGroups(t *testing.T) {
	c := mustCatalog(t, tableCatalog)
	cols := []parquettest.Column{{Name: "id", Type: "int64"}, {Name: "store_orders", Type: "int64"}}
	var rows [][]any
	for i := range 1000 {
		rows = append(rows, []any{int64(i), int64(i * i)})
	}
	data := parquetFile(t, cols, rows, parquettest.Options{RowGroupRows: 300})
	r, err := NewParquetReader(bytes.NewReader(data), int64(len(data)), "p.parquet", c, "store")
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := r.TotalRows(); !ok || n != 1000 {
		t.Errorf("TotalRows = %d, %v; want 1000", n, ok)
	}
	for i := range 1000 {
		row, err := r.Next()
		if err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
		if row.Line != i+1 || len(row.Values) != 1 || row.Values[0].Int() != int64(i*i) {
			t.Fatalf("row %d: line %d, values %v", i, row.Line, row.Values)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("after the last row: %v, want io.EOF", err)
	}
}

func FuzzParquetReader(f *testing.F) {
	c := mustCatalog(f, tableCatalog)
	all := []parquettest.Column{
		{Name: "id", Type: "int64"},
		{Name: "store_avg_rating", Type: "double"},
		{Name: "store_orders", Type: "int32"},
		{Name: "store_open", Type: "bool"},
		{Name: "store_cuisine", Type: "string"},
		{Name: "store_embedding", Type: "list<float>"},
		{Name: "store_tags", Type: "list<string>"},
	}
	rows := [][]any{
		{int64(1), 4.5, int32(10), true, "thai", []float32{1, 2.5}, []string{"a", "b"}},
		{int64(2), nil, nil, nil, nil, nil, nil},
		{int64(3), 1.0, int32(1), false, "x", []float32{}, []string{}},
	}
	f.Add(parquetFile(f, all, rows, parquettest.Options{}))
	f.Add(parquetFile(f, all, rows, parquettest.Options{RowGroupRows: 1, Uncompressed: true}))
	f.Add(parquetFile(f, []parquettest.Column{{Name: "id", Type: "string", Required: true}, {Name: "store_tags", Type: "repeated<string>"}},
		[][]any{{"a", []string{"x", "y"}}}, parquettest.Options{Uncompressed: true}))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewParquetReader(bytes.NewReader(data), int64(len(data)), "fuzz", c, "store")
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
	})
}
