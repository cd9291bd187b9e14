package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/internal/oracle"
	"github.com/seer-ml/seer/internal/redistest"
	"github.com/seer-ml/seer/internal/testenv"
	"github.com/seer-ml/seer/retrieval"
	"github.com/seer-ml/seer/serving"
)

// instance is a seer serve started by run in this process.
type instance struct {
	url  string
	stop func() // cancels run and waits for it, failing the test unless it returned nil
}

// serve runs `seer serve --config cfg --listen 127.0.0.1:0` and waits until
// it listens.
func serve(t *testing.T, cfg string, extra ...string) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	stderr := &lockedWriter{w: new(bytes.Buffer)}
	done := make(chan error, 1)
	args := append([]string{"serve", "--config", cfg, "--listen", "127.0.0.1:0", "--shutdown-delay", "0s"}, extra...)
	go func() {
		err := run(ctx, args, pw, stderr)
		pw.CloseWithError(errors.New("run returned"))
		done <- err
	}()
	lines := bufio.NewScanner(pr)
	var url string
	for lines.Scan() {
		if u, ok := strings.CutPrefix(lines.Text(), "seer: listening on "); ok {
			url = u
			break
		}
	}
	if url == "" {
		cancel()
		t.Fatalf("seer did not start: %v; stderr:\n%s", <-done, stderr.String())
	}
	go io.Copy(io.Discard, pr)
	stopped := false
	inst := &instance{url: url}
	inst.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("seer serve returned %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("seer serve did not shut down")
		}
	}
	t.Cleanup(inst.stop)
	return inst
}

// lockedWriter lets the server log while the test reads the buffer.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// post sends a JSON body and decodes the JSON answer into out.
func post(t *testing.T, url, body string, out any) int {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q, body %s", ct, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("decode %s: %v", data, err)
		}
	}
	return resp.StatusCode
}

