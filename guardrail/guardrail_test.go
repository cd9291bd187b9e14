package guardrail

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/seer-ml/seer/features"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const catalog = `
entities:
  store: {key: "st_{id}"}
features:
  - {name: a, entity: store, type: float, store: main, default: 1}
  - {name: b, entity: store, type: float, store: main, default: 2}
  - {name: c, entity: store, type: float, store: main, default: 3}
`

type fixture struct {
	cat   *features.Catalog
	plans []*features.Plan
	mu    sync.Mutex
	log   bytes.Buffer
	reg   *prometheus.Registry
	g     *Guard
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	f := &fixture{reg: prometheus.NewRegistry()}
	var err error
	if f.cat, err = features.ParseCatalog([]byte(catalog), nil); err != nil {
		t.Fatal(err)
	}
	f.plans = []*features.Plan{f.plan(t, "a", "b"), f.plan(t, "b", "c")}
	f.g, err = New(f.cat, cfg, func() []*features.Plan {
		f.mu.Lock()
		defer f.mu.Unlock()
		return append([]*features.Plan(nil), f.plans...)
	}, slog.New(slog.NewJSONHandler(&f.log, nil)), f.reg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) plan(t *testing.T, names ...string) *features.Plan {
	t.Helper()
	decls := make([]features.InputDecl, len(names))
	for i, n := range names {
		decls[i].Name = n
	}
	p, err := features.Compile(f.cat, decls)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// serve assembles n rows with plan p, the features in given supplied by the
// request and the others left to their defaults (nothing is fetched).
func serve(t *testing.T, p *features.Plan, n int, given ...string) {
	t.Helper()
	q := &features.Query{Features: map[string]features.Value{}}
	for _, name := range given {
		q.Features[name] = features.FloatValue(9)
	}
	q.Candidates = make([]features.Candidate, n)
	for i := range q.Candidates {
		q.Candidates[i].Entities = map[string]string{"store": "s"}
	}
	var b features.Batch
	if err := p.Prepare(q, &b); err != nil {
		t.Fatal(err)
	}
	p.Assemble(q, &b, make([]float64, n*len(p.Inputs)), nil)
}

func (f *fixture) status(t *testing.T) map[string]Status {
	t.Helper()
	return f.g.Statuses()
}

func ptr(f float64) *float64 { return &f }

func TestAlertAndRecover(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DefaultRate, cfg.MinRows, cfg.Window = 0.5, 10, 30*time.Second
	cfg.Features = map[string]Override{"c": {DefaultRate: ptr(0)}}
	f := newFixture(t, cfg)
	ab, bc := f.plans[0], f.plans[1]

	// a defaults in every row, b in a third of them, c in all but is off.
	serve(t, ab, 20, "b")
	serve(t, bc, 10)
	f.g.Sample()
	want := map[string]Status{
		"a": {Rate: ptr(1), Rows: 20, Threshold: ptr(0.5), MinRows: 10, Alert: true},
		"b": {Rate: ptr(10.0 / 30), Rows: 30, Threshold: ptr(0.5), MinRows: 10},
		"c": {Rate: ptr(1), Rows: 10, MinRows: 10},
	}
	if diff := cmp.Diff(want, f.status(t)); diff != "" {
		t.Fatalf("status (-want +got):\n%s", diff)
	}
	if got := f.g.Alerts(); !cmp.Equal(got, []string{"a"}) {
		t.Errorf("alerts %v, want [a]", got)
	}
	if f.g.Unready() {
		t.Error("unready without fail_readiness")
	}

	// Quiet samples keep the window, and the alert is logged once.
	for range 5 {
		f.g.Sample()
	}
	if got := strings.Count(f.log.String(), "crossed its guardrail"); got != 1 {
		t.Errorf("%d crossing logs, want 1:\n%s", got, f.log.String())
	}
	if got := testutil.ToFloat64(f.g.crossings); got != 1 {
		t.Errorf("crossings %v, want 1", got)
	}
	if got := testutil.ToFloat64(f.g.alerting); got != 1 {
		t.Errorf("alerts gauge %v, want 1", got)
	}

	// a's values come back: once the bad rows leave the window, it clears.
	for range ticks {
		serve(t, ab, 20, "a", "b")
		f.g.Sample()
	}
	st, _ := f.g.Status("a")
	if st.Alert || *st.Rate != 0 || st.Rows != ticks*20 {
		t.Errorf("after recovery: %+v, want rate 0 over %d rows", st, ticks*20)
	}
	if !strings.Contains(f.log.String(), "back under its guardrail") {
		t.Errorf("no recovery log:\n%s", f.log.String())
	}
	if got := testutil.ToFloat64(f.g.alerting); got != 0 {
		t.Errorf("alerts gauge %v after recovery", got)
	}

	// A second crossing counts and logs again.
	serve(t, ab, 2000, "b")
	f.g.Sample()
	if got := testutil.ToFloat64(f.g.crossings); got != 2 {
		t.Errorf("crossings %v, want 2", got)
	}
	if _, ok := f.g.Status("nope"); ok {
		t.Error("a status for a feature the catalog lacks")
	}
}

func TestMinRowsAndPlans(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DefaultRate, cfg.MinRows, cfg.FailReadiness = 0.9, 100, true
	f := newFixture(t, cfg)
	serve(t, f.plans[0], 99)
	f.g.Sample()
	if a := f.g.Alerts(); len(a) != 0 {
		t.Fatalf("alerts %v under min_rows", a)
	}
	serve(t, f.plans[0], 1)
	f.g.Sample()
	if a := f.g.Alerts(); !cmp.Equal(a, []string{"a", "b"}) {
		t.Fatalf("alerts %v at min_rows, want [a b]", a)
	}
	if !f.g.Unready() {
		t.Error("not unready with fail_readiness and alerts")
	}

	// A plan that goes away (its version unloaded) stops counting, and a
	// new one counts from its start.
	f.mu.Lock()
	f.plans = []*features.Plan{f.plans[1]}
	f.mu.Unlock()
	serve(t, f.plans[0], 50, "b", "c")
	fresh := f.plan(t, "a")
	serve(t, fresh, 7)
	f.mu.Lock()
	f.plans = append(f.plans, fresh)
	f.mu.Unlock()
	f.g.Sample()
	got := f.status(t)
	if got["a"].Rows != 107 || got["b"].Rows != 150 || got["c"].Rows != 50 {
		t.Errorf("window rows a %d b %d c %d, want 107 150 50", got["a"].Rows, got["b"].Rows, got["c"].Rows)
	}
	if *got["b"].Rate != 100.0/150 {
		t.Errorf("b rate %v, want 100/150", *got["b"].Rate)
	}
}

func TestRun(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DefaultRate, cfg.MinRows, cfg.Window = 0.5, 1, 3*time.Second
	f := newFixture(t, cfg)
	if f.g.Interval() != 100*time.Millisecond {
		t.Errorf("interval %v", f.g.Interval())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		f.g.Run(ctx)
		close(done)
	}()
	defer func() {
		cancel()
		<-done
	}()
	serve(t, f.plans[0], 10)
	deadline := time.Now().Add(30 * time.Second)
	for len(f.g.Alerts()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Run never raised the alert")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConfig(t *testing.T) {
	c, err := features.ParseCatalog([]byte(catalog), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Window = time.Millisecond }, "window: 1ms is under a second"},
		{func(c *Config) { c.DefaultRate = 1.5 }, "default_rate: 1.5 is not between 0 and 1"},
		{func(c *Config) { c.Features = map[string]Override{"a": {}} }, "features.a: default_rate or min_rows: missing"},
		{func(c *Config) { c.Features = map[string]Override{"a": {DefaultRate: ptr(-1)}} }, "features.a: default_rate: -1"},
		{func(c *Config) { c.Features = map[string]Override{"zz": {DefaultRate: ptr(0.5)}} }, "features.zz: not in the catalog"},
	} {
		cfg := DefaultConfig()
		tc.edit(&cfg)
		_, err := New(c, cfg, nil, nil, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}

// TestReconfigure changes thresholds on a running Guard: features are
// judged again at once on the window so far; a bad configuration, or an
// override of a feature the catalog lacks, changes nothing; the window's
// length stays.
func TestReconfigure(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DefaultRate, cfg.MinRows, cfg.Window = 0.5, 10, 30*time.Second
	f := newFixture(t, cfg)
	ab := f.plans[0]
	serve(t, ab, 20, "b") // a defaults in every row, b in none
	f.g.Sample()
	if got := f.g.Alerts(); !cmp.Equal(got, []string{"a"}) {
		t.Fatalf("alerts %v, want [a]", got)
	}

	// a's guardrail off, b's at 0: a clears at once, nothing else alerts.
	next := cfg
	next.Features = map[string]Override{"a": {DefaultRate: ptr(0)}}
	next.FailReadiness = true
	if kept, err := f.g.Reconfigure(next); err != nil || kept != 0 {
		t.Fatalf("Reconfigure: kept %v, %v", kept, err)
	}
	if got := f.g.Alerts(); len(got) != 0 {
		t.Errorf("alerts %v after a's guardrail was turned off", got)
	}
	if got := testutil.ToFloat64(f.g.alerting); got != 0 {
		t.Errorf("alerts gauge %v", got)
	}
	// Back on, with min_rows over the window's rows: no alert; then under.
	next.Features, next.MinRows = nil, 100
	if _, err := f.g.Reconfigure(next); err != nil {
		t.Fatal(err)
	}
	if got := f.g.Alerts(); len(got) != 0 || f.g.Unready() {
		t.Errorf("alerts %v with 20 rows under min_rows 100", got)
	}
	next.MinRows = 20
	if _, err := f.g.Reconfigure(next); err != nil {
		t.Fatal(err)
	}
	if got := f.g.Alerts(); !cmp.Equal(got, []string{"a"}) || !f.g.Unready() {
		t.Errorf("alerts %v, unready %v: want a, and unready with fail_readiness", got, f.g.Unready())
	}

	for _, bad := range []Config{
		{Window: cfg.Window, DefaultRate: 2},
		{Window: cfg.Window, DefaultRate: 0.1, Features: map[string]Override{"nope": {DefaultRate: ptr(0.5)}}},
	} {
		if _, err := f.g.Reconfigure(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("Reconfigure(%+v) = %v, want ErrConfig", bad, err)
		}
	}
	if st, _ := f.g.Status("b"); st.Threshold == nil || *st.Threshold != 0.5 {
		t.Errorf("b's threshold %v after refused configurations, want 0.5", st.Threshold)
	}
	next.Window = time.Minute
	if kept, err := f.g.Reconfigure(next); err != nil || kept != cfg.Window || f.g.Interval() != cfg.Window/ticks {
		t.Errorf("a new window: kept %v, %v, interval %v; want the window of %v kept", kept, err, f.g.Interval(), cfg.Window)
	}
}

// TestFeatureMinRows gives one feature more rows to wait for than the
// section: it does not alert on the rows that make the other alert.
func TestFeatureMinRows(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DefaultRate, cfg.MinRows, cfg.Window = 0.5, 10, 30*time.Second
	many := uint64(1000)
	cfg.Features = map[string]Override{"b": {MinRows: &many}}
	f := newFixture(t, cfg)
	serve(t, f.plans[0], 20) // a and b default in every row
	f.g.Sample()
	if got := f.g.Alerts(); !cmp.Equal(got, []string{"a"}) {
		t.Errorf("alerts %v, want [a]: b waits for 1000 rows", got)
	}
	if st, _ := f.g.Status("b"); st.Threshold == nil || *st.Threshold != 0.5 || st.MinRows != 1000 {
		t.Errorf("b: threshold %v, min_rows %d; want the section's 0.5 and its own 1000", st.Threshold, st.MinRows)
	}
	serve(t, f.plans[0], 1000)
	f.g.Sample()
	if got := f.g.Alerts(); !cmp.Equal(got, []string{"a", "b"}) {
		t.Errorf("alerts %v after 1020 rows, want [a b]", got)
	}
}
