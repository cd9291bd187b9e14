package serving

import (
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/seer-ml/seer/features"
)

// scores are a query's model outputs: a number per row, or an array per row
// for models with several outputs. NaN is written as null.
type scores struct {
	vals  []float64
	width int
}

// appendJSON appends the scores as JSON.
func (s scores) appendJSON(b []byte) []byte {
	b = append(b, '[')
	for i, v := range s.vals {
		if i > 0 {
			b = append(b, ',')
		}
		if s.width > 1 && i%s.width == 0 {
			if i > 0 {
				b[len(b)-1] = ']'
				b = append(b, ',')
			}
			b = append(b, '[')
		}
		b = appendFloat(b, v)
	}
	if s.width > 1 && len(s.vals) > 0 {
		b = append(b, ']')
	}
	return append(b, ']')
}

// writeBody answers 200 with a JSON body.
func writeBody(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// appendResults appends the answer of /v1/predict (scores set) or
// /v1/features, and a newline: {"results": [...]}. The bytes are those
// encoding/json gives for the same answer (TestAppendResults): fields in
// order, empty ones left out, debug rows as objects with sorted keys,
// strings escaped for HTML.
func appendResults(b []byte, results []queryResult, predict bool) []byte {
	b = append(b, `{"results":[`...)
	for i := range results {
		res := &results[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		if res.id != "" {
			b = append(b, `"id":`...)
			b = appendString(b, res.id)
			b = append(b, ',')
		}
		if predict {
			b = append(b, `"model":`...)
			b = appendString(b, res.model)
			b = append(b, `,"version":`...)
			b = appendString(b, res.version)
			b = append(b, `,"scores":`...)
			b = res.scores.appendJSON(b)
		} else {
			b = append(b, `"rows":`...)
			b = appendCells(b, res.plan, res.layout, res.cells)
		}
		if len(res.degraded) > 0 {
			b = append(b, `,"degraded":true,"degraded_stores":[`...)
			for k, st := range res.degraded {
				if k > 0 {
					b = append(b, ',')
				}
				b = appendString(b, st)
			}
			b = append(b, ']')
		}
		if predict && len(res.cells) > 0 {
			b = append(b, `,"debug":`...)
			b = appendCells(b, res.plan, res.layout, res.cells)
		}
		b = append(b, '}')
	}
	return append(b, "]}\n"...)
}

// appendCells appends row-major cells as an array of objects, one per row,
// from input name to {"value", "source", "why", "updated"} (the last two
// when set), names sorted.
func appendCells(b []byte, p *features.Plan, lay *cellLayout, cells []features.Cell) []byte {
	if lay == nil {
		lay = newCellLayout(p)
	}
	ni := len(p.Inputs)
	// The values of one upload share their stamp: it is formatted once.
	var last features.Stamp
	var lastText []byte
	var text [40]byte
	b = append(b, '[')
	for r := 0; r*ni < len(cells); r++ {
		if r > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		for n, k := range lay.order {
			if n > 0 {
				b = append(b, ',')
			}
			c := &cells[r*ni+k]
			b = append(b, lay.keys[n]...)
			b = appendValue(b, &c.Value)
			b = append(b, `,"source":"`...)
			b = append(b, c.Source.String()...)
			b = append(b, '"')
			if c.Why != features.ReasonNone {
				b = append(b, `,"why":"`...)
				b = append(b, c.Why.String()...)
				b = append(b, '"')
			}
			if c.Updated != 0 {
				if c.Updated != last || lastText == nil {
					last = c.Updated
					lastText, _ = c.Updated.AppendText(text[:0])
				}
				b = append(b, `,"updated":"`...)
				b = append(b, lastText...)
				b = append(b, '"')
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

// cellLayout is how a plan's cells are written: the inputs in the order of
// their names, and each one's `"name":{"value":`.
type cellLayout struct {
	order []int
	keys  [][]byte
}

// cellLayouts holds the layouts of the plans met so far, up to
// maxLayouts: a model version's plan or a cached display plan lives long.
type cellLayouts struct {
	m sync.Map // *features.Plan -> *cellLayout
	n atomic.Int32
}

const maxLayouts = 1024

// of returns the layout of p's cells.
func (c *cellLayouts) of(p *features.Plan) *cellLayout {
	if l, ok := c.m.Load(p); ok {
		return l.(*cellLayout)
	}
	l := newCellLayout(p)
	if c.n.Add(1) <= maxLayouts {
		c.m.Store(p, l)
	}
	return l
}

func newCellLayout(p *features.Plan) *cellLayout {
	ni := len(p.Inputs)
	l := &cellLayout{order: make([]int, ni), keys: make([][]byte, ni)}
	for k := range l.order {
		l.order[k] = k
	}
	slices.SortFunc(l.order, func(a, c int) int { return strings.Compare(p.Inputs[a].Name, p.Inputs[c].Name) })
	for n, k := range l.order {
		l.keys[n] = append(appendString(nil, p.Inputs[k].Name), `:{"value":`...)
	}
	return l
}

// appendValue appends a value as features.Value.MarshalJSON writes it.
func appendValue(b []byte, v *features.Value) []byte {
	switch v.Type() {
	case features.Float:
		return appendFloat(b, v.Float())
	case features.Int:
		return strconv.AppendInt(b, v.Int(), 10)
	case features.Bool:
		return strconv.AppendBool(b, v.Bool())
	case features.String:
		return appendString(b, v.Str())
	case features.Vector:
		b = append(b, '[')
		for i, f := range v.Vector() {
			if i > 0 {
				b = append(b, ',')
			}
			if f != f || math.IsInf(float64(f), 0) {
				b = append(b, "null"...)
			} else {
				b = strconv.AppendFloat(b, float64(f), 'g', -1, 32)
			}
		}
		return append(b, ']')
	case features.List:
		l := v.List()
		if l == nil {
			return append(b, "null"...)
		}
		b = append(b, '[')
		for i, s := range l {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, s)
		}
		return append(b, ']')
	}
	return append(b, "null"...)
}

func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string the way encoding/json writes it:
// <, > and & escaped for HTML, invalid UTF-8 as \ufffd, U+2028 and U+2029
// escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
