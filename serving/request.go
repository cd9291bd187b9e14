package serving

import (
	"context"
	"fmt"
	"math"

	"github.com/seer-ml/seer/features"
)

// PredictRequest asks for the scores of one or more queries, as the body
// of /v1/predict does (docs/api.md).
type PredictRequest struct {
	Queries []Query
	// Debug asks every query for its rows' inputs and their origins.
	Debug bool
	// OnDegraded is what every query answers when a store it reads fails
	// or misses the retrieval deadline, unless the query says otherwise.
	OnDegraded OnDegraded
}

// OnDegraded says what a query answers when a store it reads fails or
// misses the retrieval deadline ("on_degraded" in the JSON API).
type OnDegraded uint8

// The values of OnDegraded; they are those of seer.v1.OnDegraded.
const (
	// OnDegradedUnset is the request's setting for a query, and
	// OnDegradedDefaults for a request.
	OnDegradedUnset OnDegraded = iota
	// OnDegradedDefaults answers with the inputs' defaults, the result
	// marked degraded with the stores and the number of values.
	OnDegradedDefaults
	// OnDegradedFail fails the request with a *DegradedError (ErrDegraded:
	// HTTP 503, gRPC UNAVAILABLE) naming the query and the stores.
	OnDegradedFail
)

// parseOnDegraded reads the JSON API's "on_degraded": "defaults" or
// "fail"; "" (not given) is OnDegradedUnset.
func parseOnDegraded(s string) (OnDegraded, bool) {
	switch s {
	case "":
		return OnDegradedUnset, true
	case "defaults":
		return OnDegradedDefaults, true
	case "fail":
		return OnDegradedFail, true
	}
	return 0, false
}

// failOnDegraded reports whether a query whose own setting is q, in a
// request whose setting is req, fails when its stores degrade. A value
// out of range is a bad request naming the field (i is the query's index).
func failOnDegraded(req, q OnDegraded, i int) (bool, error) {
	if req > OnDegradedFail {
		return false, badRequest("on_degraded: unknown value %d", req)
	}
	if q > OnDegradedFail {
		return false, badRequest("queries[%d].on_degraded: unknown value %d", i, q)
	}
	if q == OnDegradedUnset {
		q = req
	}
	return q == OnDegradedFail, nil
}

// failOnDegradedText is failOnDegraded for the JSON API's strings.
func failOnDegradedText(req, q string, i int) (bool, error) {
	r, ok := parseOnDegraded(req)
	if !ok {
		return false, badRequest(`on_degraded: want "defaults" or "fail", got %q`, truncateText(req, 40))
	}
	qm, ok := parseOnDegraded(q)
	if !ok {
		return false, badRequest(`queries[%d].on_degraded: want "defaults" or "fail", got %q`, i, truncateText(q, 40))
	}
	return failOnDegraded(r, qm, i)
}

// Query is one model scoring one or more candidates.
type Query struct {
	ID    string // echoed in the result
	Model string // name, name@version or name@alias
	// Context maps entity types to ids for every candidate.
	Context map[string]string
	// Features are request features for every candidate. A value of
	// another type than the input's is converted as JSON numbers are (an
	// int to a float, an integral float to an int) or refused; an invalid
	// Value counts as not given, and names the model does not read are
	// ignored.
	Features map[string]features.Value
	// Candidates are the rows to score; none scores one row from the
	// context alone.
	Candidates []Candidate
	Debug      bool
	// OnDegraded overrides the request's OnDegraded for this query.
	OnDegraded OnDegraded
}

// Candidate is one row of a query; its entities and features override the
// query's.
type Candidate struct {
	ID       string
	Entities map[string]string
	Features map[string]features.Value
}

// PredictResponse holds a result per query, in the order of the queries.
type PredictResponse struct {
	Results []Result
}

// Result is the answer to one query.
type Result struct {
	ID, Model, Version string
	// Scores holds Outputs numbers per row, row-major; NaN where the model
	// gave no number.
	Scores  []float64
	Outputs int
	// DegradedStores names the stores that failed or timed out: their
	// features took defaults.
	DegradedStores []string
	// DegradedValues counts the input values (rows × inputs) that took
	// their defaults because their store failed or timed out: the cells
	// whose why is store_degraded.
	DegradedValues int
	// Debug holds each row's inputs and their origins, when asked for.
	Debug *Rows
}

// Degraded reports whether some of the result's inputs took defaults
// because a store failed or timed out.
func (r *Result) Degraded() bool { return len(r.DegradedStores) > 0 }

// Rows are the inputs of a query's rows: Cells holds len(Inputs) cells per
// row, row-major, in the order of Inputs.
type Rows struct {
	Inputs []string
	Cells  []features.Cell
}

