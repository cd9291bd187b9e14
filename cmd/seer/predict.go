package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/models"
)

// The request bodies of /v1/predict and /v1/features are decoded by
// request.decode (decode.go): {"debug", "queries": [{"id", "model",
// "context", "features", "candidates": [{"id", "entities", "features"}],
// "debug"}]}, with "features" a list of catalog names for /v1/features.

// checkShape enforces the request limits shared by both endpoints.
func (s *server) checkShape(nqueries int, candidates func(i int) int) error {
	lim := s.cfg.Predict
	if nqueries == 0 {
		return fmt.Errorf("%w: queries: none given", errBadRequest)
	}
	if nqueries > lim.MaxQueries {
		return fmt.Errorf("%w: queries: %d is over the limit of %d", errBadRequest, nqueries, lim.MaxQueries)
	}
	for i := range nqueries {
		if n := candidates(i); n > lim.MaxCandidates {
			return fmt.Errorf("%w: queries[%d].candidates: %d is over the limit of %d", errBadRequest, i, n, lim.MaxCandidates)
		}
	}
	return nil
}

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

// queryResult is the answer to one query of either endpoint.
type queryResult struct {
	id, model, version string
	scores             scores
	degraded           []string // stores that failed or timed out
	plan               *features.Plan
	cells              []features.Cell // debug: each row's inputs and their origins
}

// job is one validated query, ready to run, with the memory its rows go to.
type job struct {
	plan  *features.Plan
	model models.Model // nil for /v1/features
	query features.Query
	x     []float64       // rows × inputs
	out   []float64       // rows × outputs
	cells []features.Cell // rows × inputs, when debugging
}

// carve gives each job its x, out and cells from the request's memory.
func (req *request) carve(jobs []job, debug func(i int) bool) {
	nf, nc := 0, 0
	for i := range jobs {
		j := &jobs[i]
		rows, ni := j.query.Rows(), len(j.plan.Inputs)
		nf += rows * ni
		if j.model != nil {
			nf += rows * j.model.NumOutputs()
		}
		if debug(i) {
			nc += rows * ni
		}
	}
	req.floats = resize(req.floats, nf)
	req.cells = resize(req.cells, nc)
	f, c := req.floats, req.cells
	for i := range jobs {
		j := &jobs[i]
		rows, ni := j.query.Rows(), len(j.plan.Inputs)
		j.x, f = f[:rows*ni:rows*ni], f[rows*ni:]
		if j.model != nil {
			n := rows * j.model.NumOutputs()
			j.out, f = f[:n:n], f[n:]
		}
		if debug(i) {
			j.cells, c = c[:rows*ni:rows*ni], c[rows*ni:]
		}
	}
}

// resize returns s with length n, zeroed.
func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// fetch reads a job's features and assembles its rows: request values, then
// the stores (under the retrieval timeout), then defaults. It returns the
// stores that failed or timed out.
func (s *server) fetch(ctx context.Context, j *job) ([]string, error) {
	b := s.batches.Get().(*features.Batch)
	defer func() {
		b.Reset()
		s.batches.Put(b)
	}()
	if err := j.plan.Prepare(&j.query, b); err != nil {
		return nil, err
	}
	var degraded []string
	if len(b.Lookups) > 0 {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.Predict.RetrievalTimeout)
		degraded = s.svc.retriever.Fetch(rctx, b.Lookups)
		cancel()
		for _, st := range degraded {
			s.degraded.WithLabelValues(st).Inc()
		}
	}
	j.plan.Assemble(&j.query, b, j.x, j.cells)
	return degraded, nil
}

// readRequest reads and decodes a /v1/predict or /v1/features body and
// checks its shape against the limits. The caller releases the request.
func (s *server) readRequest(w http.ResponseWriter, r *http.Request, kind bodyKind) (*request, error) {
	req := newRequest()
	err := s.readBody(w, r, req)
	if err == nil {
		err = req.decode(kind)
	}
	if err == nil {
		err = s.checkShape(req.nq, func(i int) int { return req.queries[i].nc })
	}
	if err != nil {
		req.release()
		return nil, err
	}
	return req, nil
}

