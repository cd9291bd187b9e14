// Package parquettest writes Parquet files the way Spark lays them out, for
// tests and benchmark data: every column optional, lists in the standard
// three-level layout (optional group (LIST) { repeated group list {
// optional element } }), snappy pages. Debian's Python has no Parquet
// writer (pandas without pyarrow cannot write one), so the files come from
// github.com/parquet-go/parquet-go's writer, a different code path from
// the reader seer uses.
package parquettest

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// Column is one top-level column of a file.
type Column struct {
	Name string
	// Type is double, float, int32, int64, bool, string, binary (no STRING
	// annotation), list<float>, list<double>, list<string>, or
	// repeated<float> and repeated<string> (the legacy two-level list: a
	// repeated leaf).
	Type string
	// Required makes a scalar column or a list required instead of
	// optional.
	Required bool
}

// Options tune Write.
type Options struct {
	// RowGroupRows is the most rows per row group (default: one group).
	RowGroupRows int64
	// PageBytes is the page buffer size (default: the library's).
	PageBytes int
	// Uncompressed writes plain pages instead of snappy ones.
	Uncompressed bool
}

// node returns the schema node of a column.
func (c Column) node() (parquet.Node, error) {
	var n parquet.Node
	switch c.Type {
	case "double":
		n = parquet.Leaf(parquet.DoubleType)
	case "float":
		n = parquet.Leaf(parquet.FloatType)
	case "int32":
		n = parquet.Int(32)
	case "int64":
		n = parquet.Int(64)
	case "bool":
		n = parquet.Leaf(parquet.BooleanType)
	case "string":
		n = parquet.String()
	case "binary":
		n = parquet.Leaf(parquet.ByteArrayType)
	case "list<float>":
		n = parquet.List(parquet.Optional(parquet.Leaf(parquet.FloatType)))
	case "list<double>":
		n = parquet.List(parquet.Optional(parquet.Leaf(parquet.DoubleType)))
	case "list<string>":
		n = parquet.List(parquet.Optional(parquet.String()))
	case "repeated<float>":
		return parquet.Repeated(parquet.Leaf(parquet.FloatType)), nil
	case "repeated<string>":
		return parquet.Repeated(parquet.String()), nil
	default:
		return nil, fmt.Errorf("parquettest: unknown column type %q", c.Type)
	}
	if c.Required {
		return parquet.Required(n), nil
	}
	return parquet.Optional(n), nil
}

// Write writes a file of the given columns and rows to w. rows[i][j] is
// the value of column j: nil for null, or a float64, float32, int32,
// int64, bool, string or []byte for scalars, and for lists a []float32,
// []float64, []string (nil for a null list, empty for an empty one) or an
// []any whose nil items are null items.
func Write(w io.Writer, cols []Column, rows [][]any, opt Options) error {
	fw, err := NewWriter(w, cols, opt)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if err := fw.WriteRow(r); err != nil {
			return err
		}
	}
	return fw.Close()
}

// Writer writes a file row by row, holding a batch of rows and the row
// group being built.
type Writer struct {
	pw       *parquet.GenericWriter[any]
	cols     []Column
	leaves   []parquet.LeafColumn
	byColumn [][]parquet.Value
	batch    []parquet.Row
	n        int
}

// NewWriter starts a file of the given columns on w; Close ends it.
func NewWriter(w io.Writer, cols []Column, opt Options) (*Writer, error) {
	group := parquet.Group{}
	for _, c := range cols {
		n, err := c.node()
		if err != nil {
			return nil, err
		}
		group[c.Name] = n
	}
	schema := parquet.NewSchema("spark_schema", group)
	leaves := make([]parquet.LeafColumn, len(cols))
	for j, c := range cols {
		path := []string{c.Name}
		if len(c.Type) > 5 && c.Type[:5] == "list<" {
			path = append(path, "list", "element")
		}
		leaf, ok := schema.Lookup(path...)
		if !ok {
			return nil, fmt.Errorf("parquettest: no leaf column %v", path)
		}
		leaves[j] = leaf
	}
	options := []parquet.WriterOption{schema, parquet.CreatedBy("parquettest", "1", "")}
	if !opt.Uncompressed {
		options = append(options, parquet.Compression(&parquet.Snappy))
	}
	if opt.RowGroupRows > 0 {
		options = append(options, parquet.MaxRowsPerRowGroup(opt.RowGroupRows))
	}
	if opt.PageBytes > 0 {
		options = append(options, parquet.PageBufferSize(opt.PageBytes))
	}
	return &Writer{
		pw: parquet.NewGenericWriter[any](w, options...), cols: cols, leaves: leaves,
		byColumn: make([][]parquet.Value, len(schema.Columns())), batch: make([]parquet.Row, 0, 256),
	}, nil
}

