package features

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// Limits of Parquet files, checked before the library allocates for them.
const (
	// MaxParquetFooter bounds the file's metadata (its schema and the
	// description of every row group and column chunk).
	MaxParquetFooter = 16 << 20
	// MaxParquetColumns bounds the leaf columns of a file's schema.
	MaxParquetColumns = 4096
)

// parquetRows is how many rows the reader asks the library for at once.
const parquetRows = 128

// pqColumn is what the reader knows about one leaf column of the file.
type pqColumn struct {
	name string // the top-level field: a feature or an id column
	spec *Spec  // nil for an id column
	id   int    // which id column
	kind parquet.Kind
	// list columns: the field is a list whose items are this leaf.
	list     bool
	listDef  int // definition level of an empty list; below it, the list is null
	maxDef   int // definition level of a present item
	unsigned bool
}

// pqState is the Parquet part of a TableReader.
type pqState struct {
	r       io.ReaderAt
	dataEnd int64 // where the footer starts
	file    *parquet.File
	cols    []pqColumn // by leaf column index
	group   int        // the next row group to open
	rows    parquet.Rows
	buf     []parquet.Row
	n, at   int   // rows in buf, and the next one to return
	row     int64 // rows returned so far
	total   int64
}

// NewParquetReader returns a reader of the Parquet file r, of size bytes,
// whose columns are the id columns ("id", or the components' names for a
// composite entity type) and features of the catalog's entity type called
// entity; name is the file's name for errors. It reads the
// file's footer and checks its schema: each column's type must fit its
// feature (see docs/upload.md). Row groups are read as rows are asked
// for, a page of each column at a time.
func NewParquetReader(r io.ReaderAt, size int64, name string, c *Catalog, entity string) (t *TableReader, err error) {
	if t, err = newReader(name, c, entity); err != nil {
		return nil, err
	}
	// parquet-go panics on some malformed files (FuzzParquetReader keeps
	// the inputs that did); a bad file must be an error, not a crash.
	defer func() {
		if p := recover(); p != nil {
			t, err = nil, t.fail(0, "", fmt.Errorf("corrupt parquet file: %v", p))
		}
	}()
	if err := checkParquetFooter(r, size); err != nil {
		return nil, t.fail(0, "", err)
	}
	footer, err := readFooter(r, size)
	if err == nil {
		err = checkFooterBytes(footer)
	}
	if err != nil {
		return nil, t.fail(0, "", err)
	}
	f, err := parquet.OpenFile(r, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, t.fail(0, "", fmt.Errorf("not a parquet file: %w", err))
	}
	pq := &pqState{r: r, dataEnd: size - 8 - int64(len(footer)), file: f, total: f.NumRows()}
	if err := t.parquetSchema(pq); err != nil {
		return nil, err
	}
	t.pq = pq
	t.row.Specs = make([]*Spec, 0, len(pq.cols))
	t.row.Values = make([]Value, 0, len(pq.cols))
	return t, nil
}

// checkParquetFooter refuses files whose footer is not where the format
// puts it or is larger than MaxParquetFooter, before the library reads it.
func checkParquetFooter(r io.ReaderAt, size int64) error {
	if size < 12 {
		return errors.New("not a parquet file: too short")
	}
	var tail [8]byte
	if _, err := r.ReadAt(tail[:], size-8); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if string(tail[4:]) != "PAR1" {
		return errors.New(`not a parquet file: no "PAR1" at its end`)
	}
	n := int64(tail[0]) | int64(tail[1])<<8 | int64(tail[2])<<16 | int64(tail[3])<<24
	switch {
	case n > size-12:
		return fmt.Errorf("corrupt parquet file: a footer of %d bytes in a file of %d", n, size)
	case n > MaxParquetFooter:
		return fmt.Errorf("parquet footer of %d bytes is over the limit of %d", n, MaxParquetFooter)
	}
	return nil
}