func (s *server) handlePredict(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Predict.Timeout)
	defer cancel()
	req, err := s.readRequest(w, r, predictBody)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer req.release()
	jobs := make([]job, req.nq)
	results := make([]queryResult, req.nq)
	for i := range req.nq {
		q := &req.queries[i]
		v, err := s.resolve(q.model)
		if err != nil {
			s.fail(w, r, fmt.Errorf("queries[%d].model: %w", i, err))
			return
		}
		fq, err := req.query(v.Plan, i)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		jobs[i] = job{plan: v.Plan, model: v.Model, query: fq}
		results[i] = queryResult{id: q.id, model: v.Name, version: v.Version}
	}
	debug := func(i int) bool { return req.debug || req.queries[i].debug }
	req.carve(jobs, debug)
	err = forEach(ctx, len(jobs), func(ctx context.Context, i int) error {
		j, res := &jobs[i], &results[i]
		degraded, err := s.fetch(ctx, j)
		if err != nil {
			return fmt.Errorf("queries[%d]: %w", i, err)
		}
		rows := j.query.Rows()
		if err := j.model.Predict(j.out, j.x, rows); err != nil {
			return fmt.Errorf("queries[%d]: score with %s@%s: %w", i, res.model, res.version, err)
		}
		s.rows.WithLabelValues(res.model).Add(float64(rows))
		res.scores = scores{vals: j.out, width: j.model.NumOutputs()}
		res.degraded = degraded
		if j.cells != nil {
			res.plan, res.cells = j.plan, j.cells
		}
		return nil
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	req.out = appendResults(req.out[:0], results, true)
	writeBody(w, req.out)
}

func (s *server) handleFeatures(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Predict.Timeout)
	defer cancel()
	req, err := s.readRequest(w, r, featuresBody)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer req.release()
	jobs := make([]job, req.nq)
	results := make([]queryResult, req.nq)
	for i := range req.nq {
		q := &req.queries[i]
		where := fmt.Sprintf("queries[%d]", i)
		if q.nn == 0 {
			s.fail(w, r, fmt.Errorf("%w: %s.features: name at least one catalog feature", errBadRequest, where))
			return
		}
		plan, err := s.svc.catalog.DisplayPlan(q.names[:q.nn])
		if err != nil {
			s.fail(w, r, fmt.Errorf("%w: %s.features: %v", errBadRequest, where, err))
			return
		}
		fq, err := req.query(plan, i)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		jobs[i] = job{plan: plan, query: fq}
		results[i].id = q.id
	}
	req.carve(jobs, func(int) bool { return true })
	err = forEach(ctx, len(jobs), func(ctx context.Context, i int) error {
		degraded, err := s.fetch(ctx, &jobs[i])
		if err != nil {
			return fmt.Errorf("queries[%d]: %w", i, err)
		}
		res := &results[i]
		res.plan, res.cells, res.degraded = jobs[i].plan, jobs[i].cells, degraded
		return nil
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	req.out = appendResults(req.out[:0], results, false)
	writeBody(w, req.out)
}

// forEach runs fn for 0..n-1, concurrently when n > 1, and returns the
// error of the lowest index that failed.
func forEach(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	if n == 1 {
		return fn(ctx, 0)
	}
	errs := make([]error, n)
	var g errgroup.Group
	for i := range n {
		g.Go(func() error {
			errs[i] = fn(ctx, i)
			return nil
		})
	}
	g.Wait()
	if i := slices.IndexFunc(errs, func(e error) bool { return e != nil }); i >= 0 {
		return errs[i]
	}
	return nil
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
			b = appendCells(b, res.plan, res.cells)
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
			b = appendCells(b, res.plan, res.cells)
		}
		b = append(b, '}')
	}
	return append(b, "]}\n"...)
}

// appendCells appends row-major cells as an array of objects, one per row,
// from input name to {"value", "source"}, names sorted.
func appendCells(b []byte, p *features.Plan, cells []features.Cell) []byte {
	ni := len(p.Inputs)
	order := make([]int, ni)
	for k := range order {
		order[k] = k
	}
	slices.SortFunc(order, func(a, c int) int { return strings.Compare(p.Inputs[a].Name, p.Inputs[c].Name) })
	b = append(b, '[')
	for r := 0; r*ni < len(cells); r++ {
		if r > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		for n, k := range order {
			if n > 0 {
				b = append(b, ',')
			}
			c := &cells[r*ni+k]
			b = appendString(b, p.Inputs[k].Name)
			b = append(b, `:{"value":`...)
			b = appendValue(b, &c.Value)
			b = append(b, `,"source":"`...)
			b = append(b, c.Source.String()...)
			b = append(b, `"}`...)
		}
		b = append(b, '}')
	}
	return append(b, ']')
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
