package serving

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/guardrail"
	"github.com/seer-ml/seer/internal/redistest"
	"github.com/seer-ml/seer/registry"
	"github.com/seer-ml/seer/retrieval"
	"github.com/seer-ml/seer/shadow"
)

const adminToken = "learn-token"

// learnFixture is a server over a real Redis seeded with 200 stores and a
// consumer, behind a real HTTP listener, with the demo model as version 1
// of store_ranker giving raw margins.
type learnFixture struct {
	dir  string
	rs   *redistest.Server
	srv  *Server
	http *httptest.Server
}

// rawManifest is the quickstart manifest of store_ranker answering raw
// margins, for a version, without its golden rows (they are probabilities).
func rawManifest(t testing.TB, name, version string) string {
	t.Helper()
	data, err := os.ReadFile("../configs/quickstart/models/store_ranker/1/manifest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text, _, _ := strings.Cut(string(data), "golden:")
	text = strings.Replace(text, "output: probability", "output: raw", 1)
	text = strings.Replace(text, `version: "1"`, `version: "`+version+`"`, 1)
	return strings.Replace(text, "name: store_ranker\n", "name: "+name+"\n", 1)
}

// treeModel returns the demo LightGBM model with every leaf value v of
// tree i replaced by leaf(i, v).
func treeModel(t testing.TB, leaf func(tree int, v float64) float64) string {
	t.Helper()
	data, err := os.ReadFile("../configs/quickstart/models/store_ranker/1/model.txt")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	tree := -1
	for i, l := range lines {
		if n, ok := strings.CutPrefix(l, "Tree="); ok {
			tree, _ = strconv.Atoi(n)
		}
		vals, ok := strings.CutPrefix(l, "leaf_value=")
		if !ok {
			continue
		}
		fields := strings.Fields(vals)
		for k, f := range fields {
			v, err := strconv.ParseFloat(f, 64)
			if err != nil {
				t.Fatal(err)
			}
			fields[k] = strconv.FormatFloat(leaf(tree, v), 'g', -1, 64)
		}
		lines[i] = "leaf_value=" + strings.Join(fields, " ")
	}
	return strings.Join(lines, "\n")
}

func newLearnFixture(t testing.TB, files map[string]string, edit func(*Config)) *learnFixture {
	t.Helper()
	return newLearnFixtureWith(t, files, edit, Options{})
}

// newLearnFixtureWith is newLearnFixture with the server's options.
func newLearnFixtureWith(t testing.TB, files map[string]string, edit func(*Config), opt Options) *learnFixture {
	t.Helper()
	f := &learnFixture{dir: t.TempDir(), rs: redistest.Start(t)}
	var stores strings.Builder
	stores.WriteString("id,store_avg_rating,store_num_ratings,store_delivery_minutes,store_price_level,store_cuisine\n")
	for i := range 200 {
		fmt.Fprintf(&stores, "%d,%.1f,%d,%d,%d,%s\n", i, 3+float64(i%20)/10, i*7, 15+i%40, 1+i%4, cuisines[i%5])
	}
	all := map[string]string{
		"catalog.yaml":                              demoCatalog,
		"stores.csv":                                stores.String(),
		"consumers.csv":                             "id,consumer_order_count,consumer_avg_spend\n1,40,22.5\n",
		"models/store_ranker/1/manifest.yaml":       rawManifest(t, "store_ranker", "1"),
		"models/store_ranker/1/model.txt":           treeModel(t, func(_ int, v float64) float64 { return v }),
		"models/store_ranker/" + registry.AliasFile: "production: 1\n",
	}
	for name, text := range files {
		all[name] = text
	}
	writeFiles(t, f.dir, all)
	cfg := DefaultConfig()
	cfg.Catalog, cfg.Models, cfg.ModelsPoll = filepath.Join(f.dir, "catalog.yaml"), filepath.Join(f.dir, "models"), 0
	cfg.Stores = map[string]retrieval.Config{"main": {Mode: "standalone", Addr: f.rs.Addr}}
	cfg.Seed = []Seed{{Entity: "store", File: filepath.Join(f.dir, "stores.csv")}, {Entity: "consumer", File: filepath.Join(f.dir, "consumers.csv")}}
	// Reads from healthy stores meet these on a loaded machine: an answer
	// degraded by the machine would fail tests that compare answers.
	cfg.Predict.RetrievalTimeout, cfg.Predict.Timeout = 5*time.Second, 10*time.Second
	cfg.AdminToken = adminToken
	if edit != nil {
		edit(&cfg)
	}
	srv, err := Open(context.Background(), cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	t.Cleanup(srv.Close)
	if err := srv.Seed(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.http = httptest.NewServer(srv.Handler())
	t.Cleanup(f.http.Close)
	return f
}

// post sends a body to the server and returns the status and answer.
func (f *learnFixture) post(t *testing.T, path, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(f.http.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

// predict posts a prediction and fails unless it answers 200.
func (f *learnFixture) predict(t *testing.T, body string) []byte {
	t.Helper()
	code, data := f.post(t, "/v1/predict", body)
	if code != 200 {
		t.Fatalf("predict: %d %s", code, data)
	}
	return data
}

// admin gets an admin endpoint and decodes its answer into out.
func (f *learnFixture) admin(t *testing.T, path string, out any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", f.http.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s: %v: %s", path, err, data)
		}
	}
	return resp.StatusCode
}

// eventually polls cond until it holds, for at most 30 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// shadowPairs returns /v1/admin/shadows by "live>shadow".
func (f *learnFixture) shadowPairs(t *testing.T) map[string]shadow.Summary {
	t.Helper()
	var body struct {
		Pairs []shadow.Summary `json:"pairs"`
	}
	if code := f.admin(t, "/v1/admin/shadows", &body); code != 200 {
		t.Fatalf("/v1/admin/shadows: %d", code)
	}
	out := make(map[string]shadow.Summary)
	for _, p := range body.Pairs {
		out[p.Live+">"+p.Shadow] = p
	}
	return out
}

func value(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

// TestShadowStatistics scores the demo model's queries with three shadows
// through the real handler: one adding 0.5 to its margin, one reversing
// its order, one giving two scores a row (an error); the live answers stay
// byte for byte what they were without shadows.
func TestShadowStatistics(t *testing.T) {
	const shift = 0.5
	f := newLearnFixture(t, map[string]string{
		"models/store_ranker/2/manifest.yaml": rawManifest(t, "store_ranker", "2"),
		"models/store_ranker/2/model.txt": treeModel(t, func(tree int, v float64) float64 {
			if tree == 0 {
				return v + shift
			}
			return v
		}),
		"models/store_ranker/3/manifest.yaml": rawManifest(t, "store_ranker", "3"),
		"models/store_ranker/3/model.txt":     treeModel(t, func(_ int, v float64) float64 { return -v }),
		"models/two_scores/1/manifest.yaml": strings.Replace(strings.Replace(rawManifest(t, "two_scores", "1"),
			"format: lightgbm\nartifact: model.txt\n", "format: linear\n", 1), "output: raw\n", "", 1) +
			"linear: {link: softmax, intercept: [0, 1], weights: {distance_km: [1, -1]}}\n",
	}, nil)
	bodies := []string{rankingBody(false), strings.Replace(rankingBody(false), `"id": "q"`, `"id": "q2"`, 1)}
	var before [][]byte
	for _, b := range bodies {
		before = append(before, f.predict(t, b))
	}

	writeFiles(t, f.dir, map[string]string{
		"models/store_ranker/" + registry.ShadowFile: "shadows: [store_ranker@2, store_ranker@3, two_scores]\n",
	})
	if err := f.srv.Registry().Reload(); err != nil {
		t.Fatal(err)
	}
	const rounds = 3
	for range rounds {
		for k, b := range bodies {
			if got := f.predict(t, b); !bytes.Equal(got, before[k]) {
				t.Fatalf("with shadows the live answer changed:\n%s\nwant\n%s", got, before[k])
			}
		}
	}
	want := rounds * len(bodies)
	eventually(t, "every shadow to score every query", func() bool {
		p := f.shadowPairs(t)
		return p["store_ranker@1>store_ranker@2"].Queries == uint64(want) &&
			p["store_ranker@1>store_ranker@3"].Queries == uint64(want) &&
			p["store_ranker@1>two_scores@1"].Errors == uint64(want)
	})
	pairs := f.shadowPairs(t)
	if len(pairs) != 3 {
		t.Errorf("pairs %v, want 3", pairs)
	}
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-9 }
	plus := pairs["store_ranker@1>store_ranker@2"]
	for _, st := range []shadow.Stats{plus.Stats, plus.Recent} {
		if st.Rows != uint64(200*want) || st.Errors != 0 || st.Dropped != 0 ||
			!near(value(st.MeanAbsDiff), shift) || !near(value(st.MaxAbsDiff), shift) ||
			value(st.TopKOverlap) != 1 || value(st.RankCorrelation) != 1 {
			t.Errorf("margin + %v: %+v; want mean and max abs diff %v, top-k overlap 1, rank correlation 1",
				shift, describe(st), shift)
		}
	}
	rev := pairs["store_ranker@1>store_ranker@3"]
	if value(rev.RankCorrelation) != -1 || value(rev.TopKOverlap) != 0 {
		t.Errorf("reversed: %+v; want rank correlation -1, top-k overlap 0", describe(rev.Stats))
	}
	two := pairs["store_ranker@1>two_scores@1"]
	if two.Queries != 0 || two.Errors != uint64(want) || two.MeanAbsDiff != nil {
		t.Errorf("two scores: %+v; want %d errors and nothing compared", describe(two.Stats), want)
	}
	if plus.Window != "5m0s" {
		t.Errorf("window %q", plus.Window)
	}

	// Prometheus carries the counters by live and shadow version.
	code, metrics := get(t, f.http.URL+"/metrics")
	for _, line := range []string{
		fmt.Sprintf(`seer_shadow_queries_total{live="store_ranker@1",shadow="store_ranker@2"} %d`, want),
		fmt.Sprintf(`seer_shadow_rows_total{live="store_ranker@1",shadow="store_ranker@3"} %d`, 200*want),
		fmt.Sprintf(`seer_shadow_errors_total{live="store_ranker@1",shadow="two_scores@1"} %d`, want),
		`seer_shadow_dropped_total{live="store_ranker@1",shadow="store_ranker@2"} 0`,
	} {
		if code != 200 || !strings.Contains(metrics, line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	// The live model lists its shadows.
	if got := f.srv.Models().Models[0].Shadows; strings.Join(got, " ") != "store_ranker@2 store_ranker@3 two_scores@1" {
		t.Errorf("shadows in /v1/models: %v", got)
	}
	// Unloading a version forgets its pairs.
	if err := os.RemoveAll(filepath.Join(f.dir, "models/two_scores")); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.Registry().Reload(); err != nil {
		t.Fatal(err)
	}
	if p := f.shadowPairs(t); len(p) != 2 {
		t.Errorf("after unloading two_scores: %d pairs", len(p))
	}
}

// TestShadowSample shadows a share of the queries: with shadows.sample
// 0.5, about half of 200 queries are scored by the shadow and none is
// dropped; with 0, none is shadowed, until SetShadowSample(1).
func TestShadowSample(t *testing.T) {
	for _, tc := range []struct {
		sample   float64
		min, max uint64 // the shadowed queries: 100 ± 40 is more than five standard deviations
	}{{0.5, 60, 140}, {0, 0, 0}} {
		t.Run(fmt.Sprint(tc.sample), func(t *testing.T) {
			f := newLearnFixture(t, map[string]string{
				"models/store_ranker/2/manifest.yaml":        rawManifest(t, "store_ranker", "2"),
				"models/store_ranker/2/model.txt":            treeModel(t, func(_ int, v float64) float64 { return v }),
				"models/store_ranker/" + registry.ShadowFile: "shadows: [store_ranker@2]\n",
			}, func(cfg *Config) { cfg.Shadows.Sample = tc.sample })
			const n = 200
			body := `{"queries": [{"model": "store_ranker@1", "context": {"consumer": "1", "store": "3"}}]}`
			for range n {
				f.predict(t, body)
			}
			// Wait for the queue to empty and the counts to hold still.
			var got, last uint64
			steady := 0
			eventually(t, "the shadow's counts to settle", func() bool {
				p := f.shadowPairs(t)["store_ranker@1>store_ranker@2"]
				got = p.Queries + p.Errors + p.Dropped
				if f.srv.learn.queued.Load() != 0 || got != last {
					last, steady = got, 0
					return false
				}
				steady++
				return steady >= 10 // 200 ms
			})
			p := f.shadowPairs(t)["store_ranker@1>store_ranker@2"]
			if got < tc.min || got > tc.max || p.Errors != 0 || p.Dropped != 0 {
				t.Errorf("sample %v of %d queries: %s; want %d to %d queries, no error or drop", tc.sample, n, describe(p.Stats), tc.min, tc.max)
			}
			t.Logf("sample %v: %d of %d queries shadowed", tc.sample, got, n)
			var answer struct {
				Sample *float64 `json:"sample"`
			}
			if f.admin(t, "/v1/admin/shadows", &answer); answer.Sample == nil || *answer.Sample != tc.sample {
				t.Errorf("/v1/admin/shadows says sample %v, want %v", value(answer.Sample), tc.sample)
			}
			if tc.sample != 0 {
				return
			}
			// SIGHUP's way in: a new sample applies from the next query on.
			if err := f.srv.SetShadowSample(-1); err == nil {
				t.Error("sample -1 accepted")
			}
			if err := f.srv.SetShadowSample(1); err != nil {
				t.Fatal(err)
			}
			for range 20 {
				f.predict(t, body)
			}
			eventually(t, "the 20 queries after sample 1 shadowed", func() bool {
				return f.shadowPairs(t)["store_ranker@1>store_ranker@2"].Queries == 20
			})
		})
	}
}

func describe(st shadow.Stats) string {
	return fmt.Sprintf("queries %d rows %d errors %d dropped %d mean %v max %v overlap %v rank %v",
		st.Queries, st.Rows, st.Errors, st.Dropped, value(st.MeanAbsDiff), value(st.MaxAbsDiff), value(st.TopKOverlap), value(st.RankCorrelation))
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// TestSlowShadow shadows the live model with one that reads a feature from
// a store that is frozen: the shadow waits out its retrieval timeout on
// every query, the queue fills and drops, and the live answers neither
// wait nor change.
func TestSlowShadow(t *testing.T) {
	const stall = 3 * time.Second
	slow := redistest.Start(t)
	f := newLearnFixture(t, map[string]string{
		"catalog.yaml": demoCatalog + "  - {name: store_slow_signal, entity: store, type: float, store: slow}\n",
		"models/store_ranker_slow/1/manifest.yaml": "name: store_ranker_slow\nversion: \"1\"\nformat: linear\n" +
			"inputs: [{name: store_avg_rating}, {name: store_slow_signal}]\n" +
			"linear: {link: identity, weights: {store_avg_rating: 1, store_slow_signal: 1}}\n",
		"models/store_ranker/" + registry.ShadowFile: "shadows: [store_ranker_slow]\n",
	}, func(cfg *Config) {
		cfg.Stores["slow"] = retrieval.Config{Mode: "standalone", Addr: slow.Addr}
		cfg.Predict.RetrievalTimeout, cfg.Predict.Timeout = stall, 2*stall
		cfg.Shadows.Queue = 2
	})
	// The answers of the live model alone, before the slow store freezes.
	body := rankingBody(false)
	want := f.predict(t, body)

	slow.Pause()
	defer slow.Resume()
	const n = 12
	var worst time.Duration
	for range n {
		start := time.Now()
		got := f.predict(t, body)
		worst = max(worst, time.Since(start))
		if !bytes.Equal(got, want) {
			t.Fatalf("a slow shadow changed the live answer:\n%s\nwant\n%s", got, want)
		}
	}
	// Each shadow query waits 3 s for the frozen store; had the live path
	// waited for its shadow, its slowest answer would take as long.
	if worst >= stall/2 {
		t.Errorf("slowest live answer %v, with a shadow stalled %v a query", worst, stall)
	}
	p := f.shadowPairs(t)["store_ranker@1>store_ranker_slow@1"]
	if p.Dropped == 0 || p.Dropped > n {
		t.Errorf("dropped %d of %d queries behind a queue of 2 and a stalled shadow", p.Dropped, n)
	}
	t.Logf("slowest live answer %v; shadow: %s", worst, describe(p.Stats))
}

// TestFeatureLogReplay logs every query through the real handler and
// replays each logged row: its inputs, posted as request features to the
// logged model version, give the logged scores exactly.
func TestFeatureLogReplay(t *testing.T) {
	f := newLearnFixture(t, nil, func(cfg *Config) {
		cfg.FeatureLog.Path = filepath.Join(cfg.Models, "..", "logs", "features.jsonl")
		cfg.FeatureLog.Sample = 1
	})
	logPath := filepath.Join(f.dir, "logs", "features.jsonl")
	bodies := []string{
		rankingBody(false),
		// A store that has no values, a category and a distance given by
		// the request, a candidate with no store at all.
		`{"queries": [{"id": "mixed", "model": "store_ranker@1", "context": {"consumer": "1"}, "candidates": [
			{"entities": {"store": "999"}, "features": {"distance_km": 2.5}},
			{"entities": {"store": "3"}, "features": {"store_cuisine": "sushi", "hour_of_day": 7}},
			{"features": {"distance_km": 0.1}}]}]}`,
		// The context alone, one row; a second query in the same request.
		`{"queries": [{"id": "one", "model": "store_ranker", "context": {"consumer": "1", "store": "42"}},
			{"id": "two", "model": "store_ranker", "context": {"consumer": "nobody", "store": "7"}, "features": {"hour_of_day": 23}}]}`,
	}
	for k, b := range bodies {
		req, _ := http.NewRequest("POST", f.http.URL+"/v1/predict", strings.NewReader(b))
		req.Header.Set("X-Request-Id", fmt.Sprintf("replay-%d", k))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("body %d: %d", k, resp.StatusCode)
		}
	}
	var lines [][]byte
	eventually(t, "four logged queries", func() bool {
		// Read while seer writes: the last line is whole with its newline.
		data, _ := os.ReadFile(logPath)
		lines = bytes.Split(bytes.TrimSpace(data), []byte("\n"))
		return len(lines) == 4 && bytes.HasSuffix(data, []byte("\n"))
	})

	// Inputs keep their JSON text: numbers exact, strings quoted, null.
	type line struct {
		Time      time.Time `json:"time"`
		RequestID string    `json:"request_id"`
		QueryID   string    `json:"query_id"`
		Model     string    `json:"model"`
		Version   string    `json:"version"`
		Rows      []struct {
			Entities map[string]string          `json:"entities"`
			Inputs   map[string]json.RawMessage `json:"inputs"`
			Sources  map[string]string          `json:"sources"`
			Scores   []float64                  `json:"scores"`
		} `json:"rows"`
	}
	sources := map[string]int{}
	ids := map[string]bool{}
	replayed := 0
	for _, raw := range lines {
		var meta line
		if err := json.Unmarshal(raw, &meta); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		ids[meta.QueryID] = true
		if !strings.HasPrefix(meta.RequestID, "replay-") {
			t.Errorf("query %q logged with request id %q, want the request's X-Request-Id", meta.QueryID, meta.RequestID)
		}
		if meta.Model != "store_ranker" || meta.Version != "1" || time.Since(meta.Time) > time.Minute {
			t.Errorf("line of %s@%s at %v", meta.Model, meta.Version, meta.Time)
		}
		// Replay: one candidate per logged row, its inputs as features.
		var b strings.Builder
		fmt.Fprintf(&b, `{"queries": [{"model": "%s@%s", "candidates": [`, meta.Model, meta.Version)
		for r, rr := range meta.Rows {
			if r > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"features": {`)
			k := 0
			for name, v := range rr.Inputs {
				if k > 0 {
					b.WriteByte(',')
				}
				k++
				fmt.Fprintf(&b, "%q: %s", name, v)
			}
			b.WriteString(`}}`)
			for _, src := range meta.Rows[r].Sources {
				sources[src]++
			}
		}
		b.WriteString(`]}]}`)
		var answer struct {
			Results []struct {
				Scores []float64 `json:"scores"`
			} `json:"results"`
		}
		if err := json.Unmarshal(f.predict(t, b.String()), &answer); err != nil {
			t.Fatal(err)
		}
		got := answer.Results[0].Scores
		if len(got) != len(meta.Rows) {
			t.Fatalf("%s: replay gave %d scores for %d rows", meta.QueryID, len(got), len(meta.Rows))
		}
		for r := range meta.Rows {
			if len(meta.Rows[r].Scores) != 1 || got[r] != meta.Rows[r].Scores[0] {
				t.Errorf("%s row %d: replayed score %v, logged %v", meta.QueryID, r, got[r], meta.Rows[r].Scores)
			}
			replayed++
		}
	}
	if replayed != 200+3+1+1 || len(ids) != 4 {
		t.Errorf("replayed %d rows of queries %v, want 205 rows of 4 queries", replayed, ids)
	}
	// Values came from Redis, the request and defaults.
	if sources["redis"] == 0 || sources["request"] == 0 || sources["default"] == 0 {
		t.Errorf("sources %v, want each of redis, request and default", sources)
	}

	// A row as logged: entities merged, the category as its string.
	var mixed struct {
		Rows []struct {
			Entities map[string]string `json:"entities"`
			Inputs   map[string]any    `json:"inputs"`
			Sources  map[string]string `json:"sources"`
			Why      map[string]string `json:"why"`
		} `json:"rows"`
	}
	for _, raw := range lines {
		if bytes.Contains(raw, []byte(`"query_id":"mixed"`)) {
			if err := json.Unmarshal(raw, &mixed); err != nil {
				t.Fatal(err)
			}
		}
	}
	r1 := mixed.Rows[1]
	if r1.Entities["store"] != "3" || r1.Entities["consumer"] != "1" || r1.Inputs["store_cuisine"] != "sushi" ||
		r1.Sources["store_cuisine"] != "request" || r1.Sources["store_avg_rating"] != "redis" {
		t.Errorf("row 1 of the mixed query: %+v", r1)
	}
	r0 := mixed.Rows[0]
	if r0.Inputs["store_avg_rating"] != nil || r0.Sources["store_avg_rating"] != "default" || r0.Why["store_avg_rating"] != "absent" {
		t.Errorf("row 0 of the mixed query (store 999 has no values): %+v", r0)
	}
	if _, ok := r1.Why["store_avg_rating"]; ok {
		t.Errorf("row 1 of the mixed query: why %v for a value read", r1.Why)
	}
	if r2 := mixed.Rows[2]; len(r2.Entities) != 1 || r2.Entities["consumer"] != "1" || r2.Why["store_avg_rating"] != "no_entity" {
		t.Errorf("row 2 of the mixed query (no store): entities %v, why %v", r2.Entities, r2.Why)
	}
}

// TestGuardrail deletes one feature's values from Redis under traffic: its
// default rate trips its guardrail, the others stay clear, readiness fails
// (fail_readiness), and restoring the values clears it.
func TestGuardrail(t *testing.T) {
	f := newLearnFixture(t, nil, func(cfg *Config) {
		cfg.Guardrails.Window, cfg.Guardrails.DefaultRate, cfg.Guardrails.MinRows = 3*time.Second, 0.5, 100
		cfg.Guardrails.FailReadiness = true
		cfg.Guardrails.Features = map[string]guardrail.Override{"consumer_avg_spend": {DefaultRate: ptrTo(0.0)}}
	})
	body := rankingBody(false)
	stats := func() map[string]FeatureStats {
		var out struct {
			Features map[string]FeatureStats `json:"features"`
		}
		if code := f.admin(t, "/v1/admin/features", &out); code != 200 {
			t.Fatalf("/v1/admin/features: %d", code)
		}
		return out.Features
	}
	f.predict(t, body)
	eventually(t, "the window to see the first rows", func() bool { return stats()["store_avg_rating"].Rows > 0 })
	for name, st := range stats() {
		if st.Alert {
			t.Errorf("%s alerts before any value was deleted: %+v", name, st)
		}
	}

	// Delete store_avg_rating from every store hash, in the generation
	// served.
	ctx := context.Background()
	rc := f.rs.Client()
	var fg retrieval.FeatureGenerations
	rec, err := rc.HGet(ctx, retrieval.GenerationsKey, features.Field("store_avg_rating")).Result()
	if err != nil || json.Unmarshal([]byte(rec), &fg) != nil {
		t.Fatalf("generations of store_avg_rating: %q, %v", rec, err)
	}
	field := retrieval.GenField(features.ID("store_avg_rating"), fg.Current.Gen)
	for i := range 200 {
		if err := rc.HDel(ctx, "st_"+strconv.Itoa(i), field).Err(); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "store_avg_rating to alert", func() bool {
		f.predict(t, body)
		return stats()["store_avg_rating"].Alert
	})
	st := stats()
	if r := value(st["store_avg_rating"].Rate); r < 0.5 || r > 1 {
		t.Errorf("store_avg_rating alerts at rate %v", r)
	}
	for name, s := range st {
		if name != "store_avg_rating" && s.Alert {
			t.Errorf("%s alerts too: %+v", name, s)
		}
	}
	if st["consumer_avg_spend"].Threshold != nil {
		t.Errorf("consumer_avg_spend's guardrail is off, yet has a threshold")
	}
	code, ready := get(t, f.http.URL+"/readyz")
	if code != 503 || !strings.Contains(ready, `"feature_alerts":["store_avg_rating"]`) {
		t.Errorf("/readyz %d %s, want 503 naming store_avg_rating", code, ready)
	}
	_, metrics := get(t, f.http.URL+"/metrics")
	if !strings.Contains(metrics, "seer_guardrail_crossings_total 1\n") || !strings.Contains(metrics, "seer_guardrail_alerts 1\n") {
		t.Errorf("/metrics lacks the crossing:\n%s", grep(metrics, "seer_guardrail"))
	}

	// Upload the values again: the rate falls as the window moves on.
	if err := f.srv.Seed(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "store_avg_rating to clear", func() bool {
		f.predict(t, body)
		return !stats()["store_avg_rating"].Alert
	})
	if code, _ := get(t, f.http.URL+"/readyz"); code != 200 {
		t.Errorf("/readyz %d after recovery", code)
	}
}

func grep(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func ptrTo[T any](v T) *T { return &v }

// TestFlatten copies a query of every kind of value out and back.
func TestFlatten(t *testing.T) {
	body := []byte(`thai`)
	q := features.Query{
		Context:  map[string]string{"consumer": "c1"},
		Features: map[string]features.Value{"hour": features.IntValue(7), "cuisine": features.StringValue(string(body)), "empty": features.StringValue("")},
		Candidates: []features.Candidate{
			{Entities: map[string]string{"store": "s1"}, Features: map[string]features.Value{
				"emb": features.VectorValue([]float32{1, 2}), "tags": features.ListValue([]string{"a"}), "ok": features.BoolValue(true),
			}},
			{},
			{Entities: map[string]string{"store": "s3", "consumer": "c3"}, Features: map[string]features.Value{"d": features.FloatValue(0.5)}},
		},
	}
	f, n := flatten(&q)
	if n <= 0 {
		t.Errorf("size %d", n)
	}
	q.Candidates[0].Features["emb"].Vector()[0] = 9 // the caller reuses its memory
	q.Context["consumer"] = "changed"
	got := f.query()
	q.Context["consumer"] = "c1"
	q.Candidates[0].Features["emb"] = features.VectorValue([]float32{1, 2})
	equal := cmp.Comparer(func(a, b features.Value) bool { return a.Equal(b) })
	if diff := cmp.Diff(q, got, equal, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}
