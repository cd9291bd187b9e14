package serving

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sync/errgroup"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/models"
	"github.com/seer-ml/seer/registry"
)

// This file is the request path both transports share: limits, model
// resolution, the jobs a request becomes, and fetching, assembling and
// scoring them. The HTTP transport fills jobs from its decoder (decode.go),
// the Go API from typed requests (request.go).

// checkShape enforces the request limits shared by both endpoints.
func (s *Server) checkShape(nqueries int, candidates func(i int) int) error {
	lim := s.cfg.Predict
	if nqueries == 0 {
		return badRequest("queries: none given")
	}
	// The messages are the JSON decoder's, which stops at the first one
	// too many without counting the rest.
	if nqueries > lim.MaxQueries {
		return badRequest("queries: more than the limit of %d", lim.MaxQueries)
	}
	for i := range nqueries {
		if n := candidates(i); n > lim.MaxCandidates {
			return badRequest("queries[%d].candidates: more than the limit of %d", i, lim.MaxCandidates)
		}
	}
	return nil
}

// resolve finds a model version for a query.
func (s *Server) resolve(ref string) (*registry.Version, error) {
	if ref == "" {
		return nil, badRequest("missing")
	}
	return s.registry.Snapshot().Resolve(ref)
}

// queryResult is the answer to one query of either endpoint.
type queryResult struct {
	id, model, version string
	scores             scores
	degraded           []string // stores that failed or timed out
	degradedValues     int      // cells that took defaults because of them
	plan               *features.Plan
	layout             *cellLayout     // how cells are written; nil: worked out then
	cells              []features.Cell // debug: each row's inputs and their origins
}

// job is one validated query, ready to run, with the memory its rows go to.
type job struct {
	plan    *features.Plan
	model   models.Model      // nil for /v1/features
	version *registry.Version // nil for /v1/features
	query   features.Query
	x       []float64       // rows × columns (an input may fill several)
	out     []float64       // rows × outputs
	cells   []features.Cell // rows × inputs, when debugging or logging
	debug   bool            // the answer shows the cells
	logged  bool            // the feature log samples the query
	fail    bool            // on_degraded fail: a degraded store fails the query
}

// needsCells reports whether job i keeps its cells: to show them, or to
// log them.
func needsCells(jobs []job) func(i int) bool {
	return func(i int) bool { return jobs[i].debug || jobs[i].logged }
}

// carve gives each job its x, out and cells from floats and cells, grown
// as needed, and returns them.
func carve(jobs []job, debug func(i int) bool, floats []float64, cells []features.Cell) ([]float64, []features.Cell) {
	nf, nc := 0, 0
	for i := range jobs {
		j := &jobs[i]
		rows, ni := j.query.Rows(), len(j.plan.Inputs)
		nf += rows * j.plan.Columns()
		if j.model != nil {
			nf += rows * j.model.NumOutputs()
		}
		if debug(i) {
			nc += rows * ni
		}
	}
	floats = resize(floats, nf)
	cells = resize(cells, nc)
	f, c := floats, cells
	for i := range jobs {
		j := &jobs[i]
		rows, ni, nc := j.query.Rows(), len(j.plan.Inputs), j.plan.Columns()
		j.x, f = f[:rows*nc:rows*nc], f[rows*nc:]
		if j.model != nil {
			n := rows * j.model.NumOutputs()
			j.out, f = f[:n:n], f[n:]
		}
		if debug(i) {
			j.cells, c = c[:rows*ni:rows*ni], c[rows*ni:]
		}
	}
	return floats, cells
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

// fetched is what reading a query's features found.
type fetched struct {
	degraded []string      // stores that failed or timed out
	values   int           // cells that took defaults because of them (store_degraded)
	elapsed  time.Duration // how long reading and assembling took
}

// fetch reads a job's features and assembles its rows: request values, then
// the stores (under the retrieval timeout), then defaults. It returns the
// stores that failed or timed out and how many values took defaults
// because of them.
func (s *Server) fetch(ctx context.Context, j *job) (fetched, error) {
	start := time.Now()
	f, err := s.assemble(ctx, j)
	f.elapsed = time.Since(start)
	if err == nil && len(f.degraded) > 0 && errors.Is(ctx.Err(), context.Canceled) {
		// The caller went away before the reads were done: no store
		// failed, and nobody is there to take a degraded answer.
		s.cancelled.Inc()
		return fetched{}, fmt.Errorf("%w: the caller went away before the features were read", context.Canceled)
	}
	for _, st := range f.degraded {
		s.degraded.WithLabelValues(st).Inc()
	}
	return f, err
}

// assemble is fetch without the metrics: shadow models read through it.
func (s *Server) assemble(ctx context.Context, j *job) (fetched, error) {
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
		f.degraded = s.retriever.Fetch(rctx, b.Lookups)
		cancel()
	}
	if len(f.degraded) == 0 {
		j.plan.Assemble(&j.query, b, j.x, j.cells)
		return f, nil
	}
	// Degraded: the cells say which values took defaults because of it,
	// and a query that does not keep its cells borrows some to count them.
	cells := j.cells
	var borrowed *[]features.Cell
	if cells == nil {
		borrowed = s.cellBufs.Get().(*[]features.Cell)
		cells = resize(*borrowed, j.query.Rows()*len(j.plan.Inputs))
	}
	j.plan.Assemble(&j.query, b, j.x, cells)
	for k := range cells {
		if cells[k].Why == features.ReasonStoreDegraded {
			f.values++
		}
	}
	if borrowed != nil {
		clear(cells) // they may hold parts of the request
		if cap(cells) <= maxBorrowedCells {
			*borrowed = cells[:0]
			s.cellBufs.Put(borrowed)
		}
	}
	return f, nil
}