// WriteRow adds one row: r[j] is the value of column j, as Write says.
func (fw *Writer) WriteRow(r []any) error {
	if len(r) != len(fw.cols) {
		return fmt.Errorf("parquettest: row %d has %d values for %d columns", fw.n, len(r), len(fw.cols))
	}
	for j := range fw.byColumn {
		fw.byColumn[j] = fw.byColumn[j][:0]
	}
	for j, c := range fw.cols {
		vals, err := cell(c, fw.leaves[j], r[j])
		if err != nil {
			return fmt.Errorf("parquettest: row %d, column %s: %w", fw.n, c.Name, err)
		}
		fw.byColumn[fw.leaves[j].ColumnIndex] = vals
	}
	var row parquet.Row
	for _, vals := range fw.byColumn {
		row = append(row, vals...)
	}
	fw.batch = append(fw.batch, row)
	fw.n++
	if len(fw.batch) == cap(fw.batch) {
		return fw.flush()
	}
	return nil
}

func (fw *Writer) flush() error {
	if _, err := fw.pw.WriteRows(fw.batch); err != nil {
		return err
	}
	fw.batch = fw.batch[:0]
	return nil
}

// Close writes the rows still held and the footer.
func (fw *Writer) Close() error {
	if err := fw.flush(); err != nil {
		return err
	}
	return fw.pw.Close()
}

// WriteFile writes a file at path, creating its directory.
func WriteFile(path string, cols []Column, rows [][]any, opt Options) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := Write(f, cols, rows, opt); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// cell returns the values of one cell with their levels.
func cell(c Column, leaf parquet.LeafColumn, x any) ([]parquet.Value, error) {
	col, maxDef := leaf.ColumnIndex, leaf.MaxDefinitionLevel
	null := func(def int) parquet.Value { return parquet.NullValue().Level(0, def, col) }
	switch c.Type {
	case "list<float>", "list<double>", "list<string>", "repeated<float>", "repeated<string>":
	default:
		if x == nil {
			return []parquet.Value{null(0)}, nil
		}
		v, err := scalar(c.Type, x)
		if err != nil {
			return nil, err
		}
		return []parquet.Value{v.Level(0, maxDef, col)}, nil
	}
	var items []any
	isNull := false
	switch xs := x.(type) {
	case nil:
		isNull = true
	case []float32:
		isNull = xs == nil
		for _, e := range xs {
			items = append(items, e)
		}
	case []float64:
		isNull = xs == nil
		for _, e := range xs {
			items = append(items, e)
		}
	case []string:
		isNull = xs == nil
		for _, e := range xs {
			items = append(items, e)
		}
	case []any:
		isNull = xs == nil
		items = xs
	default:
		return nil, fmt.Errorf("want a slice for a list, got %T", x)
	}
	// Definition levels: the list's own (optional: 1), the repeated
	// level, then the optional element.
	listDef := 0
	if !c.Required && c.Type[:5] == "list<" {
		listDef = 1
	}
	legacy := c.Type[:5] != "list<"
	switch {
	case isNull && legacy:
		return []parquet.Value{null(0)}, nil // a repeated leaf cannot be null: empty
	case isNull && listDef == 0:
		return nil, fmt.Errorf("a required list cannot be null")
	case isNull:
		return []parquet.Value{null(0)}, nil
	case len(items) == 0 && legacy:
		return []parquet.Value{null(0)}, nil
	case len(items) == 0:
		return []parquet.Value{null(listDef)}, nil
	}
	elem := c.Type[strings.IndexByte(c.Type, '<')+1 : len(c.Type)-1]
	out := make([]parquet.Value, len(items))
	for k, e := range items {
		rep := min(k, 1)
		if e == nil {
			out[k] = parquet.NullValue().Level(rep, maxDef-1, col)
			continue
		}
		v, err := scalar(elem, e)
		if err != nil {
			return nil, err
		}
		out[k] = v.Level(rep, maxDef, col)
	}
	return out, nil
}

// scalar converts x to a value of a column of type typ.
func scalar(typ string, x any) (parquet.Value, error) {
	switch v := x.(type) {
	case float64:
		if typ == "float" {
			return parquet.FloatValue(float32(v)), nil
		}
		return parquet.DoubleValue(v), nil
	case float32:
		if typ == "double" {
			return parquet.DoubleValue(float64(v)), nil
		}
		return parquet.FloatValue(v), nil
	case int:
		if typ == "int32" {
			return parquet.Int32Value(int32(v)), nil
		}
		return parquet.Int64Value(int64(v)), nil
	case int32:
		return parquet.Int32Value(v), nil
	case int64:
		return parquet.Int64Value(v), nil
	case bool:
		return parquet.BooleanValue(v), nil
	case string:
		return parquet.ByteArrayValue([]byte(v)), nil
	case []byte:
		return parquet.ByteArrayValue(v), nil
	}
	return parquet.Value{}, fmt.Errorf("unsupported value %T", x)
}