// parquetSchema maps the file's columns to the id and the features.
func (t *TableReader) parquetSchema(pq *pqState) error {
	schema := pq.file.Schema()
	ncols := len(schema.Columns())
	if ncols > MaxParquetColumns {
		return t.fail(0, "", fmt.Errorf("%d columns is over the limit of %d", ncols, MaxParquetColumns))
	}
	pq.cols = make([]pqColumn, ncols)
	leaf := 0
	var hasIDs uint64
	for _, fld := range schema.Fields() {
		name := fld.Name()
		col, err := parquetColumn(fld)
		if err != nil {
			return t.fail(0, name, err)
		}
		col.name = name
		if col.id = t.idColumn(name); col.id >= 0 {
			if col.list || (col.kind != parquet.Int32 && col.kind != parquet.Int64 && col.kind != parquet.ByteArray) {
				return t.fail(0, name, fmt.Errorf("an id column must hold integers or strings, not %s", parquetTypeName(fld)))
			}
			if hasIDs&(1<<col.id) != 0 {
				return t.fail(0, name, errors.New("listed twice"))
			}
			hasIDs |= 1 << col.id
		} else {
			s, err := t.spec(name)
			if err != nil {
				return t.fail(0, name, err)
			}
			if !parquetFits(col, s.Type) {
				return t.fail(0, name, fmt.Errorf("a %s column cannot hold a %s feature", parquetTypeName(fld), s.Type))
			}
			col.spec = s
		}
		if leaf == ncols {
			return t.fail(0, name, errors.New("corrupt parquet schema"))
		}
		pq.cols[leaf] = col
		leaf++
	}
	for k, n := range t.idNames {
		if hasIDs&(1<<k) == 0 {
			return t.fail(0, "", fmt.Errorf("no %q column", n))
		}
	}
	return nil
}

// parquetColumn describes a top-level field: a leaf, or a list of leaves
// in the standard three-level layout or the legacy two-level ones. Every
// field it accepts is one leaf column.
func parquetColumn(f parquet.Field) (pqColumn, error) {
	var col pqColumn
	elem := parquet.Node(f)
	switch {
	case f.Leaf() && !f.Repeated():
	case f.Leaf(): // repeated float x: a two-level list
		col.list = true
	default:
		kids := f.Fields()
		if len(kids) != 1 || !kids[0].Repeated() || isMap(f) {
			return col, fmt.Errorf("a %s column is not supported (want a value or a list of values)", parquetTypeName(f))
		}
		col.list = true
		elem = kids[0]
		if !elem.Leaf() {
			// The standard layout: group (LIST) { repeated group list { element } }.
			items := elem.Fields()
			if len(items) != 1 || !items[0].Leaf() {
				return col, fmt.Errorf("a %s column is not supported (want a list of values)", parquetTypeName(f))
			}
			elem = items[0]
		}
		if f.Repeated() {
			return col, errors.New("a repeated list column is not supported")
		}
	}
	if col.list && f.Optional() {
		col.listDef = 1
	}
	col.maxDef = maxDefinition(f, elem)
	typ := elem.Type()
	col.kind = typ.Kind()
	if lt := typ.LogicalType(); lt != nil {
		switch v := lt.Value.(type) {
		case nil, *format.StringType, *format.EnumType, *format.JsonType:
		case *format.IntType:
			col.unsigned = !v.IsSigned
		default:
			return col, fmt.Errorf("a %s column is not supported", parquetTypeName(f))
		}
	}
	switch col.kind {
	case parquet.Boolean, parquet.Int32, parquet.Int64, parquet.Float, parquet.Double, parquet.ByteArray:
	default:
		return col, fmt.Errorf("a %s column is not supported", parquetTypeName(f))
	}
	return col, nil
}

func isMap(f parquet.Node) bool {
	if f.Leaf() {
		return false
	}
	lt := f.Type().LogicalType()
	if lt != nil {
		if _, ok := lt.Value.(*format.MapType); ok {
			return true
		}
	}
	return false
}

// maxDefinition returns the definition level of a present item of elem
// under the top-level field f: one for each optional or repeated node on
// the way.
func maxDefinition(f parquet.Field, elem parquet.Node) int {
	d := 0
	var walk func(n parquet.Node) bool
	walk = func(n parquet.Node) bool {
		if !n.Required() {
			d++
		}
		if n == elem {
			return true
		}
		for _, k := range n.Fields() {
			before := d
			if walk(k) {
				return true
			}
			d = before
		}
		return false
	}
	walk(f)
	return d
}

// parquetFits reports whether a column can hold values of type t.
func parquetFits(c pqColumn, t Type) bool {
	numeric := c.kind == parquet.Float || c.kind == parquet.Double
	integer := c.kind == parquet.Int32 || c.kind == parquet.Int64
	if c.list {
		return (t == Vector && numeric) || (t == List && c.kind == parquet.ByteArray)
	}
	switch t {
	case Float:
		return numeric || integer
	case Int:
		return integer
	case Bool:
		return c.kind == parquet.Boolean
	case String:
		return c.kind == parquet.ByteArray
	}
	return false
}