// maxBorrowedCells bounds the cells kept for counting degraded values.
const maxBorrowedCells = 1 << 16

// score runs the jobs of a prediction, concurrently: it fetches and
// assembles each job's rows and scores them with its model into results,
// whose id, model and version the caller set.
func (s *Server) score(ctx context.Context, jobs []job, results []queryResult) error {
	return forEach(ctx, len(jobs), func(ctx context.Context, i int) error {
		j, res := &jobs[i], &results[i]
		f, err := s.fetch(ctx, j)
		if err != nil {
			return fmt.Errorf("queries[%d]: %w", i, err)
		}
		if len(f.degraded) > 0 {
			res.degraded, res.degradedValues = f.degraded, f.values
			s.reportDegraded(ctx, res.model, res.version, j.fail, f)
			if j.fail {
				return &DegradedError{Query: i, Stores: f.degraded}
			}
		}
		rows := j.query.Rows()
		if err := j.model.Predict(j.out, j.x, rows); err != nil {
			return fmt.Errorf("queries[%d]: score with %s@%s: %w", i, res.model, res.version, err)
		}
		s.rows.WithLabelValues(res.model).Add(float64(rows))
		res.scores = scores{vals: j.out, width: j.model.NumOutputs()}
		if j.logged {
			s.logQuery(ctx, j, res)
		}
		if j.debug {
			res.plan, res.layout, res.cells = j.plan, s.layouts.of(j.plan), j.cells
		}
		return nil
	})
}

// lookup runs the jobs of a feature read, concurrently: it fetches and
// assembles each job's rows into results, with every cell.
func (s *Server) lookup(ctx context.Context, jobs []job, results []queryResult) error {
	return forEach(ctx, len(jobs), func(ctx context.Context, i int) error {
		j, res := &jobs[i], &results[i]
		f, err := s.fetch(ctx, j)
		if err != nil {
			return fmt.Errorf("queries[%d]: %w", i, err)
		}
		if len(f.degraded) > 0 {
			res.degraded, res.degradedValues = f.degraded, f.values
			s.reportDegraded(ctx, "", "", j.fail, f)
			if j.fail {
				return &DegradedError{Query: i, Stores: f.degraded}
			}
		}
		res.plan, res.layout, res.cells = j.plan, s.layouts.of(j.plan), j.cells
		return nil
	})
}

// displayPlan returns the plan that reads the catalog features a
// /v1/features query names, compiled once per list of names.
func (s *Server) displayPlan(i int, names []string) (*features.Plan, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: queries[%d].features: name at least one catalog feature", ErrBadRequest, i)
	}
	if p := s.displayPlans.get(names); p != nil {
		return p, nil
	}
	plan, err := s.catalog.DisplayPlan(names)
	if err != nil {
		return nil, fmt.Errorf("%w: queries[%d].features: %v", ErrBadRequest, i, err)
	}
	s.displayPlans.put(names, plan)
	return plan, nil
}

// planCache keeps the display plans of the lists of features queries
// name: a service's callers ask for a few lists, over and over. It keeps at
// most maxDisplayPlans of them, the first ones asked for.
type planCache struct {
	mu    sync.RWMutex
	plans map[uint64][]cachedPlan
	n     int
}

type cachedPlan struct {
	names []string
	plan  *features.Plan
}

const maxDisplayPlans = 256

func namesHash(names []string) uint64 {
	var d xxhash.Digest
	for _, n := range names {
		d.WriteString(n)
		d.Write([]byte{0})
	}
	return d.Sum64()
}

func (c *planCache) get(names []string) *features.Plan {
	h := namesHash(names)
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, cp := range c.plans[h] {
		if slices.Equal(cp.names, names) {
			return cp.plan
		}
	}
	return nil
}

func (c *planCache) put(names []string, p *features.Plan) {
	h := namesHash(names)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n >= maxDisplayPlans {
		return
	}
	if c.plans == nil {
		c.plans = make(map[uint64][]cachedPlan)
	}
	// The names may be parts of a request's pooled memory: copy them.
	kept := make([]string, len(names))
	for k, n := range names {
		kept[k] = strings.Clone(n)
	}
	c.plans[h] = append(c.plans[h], cachedPlan{kept, p})
	c.n++
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
