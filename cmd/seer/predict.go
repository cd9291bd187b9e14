package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"

	"golang.org/x/sync/errgroup"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/models"
)

// The request bodies of /v1/predict and /v1/features.
type (
	predictRequest struct {
		Queries []predictQuery `json:"queries"`
		Debug   bool           `json:"debug"`
	}
	predictQuery struct {
		ID         string         `json:"id"`
		Model      string         `json:"model"`
		Context    entityMap      `json:"context"`
		Features   map[string]any `json:"features"`
		Candidates []candidate    `json:"candidates"`
		Debug      bool           `json:"debug"`
	}
	featuresRequest struct {
		Queries []featuresQuery `json:"queries"`
	}
	featuresQuery struct {
		ID         string      `json:"id"`
		Features   []string    `json:"features"`
		Context    entityMap   `json:"context"`
		Candidates []candidate `json:"candidates"`
	}
	candidate struct {
		ID       string         `json:"id"`
		Entities entityMap      `json:"entities"`
		Features map[string]any `json:"features"`
	}
)

// entityMap maps entity types to ids; an id may be written as a JSON string
// or integer.
type entityMap map[string]string

var integerText = regexp.MustCompile(`^-?[0-9]+$`)

// UnmarshalJSON decodes entity ids given as strings or integers.
func (m *entityMap) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("entities: want an object of entity type to id")
	}
	out := make(entityMap, len(raw))
	for k, v := range raw {
		var s string
		switch {
		case len(v) > 0 && v[0] == '"':
			if err := json.Unmarshal(v, &s); err != nil || s == "" {
				return fmt.Errorf("entity %s: want a non-empty id", k)
			}
		case integerText.Match(v):
			s = string(v)
		default:
			return fmt.Errorf("entity %s: want a string or integer id, got %s", k, truncateBytes(v, 40))
		}
		out[k] = s
	}
	*m = out
	return nil
}

func truncateBytes(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// decodeBody reads a request body of at most the configured size and
// decodes it with decodeJSON.
func (s *server) decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, s.cfg.Predict.MaxBodyBytes)
	data, err := io.ReadAll(body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return fmt.Errorf("%w: body is over the limit of %d bytes", errTooLarge, tooBig.Limit)
		}
		return fmt.Errorf("%w: read body: %v", errBadRequest, err)
	}
	return decodeJSON(data, v)
}

// decodeJSON decodes a request body strictly: malformed JSON, unknown fields
// and trailing data are errors that say where they are. Numbers stay exact
// (json.Number).
func decodeJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s", errBadRequest, describeJSONError(err, data))
	}
	if dec.More() {
		return fmt.Errorf("%w: body: data after the JSON object", errBadRequest)
	}
	return nil
}

func describeJSONError(err error, data []byte) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("body: malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "body"
		}
		return fmt.Sprintf("%s: want %s, got JSON %s", field, typ.Type, typ.Value)
	case errors.Is(err, io.EOF):
		return "body: empty"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "body: malformed JSON: unexpected end"
	}
	return "body: " + err.Error()
}

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

// buildQuery turns a decoded query into a features.Query, converting request
// features to their inputs' types. Features the plan does not read are
// ignored; a null value counts as not given.
func buildQuery(p *features.Plan, where string, ctx entityMap, feats map[string]any, cands []candidate) (features.Query, error) {
	q := features.Query{Context: ctx}
	var err error
	if q.Features, err = typedFeatures(p, where+".features", feats); err != nil {
		return q, err
	}
	if len(cands) > 0 {
		q.Candidates = make([]features.Candidate, len(cands))
		for i := range cands {
			c := &q.Candidates[i]
			c.Entities = cands[i].Entities
			w := fmt.Sprintf("%s.candidates[%d].features", where, i)
			if c.Features, err = typedFeatures(p, w, cands[i].Features); err != nil {
				return q, err
			}
		}
	}
	return q, nil
}

func typedFeatures(p *features.Plan, where string, raw map[string]any) (map[string]features.Value, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	out := make(map[string]features.Value, len(raw))
	for name, x := range raw {
		k := p.Input(name)
		if k < 0 || x == nil {
			continue
		}
		v, err := features.Coerce(p.Inputs[k].Type, x)
		if err != nil {
			return nil, fmt.Errorf("%w: %s.%s: %v", errBadRequest, where, name, err)
		}
		out[name] = v
	}
	return out, nil
}

// scores are a query's model outputs: a number per row, or an array per row
// for models with several outputs. NaN is written as null.
type scores struct {
	vals  []float64
	width int
}

// MarshalJSON writes the scores without reflection.
func (s scores) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 2+len(s.vals)*21)
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
		if math.IsNaN(v) || math.IsInf(v, 0) {
			b = append(b, "null"...)
		} else {
			b = strconv.AppendFloat(b, v, 'g', -1, 64)
		}
	}
	if s.width > 1 && len(s.vals) > 0 {
		b = append(b, ']')
	}
	return append(b, ']'), nil
}

type queryResult struct {
	ID             string                     `json:"id,omitempty"`
	Model          string                     `json:"model"`
	Version        string                     `json:"version"`
	Scores         scores                     `json:"scores"`
	Degraded       bool                       `json:"degraded,omitempty"`
	DegradedStores []string                   `json:"degraded_stores,omitempty"`
	Debug          []map[string]features.Cell `json:"debug,omitempty"`
}

