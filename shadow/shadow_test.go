package shadow

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// oracleCase is a comparison scipy and numpy made (tools/shadow_oracle.py).
type oracleCase struct {
	Name            string    `json:"name"`
	Outputs         int       `json:"outputs"`
	Live            []float64 `json:"live"`
	Shadow          []float64 `json:"shadow"`
	Rows            int       `json:"rows"`
	MeanAbsDiff     float64   `json:"mean_abs_diff"`
	MaxAbsDiff      float64   `json:"max_abs_diff"`
	TopKOverlap     *float64  `json:"topk_overlap"`
	RankCorrelation *float64  `json:"rank_correlation"`
}

func near(got, want float64) bool { return math.Abs(got-want) <= 1e-12*max(1, math.Abs(want)) }

// nullable compares a statistic that is NaN where the oracle has null.
func nullable(got float64, want *float64) bool {
	if want == nil {
		return math.IsNaN(got)
	}
	return near(got, *want)
}

func TestCompareOracle(t *testing.T) {
	data, err := os.ReadFile("testdata/compare.json")
	if err != nil {
		t.Fatal(err)
	}
	var o struct {
		K     int          `json:"k"`
		Cases []oracleCase `json:"cases"`
	}
	if err := json.Unmarshal(data, &o); err != nil {
		t.Fatal(err)
	}
	if len(o.Cases) < 50 {
		t.Fatalf("%d oracle cases", len(o.Cases))
	}
	for _, tc := range o.Cases {
		c, err := Compare(tc.Live, tc.Shadow, tc.Outputs, o.K)
		if err != nil {
			t.Errorf("%s: %v", tc.Name, err)
			continue
		}
		if c.Rows != tc.Rows || c.Compared != len(tc.Live) {
			t.Errorf("%s: %d rows, %d compared; want %d, %d", tc.Name, c.Rows, c.Compared, tc.Rows, len(tc.Live))
		}
		if mean := c.SumAbsDiff / float64(c.Compared); !near(mean, tc.MeanAbsDiff) || !near(c.MaxAbsDiff, tc.MaxAbsDiff) {
			t.Errorf("%s: abs diff mean %v max %v, want %v %v", tc.Name, mean, c.MaxAbsDiff, tc.MeanAbsDiff, tc.MaxAbsDiff)
		}
		if !nullable(c.TopKOverlap, tc.TopKOverlap) {
			t.Errorf("%s: top-k overlap %v, want %v", tc.Name, c.TopKOverlap, show(tc.TopKOverlap))
		}
		if !nullable(c.RankCorrelation, tc.RankCorrelation) {
			t.Errorf("%s: rank correlation %v, want %v", tc.Name, c.RankCorrelation, show(tc.RankCorrelation))
		}
	}
}

func show(f *float64) any {
	if f == nil {
		return "null"
	}
	return *f
}

func TestCompare(t *testing.T) {
	live := []float64{0.9, 0.1, 0.5, 0.3, 0.7}
	plus := []float64{1.15, 0.35, 0.75, 0.55, 0.95}
	reversed := []float64{0.1, 0.9, 0.5, 0.7, 0.3}
	for _, tc := range []struct {
		name              string
		live, shadow      []float64
		k                 int
		mean, max, ov, rc float64
	}{
		{"constant added", live, plus, 10, 0.25, 0.25, 1, 1},
		{"reversed", live, reversed, 2, 0.48, 0.8, 0, -1},
		{"same", live, live, 3, 0, 0, 1, 1},
		// Two rows tie in the shadow: ranks 1.5 and 1.5 against 1 and 2.
		{"tie", []float64{2, 1, 0}, []float64{5, 5, 0}, 1, 7.0 / 3, 4, 1, math.Sqrt(3) / 2},
		// NaN ranks last and is left out of the difference.
		{"nan", []float64{3, 2, 1}, []float64{math.NaN(), 2, 1}, 1, 0, 0, 0, -0.5},
	} {
		c, err := Compare(tc.live, tc.shadow, 1, tc.k)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		mean := c.SumAbsDiff / float64(c.Compared)
		if !near(mean, tc.mean) || !near(c.MaxAbsDiff, tc.max) || !near(c.TopKOverlap, tc.ov) || !near(c.RankCorrelation, tc.rc) {
			t.Errorf("%s: mean %v max %v overlap %v rank %v; want %v %v %v %v",
				tc.name, mean, c.MaxAbsDiff, c.TopKOverlap, c.RankCorrelation, tc.mean, tc.max, tc.ov, tc.rc)
		}
	}
}