// Len returns the number of rows.
func (r *Rows) Len() int {
	if len(r.Inputs) == 0 {
		return 0
	}
	return len(r.Cells) / len(r.Inputs)
}

// Row returns the cells of row i.
func (r *Rows) Row(i int) []features.Cell {
	n := len(r.Inputs)
	return r.Cells[i*n : (i+1)*n]
}

// FeaturesRequest asks for stored feature values, as the body of
// /v1/features does.
type FeaturesRequest struct {
	Queries []FeaturesQuery
	// OnDegraded is as in PredictRequest.
	OnDegraded OnDegraded
}

// FeaturesQuery names catalog features to read for its context and
// candidates. Candidates' request features are answered as given.
type FeaturesQuery struct {
	ID         string
	Features   []string
	Context    map[string]string
	Candidates []Candidate
	// OnDegraded overrides the request's OnDegraded for this query.
	OnDegraded OnDegraded
}

// FeaturesResponse holds a result per query, in the order of the queries.
type FeaturesResponse struct {
	Results []FeaturesResult
}

// FeaturesResult is the values of one query's rows.
type FeaturesResult struct {
	ID             string
	Rows           Rows
	DegradedStores []string
	DegradedValues int // as in Result
}

// Predict scores every query of req with its model: request features,
// then stored values (through the cache), then defaults. The error wraps
// ErrBadRequest, features.ErrQuery, registry.ErrUnknownModel or
// registry.ErrUnknownVersion when the request is at fault, and ErrDegraded
// (a *DegradedError) when a query with OnDegradedFail met a degraded store.
func (s *Server) Predict(ctx context.Context, req *PredictRequest) (*PredictResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Predict.Timeout)
	defer cancel()
	if err := s.checkShape(len(req.Queries), func(i int) int { return len(req.Queries[i].Candidates) }); err != nil {
		return nil, err
	}
	jobs := make([]job, len(req.Queries))
	results := make([]queryResult, len(req.Queries))
	defer callFrom(ctx).note(results, typedCandidates(req.Queries))
	for i := range req.Queries {
		q := &req.Queries[i]
		v, err := s.resolve(q.Model)
		if err != nil {
			return nil, fmt.Errorf("queries[%d].model: %w", i, err)
		}
		results[i] = queryResult{id: q.ID, model: v.Name, version: v.Version}
		fail, err := failOnDegraded(req.OnDegraded, q.OnDegraded, i)
		if err != nil {
			return nil, err
		}
		fq, err := typedQuery(v.Plan, i, q.Context, q.Features, q.Candidates)
		if err != nil {
			return nil, err
		}
		jobs[i] = job{
			plan: v.Plan, model: v.Model, version: v, query: fq,
			debug: req.Debug || q.Debug, logged: s.learn.log.Sampled(), fail: fail,
		}
	}
	carve(jobs, needsCells(jobs), nil, nil)
	if err := s.score(ctx, jobs, results); err != nil {
		return nil, err
	}
	s.offerShadows(jobs, results, func(p *features.Plan, i int) (features.Query, error) {
		q := &req.Queries[i]
		return typedQuery(p, i, q.Context, q.Features, q.Candidates)
	})
	resp := &PredictResponse{Results: make([]Result, len(results))}
	for i := range results {
		res := &results[i]
		resp.Results[i] = Result{
			ID: res.id, Model: res.model, Version: res.version,
			Scores: res.scores.vals, Outputs: res.scores.width,
			DegradedStores: res.degraded, DegradedValues: res.degradedValues,
		}
		if res.cells != nil {
			resp.Results[i].Debug = &Rows{Inputs: inputNames(res.plan), Cells: res.cells}
		}
	}
	return resp, nil
}

// Features reads the catalog features each query of req names, for its
// context and candidates, as Predict would read them for a model.
func (s *Server) Features(ctx context.Context, req *FeaturesRequest) (*FeaturesResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Predict.Timeout)
	defer cancel()
	if err := s.checkShape(len(req.Queries), func(i int) int { return len(req.Queries[i].Candidates) }); err != nil {
		return nil, err
	}
	jobs := make([]job, len(req.Queries))
	results := make([]queryResult, len(req.Queries))
	n := 0
	for i := range req.Queries {
		n += len(req.Queries[i].Candidates)
	}
	defer callFrom(ctx).note(results, n)
	for i := range req.Queries {
		q := &req.Queries[i]
		plan, err := s.displayPlan(i, q.Features)
		if err != nil {
			return nil, err
		}
		fail, err := failOnDegraded(req.OnDegraded, q.OnDegraded, i)
		if err != nil {
			return nil, err
		}
		fq, err := typedQuery(plan, i, q.Context, nil, q.Candidates)
		if err != nil {
			return nil, err
		}
		jobs[i] = job{plan: plan, query: fq, fail: fail}
		results[i].id = q.ID
	}
	carve(jobs, func(int) bool { return true }, nil, nil)
	if err := s.lookup(ctx, jobs, results); err != nil {
		return nil, err
	}
	resp := &FeaturesResponse{Results: make([]FeaturesResult, len(results))}
	for i := range results {
		res := &results[i]
		resp.Results[i] = FeaturesResult{
			ID: res.id, Rows: Rows{Inputs: inputNames(res.plan), Cells: res.cells},
			DegradedStores: res.degraded, DegradedValues: res.degradedValues,
		}
	}
	return resp, nil
}

