package features

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrTable is wrapped by every error that rejects an upload file.
var ErrTable = errors.New("bad upload file")

// Formats of upload files.
const (
	FormatCSV     = "csv"     // header "id,<feature>,...", one entity per record
	FormatJSONL   = "jsonl"   // one JSON object per line: {"id": ..., "<feature>": value}
	FormatParquet = "parquet" // columns "id" and features; see NewParquetReader
)

// MaxTableLine caps the bytes of one line of an upload file.
const MaxTableLine = 16 << 20

// TableFormat returns the format of an upload file from its name: .csv is
// CSV, .jsonl and .json are JSON Lines, .parquet is Parquet.
func TableFormat(name string) (string, error) {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".csv":
		return FormatCSV, nil
	case ".jsonl", ".json":
		return FormatJSONL, nil
	case ".parquet":
		return FormatParquet, nil
	}
	return "", fmt.Errorf("%w: %s: unknown format (want a .csv, .jsonl, .json or .parquet file)", ErrTable, name)
}

// TableError reports what is wrong with an upload file, and where:
// "stores.csv:12: column store_avg_rating: want float, got "abc"", or for
// a Parquet file "part-0.parquet: row 12: column ...". It wraps ErrTable
// and the cause.
type TableError struct {
	File   string
	Line   int    // the line of a text file; 0 when unknown
	Row    int    // the row of a Parquet file, counting from 1; 0 when unknown
	Column string // the column or JSON key at fault, if any
	Err    error
}