func TestCompareErrors(t *testing.T) {
	if _, err := Compare([]float64{1, 2}, []float64{1, 2, 3, 4}, 1, 10); !errors.Is(err, ErrOutputs) {
		t.Errorf("outputs differ: got %v, want ErrOutputs", err)
	}
	if _, err := Compare([]float64{1, 2, 3}, []float64{1, 2, 3}, 2, 10); err == nil {
		t.Error("3 scores in rows of 2: no error")
	}
	c, err := Compare(nil, nil, 1, 10)
	if err != nil || c.Rows != 0 || !math.IsNaN(c.TopKOverlap) {
		t.Errorf("no rows: %+v, %v", c, err)
	}
}

func TestPairWindow(t *testing.T) {
	reg := prometheus.NewRegistry()
	set := NewSet(time.Minute, 10, reg)
	p := set.Pair("m@1", "m@2")
	if set.Pair("m@1", "m@2") != p {
		t.Fatal("a second Pair call made another pair")
	}
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	live := []float64{0.9, 0.1, 0.5}
	if err := p.Observe(t0, live, []float64{1.9, 1.1, 1.5}, 1); err != nil {
		t.Fatal(err)
	}
	if err := p.Observe(t0.Add(50*time.Second), live, []float64{0.1, 0.9, 0.5}, 1); err != nil {
		t.Fatal(err)
	}
	p.Fail(t0.Add(55 * time.Second))
	p.Drop(t0.Add(55 * time.Second))
	if err := p.Observe(t0, live, []float64{1}, 1); !errors.Is(err, ErrOutputs) {
		t.Errorf("got %v, want ErrOutputs", err)
	}

	s := p.Summary(t0.Add(55 * time.Second))
	check := func(what string, st Stats, queries, rows, errs, dropped uint64, mean, maxd, ov, rc float64) {
		t.Helper()
		if st.Queries != queries || st.Rows != rows || st.Errors != errs || st.Dropped != dropped {
			t.Errorf("%s: counts %d %d %d %d, want %d %d %d %d", what, st.Queries, st.Rows, st.Errors, st.Dropped, queries, rows, errs, dropped)
		}
		for _, f := range []struct {
			name string
			got  *float64
			want float64
		}{{"mean", st.MeanAbsDiff, mean}, {"max", st.MaxAbsDiff, maxd}, {"overlap", st.TopKOverlap, ov}, {"rank", st.RankCorrelation, rc}} {
			if f.got == nil || !near(*f.got, f.want) {
				t.Errorf("%s: %s %v, want %v", what, f.name, show(f.got), f.want)
			}
		}
	}
	// Over all: one query off by 1, one reversed (|diffs| 0.8, 0.8, 0).
	check("all", s.Stats, 2, 6, 2, 1, (3+1.6)/6, 1, 1, 0)
	check("recent", s.Recent, 2, 6, 2, 1, (3+1.6)/6, 1, 1, 0)
	if s.Window != "1m0s" || s.Live != "m@1" || s.Shadow != "m@2" {
		t.Errorf("summary %+v", s)
	}
	// 70 s later the first query has left the window; the reversal has not.
	s = p.Summary(t0.Add(70 * time.Second))
	check("recent after 70s", s.Recent, 1, 3, 1, 1, 1.6/3, 0.8, 1, -1)
	check("all after 70s", s.Stats, 2, 6, 2, 1, (3+1.6)/6, 1, 1, 0)
	// Much later nothing is recent, and the means are null.
	s = p.Summary(t0.Add(time.Hour))
	if s.Recent.Queries != 0 || s.Recent.MeanAbsDiff != nil || s.Recent.RankCorrelation != nil {
		t.Errorf("an hour later: recent %+v", s.Recent)
	}
	// A window is reused once its tenth comes round again.
	if err := p.Observe(t0.Add(time.Hour), live, live, 1); err != nil {
		t.Fatal(err)
	}
	if s = p.Summary(t0.Add(time.Hour)); s.Recent.Queries != 1 || s.Queries != 3 {
		t.Errorf("after reuse: recent %d, all %d queries", s.Recent.Queries, s.Queries)
	}

	want := `
# HELP seer_shadow_dropped_total Live queries not scored by a shadow model because the shadow queue was full, by live and shadow version.
# TYPE seer_shadow_dropped_total counter
seer_shadow_dropped_total{live="m@1",shadow="m@2"} 1
# HELP seer_shadow_errors_total Live queries a shadow model failed to score, by live and shadow version.
# TYPE seer_shadow_errors_total counter
seer_shadow_errors_total{live="m@1",shadow="m@2"} 2
# HELP seer_shadow_queries_total Live queries scored by a shadow model, by live and shadow version (name@version).
# TYPE seer_shadow_queries_total counter
seer_shadow_queries_total{live="m@1",shadow="m@2"} 3
# HELP seer_shadow_rows_total Rows scored by a shadow model, by live and shadow version.
# TYPE seer_shadow_rows_total counter
seer_shadow_rows_total{live="m@1",shadow="m@2"} 9
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"seer_shadow_queries_total", "seer_shadow_rows_total", "seer_shadow_errors_total", "seer_shadow_dropped_total"); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(set.absDiff.WithLabelValues("m@1", "m@2")); !near(got, 4.6) {
		t.Errorf("abs diff sum %v, want 4.6", got)
	}
}

func TestSetRetain(t *testing.T) {
	reg := prometheus.NewRegistry()
	set := NewSet(time.Minute, 10, reg)
	now := time.Now()
	set.Pair("b@1", "b@2").Drop(now)
	set.Pair("a@1", "a@3").Drop(now)
	set.Pair("a@1", "a@2").Drop(now)
	var got []string
	for _, s := range set.Summaries(now) {
		got = append(got, s.Live+">"+s.Shadow)
	}
	if want := "a@1>a@2 a@1>a@3 b@1>b@2"; strings.Join(got, " ") != want {
		t.Errorf("summaries %q, want %q", got, want)
	}
	set.Retain(func(live, shadow string) bool { return live != "b@1" })
	if n := len(set.Summaries(now)); n != 2 {
		t.Errorf("%d pairs after Retain, want 2", n)
	}
	if n := testutil.CollectAndCount(set.dropped); n != 2 {
		t.Errorf("%d dropped series after Retain, want 2", n)
	}
}

func TestConfig(t *testing.T) {
	if err := DefaultConfig().Check(); err != nil {
		t.Errorf("default: %v", err)
	}
	bad := DefaultConfig()
	bad.Queue, bad.Window, bad.Sample = 0, time.Millisecond, 1.5
	err := bad.Check()
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("got %v, want ErrConfig", err)
	}
	for _, want := range []string{"queue, queue_bytes, workers and top_k must be positive", "window: 1ms is under a second", "sample: 1.5 is not between 0 and 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
	bad = DefaultConfig()
	bad.Sample = math.NaN()
	if err := bad.Check(); err == nil || !strings.Contains(err.Error(), "sample: NaN is not between 0 and 1") {
		t.Errorf("sample NaN: %v", err)
	}
}

func FuzzCompare(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4}, []byte{4, 3, 2, 1}, uint8(1), uint8(3))
	f.Fuzz(func(t *testing.T, a, b []byte, outputs, k uint8) {
		n := min(len(a), len(b))
		live, shadow := make([]float64, n), make([]float64, n)
		for i := range n {
			live[i], shadow[i] = float64(a[i]%7), float64(b[i]%7)
			if a[i] == 255 {
				live[i] = math.NaN()
			}
		}
		c, err := Compare(live, shadow, int(outputs%4)+1, int(k%12)+1)
		if err != nil {
			return
		}
		if !math.IsNaN(c.RankCorrelation) && (c.RankCorrelation < -1 || c.RankCorrelation > 1) {
			t.Fatalf("rank correlation %v", c.RankCorrelation)
		}
		if !math.IsNaN(c.TopKOverlap) && (c.TopKOverlap < 0 || c.TopKOverlap > 1) {
			t.Fatalf("overlap %v", c.TopKOverlap)
		}
		if self, _ := Compare(shadow, shadow, int(outputs%4)+1, int(k%12)+1); self.Rows >= 2 && self.TopKOverlap != 1 {
			t.Fatalf("a ranking against itself overlaps %v", self.TopKOverlap)
		}
	})
}