// typedCandidates returns the number of candidates of the queries.
func typedCandidates(qs []Query) int {
	n := 0
	for i := range qs {
		n += len(qs[i].Candidates)
	}
	return n
}

func inputNames(p *features.Plan) []string {
	names := make([]string, len(p.Inputs))
	for k, in := range p.Inputs {
		names[k] = in.Name
	}
	return names
}

// typedQuery checks a typed query of the Go API and makes it the query of
// plan p: entity ids must be non-empty, and request features take their
// inputs' types. Errors name query i.
func typedQuery(p *features.Plan, i int, context map[string]string, feats map[string]features.Value, cands []Candidate) (features.Query, error) {
	q := features.Query{Context: context}
	if err := checkIDs(part{i, -1, "context"}, context); err != nil {
		return q, err
	}
	var err error
	if q.Features, err = conform(p, part{i, -1, "features"}, feats); err != nil {
		return q, err
	}
	if len(cands) == 0 {
		return q, nil
	}
	q.Candidates = make([]features.Candidate, len(cands))
	for j := range cands {
		c, fc := &cands[j], &q.Candidates[j]
		if err := checkIDs(part{i, j, "entities"}, c.Entities); err != nil {
			return q, err
		}
		fc.Entities = c.Entities
		if fc.Features, err = conform(p, part{i, j, "features"}, c.Features); err != nil {
			return q, err
		}
	}
	return q, nil
}

// part names a field of query i, or of its candidate j when j >= 0, in
// errors: queries[i].candidates[j].field. It is formatted only when an
// error is made, so that a valid request costs no text.
type part struct {
	i, j  int
	field string
}

func (w part) String() string {
	if w.j < 0 {
		return fmt.Sprintf("queries[%d].%s", w.i, w.field)
	}
	return fmt.Sprintf("queries[%d].candidates[%d].%s", w.i, w.j, w.field)
}

// checkIDs refuses the entity ids features.CheckID refuses, as the JSON
// decoder does.
func checkIDs(where part, m map[string]string) error {
	for entity, id := range m {
		if id == "" {
			return badRequest("%s.%s: want a non-empty id", where, entity)
		}
		if err := features.CheckID(id); err != nil {
			return badRequest("%s.%s: %v", where, entity, err)
		}
	}
	return nil
}

// conform returns feats with each value the plan reads converted to its
// input's type. The map is returned as given when every value has its
// input's type already, and copied otherwise.
func conform(p *features.Plan, where part, feats map[string]features.Value) (map[string]features.Value, error) {
	var out map[string]features.Value
	for name, v := range feats {
		k := p.Input(name)
		if k < 0 || !v.Valid() || v.Type() == p.Inputs[k].Type {
			continue
		}
		w, ok := convert(p.Inputs[k].Type, v)
		if !ok {
			return nil, badRequest("%s.%s: want %s, got %s", where, name, p.Inputs[k].Type, describeValue(v))
		}
		if out == nil {
			out = make(map[string]features.Value, len(feats))
			for n, x := range feats {
				out[n] = x
			}
		}
		out[name] = w
	}
	if out == nil {
		return feats, nil
	}
	return out, nil
}

// convert converts a number between float and int as features.Coerce
// converts JSON numbers: any int to a float, an integral float to an int.
func convert(t features.Type, v features.Value) (features.Value, bool) {
	switch {
	case t == features.Float && v.Type() == features.Int:
		return features.FloatValue(float64(v.Int())), true
	case t == features.Int && v.Type() == features.Float:
		if f := v.Float(); f == math.Trunc(f) && math.Abs(f) < 1<<63 {
			return features.IntValue(int64(f)), true
		}
	}
	return features.Value{}, false
}

// describeValue names a value as features.Coerce names a JSON value in its
// errors, so that both APIs give the same message for the same mistake.
func describeValue(v features.Value) string {
	switch v.Type() {
	case features.Float:
		return fmt.Sprintf("number %v", v.Float())
	case features.Int:
		return fmt.Sprintf("number %v", v.Int())
	case features.Bool:
		return fmt.Sprintf("bool %v", v.Bool())
	case features.String:
		s := v.Str()
		if len(s) > 40 {
			s = s[:40] + "..."
		}
		return fmt.Sprintf("string %q", s)
	}
	return "array"
}
