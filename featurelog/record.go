package featurelog

import (
	"cmp"
	"slices"
	"strconv"
	"time"
	"unsafe"

	"github.com/seer-ml/seer/features"
)

// entry is one query waiting in the queue: a copy of what its line needs.
// Strings the request owns are copied into arena, so that nothing of the
// request's memory is held.
type entry struct {
	time     time.Time
	meta     [4]span // request id, query id, model, version
	plan     *features.Plan
	rows     int
	cells    []features.Cell
	scores   []float64
	outputs  int
	degraded []string
	arena    []byte
	context  []pair  // the query's entities
	entities []pair  // the candidates' entities, row after row
	ends     []int32 // row r's entities are entities[ends[r-1]:ends[r]]
	size     int64   // bytes counted against Config.QueueBytes
}

type span struct{ lo, hi int32 }

type pair struct{ key, id span }

// cellSize is the memory of one copied cell.
const cellSize = int64(unsafe.Sizeof(features.Cell{}))

// str returns the text of a span of the arena without copying it: it is
// valid until the arena changes, and is only read while encoding the line.
func (e *entry) str(s span) string {
	return unsafe.String(unsafe.SliceData(e.arena[s.lo:]), int(s.hi-s.lo))
}

func (e *entry) keep(s string) span {
	lo := int32(len(e.arena))
	e.arena = append(e.arena, s...)
	return span{lo, int32(len(e.arena))}
}

// fill copies q into e.
func (e *entry) fill(q *Query) {
	e.time = q.Time
	e.meta = [4]span{e.keep(q.RequestID), e.keep(q.QueryID), e.keep(q.Model), e.keep(q.Version)}
	e.plan = q.Plan
	e.rows = q.Query.Rows()
	e.cells = append(e.cells[:0], q.Cells...)
	// Request strings are substrings of the request's body: copy them,
	// all into one new string.
	var held int64 // bytes the cells' values hold
	start := len(e.arena)
	for i := range e.cells {
		c := &e.cells[i]
		if c.Source == features.FromRequest && c.Value.Type() == features.String {
			e.arena = append(e.arena, c.Value.Str()...)
		}
		held += int64(c.Value.Size())
	}
	if len(e.arena) > start {
		copied := string(e.arena[start:])
		e.arena = e.arena[:start]
		for i := range e.cells {
			c := &e.cells[i]
			if c.Source == features.FromRequest && c.Value.Type() == features.String {
				n := len(c.Value.Str())
				c.Value = features.StringValue(copied[:n])
				copied = copied[n:]
			}
		}
	}
	e.scores = append(e.scores[:0], q.Scores...)
	e.outputs = q.Outputs
	e.degraded = append(e.degraded[:0], q.Degraded...)
	for k, id := range q.Query.Context {
		e.context = append(e.context, pair{e.keep(k), e.keep(id)})
	}
	for i := range q.Query.Candidates {
		for k, id := range q.Query.Candidates[i].Entities {
			e.entities = append(e.entities, pair{e.keep(k), e.keep(id)})
		}
		e.ends = append(e.ends, int32(len(e.entities)))
	}
	e.size = held + int64(cap(e.cells))*cellSize + 8*int64(cap(e.scores)) + int64(cap(e.arena)) +
		int64(unsafe.Sizeof(pair{}))*int64(cap(e.context)+cap(e.entities)) + 4*int64(cap(e.ends)) + 256
}

// estimate returns about the bytes an entry for q holds, before copying
// it; fill counts them exactly.
func estimate(q *Query) int64 {
	return int64(len(q.Cells))*cellSize + 8*int64(len(q.Scores)) + 64*int64(q.Query.Rows()) + 512
}

func (e *entry) reset() {
	clear(e.cells)
	*e = entry{
		cells: e.cells[:0], scores: e.scores[:0], degraded: e.degraded[:0], arena: e.arena[:0],
		context: e.context[:0], entities: e.entities[:0], ends: e.ends[:0],
	}
}

