package shadow

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config is the shadows section of the configuration: how shadow scoring
// is bounded and what its statistics cover.
type Config struct {
	// Queue is how many live queries may wait for their shadows to be
	// scored; beyond it they are dropped and counted.
	Queue int `yaml:"queue"`
	// QueueBytes bounds the memory the waiting queries hold; beyond it
	// they are dropped and counted.
	QueueBytes int64 `yaml:"queue_bytes"`
	// Workers is how many goroutines score shadows.
	Workers int `yaml:"workers"`
	// Window is the span of the recent statistics.
	Window time.Duration `yaml:"window"`
	// TopK is the k of the top-k overlap.
	TopK int `yaml:"top_k"`
	// Sample is the share of live queries shadowed, 0 to 1: each shadow
	// reads and scores as a live query would, so shadowing every query
	// doubles a model's cost.
	Sample float64 `yaml:"sample"`
}

// DefaultConfig returns the configuration a file starts from.
func DefaultConfig() Config {
	return Config{Queue: 1024, QueueBytes: 64 << 20, Workers: 1, Window: 5 * time.Minute, TopK: 10, Sample: 1}
}

// ErrConfig is wrapped by every error that rejects a configuration.
var ErrConfig = errors.New("bad shadows config")

// Check reports what is wrong with the configuration.
func (c Config) Check() error {
	var errs []error
	if c.Queue <= 0 || c.QueueBytes <= 0 || c.Workers <= 0 || c.TopK <= 0 {
		errs = append(errs, fmt.Errorf("%w: queue, queue_bytes, workers and top_k must be positive", ErrConfig))
	}
	if c.Window < time.Second {
		errs = append(errs, fmt.Errorf("%w: window: %v is under a second", ErrConfig, c.Window))
	}
	if !(c.Sample >= 0 && c.Sample <= 1) {
		errs = append(errs, fmt.Errorf("%w: sample: %v is not between 0 and 1", ErrConfig, c.Sample))
	}
	return errors.Join(errs...)
}

// Stats are the statistics of a pair over some span. The means and the
// maximum are null until a query gives them a value.
type Stats struct {
	Queries uint64 `json:"queries"` // live queries scored by the shadow
	Rows    uint64 `json:"rows"`
	Errors  uint64 `json:"errors"`  // queries the shadow failed to score
	Dropped uint64 `json:"dropped"` // queries not scored: the queue was full
	// MeanAbsDiff and MaxAbsDiff are over every score of every row.
	MeanAbsDiff *float64 `json:"mean_abs_diff"`
	MaxAbsDiff  *float64 `json:"max_abs_diff"`
	// TopKOverlap and RankCorrelation are means over the queries of at
	// least 2 rows (RankCorrelation: whose correlation is defined).
	TopKOverlap     *float64 `json:"topk_overlap"`
	RankCorrelation *float64 `json:"rank_correlation"`
}

// Summary is what /v1/admin/shadows reports for a pair: its statistics
// over every query since it was first seen, and over the recent window.
type Summary struct {
	Live   string `json:"live"`   // name@version
	Shadow string `json:"shadow"` // name@version
	Stats
	Recent Stats  `json:"recent"`
	Window string `json:"window"` // the span of Recent
}

// totals are the sums statistics are made of.
type totals struct {
	queries, rows, errors, dropped uint64
	sumAbs                         float64
	compared                       uint64
	maxAbs                         float64
	sumOverlap                     float64
	overlaps                       uint64
	sumRank                        float64
	ranked                         uint64
}

func (t *totals) add(c *Comparison) {
	t.queries++
	t.rows += uint64(c.Rows)
	t.sumAbs += c.SumAbsDiff
	t.compared += uint64(c.Compared)
	t.maxAbs = max(t.maxAbs, c.MaxAbsDiff)
	if !math.IsNaN(c.TopKOverlap) {
		t.sumOverlap += c.TopKOverlap
		t.overlaps++
	}
	if !math.IsNaN(c.RankCorrelation) {
		t.sumRank += c.RankCorrelation
		t.ranked++
	}
}

func (t *totals) merge(o *totals) {
	t.queries += o.queries
	t.rows += o.rows
	t.errors += o.errors
	t.dropped += o.dropped
	t.sumAbs += o.sumAbs
	t.compared += o.compared
	t.maxAbs = max(t.maxAbs, o.maxAbs)
	t.sumOverlap += o.sumOverlap
	t.overlaps += o.overlaps
	t.sumRank += o.sumRank
	t.ranked += o.ranked
}

func (t *totals) stats() Stats {
	s := Stats{Queries: t.queries, Rows: t.rows, Errors: t.errors, Dropped: t.dropped}
	if t.compared > 0 {
		s.MeanAbsDiff = ptr(t.sumAbs / float64(t.compared))
		s.MaxAbsDiff = ptr(t.maxAbs)
	}
	if t.overlaps > 0 {
		s.TopKOverlap = ptr(t.sumOverlap / float64(t.overlaps))
	}
	if t.ranked > 0 {
		s.RankCorrelation = ptr(t.sumRank / float64(t.ranked))
	}
	return s
}

func ptr(f float64) *float64 { return &f }

// slots is how many tenths of the window the recent statistics keep: the
// current tenth and the ten before it, so that they always cover the
// window and at most a tenth more.
const slots = 11

type slot struct {
	n int64 // the tenth of the window, counted from the epoch
	totals
}

