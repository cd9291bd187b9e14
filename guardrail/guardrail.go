// Package guardrail watches, per catalog feature, the share of rows in
// which the feature took its default over a sliding window, and raises an
// alert while it is at or over a threshold: the sign of an upload that
// died or a store that lost its data.
//
// It costs the request path nothing of its own: it reads, a few times a
// window, the counters that plans keep anyway (features.Plan.Rows and
// features.Input.DefaultsUsed), and keeps the window from their
// differences.
//
// It imports features only; it must not import models, registry,
// retrieval, serving or cmd.
package guardrail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seer-ml/seer/features"
)

// Config is the guardrails section of the configuration.
type Config struct {
	// Window is the span over which default rates are measured.
	Window time.Duration `yaml:"window"`
	// DefaultRate is the threshold, 0 to 1, at or over which a feature
	// alerts; 0 turns guardrails off for features that set none.
	DefaultRate float64 `yaml:"default_rate"`
	// MinRows is how many rows a feature needs in the window before its
	// rate is judged.
	MinRows uint64 `yaml:"min_rows"`
	// FailReadiness makes the pod unready while a feature alerts.
	FailReadiness bool `yaml:"fail_readiness"`
	// Features override the threshold of single features.
	Features map[string]Override `yaml:"features"`
}

// Override is one feature's own threshold (0 turns its guardrail off)
// and rows needed, either or both; what it leaves out is the section's.
type Override struct {
	DefaultRate *float64 `yaml:"default_rate"`
	MinRows     *uint64  `yaml:"min_rows"`
}

// DefaultConfig returns the configuration a file starts from: off, with a
// window of five minutes and 100 rows at least.
func DefaultConfig() Config { return Config{Window: 5 * time.Minute, MinRows: 100} }

// ErrConfig is wrapped by every error that rejects a configuration.
var ErrConfig = errors.New("bad guardrails config")

// Check reports what is wrong with the configuration. Feature names are
// checked against the catalog by New.
func (c Config) Check() error {
	var errs []error
	if c.Window < time.Second {
		errs = append(errs, fmt.Errorf("%w: window: %v is under a second", ErrConfig, c.Window))
	}
	if !(c.DefaultRate >= 0 && c.DefaultRate <= 1) {
		errs = append(errs, fmt.Errorf("%w: default_rate: %v is not between 0 and 1", ErrConfig, c.DefaultRate))
	}
	for _, name := range sortedKeys(c.Features) {
		o := c.Features[name]
		r := o.DefaultRate
		if r == nil && o.MinRows == nil {
			errs = append(errs, fmt.Errorf("%w: features.%s: default_rate or min_rows: missing", ErrConfig, name))
		} else if r != nil && !(*r >= 0 && *r <= 1) {
			errs = append(errs, fmt.Errorf("%w: features.%s: default_rate: %v is not between 0 and 1", ErrConfig, name, *r))
		}
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ticks is how many samples a window holds: rates move in steps of a
// thirtieth of the window.
const ticks = 30

// Status is one feature's guardrail as of the last sample.
type Status struct {
	// Rate is the share of the window's rows that took the default; nil
	// without rows.
	Rate *float64 `json:"default_rate"`
	// Rows is how many rows used the feature in the window.
	Rows uint64 `json:"window_rows"`
	// Threshold is the rate at or over which the feature alerts; nil when
	// its guardrail is off.
	Threshold *float64 `json:"threshold"`
	// MinRows is how many rows the feature needs in the window before its
	// rate is judged.
	MinRows uint64 `json:"min_rows"`
	// Alert is set while the rate is at or over the threshold with at
	// least min_rows rows.
	Alert bool `json:"alert"`
}

// feature is the window of one catalog feature.
type feature struct {
	spec      *features.Spec
	threshold float64 // 0: off
	minRows   uint64
	rows      [ticks]uint64
	defaults  [ticks]uint64
	sumRows   uint64
	sumDefs   uint64
	alert     bool
}

// counts are a plan's counters at the last sample.
type counts struct {
	rows     uint64
	defaults []uint64 // per input
}

// Guard keeps the default rates of a catalog's features from the plans a
// function lists (those of the loaded model versions). Its methods are
// safe for concurrent use.
type Guard struct {
	cfg   Config
	plans func() []*features.Plan
	log   *slog.Logger

	mu       sync.Mutex
	features []feature // by catalog index
	last     map[*features.Plan]counts
	tick     int // the slot the next sample fills
	alerts   int

	crossings prometheus.Counter
	alerting  prometheus.Gauge
}

// New returns a Guard over the catalog's features. Overrides must name
// catalog features. Its metrics go to reg when it is not nil.
func New(c *features.Catalog, cfg Config, plans func() []*features.Plan, log *slog.Logger, reg prometheus.Registerer) (*Guard, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	for _, name := range sortedKeys(cfg.Features) {
		if c.Spec(name) == nil {
			return nil, fmt.Errorf("%w: features.%s: not in the catalog", ErrConfig, name)
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Guard{
		cfg: cfg, plans: plans, log: log,
		features: make([]feature, len(c.Specs)),
		last:     make(map[*features.Plan]counts),
		crossings: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "seer_guardrail_crossings_total",
			Help: "Times a feature's default rate reached its guardrail's threshold (see /v1/admin/features for which).",
		}),
		alerting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "seer_guardrail_alerts",
			Help: "Features whose default rate is at or over their guardrail's threshold.",
		}),
	}
	for i, s := range c.Specs {
		f := &g.features[i]
		f.spec = s
		f.configure(cfg)
	}
	if reg != nil {
		reg.MustRegister(g.crossings, g.alerting)
	}
	return g, nil
}