// planKeys are a plan's input names as JSON object keys, quoted once for
// every line of the plan: `"name":`.
type planKeys []string

func newPlanKeys(p *features.Plan) planKeys {
	keys := make(planKeys, len(p.Inputs))
	for k, in := range p.Inputs {
		keys[k] = string(append(features.AppendJSONString(nil, in.Name), ':'))
	}
	return keys
}

// appendJSON appends the entry's line, without the newline; keys are its
// plan's (newPlanKeys).
func (e *entry) appendJSON(b []byte, keys planKeys) []byte {
	b = append(b, `{"time":"`...)
	b = e.time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","request_id":`...)
	b = features.AppendJSONString(b, e.str(e.meta[0]))
	b = append(b, `,"query_id":`...)
	b = features.AppendJSONString(b, e.str(e.meta[1]))
	b = append(b, `,"model":`...)
	b = features.AppendJSONString(b, e.str(e.meta[2]))
	b = append(b, `,"version":`...)
	b = features.AppendJSONString(b, e.str(e.meta[3]))
	b = append(b, `,"rows":[`...)
	ni := len(keys)
	var merged []pair
	for r := range e.rows {
		if r > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"entities":{`...)
		merged = e.rowEntities(merged[:0], r)
		for i, p := range merged {
			if i > 0 {
				b = append(b, ',')
			}
			b = features.AppendJSONString(b, e.str(p.key))
			b = append(b, ':')
			b = features.AppendJSONString(b, e.str(p.id))
		}
		cells := e.cells[r*ni : (r+1)*ni]
		b = append(b, `},"inputs":{`...)
		for k, key := range keys {
			if k > 0 {
				b = append(b, ',')
			}
			b = append(b, key...)
			b = cells[k].Value.AppendJSON(b)
		}
		b = append(b, `},"sources":{`...)
		for k, key := range keys {
			if k > 0 {
				b = append(b, ',')
			}
			b = append(b, key...)
			b = append(b, '"')
			b = append(b, cells[k].Source.String()...)
			b = append(b, '"')
		}
		b = append(b, '}')
		first := true
		for k, key := range keys {
			if cells[k].Why == features.ReasonNone {
				continue
			}
			if first {
				b = append(b, `,"why":{`...)
				first = false
			} else {
				b = append(b, ',')
			}
			b = append(b, key...)
			b = append(b, '"')
			b = append(b, cells[k].Why.String()...)
			b = append(b, '"')
		}
		if !first {
			b = append(b, '}')
		}
		b = append(b, `,"scores":[`...)
		for i, s := range e.scores[r*e.outputs : (r+1)*e.outputs] {
			if i > 0 {
				b = append(b, ',')
			}
			b = features.AppendJSONFloat(b, s)
		}
		b = append(b, "]}"...)
	}
	b = append(b, ']')
	if len(e.degraded) > 0 {
		n := 0
		for i := range e.cells {
			if e.cells[i].Why == features.ReasonStoreDegraded {
				n++
			}
		}
		b = append(b, `,"degraded_values":`...)
		b = strconv.AppendInt(b, int64(n), 10)
		b = append(b, `,"degraded_stores":[`...)
		for i, s := range e.degraded {
			if i > 0 {
				b = append(b, ',')
			}
			b = features.AppendJSONString(b, s)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// rowEntities appends the entities of row r to dst, sorted by entity
// type: the candidate's, and the query's for the types it does not name.
func (e *entry) rowEntities(dst []pair, r int) []pair {
	if len(e.ends) > 0 {
		lo := int32(0)
		if r > 0 {
			lo = e.ends[r-1]
		}
		dst = append(dst, e.entities[lo:e.ends[r]]...)
	}
	own := len(dst)
	for _, p := range e.context {
		if !slices.ContainsFunc(dst[:own], func(q pair) bool { return e.str(q.key) == e.str(p.key) }) {
			dst = append(dst, p)
		}
	}
	slices.SortFunc(dst, func(a, b pair) int { return cmp.Compare(e.str(a.key), e.str(b.key)) })
	return dst
}
