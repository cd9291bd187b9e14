package serving

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/seer-ml/seer/featurelog"
	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/guardrail"
	"github.com/seer-ml/seer/internal/sample"
	"github.com/seer-ml/seer/registry"
	"github.com/seer-ml/seer/shadow"
)

// This file is what seer learns from live traffic, off the request path:
// the feature log of sampled queries, shadow models scored on the live
// queries and compared with the live answers, and the guardrails on
// default rates. The request path pays a sampling decision per query, a
// copy of each sampled or shadowed query into a bounded queue, and nothing
// else; the writing, the shadows' reads and scoring, and the comparisons
// happen on goroutines of their own.

// learning is the state of the three.
type learning struct {
	log     *featurelog.Logger // nil when the feature log is off
	shadows *shadow.Set
	tasks   chan *shadowTask
	queued  atomic.Int64 // bytes held by the tasks in the queue
	sample  sample.Rate  // shadows.sample: SIGHUP may change it
	guard   *guardrail.Guard

	mu     sync.Mutex
	warned map[[2]string]bool // pairs whose first error was logged

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// openLearning opens the feature log, when configured, and starts the
// shadow workers and the guardrails.
func (s *Server) openLearning(stdout io.Writer) error {
	l := &s.learn
	if s.cfg.FeatureLog.Path != "" {
		var err error
		if l.log, err = featurelog.Open(s.cfg.FeatureLog, stdout, s.log, s.metrics); err != nil {
			return err
		}
	}
	guard, err := guardrail.New(s.catalog, s.cfg.Guardrails, s.plans, s.log, s.metrics)
	if err != nil {
		return fmt.Errorf("guardrails: %w", err)
	}
	l.guard = guard
	l.shadows = shadow.NewSet(s.cfg.Shadows.Window, s.cfg.Shadows.TopK, s.metrics)
	l.tasks = make(chan *shadowTask, s.cfg.Shadows.Queue)
	l.sample.Set(s.cfg.Shadows.Sample)
	l.warned = make(map[[2]string]bool)
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	for range s.cfg.Shadows.Workers {
		l.wg.Go(func() { s.shadowWorker(ctx) })
	}
	l.wg.Go(func() { guard.Run(ctx) })
	return nil
}

// closeLearning stops the shadow workers (queued shadows are not scored)
// and the guardrails, and writes out the feature log.
func (s *Server) closeLearning() {
	l := &s.learn
	if l.cancel != nil {
		l.cancel()
		l.wg.Wait()
	}
	if l.log != nil {
		if err := l.log.Close(); err != nil {
			s.log.Warn("close feature log", "err", err)
		}
	}
}

// plans lists the plans of every loaded model version, whose counters the
// guardrails read.
func (s *Server) plans() []*features.Plan {
	var out []*features.Plan
	for _, m := range s.registry.Snapshot().Models() {
		for _, v := range m.Versions {
			out = append(out, v.Plan)
		}
	}
	return out
}

// logQuery hands a scored query to the feature log.
func (s *Server) logQuery(ctx context.Context, j *job, res *queryResult) {
	s.learn.log.Log(&featurelog.Query{
		Time: time.Now(), RequestID: requestID(ctx), QueryID: res.id,
		Model: res.model, Version: res.version, Plan: j.plan, Query: &j.query,
		Cells: j.cells, Scores: j.out, Outputs: j.model.NumOutputs(), Degraded: res.degraded,
	})
}

// shadowTask is one live query waiting for its shadows: the live scores
// and, per shadow, the query as that shadow's plan reads it, copied out of
// the request.
type shadowTask struct {
	live    *registry.Version
	scores  []float64
	outputs int
	runs    []shadowRun
	size    int64 // bytes counted against shadows.queue_bytes
}

type shadowRun struct {
	version *registry.Version
	query   *flatQuery
}

// offerShadows queues, for a shadows.sample share of the queries whose
// model has shadows, the live scores and the query as each shadow reads it
// (build types the request's values for a shadow's plan, as for the live
// one: same request values). A full queue drops the query for each of its
// shadows, counted.
func (s *Server) offerShadows(jobs []job, results []queryResult, build func(p *features.Plan, i int) (features.Query, error)) {
	snap := s.registry.Snapshot()
	for i := range jobs {
		j := &jobs[i]
		if j.version == nil {
			continue
		}
		m := snap.Model(j.version.Name)
		if m == nil || len(m.Shadows) == 0 {
			continue
		}
		if !s.learn.sample.Draw() {
			continue
		}
		s.offerShadow(j, m.Shadows, results[i].scores, func(p *features.Plan) (features.Query, error) { return build(p, i) })
	}
}

func (s *Server) offerShadow(j *job, shadows []*registry.Version, sc scores, build func(p *features.Plan) (features.Query, error)) {
	l := &s.learn
	drop := func() {
		now := time.Now()
		for _, sv := range shadows {
			if !same(sv, j.version) {
				l.shadows.Pair(label(j.version), label(sv)).Drop(now)
			}
		}
	}
	if len(l.tasks) == cap(l.tasks) || l.queued.Load() > s.cfg.Shadows.QueueBytes {
		drop()
		return
	}
	t := &shadowTask{live: j.version, scores: append([]float64(nil), sc.vals...), outputs: sc.width}
	t.size = int64(8*len(t.scores)) + 256
	for _, sv := range shadows {
		if same(sv, j.version) {
			continue // a version does not shadow itself
		}
		q, err := build(sv.Plan)
		if err != nil {
			// The shadow's plan refuses a value the live one accepted.
			s.learn.shadows.Pair(label(j.version), label(sv)).Fail(time.Now())
			continue
		}
		fq, n := flatten(&q)
		t.runs = append(t.runs, shadowRun{version: sv, query: fq})
		t.size += n
	}
	if len(t.runs) == 0 {
		return
	}
	if l.queued.Add(t.size) > s.cfg.Shadows.QueueBytes {
		l.queued.Add(-t.size)
		drop()
		return
	}
	select {
	case l.tasks <- t:
	default:
		l.queued.Add(-t.size)
		drop()
	}
}

// ShadowsConfig returns the shadows section the server was opened with,
// its sample as it is now.
func (s *Server) ShadowsConfig() shadow.Config {
	c := s.cfg.Shadows
	c.Sample = s.learn.sample.Share()
	return c
}

// SetShadowSample changes the share of live queries shadowed, from the
// next query on (SIGHUP applies a changed shadows.sample through it).
func (s *Server) SetShadowSample(sample float64) error {
	c := s.cfg.Shadows
	c.Sample = sample
	if err := c.Check(); err != nil {
		return err
	}
	s.learn.sample.Set(sample)
	return nil
}

// same reports whether a and b are the same model version, loaded once or
// reloaded.
func same(a, b *registry.Version) bool { return a.Name == b.Name && a.Version == b.Version }

// label names a version as the shadow statistics do: name@version.
func label(v *registry.Version) string { return v.Name + "@" + v.Version }

// shadowWorker scores queued shadows until ctx ends.
func (s *Server) shadowWorker(ctx context.Context) {
	var x, out []float64
	for {
		select {
		case <-ctx.Done():
			return
		case t := <-s.learn.tasks:
			s.learn.queued.Add(-t.size)
			for i := range t.runs {
				x, out = s.runShadow(ctx, t, &t.runs[i], x, out)
			}
		}
	}
}

// runShadow scores one shadow on its copy of a live query, through the
// same path as the live query (request values, cache and stores under the
// retrieval timeout, defaults), and compares the scores. x and out are the
// worker's memory, returned for the next run.
func (s *Server) runShadow(ctx context.Context, t *shadowTask, run *shadowRun, x, out []float64) ([]float64, []float64) {
	pair := s.learn.shadows.Pair(label(t.live), label(run.version))
	fail := func(err error) {
		pair.Fail(time.Now())
		s.warnShadow(t.live, run.version, err)
	}
	defer func() {
		if p := recover(); p != nil {
			fail(fmt.Errorf("panic: %v", p))
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Predict.Timeout)
	defer cancel()
	v := run.version
	q := run.query.query()
	rows := q.Rows()
	x, out = resize(x, rows*v.Plan.Columns()), resize(out, rows*v.Model.NumOutputs())
	j := job{plan: v.Plan, model: v.Model, version: v, query: q, x: x, out: out}
	if _, err := s.assemble(ctx, &j); err != nil {
		fail(err)
		return x, out
	}
	if err := v.Model.Predict(j.out, j.x, rows); err != nil {
		fail(err)
		return x, out
	}
	if err := pair.Observe(time.Now(), t.scores, j.out, t.outputs); err != nil {
		s.warnShadow(t.live, v, err)
	}
	return x, out
}

// warnShadow logs the first error of each pair; the others are counted.
func (s *Server) warnShadow(live, sv *registry.Version, err error) {
	key := [2]string{label(live), label(sv)}
	s.learn.mu.Lock()
	first := !s.learn.warned[key]
	s.learn.warned[key] = true
	s.learn.mu.Unlock()
	if first {
		s.log.Warn("shadow model failed; later failures are only counted", "live", key[0], "shadow", key[1], "err", err)
	}
}

// flatQuery is a query copied out of the request's memory as the request
// path can copy it cheaply: every string in one arena, entities and
// request values in flat lists. The shadow worker makes a features.Query
// of it again, off the request path.
type flatQuery struct {
	arena    []byte
	context  []flatEntity
	features []flatValue
	cands    []flatCandidate
	entities []flatEntity // the candidates', one after the other
	values   []flatValue  // the candidates', one after the other
}

type (
	flatSpan   struct{ lo, hi int32 }
	flatEntity struct{ typ, id flatSpan }
	flatValue  struct {
		name  flatSpan
		v     features.Value // for a string, the invalid value: its text is str
		str   flatSpan
		isStr bool
	}
	flatCandidate struct{ entities, values int32 } // where the candidate's end in entities and values
)

func (f *flatQuery) keep(s string) flatSpan {
	lo := int32(len(f.arena))
	f.arena = append(f.arena, s...)
	return flatSpan{lo, int32(len(f.arena))}
}

func (f *flatQuery) keepEntities(dst []flatEntity, m map[string]string) []flatEntity {
	for typ, id := range m {
		dst = append(dst, flatEntity{f.keep(typ), f.keep(id)})
	}
	return dst
}

func (f *flatQuery) keepValues(dst []flatValue, m map[string]features.Value) []flatValue {
	for name, v := range m {
		fv := flatValue{name: f.keep(name), v: v}
		switch v.Type() {
		case features.String:
			fv.str, fv.v, fv.isStr = f.keep(v.Str()), features.Value{}, true
		case features.Vector:
			fv.v = features.VectorValue(slices.Clone(v.Vector()))
		case features.List:
			fv.v = features.ListValue(slices.Clone(v.List())) // the strings of a list are the caller's, never reused
		}
		dst = append(dst, fv)
	}
	return dst
}

// flatten copies q, and returns about the bytes the copy holds.
func flatten(q *features.Query) (*flatQuery, int64) {
	ne, nv := 0, 0
	for i := range q.Candidates {
		ne += len(q.Candidates[i].Entities)
		nv += len(q.Candidates[i].Features)
	}
	f := &flatQuery{
		arena:   make([]byte, 0, 16*(ne+nv+len(q.Context)+len(q.Features))),
		context: make([]flatEntity, 0, len(q.Context)), features: make([]flatValue, 0, len(q.Features)),
		entities: make([]flatEntity, 0, ne), values: make([]flatValue, 0, nv),
	}
	f.context = f.keepEntities(f.context, q.Context)
	f.features = f.keepValues(f.features, q.Features)
	if len(q.Candidates) > 0 {
		f.cands = make([]flatCandidate, len(q.Candidates))
		for i := range q.Candidates {
			c := &q.Candidates[i]
			f.entities = f.keepEntities(f.entities, c.Entities)
			f.values = f.keepValues(f.values, c.Features)
			f.cands[i] = flatCandidate{int32(len(f.entities)), int32(len(f.values))}
		}
	}
	n := int64(cap(f.arena)) + int64(unsafe.Sizeof(flatEntity{}))*int64(cap(f.context)+cap(f.entities)) +
		int64(unsafe.Sizeof(flatValue{}))*int64(cap(f.features)+cap(f.values)) +
		int64(unsafe.Sizeof(flatCandidate{}))*int64(cap(f.cands)) + 128
	return f, n
}

// query makes the copied query a features.Query again.
func (f *flatQuery) query() features.Query {
	text := string(f.arena)
	str := func(s flatSpan) string { return text[s.lo:s.hi] }
	entities := func(list []flatEntity) map[string]string {
		if len(list) == 0 {
			return nil
		}
		m := make(map[string]string, len(list))
		for _, e := range list {
			m[str(e.typ)] = str(e.id)
		}
		return m
	}
	values := func(list []flatValue) map[string]features.Value {
		if len(list) == 0 {
			return nil
		}
		m := make(map[string]features.Value, len(list))
		for _, fv := range list {
			v := fv.v
			if fv.isStr {
				v = features.StringValue(str(fv.str))
			}
			m[str(fv.name)] = v
		}
		return m
	}
	q := features.Query{Context: entities(f.context), Features: values(f.features)}
	if len(f.cands) > 0 {
		q.Candidates = make([]features.Candidate, len(f.cands))
		var e0, v0 int32
		for i, c := range f.cands {
			q.Candidates[i] = features.Candidate{
				Entities: entities(f.entities[e0:c.entities]), Features: values(f.values[v0:c.values]),
			}
			e0, v0 = c.entities, c.values
		}
	}
	return q
}

// ShadowStats returns the statistics of every live/shadow pair whose two
// versions are still loaded, ordered by live, then shadow version. Pairs of
// unloaded versions are forgotten.
func (s *Server) ShadowStats() []shadow.Summary {
	snap := s.registry.Snapshot()
	loaded := func(ref string) bool {
		_, err := snap.Resolve(ref)
		return err == nil
	}
	s.learn.shadows.Retain(func(live, sv string) bool { return loaded(live) && loaded(sv) })
	out := s.learn.shadows.Summaries(time.Now())
	if out == nil {
		out = []shadow.Summary{}
	}
	return out
}
