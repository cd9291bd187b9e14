package features

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// parseJSONStd is the reference for parseJSONLine: it reads one line with
// encoding/json, token by token, and converts values with Coerce.
func (t *TableReader) parseJSONStd(line []byte) error {
	t.row.Line = t.line
	t.row.ID = ""
	t.row.Specs, t.row.Values = t.row.Specs[:0], t.row.Values[:0]
	clear(t.seen)
	if !utf8.Valid(line) {
		return t.fail(t.line, "", errors.New("line is not valid UTF-8"))
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return t.fail(t.line, "", errors.New("want a JSON object"))
	}
	hasID := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return t.fail(t.line, "", fmt.Errorf("bad JSON: %v", err))
		}
		key, _ := tok.(string)
		if t.seen[key] {
			return t.fail(t.line, key, errors.New("listed twice"))
		}
		t.seen[key] = true
		var x any
		if err := dec.Decode(&x); err != nil {
			return t.fail(t.line, key, fmt.Errorf("bad JSON: %v", err))
		}
		if key == "id" {
			id, err := jsonIDStd(x)
			if err == nil {
				err = CheckID(id)
			}
			if err != nil {
				return t.fail(t.line, "id", err)
			}
			t.row.ID, hasID = id, true
			continue
		}
		s, err := t.spec(key)
		if err != nil {
			return t.fail(t.line, key, err)
		}
		if x == nil {
			continue
		}
		v, err := Coerce(s.Type, x)
		if err == nil {
			err = CheckSize(v)
		}
		if err == nil {
			err = s.CheckFinite(v)
		}
		if err != nil {
			return t.fail(t.line, key, err)
		}
		t.row.Specs = append(t.row.Specs, s)
		t.row.Values = append(t.row.Values, v)
	}
	if _, err := dec.Token(); err != nil {
		return t.fail(t.line, "", fmt.Errorf("bad JSON: %v", err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return t.fail(t.line, "", errors.New("more than one JSON value on the line"))
	}
	if !hasID {
		return t.fail(t.line, "", errors.New(`no "id"`))
	}
	return nil
}

func jsonIDStd(x any) (string, error) {
	switch id := x.(type) {
	case string:
		return id, nil
	case json.Number:
		s := string(id)
		if strings.TrimLeft(strings.TrimPrefix(s, "-"), "0123456789") == "" {
			return s, nil
		}
	}
	return "", fmt.Errorf("want a string or an integer id, got %s", describe(x))
}

// compareJSONLine parses line with both readers and fails when they
// disagree on whether it is good or on what it holds.
func compareJSONLine(t *testing.T, c *Catalog, line []byte) {
	t.Helper()
	fast, err := NewTableReader(strings.NewReader(""), "f", FormatJSONL, c, "store")
	if err != nil {
		t.Fatal(err)
	}
	std, _ := NewTableReader(strings.NewReader(""), "f", FormatJSONL, c, "store")
	line = bytes.TrimSpace(line)
	errFast, errStd := fast.parseJSONLine(line), std.parseJSONStd(line)
	if (errFast == nil) != (errStd == nil) {
		t.Fatalf("line %q: scanner says %v, encoding/json says %v", line, errFast, errStd)
	}
	if errFast != nil {
		if !errors.Is(errFast, ErrTable) {
			t.Fatalf("line %q: %v does not wrap ErrTable", line, errFast)
		}
		return
	}
	a, b := &fast.row, &std.row
	if a.ID != b.ID || len(a.Specs) != len(b.Specs) {
		t.Fatalf("line %q: scanner read %s %v, encoding/json %s %v", line, a.ID, a.Values, b.ID, b.Values)
	}
	for i := range a.Specs {
		if a.Specs[i] != b.Specs[i] || !a.Values[i].Equal(b.Values[i]) {
			t.Fatalf("line %q: %s = %v, encoding/json %s = %v", line, a.Specs[i].Name, a.Values[i], b.Specs[i].Name, b.Values[i])
		}
	}
}

var jsonLines = []string{
	`{"id": "1", "store_avg_rating": 4.5, "store_orders": 10, "store_open": true, "store_cuisine": "thai", "store_embedding": [1, 2.5], "store_tags": ["a"]}`,
	`{"id":2,"store_orders":null}`,
	`{"id": 1e3}`, `{"id": -0}`, `{"id": "x", "id": "y"}`, `{}`, `[]`, `{"id": 1} {}`, `{"id": 1}x`,
	`{"id": 1, "store_orders": 3.0}`, `{"id": 1, "store_orders": 1e3}`, `{"id": 1, "store_orders": 9223372036854775808}`,
	`{"id": 1, "store_orders": 1.5}`, `{"id": 1, "store_avg_rating": 1e400}`, `{"id": 1, "store_avg_rating": -0.0}`,
	`{"id": 1, "store_avg_rating": "4.5"}`, `{"id": 1, "store_open": 1}`, `{"id": 1, "store_cuisine": "\u00e9\ud83d\ude00\ud800x\n\"\\\/"}`,
	`{"id": 1, "store_cuisine": "\ud800\u0041"}`, `{"id": 1, "store_cuisine": "tab	in"}`, `{"id": 1, "store_cuisine": "\x"}`,
	`{"id": 1, "store_embedding": [1e39]}`, `{"id": 1, "store_embedding": [null]}`, `{"id": 1, "store_embedding": []}`,
	`{"id": 1, "store_embedding": [[1]]}`, `{"id": 1, "store_tags": ["a", 1]}`, `{"id": 1, "store_tags": [], "store_embedding": [1,]}`,
	`{"id": 1, "nope": {"a": [1, {"b": null}]}}`, `{"id": 1, "consumer_orders": 3}`, `{"id": 01}`, `{"id": 1.}`, `{"id": .5}`,
	`{"id": 1,}`, `{"id" 1}`, `{"id": tru}`, `{"id": true}`, `{"id": "a"`, `{"id": "a", "store_orders": -}`,
	"{\"id\": \"\xff\"}", `{"id": ""}`, `  {"id": 3}  `, `{"id": 3, "store_embedding": [1, 2, 3.5e-2, -4E+1]}`,
}

func TestJSONLineScanner(t *testing.T) {
	c := mustCatalog(t, tableCatalog)
	for _, l := range jsonLines {
		compareJSONLine(t, c, []byte(l))
	}
	// Errors name the line and the column.
	got, err := readTable(t, c, "s.jsonl", FormatJSONL, "{\"id\": 1}\n\n{\"id\": 2, \"store_orders\": \"x\"}\n")
	if err == nil || err.Error() != `s.jsonl:3: column store_orders: want int, got string "x"` || len(got) != 1 {
		t.Errorf("got %v, %v", got, err)
	}
}

func FuzzJSONLine(f *testing.F) {
	c := mustCatalog(f, tableCatalog)
	for _, l := range jsonLines {
		f.Add([]byte(l))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		if bytes.IndexByte(line, '\n') >= 0 {
			return // one line at a time
		}
		compareJSONLine(t, c, line)
	})
}

func BenchmarkTableJSONL(b *testing.B) {
	c := mustCatalog(b, tableCatalog)
	var data strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&data, `{"id": %d, "store_avg_rating": %d.25, "store_orders": %d, "store_open": true, "store_cuisine": "thai %d", "store_embedding": [1, 2.5, %d], "store_tags": ["a", "b"]}`+"\n", i, i, i*7, i%9, i)
	}
	b.ReportAllocs()
	b.SetBytes(int64(data.Len()))
	for b.Loop() {
		r, err := NewTableReader(strings.NewReader(data.String()), "b", FormatJSONL, c, "store")
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := r.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
	}
}