type featuresResult struct {
	ID             string                     `json:"id,omitempty"`
	Rows           []map[string]features.Cell `json:"rows"`
	Degraded       bool                       `json:"degraded,omitempty"`
	DegradedStores []string                   `json:"degraded_stores,omitempty"`
}

// job is one validated query, ready to run.
type job struct {
	plan  *features.Plan
	model models.Model
	query features.Query
	debug bool
}

// fetched is what running a job's retrieval and assembly produced.
type fetched struct {
	x        []float64
	cells    []features.Cell
	degraded []string
}

// fetch reads a job's features and assembles its rows: request values, then
// the stores (under the retrieval timeout), then defaults.
func (s *server) fetch(ctx context.Context, j *job) (fetched, error) {
	b := s.batches.Get().(*features.Batch)
	defer func() {
		b.Reset()
		s.batches.Put(b)
	}()
	if err := j.plan.Prepare(&j.query, b); err != nil {
		return fetched{}, err
	}
	var f fetched
	if len(b.Lookups) > 0 {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.Predict.RetrievalTimeout)
		f.degraded = s.svc.retriever.Fetch(rctx, b.Lookups)
		cancel()
		for _, st := range f.degraded {
			s.degraded.WithLabelValues(st).Inc()
		}
	}
	rows, ni := j.query.Rows(), len(j.plan.Inputs)
	f.x = make([]float64, rows*ni)
	if j.debug {
		f.cells = make([]features.Cell, rows*ni)
	}
	j.plan.Assemble(&j.query, b, f.x, f.cells)
	return f, nil
}

// cellRows splits a row-major slice of cells into one map per row.
func cellRows(p *features.Plan, cells []features.Cell) []map[string]features.Cell {
	ni := len(p.Inputs)
	out := make([]map[string]features.Cell, len(cells)/ni)
	for r := range out {
		m := make(map[string]features.Cell, ni)
		for k, in := range p.Inputs {
			m[in.Name] = cells[r*ni+k]
		}
		out[r] = m
	}
	return out
}

func (s *server) handlePredict(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Predict.Timeout)
	defer cancel()
	var req predictRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.checkShape(len(req.Queries), func(i int) int { return len(req.Queries[i].Candidates) }); err != nil {
		s.fail(w, r, err)
		return
	}
	jobs := make([]job, len(req.Queries))
	results := make([]queryResult, len(req.Queries))
	for i := range req.Queries {
		q := &req.Queries[i]
		v, err := s.resolve(q.Model)
		if err != nil {
			s.fail(w, r, fmt.Errorf("queries[%d].model: %w", i, err))
			return
		}
		fq, err := buildQuery(v.Plan, fmt.Sprintf("queries[%d]", i), q.Context, q.Features, q.Candidates)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		jobs[i] = job{plan: v.Plan, model: v.Model, query: fq, debug: req.Debug || q.Debug}
		results[i] = queryResult{ID: q.ID, Model: v.Name, Version: v.Version}
	}
	err := forEach(ctx, len(jobs), func(ctx context.Context, i int) error {
		j := &jobs[i]
		f, err := s.fetch(ctx, j)
		if err != nil {
			return fmt.Errorf("queries[%d]: %w", i, err)
		}
		rows, nout := j.query.Rows(), j.model.NumOutputs()
		out := make([]float64, rows*nout)
		if err := j.model.Predict(out, f.x, rows); err != nil {
			return fmt.Errorf("queries[%d]: score with %s@%s: %w", i, results[i].Model, results[i].Version, err)
		}
		s.rows.WithLabelValues(results[i].Model).Add(float64(rows))
		res := &results[i]
		res.Scores = scores{vals: out, width: nout}
		res.Degraded, res.DegradedStores = len(f.degraded) > 0, f.degraded
		if j.debug {
			res.Debug = cellRows(j.plan, f.cells)
		}
		return nil
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": results})
}

func (s *server) handleFeatures(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Predict.Timeout)
	defer cancel()
	var req featuresRequest
	if err := s.decodeBody(w, r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.checkShape(len(req.Queries), func(i int) int { return len(req.Queries[i].Candidates) }); err != nil {
		s.fail(w, r, err)
		return
	}
	jobs := make([]job, len(req.Queries))
	results := make([]featuresResult, len(req.Queries))
	for i := range req.Queries {
		q := &req.Queries[i]
		where := fmt.Sprintf("queries[%d]", i)
		if len(q.Features) == 0 {
			s.fail(w, r, fmt.Errorf("%w: %s.features: name at least one catalog feature", errBadRequest, where))
			return
		}
		plan, err := s.svc.catalog.DisplayPlan(q.Features)
		if err != nil {
			s.fail(w, r, fmt.Errorf("%w: %s.features: %v", errBadRequest, where, err))
			return
		}
		fq, err := buildQuery(plan, where, q.Context, nil, q.Candidates)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		jobs[i] = job{plan: plan, query: fq, debug: true}
		results[i].ID = q.ID
	}
	err := forEach(ctx, len(jobs), func(ctx context.Context, i int) error {
		f, err := s.fetch(ctx, &jobs[i])
		if err != nil {
			return fmt.Errorf("queries[%d]: %w", i, err)
		}
		res := &results[i]
		res.Rows = cellRows(jobs[i].plan, f.cells)
		res.Degraded, res.DegradedStores = len(f.degraded) > 0, f.degraded
		return nil
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": results})
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