// Error formats the error as file:line: column name: cause, or file: row
// n: column name: cause.
func (e *TableError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Row > 0 {
		b.WriteString("row ")
		b.WriteString(strconv.Itoa(e.Row))
		b.WriteString(": ")
	}
	if e.Column != "" {
		b.WriteString("column ")
		b.WriteString(e.Column)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns ErrTable and the cause.
func (e *TableError) Unwrap() []error { return []error{ErrTable, e.Err} }

// Row is one entity's values from an upload file.
type Row struct {
	Line int // the line the row starts on; in a Parquet file, its row number
	// ID is the entity's id; for a composite entity type, IDs holds the
	// ids of its components, in the order of Entity.Components.
	ID     string
	IDs    []string
	Key    string  // the entity's Redis key
	Specs  []*Spec // the features the row has a value for
	Values []Value // aligned with Specs
}

// TableReader reads the rows of an upload file, checking every value
// against the catalog features of one entity type. It reads nothing but its
// io.Reader.
type TableReader struct {
	name    string
	catalog *Catalog
	entity  *Entity
	idNames []string // the id columns: "id", or the components' names
	row     Row
	key     []byte
	err     error // sticky
	maxLine int

	// CSV
	csv     *csv.Reader
	columns []*Spec // nil at the id columns
	idCols  []int   // the position of each id column

	// JSON Lines
	lines  *bufio.Scanner
	line   int
	seen   map[string]bool
	seenAt []int // by catalog index: the seq of the last line the feature was on
	seq    int   // lines parsed
	scan   jsonScan
	hasIDs uint64 // bit k: the line gave id column k

	// Parquet
	pq *pqState
}

// NewTableReader returns a reader of the upload file r in the given format
// (FormatCSV or FormatJSONL). Its features must belong to the catalog's
// entity type called entity; name is the file's name for errors. For CSV it
// reads and checks the header.
func NewTableReader(r io.Reader, name, format string, c *Catalog, entity string) (*TableReader, error) {
	return newTableReader(r, name, format, c, entity, MaxTableLine)
}

func newTableReader(r io.Reader, name, format string, c *Catalog, entity string, maxLine int) (*TableReader, error) {
	t, err := newReader(name, c, entity)
	if err != nil {
		return nil, err
	}
	t.maxLine = maxLine
	switch format {
	case FormatCSV:
		t.csv = csv.NewReader(&lineLimiter{r: r, max: maxLine})
		t.csv.ReuseRecord = true
		if err := t.readHeader(); err != nil {
			return nil, err
		}
	case FormatJSONL:
		t.lines = bufio.NewScanner(r)
		t.lines.Buffer(make([]byte, 0, min(64<<10, maxLine+1)), maxLine+1)
		t.seen = make(map[string]bool)
		t.seenAt = make([]int, len(c.Specs))
	case FormatParquet:
		return nil, &TableError{File: name, Err: errors.New("a parquet file needs NewParquetReader")}
	default:
		return nil, &TableError{File: name, Err: fmt.Errorf("unknown format %q (want csv or jsonl)", format)}
	}
	return t, nil
}

// newReader returns a reader of the rows of the catalog's entity type
// called entity, before its format is known.
func newReader(name string, c *Catalog, entity string) (*TableReader, error) {
	t := &TableReader{name: name, catalog: c, entity: c.Entity(entity)}
	if t.entity == nil {
		return nil, &TableError{File: name, Err: fmt.Errorf("unknown entity type %q", entity)}
	}
	t.idNames = []string{"id"}
	if t.entity.Composite() {
		t.idNames = t.idNames[:0]
		for _, e := range t.entity.Components() {
			t.idNames = append(t.idNames, e.Name)
		}
	}
	t.row.IDs = make([]string, len(t.idNames))
	return t, nil
}

// idColumn returns the position of name among the id columns, or -1.
func (t *TableReader) idColumn(name string) int {
	for i, n := range t.idNames {
		if n == name {
			return i
		}
	}
	return -1
}

// idHeader is an example header for errors: "id,<feature>".
func (t *TableReader) idHeader() string { return strings.Join(t.idNames, ",") + ",<feature>" }

// setKey makes the row's key from its ids; a composite key refuses ids
// that hold its separators. fail reports an error at the row's place.
func (t *TableReader) setKey(fail func(column string, err error) error) error {
	if !t.entity.Composite() {
		t.row.ID = t.row.IDs[0]
		t.key = t.entity.AppendKey(t.key[:0], t.row.ID)
	} else {
		var err error
		if t.key, err = t.entity.AppendKeys(t.key[:0], t.row.IDs); err != nil {
			for i, id := range t.row.IDs[:len(t.row.IDs)-1] {
				if strings.Contains(id, t.entity.parts[i+1][:1]) {
					return fail(t.idNames[i], err)
				}
			}
			return fail("", err)
		}
	}
	t.row.Key = string(t.key)
	return nil
}

// Entity returns the entity type of the file's rows.
func (t *TableReader) Entity() *Entity { return t.entity }

// Next returns the next row, or io.EOF after the last. The row and its
// slices are valid until the next call. After an error every call returns
// that error.
func (t *TableReader) Next() (*Row, error) {
	if t.err != nil {
		return nil, t.err
	}
	var err error
	switch {
	case t.csv != nil:
		err = t.nextCSV()
	case t.pq != nil:
		err = t.nextParquet()
	default:
		err = t.nextJSON()
	}
	if err != nil {
		t.err = err
		return nil, err
	}
	return &t.row, nil
}

// spec returns the catalog feature of column name, checking its entity.
func (t *TableReader) spec(name string) (*Spec, error) {
	s := t.catalog.Spec(name)
	if s == nil {
		return nil, errors.New("not a feature in the catalog")
	}
	if s.Entity != t.entity {
		return nil, fmt.Errorf("feature of entity %s, not %s", s.Entity.Name, t.entity.Name)
	}
	return s, nil
}

func (t *TableReader) fail(line int, column string, err error) error {
	return &TableError{File: t.name, Line: line, Column: column, Err: err}
}

func (t *TableReader) failRow(row int, column string, err error) error {
	return &TableError{File: t.name, Row: row, Column: column, Err: err}
}

// readErr converts an error of the underlying readers.
func (t *TableReader) readErr(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return t.fail(pe.Line, "", pe.Err)
	}
	var le *lineError
	if errors.As(err, &le) {
		return t.fail(le.line, "", le)
	}
	if errors.Is(err, bufio.ErrTooLong) {
		return t.fail(t.line+1, "", fmt.Errorf("line is longer than %d bytes", t.maxLine))
	}
	return t.fail(0, "", fmt.Errorf("read: %w", err))
}

func (t *TableReader) readHeader() error {
	header, err := t.csv.Read()
	if err == io.EOF {
		return t.fail(1, "", fmt.Errorf("empty file: want a header line like %s", t.idHeader()))
	}
	if err != nil {
		return t.readErr(err)
	}
	t.idCols = make([]int, len(t.idNames))
	for i := range t.idCols {
		t.idCols[i] = -1
	}
	t.columns = make([]*Spec, len(header))
	seen := make(map[string]bool, len(header))
	for i, name := range header {
		if i == 0 {
			name = strings.TrimPrefix(name, "\ufeff") // a byte order mark
		}
		switch {
		case name == "":
			return t.fail(1, strconv.Itoa(i+1), errors.New("empty column name"))
		case seen[name]:
			return t.fail(1, name, errors.New("listed twice"))
		case t.idColumn(name) >= 0:
			t.idCols[t.idColumn(name)] = i
		default:
			s, err := t.spec(name)
			if err != nil {
				return t.fail(1, name, err)
			}
			t.columns[i] = s
		}
		seen[name] = true
	}
	for i, col := range t.idCols {
		if col < 0 {
			return t.fail(1, "", fmt.Errorf("no %s column: want a header line like %s", t.idNames[i], t.idHeader()))
		}
	}
	t.row.Specs = make([]*Spec, 0, len(header))
	t.row.Values = make([]Value, 0, len(header))
	return nil
}

func (t *TableReader) nextCSV() error {
	record, err := t.csv.Read()
	if err == io.EOF {
		return io.EOF
	}
	if err != nil {
		return t.readErr(err)
	}
	line, _ := t.csv.FieldPos(0)
	t.row.Line = line
	t.row.Specs, t.row.Values = t.row.Specs[:0], t.row.Values[:0]
	for k, col := range t.idCols {
		id := record[col]
		if err := CheckID(id); err != nil {
			return t.fail(line, t.idNames[k], err)
		}
		t.row.IDs[k] = strings.Clone(id) // the record is reused
	}
	if err := t.setKey(func(column string, err error) error { return t.fail(line, column, err) }); err != nil {
		return err
	}
	for i, cell := range record {
		s := t.columns[i]
		if s == nil || cell == "" {
			continue
		}
		v, err := ParseText(s.Type, cell)
		if err == nil {
			err = CheckSize(v)
		}
		if err == nil {
			err = s.CheckFinite(v)
		}
		if err != nil {
			line, _ := t.csv.FieldPos(i)
			return t.fail(line, s.Name, err)
		}
		t.row.Specs = append(t.row.Specs, s)
		t.row.Values = append(t.row.Values, v)
	}
	return nil
}

func (t *TableReader) nextJSON() error {
	for {
		if !t.lines.Scan() {
			if err := t.lines.Err(); err != nil {
				return t.readErr(err)
			}
			return io.EOF
		}
		t.line++
		line := bytes.TrimSpace(t.lines.Bytes())
		if len(line) == 0 {
			continue
		}
		return t.parseJSONLine(line)
	}
}

// lineLimiter fails a read that would make a line longer than max bytes,
// so that no reader buffers an unbounded line.
type lineLimiter struct {
	r    io.Reader
	max  int
	cur  int // bytes of the current line so far
	line int // lines completed
}

type lineError struct{ line, max int }

func (e *lineError) Error() string { return fmt.Sprintf("line is longer than %d bytes", e.max) }

func (l *lineLimiter) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	b := p[:n]
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			l.cur += len(b)
			break
		}
		if l.cur+i > l.max {
			return 0, &lineError{line: l.line + 1, max: l.max}
		}
		l.line++
		l.cur, b = 0, b[i+1:]
	}
	if l.cur > l.max {
		return 0, &lineError{line: l.line + 1, max: l.max}
	}
	return n, err
}