// Reconfigure applies cfg's thresholds, min_rows and fail_readiness from
// now on and judges every feature again at once, on the window measured
// so far. The window's length stays as it was (Run samples on its
// interval): when cfg asks for another, kept is the length kept, else 0.
// A configuration
// that is bad, or whose overrides name features the catalog lacks,
// changes nothing.
func (g *Guard) Reconfigure(cfg Config) (kept time.Duration, err error) {
	if err := cfg.Check(); err != nil {
		return 0, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, name := range sortedKeys(cfg.Features) {
		if !slices.ContainsFunc(g.features, func(f feature) bool { return f.spec.Name == name }) {
			return 0, fmt.Errorf("%w: features.%s: not in the catalog", ErrConfig, name)
		}
	}
	if cfg.Window != g.cfg.Window {
		kept = g.cfg.Window
		cfg.Window = g.cfg.Window
	}
	g.cfg = cfg
	for i := range g.features {
		f := &g.features[i]
		f.configure(cfg)
		g.judge(f)
	}
	g.alerting.Set(float64(g.alerts))
	return kept, nil
}

// Interval is how often Run samples the counters.
func (g *Guard) Interval() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cfg.Window / ticks
}

// Run samples the counters every Interval until ctx ends.
func (g *Guard) Run(ctx context.Context) {
	t := time.NewTicker(g.Interval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.Sample()
		}
	}
}

// Sample reads the plans' counters, moves every feature's window on by
// one slot, and raises or clears alerts.
func (g *Guard) Sample() {
	g.mu.Lock()
	defer g.mu.Unlock()
	rows, defs := make([]uint64, len(g.features)), make([]uint64, len(g.features))
	next := make(map[*features.Plan]counts, len(g.last))
	for _, p := range g.plans() {
		if _, seen := next[p]; seen {
			continue
		}
		// Defaults first: a query counts its rows before its defaults.
		c := counts{defaults: make([]uint64, len(p.Inputs))}
		for k, in := range p.Inputs {
			c.defaults[k] = in.DefaultsUsed()
		}
		c.rows = p.Rows()
		prev := g.last[p] // zero for a plan not seen before: it counted from zero
		dr := c.rows - prev.rows
		for k, in := range p.Inputs {
			if in.Spec == nil {
				continue
			}
			var before uint64
			if prev.defaults != nil {
				before = prev.defaults[k]
			}
			rows[in.Spec.Index] += dr
			defs[in.Spec.Index] += c.defaults[k] - before
		}
		next[p] = c
	}
	g.last = next
	slot := g.tick
	g.tick = (g.tick + 1) % ticks
	for i := range g.features {
		f := &g.features[i]
		f.sumRows += rows[i] - f.rows[slot]
		f.sumDefs += defs[i] - f.defaults[slot]
		f.rows[slot], f.defaults[slot] = rows[i], defs[i]
		g.judge(f)
	}
	g.alerting.Set(float64(g.alerts))
}

// configure sets the feature's threshold and rows needed from cfg: its
// override's where it has one, else the section's.
func (f *feature) configure(cfg Config) {
	f.threshold, f.minRows = cfg.DefaultRate, cfg.MinRows
	o := cfg.Features[f.spec.Name]
	if o.DefaultRate != nil {
		f.threshold = *o.DefaultRate
	}
	if o.MinRows != nil {
		f.minRows = *o.MinRows
	}
}

// judge raises or clears a feature's alert after a sample.
func (g *Guard) judge(f *feature) {
	alert := f.threshold > 0 && f.sumRows > 0 && f.sumRows >= f.minRows && f.rate() >= f.threshold
	switch {
	case alert && !f.alert:
		g.alerts++
		g.crossings.Inc()
		g.log.Warn("feature default rate crossed its guardrail", "feature", f.spec.Name, "store", f.spec.Store,
			"default_rate", f.rate(), "threshold", f.threshold, "window_rows", f.sumRows, "window", g.cfg.Window.String())
	case !alert && f.alert:
		g.alerts--
		g.log.Info("feature default rate back under its guardrail", "feature", f.spec.Name,
			"default_rate", f.rate(), "threshold", f.threshold, "window_rows", f.sumRows)
	}
	f.alert = alert
}

// rate returns the share of the window's rows that took the default, at
// most 1 (the counters are read one after another, not at one instant).
func (f *feature) rate() float64 {
	if f.sumRows == 0 {
		return 0
	}
	return min(1, float64(f.sumDefs)/float64(f.sumRows))
}

// Status returns the guardrail of the feature called name, and whether the
// catalog has it.
func (g *Guard) Status(name string) (Status, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := range g.features {
		if f := &g.features[i]; f.spec.Name == name {
			return f.status(), true
		}
	}
	return Status{}, false
}

// Statuses returns every feature's guardrail, by name.
func (g *Guard) Statuses() map[string]Status {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]Status, len(g.features))
	for i := range g.features {
		f := &g.features[i]
		out[f.spec.Name] = f.status()
	}
	return out
}

func (f *feature) status() Status {
	s := Status{Rows: f.sumRows, MinRows: f.minRows, Alert: f.alert}
	if f.sumRows > 0 {
		r := f.rate()
		s.Rate = &r
	}
	if f.threshold > 0 {
		t := f.threshold
		s.Threshold = &t
	}
	return s
}

// Alerts returns the names of the features that alert, sorted.
func (g *Guard) Alerts() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for i := range g.features {
		if f := &g.features[i]; f.alert {
			out = append(out, f.spec.Name)
		}
	}
	slices.Sort(out)
	return out
}

// Unready reports whether the pod should be unready: fail_readiness is set
// and a feature alerts.
func (g *Guard) Unready() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cfg.FailReadiness && g.alerts > 0
}