func get(t *testing.T, url string, out any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

// The files tests write.
var (
	writeFiles = testenv.WriteFiles
	copyFile   = testenv.CopyFile
)

// upload runs `seer upload` and fails the test on error.
func upload(t *testing.T, cfg, entity string, files ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	args := append([]string{"upload", "--config", cfg, "--entity", entity}, files...)
	if err := run(context.Background(), args, &out, &errb); err != nil {
		t.Fatalf("seer upload: %v\n%s", err, errb.String())
	}
	return out.String()
}

type predictAnswer struct {
	Results []struct {
		ID             string   `json:"id"`
		Model          string   `json:"model"`
		Version        string   `json:"version"`
		Scores         scores   `json:"scores"`
		Degraded       bool     `json:"degraded"`
		DegradedStores []string `json:"degraded_stores"`
		Debug          []map[string]struct {
			Value  any
			Source string
		} `json:"debug"`
	} `json:"results"`
	Error string `json:"error"`
}

// scores are an answer's scores as JSON text, which a failing test prints
// as text rather than as bytes.
type scores []json.RawMessage

func (s scores) String() string {
	parts := make([]string, len(s))
	for i, r := range s {
		parts[i] = string(r)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// floats decodes scores that are numbers (single-output models).
func floats(t *testing.T, raw []json.RawMessage) []float64 {
	t.Helper()
	out := make([]float64, len(raw))
	for i, r := range raw {
		if string(r) == "null" {
			out[i] = math.NaN()
			continue
		}
		if err := json.Unmarshal(r, &out[i]); err != nil {
			t.Fatalf("score %d: %s is not a number", i, r)
		}
	}
	return out
}

func near(got, want, tol float64) bool {
	if math.IsNaN(want) {
		return math.IsNaN(got)
	}
	return math.Abs(got-want) <= tol*max(1, math.Abs(want))
}

// demoSetup writes a config whose store "main" is the given Redis, with the
// quickstart catalog (with or without defaults) and store_ranker model.
func demoSetup(t *testing.T, addr string, catalog string) string {
	t.Helper()
	dir := t.TempDir()
	copyFile(t, "../../configs/quickstart/models/store_ranker/1/model.txt", filepath.Join(dir, "models/store_ranker/1/model.txt"))
	copyFile(t, "../../configs/quickstart/models/store_ranker/1/manifest.yaml", filepath.Join(dir, "models/store_ranker/1/manifest.yaml"))
	writeFiles(t, dir, map[string]string{
		"catalog.yaml": catalog,
		"seer.yaml": fmt.Sprintf(`listen: 127.0.0.1:0
catalog: catalog.yaml
models: models
models_poll: 0s
admin_token: secret
stores:
  main: {mode: standalone, addr: %q, read_timeout: 2s}
predict:
  timeout: 5s
  retrieval_timeout: 2s
  max_candidates: 50
  max_body_bytes: 200000
`, addr),
	})
	return filepath.Join(dir, "seer.yaml")
}

// demoCatalog is the quickstart catalog without defaults for the model's
// catalog inputs, so that a missing value is NaN, as in the golden rows.
const demoCatalog = `entities:
  store: {key: "st_{id}"}
  consumer: {key: "cx_{id}"}
features:
  - {name: store_avg_rating, entity: store, type: float, store: main}
  - {name: store_num_ratings, entity: store, type: int, store: main}
  - {name: store_delivery_minutes, entity: store, type: float, store: main}
  - {name: store_price_level, entity: store, type: int, store: main}
  - {name: store_cuisine, entity: store, type: string, store: main}
  - {name: consumer_order_count, entity: consumer, type: int, store: main}
  - {name: consumer_avg_spend, entity: consumer, type: float, store: main}
`

var cuisines = []string{"pizza", "sushi", "burger", "thai", "mexican"}

// goldenRows reads the demo model's golden file: the nine inputs and the
// probability scikit-learn gave.
func goldenRows(t *testing.T) (header []string, rows [][]float64) {
	t.Helper()
	tab := oracle.Read(t, "../../configs/quickstart/models/store_ranker/1/golden.tsv")
	return tab.Header, tab.Rows
}

// cell formats a golden value as a CSV cell: empty for NaN (not written).
func cell(v float64, name string) string {
	switch {
	case math.IsNaN(v):
		return ""
	case name == "store_cuisine":
		return cuisines[int(v)]
	}
	return fmt.Sprint(v)
}

// TestPredictOracle loads the demo model's golden rows into a real Redis with
// seer upload (a store and a consumer per row), then predicts each row with
// the request-only inputs in the request, and compares with the scores
// scikit-learn gave for the trees the model holds.
func TestPredictOracle(t *testing.T) {
	rs := redistest.Start(t)
	cfg := demoSetup(t, rs.Addr, demoCatalog)
	header, rows := goldenRows(t)
	var stores, consumers strings.Builder
	stores.WriteString("id,store_avg_rating,store_num_ratings,store_delivery_minutes,store_price_level,store_cuisine\n")
	consumers.WriteString("id,consumer_order_count,consumer_avg_spend\n")
	for i, r := range rows {
		fmt.Fprintf(&stores, "%d", 100+i)
		for c := 0; c < 5; c++ {
			stores.WriteString("," + cell(r[c], header[c]))
		}
		fmt.Fprintf(&consumers, "%d,%s,%s\n", 900+i, cell(r[5], header[5]), cell(r[6], header[6]))
		stores.WriteString("\n")
	}
	dir := filepath.Dir(cfg)
	writeFiles(t, dir, map[string]string{"stores.csv": stores.String(), "consumers.csv": consumers.String()})
	if out := upload(t, cfg, "store", filepath.Join(dir, "stores.csv")); !strings.Contains(out, fmt.Sprintf("%d rows", len(rows))) {
		t.Fatalf("upload said %q", out)
	}
	upload(t, cfg, "consumer", filepath.Join(dir, "consumers.csv"))

	inst := serve(t, cfg)
	// One query per golden row, all in one request: they run concurrently.
	var queries []string
	for i, r := range rows {
		feats := map[string]any{}
		if !math.IsNaN(r[7]) {
			feats["hour_of_day"] = int(r[7])
		}
		if !math.IsNaN(r[8]) {
			feats["distance_km"] = r[8]
		} else {
			feats["distance_km"] = nil // explicit null: not given, the default applies
		}
		q, _ := json.Marshal(map[string]any{
			"id": fmt.Sprint(i), "model": "store_ranker",
			"context":    map[string]any{"consumer": 900 + i},
			"features":   feats,
			"candidates": []any{map[string]any{"entities": map[string]string{"store": fmt.Sprint(100 + i)}}},
		})
		queries = append(queries, string(q))
	}
	var ans predictAnswer
	if code := post(t, inst.url+"/v1/predict", `{"queries":[`+strings.Join(queries, ",")+`]}`, &ans); code != 200 {
		t.Fatalf("status %d: %s", code, ans.Error)
	}
	checked := 0
	for i, r := range rows {
		if math.IsNaN(r[7]) || math.IsNaN(r[8]) {
			continue // the request-only inputs have defaults; rows with NaN there are not comparable
		}
		res := ans.Results[i]
		if res.ID != fmt.Sprint(i) || res.Version != "1" || res.Degraded {
			t.Errorf("result %d: %+v", i, res)
		}
		got := floats(t, res.Scores)
		if len(got) != 1 || !near(got[0], r[9], 1e-9) {
			t.Errorf("row %d: got %v, want %.17g", i, got, r[9])
		}
		checked++
	}
	if checked < 15 {
		t.Fatalf("only %d golden rows compared", checked)
	}
	t.Logf("%d golden rows reproduced through Redis and /v1/predict", checked)
}

// TestPredictSources covers the order values fill in: the candidate, then
// the query, then Redis, then the default; the HMGETs sent; and a Redis
// that stops answering.
func TestPredictSources(t *testing.T) {
	rs := redistest.Start(t)
	catalog := strings.ReplaceAll(demoCatalog, "store: main}", "store: main, default: 7}")
	catalog = strings.Replace(catalog, "type: string, store: main, default: 7}", "type: string, store: main, default: sushi}", 1)
	cfg := demoSetup(t, rs.Addr, catalog)
	dir := filepath.Dir(cfg)
	writeFiles(t, dir, map[string]string{
		"stores.csv":    "id,store_avg_rating,store_num_ratings,store_delivery_minutes,store_price_level,store_cuisine\n1,4.5,100,20,2,thai\n2,3.0,5,50,4,pizza\n",
		"consumers.csv": "id,consumer_order_count,consumer_avg_spend\n77,12,30.5\n",
	})
	upload(t, cfg, "store", filepath.Join(dir, "stores.csv"))
	upload(t, cfg, "consumer", filepath.Join(dir, "consumers.csv"))
	inst := serve(t, cfg)
	rs.Client().ConfigResetStat(context.Background())

	body := `{"debug": true, "queries": [{"id": "q", "model": "store_ranker@1",
	  "context": {"consumer": "77"}, "features": {"hour_of_day": 19, "store_price_level": 1},
	  "candidates": [
	    {"entities": {"store": "1"}, "features": {"distance_km": 1.5, "store_avg_rating": 2.5}},
	    {"entities": {"store": 2}},
	    {"entities": {"store": "3"}},
	    {"entities": {"store": "1"}}]}]}`
	var ans predictAnswer
	if code := post(t, inst.url+"/v1/predict", body, &ans); code != 200 {
		t.Fatalf("status %d: %s", code, ans.Error)
	}
	dbg := ans.Results[0].Debug
	want := []map[string]string{
		{"store_avg_rating": "request 2.5", "store_price_level": "request 1", "distance_km": "request 1.5", "hour_of_day": "request 19",
			"store_num_ratings": "redis 100", "store_cuisine": "redis thai", "consumer_order_count": "redis 12"},
		{"store_avg_rating": "redis 3", "store_price_level": "request 1", "distance_km": "default 5", "store_cuisine": "redis pizza"},
		{"store_avg_rating": "default 7", "store_num_ratings": "default 7", "store_cuisine": "default sushi", "consumer_avg_spend": "redis 30.5"},
		{"store_avg_rating": "redis 4.5", "store_num_ratings": "redis 100"},
	}
	for r, cells := range want {
		for name, w := range cells {
			c := dbg[r][name]
			if got := fmt.Sprintf("%s %v", c.Source, c.Value); got != w {
				t.Errorf("row %d %s: got %q, want %q", r, name, got, w)
			}
		}
	}
	// One HMGET per distinct entity key: st_1, st_2, st_3 and cx_77.
	info, err := rs.Client().Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info, "cmdstat_hmget:calls=4,") {
		t.Errorf("want 4 HMGET calls, commandstats:\n%s", info)
	}

	// A Redis that stops answering: the answer comes within the retrieval
	// timeout, degraded, from request values and defaults.
	rs.Pause()
	defer rs.Resume()
	start := time.Now()
	ans = predictAnswer{}
	if code := post(t, inst.url+"/v1/predict", body, &ans); code != 200 {
		t.Fatalf("status %d with Redis frozen: %s", code, ans.Error)
	}
	if d := time.Since(start); d > retrievalTimeout+deadlineMargin {
		t.Errorf("frozen Redis: answer took %v", d)
	}
	res := ans.Results[0]
	if !res.Degraded || len(res.DegradedStores) != 1 || res.DegradedStores[0] != "main" {
		t.Errorf("frozen Redis: degraded %v %v", res.Degraded, res.DegradedStores)
	}
	if c := res.Debug[1]["store_avg_rating"]; c.Source != "default" {
		t.Errorf("frozen Redis: store_avg_rating came from %s", c.Source)
	}
	if c := res.Debug[0]["store_avg_rating"]; c.Source != "request" {
		t.Errorf("frozen Redis: the request value came from %s", c.Source)
	}
	var ready serving.Readiness
	// The store is not required: the pod stays ready and /readyz says the
	// store is down (stores_test.go covers required stores).
	if code := get(t, inst.url+"/readyz", &ready); code != http.StatusOK || ready.Stores["main"].Status != "down" {
		t.Errorf("readyz with Redis frozen: %d %+v", code, ready)
	}
	rs.Resume()
	if code := get(t, inst.url+"/readyz", &ready); code != 200 {
		t.Errorf("readyz after resume: %d %+v", code, ready)
	}

	// Defaults used are counted per input.
	var models struct {
		Models []struct {
			Versions []struct {
				Inputs []struct {
					Name         string
					DefaultsUsed uint64 `json:"defaults_used"`
				}
			}
		}
	}
	get(t, inst.url+"/v1/models", &models)
	counts := map[string]uint64{}
	for _, in := range models.Models[0].Versions[0].Inputs {
		counts[in.Name] = in.DefaultsUsed
	}
	if counts["store_num_ratings"] < 1 || counts["hour_of_day"] != 0 {
		t.Errorf("defaults used: %v", counts)
	}
}

// TestFeaturesEndpoint reads values without scoring, through the same path.
func TestFeaturesEndpoint(t *testing.T) {
	rs := redistest.Start(t)
	catalog := demoCatalog + "  - {name: consumer_embedding, entity: consumer, type: vector, store: main}\n"
	cfg := demoSetup(t, rs.Addr, catalog)
	dir := filepath.Dir(cfg)
	writeFiles(t, dir, map[string]string{
		"consumers.jsonl": `{"id": 5, "consumer_order_count": 3, "consumer_embedding": [0.5, -1.25]}` + "\n",
	})
	upload(t, cfg, "consumer", filepath.Join(dir, "consumers.jsonl"))
	inst := serve(t, cfg)
	var ans struct {
		Results []struct {
			ID   string
			Rows []map[string]struct {
				Value  any
				Source string
			}
		}
	}
	body := `{"queries": [{"id": "f", "features": ["consumer_order_count", "consumer_embedding", "consumer_avg_spend"], "context": {"consumer": 5}}]}`
	if code := post(t, inst.url+"/v1/features", body, &ans); code != 200 {
		t.Fatalf("status %d", code)
	}
	row := ans.Results[0].Rows[0]
	got := fmt.Sprint(row["consumer_order_count"], row["consumer_embedding"], row["consumer_avg_spend"])
	if want := "{3 redis} {[0.5 -1.25] redis} {<nil> default}"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// TestBadRequests checks that bad input answers 4xx with a JSON error naming
// the field at fault.
func TestBadRequests(t *testing.T) {
	rs := redistest.Start(t)
	inst := serve(t, demoSetup(t, rs.Addr, demoCatalog))
	many := strings.Repeat(`{"entities": {"store": "1"}},`, 51)
	tests := []struct {
		name, path, body string
		code             int
		want             string
	}{
		{"malformed", "/v1/predict", `{"queries": [`, 400, "malformed JSON"},
		{"not json", "/v1/predict", `hello`, 400, "malformed JSON"},
		{"empty", "/v1/predict", ``, 400, "empty"},
		{"no queries", "/v1/predict", `{"queries": []}`, 400, "queries"},
		{"unknown field", "/v1/predict", `{"queries": [{"model": "store_ranker", "candidatez": []}]}`, 400, "candidatez"},
		{"unknown model", "/v1/predict", `{"queries": [{"model": "nope"}]}`, 404, `queries[0].model: unknown model "nope"`},
		{"unknown version", "/v1/predict", `{"queries": [{"model": "store_ranker@9"}]}`, 404, `unknown model version "9"`},
		{"no model", "/v1/predict", `{"queries": [{"id": "x"}]}`, 400, "model: missing"},
		{"unknown entity", "/v1/predict", `{"queries": [{"model": "store_ranker", "context": {"shop": "1"}}]}`, 400, `unknown entity type "shop"`},
		{"bad entity id", "/v1/predict", `{"queries": [{"model": "store_ranker", "context": {"store": 1.5}}]}`, 400, "entity store"},
		{"wrong type", "/v1/predict", `{"queries": [{"model": "store_ranker", "candidates": [{"features": {"distance_km": "far"}}]}]}`, 400, `queries[0].candidates[0].features.distance_km: want float, got string "far"`},
		{"wrong type query", "/v1/predict", `{"queries": [{"model": "store_ranker", "features": {"hour_of_day": 1.5}}]}`, 400, "queries[0].features.hour_of_day: want int"},
		{"bad category", "/v1/predict", `{"queries": [{"model": "store_ranker", "features": {"store_cuisine": 3}}]}`, 400, "store_cuisine: want string"},
		{"field type", "/v1/predict", `{"queries": [{"model": 7}]}`, 400, "queries.model"},
		{"too many candidates", "/v1/predict", `{"queries": [{"model": "store_ranker", "candidates": [` + strings.TrimSuffix(many, ",") + `]}]}`, 400, "queries[0].candidates: more than the limit of 50"},
		{"too large", "/v1/predict", `{"queries": [{"model": "store_ranker", "id": "` + strings.Repeat("x", 300000) + `"}]}`, 413, "over the limit"},
		{"trailing", "/v1/predict", `{"queries": [{"model": "store_ranker"}]} {}`, 400, "after the JSON"},
		{"features unknown", "/v1/features", `{"queries": [{"features": ["nope"]}]}`, 400, "nope"},
		{"features none", "/v1/features", `{"queries": [{"context": {"store": "1"}}]}`, 400, "features"},
		{"wrong method", "/v1/models", `{}`, 405, "not allowed"},
		{"no route", "/v2/predict", `{}`, 404, "no route"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body struct{ Error string }
			code := post(t, inst.url+tt.path, tt.body, &body)
			if code != tt.code || !strings.Contains(body.Error, tt.want) {
				t.Errorf("got %d %q, want %d with %q", code, body.Error, tt.code, tt.want)
			}
		})
	}
	// A query without candidates scores one row from the context alone.
	var ans predictAnswer
	if code := post(t, inst.url+"/v1/predict", `{"queries": [{"model": "store_ranker", "context": {"store": "1"}}]}`, &ans); code != 200 || len(ans.Results[0].Scores) != 1 {
		t.Errorf("no candidates: %d %+v", code, ans)
	}
}

// TestAdminFeatureStats needs the bearer token.
func TestAdminFeatureStats(t *testing.T) {
	rs := redistest.Start(t)
	inst := serve(t, demoSetup(t, rs.Addr, demoCatalog))
	if code := get(t, inst.url+"/v1/admin/features", nil); code != http.StatusUnauthorized {
		t.Errorf("without a token: %d", code)
	}
	stats := adminFeatures(t, inst.url)
	if stats["store_avg_rating"].Entity != "store" {
		t.Errorf("stats: %+v", stats)
	}
}

// adminFeatures reads /v1/admin/features with the admin token.
func adminFeatures(t *testing.T, url string) map[string]serving.FeatureStats {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/v1/admin/features", nil)
	req.Header.Set("Authorization", "Bearer secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Features map[string]serving.FeatureStats
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/v1/admin/features: %d %v", resp.StatusCode, err)
	}
	return body.Features
}

// TestStartFailures: a bad catalog or manifest at start stops seer with one
// readable line.
func TestStartFailures(t *testing.T) {
	rs := redistest.Start(t)
	tests := []struct {
		name string
		edit func(dir string)
		want string
	}{
		{"catalog duplicate", func(dir string) {
			writeFiles(t, dir, map[string]string{"catalog.yaml": demoCatalog + "  - {name: store_avg_rating, entity: store, type: float, store: main}\n"})
		}, "store_avg_rating: declared twice"},
		{"catalog unknown store", func(dir string) {
			writeFiles(t, dir, map[string]string{"catalog.yaml": demoCatalog + "  - {name: x, entity: store, type: float, store: other}\n"})
		}, `unknown store "other"`},
		{"manifest bad", func(dir string) {
			writeFiles(t, dir, map[string]string{"models/store_ranker/1/manifest.yaml": "name: store_ranker\nversion: \"1\"\nformat: tensorflow\n"})
		}, `format "tensorflow"`},
		{"artifact corrupt", func(dir string) {
			writeFiles(t, dir, map[string]string{"models/store_ranker/1/model.txt": "tree\nversion=v3\nnum_class=1\n"})
		}, "load model.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := demoSetup(t, rs.Addr, demoCatalog)
			tt.edit(filepath.Dir(cfg))
			err := run(context.Background(), []string{"serve", "--config", cfg, "--listen", "127.0.0.1:0"}, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(oneLine(err), "\n") {
				t.Errorf("not one line: %q", oneLine(err))
			}
		})
	}
}

// TestUploadRefusesBadFile: a bad row is reported with file, line and
// column, and nothing of the file is written.
func TestUploadRefusesBadFile(t *testing.T) {
	rs := redistest.Start(t)
	cfg := demoSetup(t, rs.Addr, demoCatalog)
	dir := filepath.Dir(cfg)
	writeFiles(t, dir, map[string]string{"bad.csv": "id,store_avg_rating\n1,4.5\n2,abc\n"})
	err := run(context.Background(), []string{"upload", "--config", cfg, "--entity", "store", filepath.Join(dir, "bad.csv")}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "bad.csv:3") || !strings.Contains(err.Error(), "store_avg_rating") {
		t.Fatalf("got %v", err)
	}
	// Nothing is served: no feature has a generation, and no value was
	// written (the bad row came before the first batch).
	ctx := context.Background()
	if keys, _ := rs.Client().Keys(ctx, "*").Result(); len(keys) != 1 || keys[0] != retrieval.GenerationsKey {
		t.Errorf("keys %v after a bad file, want only %s", keys, retrieval.GenerationsKey)
	}
	if all, _ := rs.Client().HGetAll(ctx, retrieval.GenerationsKey).Result(); all[features.Field("store_avg_rating")] != "" {
		t.Errorf("a bad file switched store_avg_rating: %v", all)
	}
	for _, args := range [][]string{
		{"upload", "--config", cfg, "--entity", "shop", filepath.Join(dir, "bad.csv")},
		{"upload", "--config", cfg},
		{"frobnicate"},
		{},
	} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("seer %v: no error", args)
		}
	}
}