// parquetTypeName names a field's type for errors: "double", "list<float>",
// "int64 (TIMESTAMP(...))".
func parquetTypeName(n parquet.Node) string {
	if !n.Leaf() {
		kids := n.Fields()
		if len(kids) == 1 && kids[0].Repeated() && !isMap(n) {
			e := parquet.Node(kids[0])
			if !e.Leaf() && len(e.Fields()) == 1 {
				e = e.Fields()[0]
			}
			if e.Leaf() {
				return "list<" + leafTypeName(e) + ">"
			}
		}
		if isMap(n) {
			return "map"
		}
		return "group"
	}
	if n.Repeated() {
		return "list<" + leafTypeName(n) + ">"
	}
	return leafTypeName(n)
}

func leafTypeName(n parquet.Node) string {
	typ := n.Type()
	s := typ.Kind().String()
	switch s {
	case "DOUBLE", "FLOAT", "BOOLEAN", "INT32", "INT64", "INT96":
		s = map[string]string{"DOUBLE": "double", "FLOAT": "float", "BOOLEAN": "boolean", "INT32": "int32", "INT64": "int64", "INT96": "int96"}[s]
	case "BYTE_ARRAY":
		s = "binary"
	case "FIXED_LEN_BYTE_ARRAY":
		s = "fixed_len_byte_array"
	}
	if lt := typ.LogicalType(); lt != nil && lt.Value != nil {
		if _, ok := lt.Value.(*format.StringType); ok {
			return "string"
		}
		s += " (" + lt.String() + ")"
	}
	return s
}

// TotalRows returns the number of rows of a Parquet file, from its footer;
// false for the text formats, whose rows are known only once read.
func (t *TableReader) TotalRows() (int64, bool) {
	if t.pq == nil {
		return 0, false
	}
	return t.pq.total, true
}

// nextParquet fills t.row with the next row of the file.
func (t *TableReader) nextParquet() (err error) {
	pq := t.pq
	defer func() {
		if p := recover(); p != nil {
			err = t.fail(0, "", fmt.Errorf("corrupt parquet file after row %d: %v", pq.row, p))
		}
	}()
	for pq.at == pq.n {
		if err := t.readParquetRows(); err != nil {
			return err
		}
	}
	values := pq.buf[pq.at]
	pq.at++
	pq.row++
	return t.parquetRow(values)
}

// readParquetRows reads the next rows into pq.buf, opening the next row
// group when the current one is done.
func (t *TableReader) readParquetRows() error {
	pq := t.pq
	if pq.rows == nil {
		groups := pq.file.RowGroups()
		if pq.group == len(groups) {
			return io.EOF
		}
		if err := checkRowGroup(pq.r, pq.file.Metadata(), pq.group, pq.dataEnd); err != nil {
			return t.fail(0, "", fmt.Errorf("row group %d: %w", pq.group+1, err))
		}
		pq.rows = groups[pq.group].Rows()
		pq.group++
		if pq.buf == nil {
			pq.buf = make([]parquet.Row, parquetRows)
		}
	}
	n, err := pq.rows.ReadRows(pq.buf)
	pq.n, pq.at = n, 0
	if err == io.EOF {
		cerr := pq.rows.Close()
		pq.rows = nil
		if cerr != nil {
			return t.fail(0, "", fmt.Errorf("row group %d: %w", pq.group, cerr))
		}
		return nil
	}
	if err != nil {
		return t.fail(0, "", fmt.Errorf("row group %d, after row %d: %w", pq.group, pq.row, err))
	}
	return nil
}

// parquetRow converts one row's values, which come sorted by column.
func (t *TableReader) parquetRow(values parquet.Row) error {
	pq := t.pq
	line := int(min(pq.row, math.MaxInt))
	t.row.Line = line
	t.row.ID = ""
	t.row.Specs, t.row.Values = t.row.Specs[:0], t.row.Values[:0]
	var hasIDs uint64
	for i := 0; i < len(values); {
		ci := values[i].Column()
		j := i + 1
		for j < len(values) && values[j].Column() == ci {
			j++
		}
		run := values[i:j]
		i = j
		if ci < 0 || ci >= len(pq.cols) {
			return t.failRow(line, "", errors.New("corrupt parquet file: value of an unknown column"))
		}
		c := &pq.cols[ci]
		if c.spec == nil {
			id, err := parquetID(c, run)
			if err == nil {
				err = CheckID(id)
			}
			if err != nil {
				return t.failRow(line, c.name, err)
			}
			t.row.IDs[c.id] = id
			hasIDs |= 1 << c.id
			continue
		}
		v, ok, err := pq.value(c, run)
		if err == nil && ok {
			err = CheckSize(v)
		}
		if err == nil && ok {
			err = c.spec.CheckFinite(v)
		}
		if err != nil {
			return t.failRow(line, c.name, err)
		}
		if ok {
			t.row.Specs = append(t.row.Specs, c.spec)
			t.row.Values = append(t.row.Values, v)
		}
	}
	for k, n := range t.idNames {
		if hasIDs&(1<<k) == 0 {
			return t.failRow(line, n, errors.New("empty id"))
		}
	}
	return t.setKey(func(column string, err error) error { return t.failRow(line, column, err) })
}

