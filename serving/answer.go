package serving

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

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
		b = features.AppendJSONFloat(b, v)
	}
	if s.width > 1 && len(s.vals) > 0 {
		b = append(b, ']')
	}
	return append(b, ']')
}

// chunkingSize is the most of a body net/http holds back before it
// chooses chunked encoding (its bufferBeforeChunkingSize): a smaller body
// gets its Content-Length from net/http.
const chunkingSize = 2048

// writeBody answers 200 with a JSON body. A larger body is sent with its
// Content-Length rather than in chunks: the header and the body then leave
// in one write or two, instead of a write per chunk and one for the last,
// empty chunk (a 100-entity /v1/features answer of 20 KB: a write system
// call fewer, and fewer bytes).
func writeBody(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if len(body) > chunkingSize {
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
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
			b = features.AppendJSONString(b, res.id)
			b = append(b, ',')
		}
		if predict {
			b = append(b, `"model":`...)
			b = features.AppendJSONString(b, res.model)
			b = append(b, `,"version":`...)
			b = features.AppendJSONString(b, res.version)
			b = append(b, `,"scores":`...)
			b = res.scores.appendJSON(b)
		} else {
			b = append(b, `"rows":`...)
			b = appendCells(b, res.plan, res.layout, res.cells)
		}
		if len(res.degraded) > 0 {
			b = append(b, `,"degraded":true,"degraded_values":`...)
			b = strconv.AppendInt(b, int64(res.degradedValues), 10)
			b = append(b, `,"degraded_stores":[`...)
			for k, st := range res.degraded {
				if k > 0 {
					b = append(b, ',')
				}
				b = features.AppendJSONString(b, st)
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
			b = c.Value.AppendJSON(b)
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
		l.keys[n] = append(features.AppendJSONString(nil, p.Inputs[k].Name), `:{"value":`...)
	}
	return l
}