// Pair is the statistics of one live version and one shadow of it. It is
// safe for concurrent use.
type Pair struct {
	live, shadow string
	k            int
	window       time.Duration
	width        time.Duration // a tenth of the window

	mu     sync.Mutex
	all    totals
	recent [slots]slot

	queries, rows, errors, dropped, absDiff prometheus.Counter
}

// slot returns the recent totals that now counts into.
func (p *Pair) slot(now time.Time) *totals {
	n := now.UnixNano() / int64(p.width)
	s := &p.recent[n%slots]
	if s.n != n {
		s.n, s.totals = n, totals{}
	}
	return &s.totals
}

// Observe compares the scores of one query, live and shadow (outputs per
// row, row-major), and counts it. An error, such as ErrOutputs, is
// counted as the shadow's and returned.
func (p *Pair) Observe(now time.Time, live, shadow []float64, outputs int) error {
	c, err := Compare(live, shadow, outputs, p.k)
	if err != nil {
		p.Fail(now)
		return err
	}
	p.mu.Lock()
	p.all.add(&c)
	p.slot(now).add(&c)
	p.mu.Unlock()
	p.queries.Inc()
	p.rows.Add(float64(c.Rows))
	p.absDiff.Add(c.SumAbsDiff)
	return nil
}

// Fail counts a query the shadow failed to score.
func (p *Pair) Fail(now time.Time) {
	p.mu.Lock()
	p.all.errors++
	p.slot(now).errors++
	p.mu.Unlock()
	p.errors.Inc()
}

// Drop counts a query the shadow did not score because the queue was
// full.
func (p *Pair) Drop(now time.Time) {
	p.mu.Lock()
	p.all.dropped++
	p.slot(now).dropped++
	p.mu.Unlock()
	p.dropped.Inc()
}

// Summary returns the pair's statistics as of now.
func (p *Pair) Summary(now time.Time) Summary {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := now.UnixNano() / int64(p.width)
	var recent totals
	for i := range p.recent {
		if s := &p.recent[i]; s.n > n-slots && s.n <= n {
			recent.merge(&s.totals)
		}
	}
	return Summary{
		Live: p.live, Shadow: p.shadow, Stats: p.all.stats(), Recent: recent.stats(),
		Window: p.window.String(),
	}
}

// Set is the pairs seer has seen, and their metrics.
type Set struct {
	window time.Duration
	k      int

	mu    sync.Mutex
	pairs map[[2]string]*Pair

	queries, rows, errors, dropped, absDiff *prometheus.CounterVec
}

// NewSet returns an empty set whose pairs keep recent statistics over
// window and compare top-k rows. Its metrics go to reg when it is not nil.
func NewSet(window time.Duration, k int, reg prometheus.Registerer) *Set {
	labels := []string{"live", "shadow"}
	s := &Set{
		window: window, k: k, pairs: make(map[[2]string]*Pair),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seer_shadow_queries_total",
			Help: "Live queries scored by a shadow model, by live and shadow version (name@version).",
		}, labels),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seer_shadow_rows_total",
			Help: "Rows scored by a shadow model, by live and shadow version.",
		}, labels),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seer_shadow_errors_total",
			Help: "Live queries a shadow model failed to score, by live and shadow version.",
		}, labels),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seer_shadow_dropped_total",
			Help: "Live queries not scored by a shadow model because the shadow queue was full, by live and shadow version.",
		}, labels),
		absDiff: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seer_shadow_abs_diff_total",
			Help: "Sum of the absolute differences between live and shadow scores, by live and shadow version; divided by the rows (times outputs), the mean difference.",
		}, labels),
	}
	if reg != nil {
		reg.MustRegister(s.queries, s.rows, s.errors, s.dropped, s.absDiff)
	}
	return s
}

// Pair returns the pair of live and shadow, both name@version, making it
// when it is new.
func (s *Set) Pair(live, shadow string) *Pair {
	key := [2]string{live, shadow}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.pairs[key]; p != nil {
		return p
	}
	p := &Pair{
		live: live, shadow: shadow, k: s.k, window: s.window, width: max(s.window/10, time.Millisecond),
		queries: s.queries.WithLabelValues(live, shadow),
		rows:    s.rows.WithLabelValues(live, shadow),
		errors:  s.errors.WithLabelValues(live, shadow),
		dropped: s.dropped.WithLabelValues(live, shadow),
		absDiff: s.absDiff.WithLabelValues(live, shadow),
	}
	s.pairs[key] = p
	return p
}

// Summaries returns every pair's statistics as of now, ordered by live,
// then shadow.
func (s *Set) Summaries(now time.Time) []Summary {
	s.mu.Lock()
	pairs := make([]*Pair, 0, len(s.pairs))
	for _, p := range s.pairs {
		pairs = append(pairs, p)
	}
	s.mu.Unlock()
	out := make([]Summary, len(pairs))
	for i, p := range pairs {
		out[i] = p.Summary(now)
	}
	slices.SortFunc(out, func(a, b Summary) int {
		return cmp.Or(cmp.Compare(a.Live, b.Live), cmp.Compare(a.Shadow, b.Shadow))
	})
	return out
}

// Retain forgets the pairs, and their metrics, for which keep is false,
// such as those of versions no longer loaded.
func (s *Set) Retain(keep func(live, shadow string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key := range s.pairs {
		if keep(key[0], key[1]) {
			continue
		}
		delete(s.pairs, key)
		for _, v := range []*prometheus.CounterVec{s.queries, s.rows, s.errors, s.dropped, s.absDiff} {
			v.DeleteLabelValues(key[0], key[1])
		}
	}
}