// parquetID returns the text of an id cell.
func parquetID(c *pqColumn, run parquet.Row) (string, error) {
	if len(run) != 1 {
		return "", errors.New("corrupt parquet file: several values in one cell")
	}
	v := run[0]
	if v.IsNull() {
		return "", errors.New("empty id")
	}
	switch c.kind {
	case parquet.Int32:
		if c.unsigned {
			return strconv.FormatUint(uint64(uint32(v.Int32())), 10), nil
		}
		return strconv.FormatInt(int64(v.Int32()), 10), nil
	case parquet.Int64:
		if c.unsigned {
			return strconv.FormatUint(uint64(v.Int64()), 10), nil
		}
		return strconv.FormatInt(v.Int64(), 10), nil
	}
	return string(v.ByteArray()), nil
}

// value converts one cell; ok is false for a null cell, which has no value.
func (pq *pqState) value(c *pqColumn, run parquet.Row) (v Value, ok bool, err error) {
	if !c.list {
		if len(run) != 1 {
			return Value{}, false, errors.New("corrupt parquet file: several values in one cell")
		}
		if run[0].IsNull() {
			return Value{}, false, nil
		}
		v, err := scalar(c, c.spec.Type, run[0])
		return v, err == nil, err
	}
	if len(run) == 1 && run[0].IsNull() {
		switch d := run[0].DefinitionLevel(); {
		case d < c.listDef:
			return Value{}, false, nil // a null list: no value
		case d == c.listDef:
			run = run[:0] // an empty list
		}
	}
	if len(run) > MaxItems {
		return Value{}, false, fmt.Errorf("%s of %d items is over the limit of %d", c.spec.Type, len(run), MaxItems)
	}
	for k := range run {
		if run[k].DefinitionLevel() != c.maxDef || run[k].IsNull() {
			return Value{}, false, fmt.Errorf("item %d is null", k)
		}
	}
	if c.spec.Type == Vector {
		vec := make([]float32, len(run))
		for k := range run {
			f := float64(run[k].Float())
			if c.kind == parquet.Double {
				f = run[k].Double()
				if math.Abs(f) > math.MaxFloat32 && !math.IsInf(f, 0) {
					return Value{}, false, fmt.Errorf("vector item %d: %g is out of float32 range", k, f)
				}
			}
			vec[k] = float32(f)
		}
		return VectorValue(vec), true, nil
	}
	list := make([]string, len(run))
	for k := range run {
		b := run[k].ByteArray()
		if !utf8.Valid(b) {
			return Value{}, false, fmt.Errorf("list item %d: string is not valid UTF-8", k)
		}
		list[k] = string(b)
	}
	return ListValue(list), true, nil
}

// scalar converts a present scalar cell of column c into a value of type t.
func scalar(c *pqColumn, t Type, v parquet.Value) (Value, error) {
	switch c.kind {
	case parquet.Boolean:
		return BoolValue(v.Boolean()), nil
	case parquet.Float:
		return FloatValue(float64(v.Float())), nil
	case parquet.Double:
		return FloatValue(v.Double()), nil
	case parquet.Int32, parquet.Int64:
		var i int64
		if c.kind == parquet.Int32 {
			i = int64(v.Int32())
			if c.unsigned {
				i = int64(uint32(v.Int32()))
			}
		} else {
			i = v.Int64()
			if c.unsigned && i < 0 {
				return Value{}, fmt.Errorf("%d is over the int64 range", uint64(i))
			}
		}
		if t == Float {
			return FloatValue(float64(i)), nil
		}
		return IntValue(i), nil
	case parquet.ByteArray:
		b := v.ByteArray()
		if !utf8.Valid(b) {
			return Value{}, errors.New("want string, got text that is not valid UTF-8")
		}
		return StringValue(string(b)), nil
	}
	return Value{}, fmt.Errorf("cannot read a %s cell", c.kind)
}
