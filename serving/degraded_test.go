package serving

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	seerv1 "github.com/seer-ml/seer/api/seer/v1"
	"github.com/seer-ml/seer/internal/redistest"
	"github.com/seer-ml/seer/retrieval"
)

// usersCatalog is the demo catalog with the consumer features in a store
// of their own, "users".
var usersCatalog = strings.NewReplacer(
	"entity: consumer, type: int, store: main", "entity: consumer, type: int, store: users",
	"entity: consumer, type: float, store: main", "entity: consumer, type: float, store: users",
).Replace(demoCatalog)

// degradedFixture is the learning fixture with the consumer features in
// a second Redis, "users", and a logger; the fake clock of the degraded
// log is stopped at a fixed time.
type degradedFixture struct {
	*learnFixture
	users *redistest.Server
	logs  *logBuffer
	clock time.Time
}

func newDegradedFixture(t *testing.T) *degradedFixture {
	t.Helper()
	users := redistest.Start(t)
	logs := new(logBuffer)
	f := newLearnFixtureWith(t, map[string]string{"catalog.yaml": usersCatalog}, func(cfg *Config) {
		cfg.Stores["users"] = retrieval.Config{Mode: "standalone", Addr: users.Addr}
		// Long enough for a loaded machine to read from the healthy store;
		// the paused one never answers.
		cfg.Predict.RetrievalTimeout = time.Second
		cfg.AccessLog.Sample = 0
	}, Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	d := &degradedFixture{learnFixture: f, users: users, logs: logs, clock: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	f.srv.degradedLog.now = func() time.Time { return d.clock }
	return d
}

// pauseUsers stops the users Redis until the test ends.
func (d *degradedFixture) pauseUsers(t *testing.T) {
	d.users.Pause()
	t.Cleanup(d.users.Resume)
}

// degradedBody is a /v1/predict body of one query of n candidates for
// consumer 1, the first of which gives consumer_avg_spend itself, with
// on_degraded fields as given (JSON members, or "").
func degradedBody(n int, request, query string) string {
	var b strings.Builder
	b.WriteString(`{`)
	if request != "" {
		b.WriteString(request + `, `)
	}
	b.WriteString(`"queries": [{"model": "store_ranker", "context": {"consumer": "1"}`)
	if query != "" {
		b.WriteString(`, ` + query)
	}
	b.WriteString(`, "candidates": [`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		if i == 0 {
			fmt.Fprintf(&b, `{"entities": {"store": "%d"}, "features": {"consumer_avg_spend": 20}}`, i)
			continue
		}
		fmt.Fprintf(&b, `{"entities": {"store": "%d"}}`, i)
	}
	b.WriteString(`]}]}`)
	return b.String()
}

// degradedAnswer is the part of a /v1/predict or /v1/features answer
// that says it is degraded.
type degradedAnswer struct {
	Results []struct {
		Degraded       bool                         `json:"degraded"`
		DegradedValues *int                         `json:"degraded_values"`
		DegradedStores []string                     `json:"degraded_stores"`
		Debug          []map[string]json.RawMessage `json:"debug"`
		Rows           []map[string]json.RawMessage `json:"rows"`
	} `json:"results"`
}

func decodeAnswer(t *testing.T, code int, body []byte) degradedAnswer {
	t.Helper()
	var a degradedAnswer
	if err := json.Unmarshal(body, &a); code != 200 || err != nil {
		t.Fatalf("%d %s (%v)", code, body, err)
	}
	return a
}

// storeDegradedCells counts the cells of debug or feature rows whose why
// is store_degraded.
func storeDegradedCells(rows []map[string]json.RawMessage) int {
	n := 0
	for _, row := range rows {
		for _, c := range row {
			if strings.Contains(string(c), `"why":"store_degraded"`) {
				n++
			}
		}
	}
	return n
}

// TestDegradedValues stops the Redis of the consumer features: every
// answer says it is degraded, names the store, and counts the values that
// took defaults because of it (two consumer inputs per row, less the one
// the request gave) over HTTP, the Go API and gRPC, for predictions and
// feature reads; the per-model metrics count them.
func TestDegradedValues(t *testing.T) {
	d := newDegradedFixture(t)
	// Healthy: nothing degraded, no degraded_values.
	code, body := d.post(t, "/v1/predict", degradedBody(10, "", ""))
	if a := decodeAnswer(t, code, body); a.Results[0].Degraded || a.Results[0].DegradedValues != nil {
		t.Fatalf("healthy stores: %s", body)
	}

	d.pauseUsers(t)
	const rows, want = 10, 2*10 - 1
	code, body = d.post(t, "/v1/predict", degradedBody(rows, `"debug": true`, ""))
	a := decodeAnswer(t, code, body)
	r := a.Results[0]
	if !r.Degraded || r.DegradedValues == nil || *r.DegradedValues != want || len(r.DegradedStores) != 1 || r.DegradedStores[0] != "users" {
		t.Fatalf("degraded answer: degraded %v, values %v, stores %v; want %d values of users", r.Degraded, r.DegradedValues, r.DegradedStores, want)
	}
	if n := storeDegradedCells(r.Debug); n != want {
		t.Errorf("%d debug cells say store_degraded, degraded_values %d", n, want)
	}
	if !strings.Contains(string(body), `"degraded":true,"degraded_values":19,"degraded_stores":["users"]`) {
		t.Errorf("degraded_values is not beside degraded: %.300s", body)
	}
	// Without debug, the same count.
	code, body = d.post(t, "/v1/predict", degradedBody(rows, "", ""))
	if r := decodeAnswer(t, code, body).Results[0]; r.DegradedValues == nil || *r.DegradedValues != want {
		t.Errorf("without debug: %s", body)
	}

	// /v1/features: one consumer feature, three rows.
	code, body = d.post(t, "/v1/features", `{"queries": [{"features": ["store_avg_rating", "consumer_order_count"], "context": {"consumer": "1"},
		"candidates": [{"entities": {"store": "1"}}, {"entities": {"store": "2"}}, {"entities": {"store": "3"}}]}]}`)
	fr := decodeAnswer(t, code, body).Results[0]
	if fr.DegradedValues == nil || *fr.DegradedValues != 3 || storeDegradedCells(fr.Rows) != 3 {
		t.Errorf("/v1/features: %s", body)
	}

	// The Go API.
	resp, err := d.srv.Predict(context.Background(), &PredictRequest{Queries: []Query{{
		Model: "store_ranker", Context: map[string]string{"consumer": "1"},
		Candidates: []Candidate{{Entities: map[string]string{"store": "4"}}, {Entities: map[string]string{"store": "5"}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.Results[0]; !r.Degraded() || r.DegradedValues != 4 {
		t.Errorf("Go API: stores %v, values %d, want 4", r.DegradedStores, r.DegradedValues)
	}

	// gRPC.
	client := seerv1.NewSeerClient(grpcClient(t, d.srv))
	pr, err := client.Predict(context.Background(), &seerv1.PredictRequest{Queries: []*seerv1.Query{{
		Model: "store_ranker", Context: map[string]string{"consumer": "1"},
		Candidates: []*seerv1.Candidate{{Entities: map[string]string{"store": "4"}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if r := pr.Results[0]; !r.Degraded || r.DegradedValues != 2 || len(r.DegradedStores) != 1 {
		t.Errorf("gRPC Predict: degraded %v, values %d, stores %v", r.Degraded, r.DegradedValues, r.DegradedStores)
	}
	gr, err := client.GetFeatures(context.Background(), &seerv1.GetFeaturesRequest{Queries: []*seerv1.FeaturesQuery{{
		Features: []string{"consumer_order_count", "consumer_avg_spend"}, Context: map[string]string{"consumer": "1"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if r := gr.Results[0]; !r.Degraded || r.DegradedValues != 2 {
		t.Errorf("gRPC GetFeatures: degraded %v, values %d", r.Degraded, r.DegradedValues)
	}

	// Per model: four predictions (two HTTP, the Go API, gRPC), their
	// values; the feature reads count only per store.
	if got := testutil.ToFloat64(d.srv.degradedBy.queries.WithLabelValues("store_ranker", "1")); got != 4 {
		t.Errorf("seer_predict_degraded_queries_total{store_ranker,1} = %v, want 4", got)
	}
	if got := testutil.ToFloat64(d.srv.degradedBy.values.WithLabelValues("store_ranker")); got != 2*want+4+2 {
		t.Errorf("seer_predict_degraded_values_total{store_ranker} = %v, want %d", got, 2*want+4+2)
	}
	if got := testutil.ToFloat64(d.srv.degraded.WithLabelValues("users")); got != 6 {
		t.Errorf("seer_predict_degraded_total{users} = %v, want 6", got)
	}
	if got := testutil.ToFloat64(d.srv.degraded.WithLabelValues("main")); got != 0 {
		t.Errorf("seer_predict_degraded_total{main} = %v, want 0", got)
	}
}

// TestOnDegradedFail: a query that asks for on_degraded fail, request-wide
// or for itself, gets 503 (gRPC UNAVAILABLE, the Go API ErrDegraded)
// naming the query and the store instead of defaults; a query's own
// setting overrides the request's; a query whose stores answer is not
// failed; unknown values are 400 naming the field.
func TestOnDegradedFail(t *testing.T) {
	d := newDegradedFixture(t)
	// Nothing degraded: fail changes nothing.
	code, body := d.post(t, "/v1/predict", degradedBody(3, `"on_degraded": "fail"`, ""))
	if a := decodeAnswer(t, code, body); a.Results[0].Degraded {
		t.Fatalf("healthy: %s", body)
	}
	d.pauseUsers(t)

	var eb struct {
		Error          string   `json:"error"`
		RequestID      string   `json:"request_id"`
		DegradedStores []string `json:"degraded_stores"`
	}
	for _, tt := range []struct {
		name, path, body string
		code             int
		msg              string // in the error
	}{
		{"request fail", "/v1/predict", degradedBody(3, `"on_degraded": "fail"`, ""), 503, "queries[0]: degraded: store users failed"},
		{"query fail", "/v1/predict", degradedBody(3, `"on_degraded": "defaults"`, `"on_degraded": "fail"`), 503, "queries[0]: degraded: store users"},
		{"query overrides", "/v1/predict", degradedBody(3, `"on_degraded": "fail"`, `"on_degraded": "defaults"`), 200, ""},
		{"default", "/v1/predict", degradedBody(3, "", ""), 200, ""},
		{"second query", "/v1/predict", `{"queries": [{"model": "store_ranker", "context": {"consumer": "1"}},
			{"model": "store_ranker", "context": {"consumer": "1"}, "on_degraded": "fail"}]}`, 503, "queries[1]: degraded: store users"},
		{"features fail", "/v1/features", `{"on_degraded": "fail", "queries": [{"features": ["consumer_order_count"], "context": {"consumer": "1"}}]}`,
			503, "queries[0]: degraded: store users"},
		{"features healthy store", "/v1/features", `{"on_degraded": "fail", "queries": [{"features": ["store_avg_rating"], "context": {"store": "1"}}]}`, 200, ""},
		{"unknown value", "/v1/predict", degradedBody(3, "", `"on_degraded": "maybe"`), 400, `queries[0].on_degraded: want "defaults" or "fail", got "maybe"`},
		{"unknown request value", "/v1/features", `{"on_degraded": "FAIL", "queries": [{"features": ["store_avg_rating"]}]}`, 400, `on_degraded: want "defaults" or "fail", got "FAIL"`},
		{"wrong type", "/v1/predict", `{"queries": [{"model": "store_ranker", "on_degraded": false}]}`, 400, "queries.on_degraded: want string, got JSON bool"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body := d.post(t, tt.path, tt.body)
			if code != tt.code {
				t.Fatalf("%d %s, want %d", code, body, tt.code)
			}
			if tt.code == 200 {
				if a := decodeAnswer(t, code, body); !a.Results[0].Degraded && tt.name != "features healthy store" {
					t.Errorf("not degraded: %s", body)
				}
				return
			}
			eb.DegradedStores = nil
			if err := json.Unmarshal(body, &eb); err != nil || !strings.HasPrefix(eb.Error, tt.msg) || eb.RequestID == "" {
				t.Errorf("error %s, want %q first (%v)", body, tt.msg, err)
			}
			if want := tt.code == 503; want != (len(eb.DegradedStores) == 1 && eb.DegradedStores[0] == "users") {
				t.Errorf("degraded_stores %v", eb.DegradedStores)
			}
		})
	}
	// A 503 the caller asked for is neither logged as a failure nor
	// always access-logged: its degraded line says it failed.
	if n := len(d.logs.lines(t, "request failed")); n != 0 {
		t.Errorf("%d 'request failed' lines for on_degraded fail", n)
	}
	if n := len(d.logs.lines(t, "access")); n != 0 {
		t.Errorf("%d access lines with sampling off", n)
	}

	// The Go API.
	_, err := d.srv.Features(context.Background(), &FeaturesRequest{Queries: []FeaturesQuery{
		{Features: []string{"store_avg_rating"}, Context: map[string]string{"store": "1"}},
		{Features: []string{"consumer_avg_spend"}, Context: map[string]string{"consumer": "1"}, OnDegraded: OnDegradedFail},
	}})
	var de *DegradedError
	if !errors.Is(err, ErrDegraded) || !errors.As(err, &de) || de.Query != 1 || len(de.Stores) != 1 || de.Stores[0] != "users" {
		t.Errorf("Go API: %v (%+v)", err, de)
	}
	if _, err := d.srv.Predict(context.Background(), &PredictRequest{OnDegraded: 3, Queries: []Query{{Model: "store_ranker"}}}); !errors.Is(err, ErrBadRequest) ||
		err.Error() != "on_degraded: unknown value 3" {
		t.Errorf("Go API, OnDegraded 3: %v", err)
	}

	// gRPC.
	client := seerv1.NewSeerClient(grpcClient(t, d.srv))
	q := func(od seerv1.OnDegraded) *seerv1.Query {
		return &seerv1.Query{Model: "store_ranker", Context: map[string]string{"consumer": "1"}, OnDegraded: od}
	}
	for _, tt := range []struct {
		name string
		req  *seerv1.PredictRequest
		code codes.Code
		msg  string
	}{
		{"request fail", &seerv1.PredictRequest{OnDegraded: seerv1.OnDegraded_ON_DEGRADED_FAIL, Queries: []*seerv1.Query{q(0)}},
			codes.Unavailable, "queries[0]: degraded: store users failed or missed the retrieval deadline"},
		{"query fail", &seerv1.PredictRequest{Queries: []*seerv1.Query{q(0), q(seerv1.OnDegraded_ON_DEGRADED_FAIL)}}, codes.Unavailable, "queries[1]: degraded: store users"},
		{"query defaults", &seerv1.PredictRequest{OnDegraded: seerv1.OnDegraded_ON_DEGRADED_FAIL, Queries: []*seerv1.Query{q(seerv1.OnDegraded_ON_DEGRADED_DEFAULTS)}}, codes.OK, ""},
		{"unknown", &seerv1.PredictRequest{Queries: []*seerv1.Query{q(9)}}, codes.InvalidArgument, "queries[0].on_degraded: unknown value 9"},
		{"unknown large", &seerv1.PredictRequest{Queries: []*seerv1.Query{q(0), q(1 << 20)}}, codes.InvalidArgument, "queries[1].on_degraded: unknown value 1048576"},
		{"unknown negative", &seerv1.PredictRequest{OnDegraded: -1, Queries: []*seerv1.Query{q(0)}}, codes.InvalidArgument, "on_degraded: unknown value -1"},
	} {
		resp, err := client.Predict(context.Background(), tt.req)
		if status.Code(err) != tt.code || (err != nil && !strings.HasPrefix(status.Convert(err).Message(), tt.msg)) {
			t.Errorf("gRPC %s: %v, want %v %q", tt.name, err, tt.code, tt.msg)
		}
		if err == nil && !resp.Results[0].Degraded {
			t.Errorf("gRPC %s: not degraded", tt.name)
		}
	}
	_, err = client.GetFeatures(context.Background(), &seerv1.GetFeaturesRequest{Queries: []*seerv1.FeaturesQuery{{
		Features: []string{"consumer_order_count"}, Context: map[string]string{"consumer": "1"}, OnDegraded: seerv1.OnDegraded_ON_DEGRADED_FAIL,
	}}})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "users") {
		t.Errorf("gRPC GetFeatures: %v", err)
	}
	if n := len(d.logs.lines(t, "access")) + len(d.logs.lines(t, "request failed")); n != 0 {
		t.Errorf("%d access or failure lines after gRPC's UNAVAILABLE for on_degraded", n)
	}

	// Failed predictions count as degraded queries of their model, but
	// their values served nobody.
	if got := testutil.ToFloat64(d.srv.degradedBy.queries.WithLabelValues("store_ranker", "1")); got < 5 {
		t.Errorf("seer_predict_degraded_queries_total = %v, want at least 5", got)
	}
	var failed, answered int
	for _, l := range d.logs.lines(t, "degraded") {
		switch l["answer"] {
		case "failed":
			failed++
		case "defaults":
			answered++
		}
	}
	if failed+answered == 0 {
		t.Error("no degraded lines")
	}
}

// TestDegradedStoreStopped: a store whose Redis is gone (connections
// refused, not slow) degrades the same values, and fails the queries that
// ask for it.
func TestDegradedStoreStopped(t *testing.T) {
	d := newDegradedFixture(t)
	d.users.Stop()
	code, body := d.post(t, "/v1/predict", degradedBody(6, "", ""))
	if r := decodeAnswer(t, code, body).Results[0]; r.DegradedValues == nil || *r.DegradedValues != 2*6-1 || len(r.DegradedStores) != 1 || r.DegradedStores[0] != "users" {
		t.Errorf("stopped store: %s", body)
	}
	code, body = d.post(t, "/v1/predict", degradedBody(6, "", `"on_degraded": "fail"`))
	if code != 503 || !strings.Contains(string(body), `"degraded_stores":["users"]`) {
		t.Errorf("stopped store, on_degraded fail: %d %s", code, body)
	}
}

// TestDegradedLog: degraded queries are logged with their model, version,
// stores, values and elapsed time, at most one line a second per model;
// the next line says how many were held back and their values.
func TestDegradedLog(t *testing.T) {
	d := newDegradedFixture(t)
	d.pauseUsers(t)
	const want = 2*4 - 1
	for range 5 {
		code, body := d.post(t, "/v1/predict", degradedBody(4, "", ""))
		decodeAnswer(t, code, body)
	}
	d.post(t, "/v1/features", `{"queries": [{"features": ["consumer_order_count"], "context": {"consumer": "1"}}]}`)
	lines := d.logs.lines(t, "degraded")
	if len(lines) != 2 {
		t.Fatalf("%d degraded lines in the same second for one model and /v1/features, want 2: %v", len(lines), lines)
	}
	l := lines[0]
	if l["level"] != "WARN" || l["endpoint"] != "predict" || l["model"] != "store_ranker" || l["version"] != "1" ||
		l["values"] != float64(want) || l["answer"] != "defaults" || l["suppressed"] != 0.0 || l["request_id"] == nil {
		t.Errorf("first line %v", l)
	}
	if st := l["stores"].([]any); len(st) != 1 || st[0] != "users" {
		t.Errorf("stores %v", l["stores"])
	}
	// The reads waited for the retrieval deadline.
	if e := l["elapsed_seconds"].(float64); e < 0.4 {
		t.Errorf("elapsed_seconds %v, want about the 0.5 s retrieval deadline", e)
	}
	if l := lines[1]; l["endpoint"] != "features" || l["model"] != nil || l["values"] != 1.0 {
		t.Errorf("features line %v", l)
	}

	// A second later: one line, with the four held back.
	d.clock = d.clock.Add(time.Second)
	d.logs.reset()
	code, body := d.post(t, "/v1/predict", degradedBody(4, `"on_degraded": "fail"`, ""))
	if code != 503 {
		t.Fatalf("%d %s", code, body)
	}
	lines = d.logs.lines(t, "degraded")
	if len(lines) != 1 || lines[0]["suppressed"] != 4.0 || lines[0]["suppressed_values"] != float64(4*want) || lines[0]["answer"] != "failed" {
		t.Errorf("lines a second later: %v", lines)
	}
}

// TestDegradedLogLimit: the limiter's arithmetic, per model.
func TestDegradedLogLimit(t *testing.T) {
	now := time.Unix(0, 0)
	l := degradedLog{now: func() time.Time { return now }, every: time.Second}
	type step struct {
		model      string
		advance    time.Duration
		values     int
		ok         bool
		suppressed int
		values0    int
	}
	for i, s := range []step{
		{"a", 0, 3, true, 0, 0},
		{"a", 500 * time.Millisecond, 5, false, 0, 0},
		{"b", 0, 1, true, 0, 0},
		{"a", 499 * time.Millisecond, 7, false, 0, 0},
		{"a", time.Millisecond, 2, true, 2, 12},
		{"a", time.Second, 2, true, 0, 0},
		{"b", 0, 4, true, 0, 0},
	} {
		now = now.Add(s.advance)
		ok, n, v := l.allow(s.model, s.values)
		if ok != s.ok || n != s.suppressed || v != s.values0 {
			t.Errorf("step %d: %v %d %d, want %v %d %d", i, ok, n, v, s.ok, s.suppressed, s.values0)
		}
	}
}

// TestCancelledNotDegraded: a caller that goes away while a store is
// stopped is counted as cancelled, not in any degraded metric or line.
func TestCancelledNotDegraded(t *testing.T) {
	d := newDegradedFixture(t)
	d.pauseUsers(t)
	h := d.srv.Handler()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel) // the retrieval budget is 500 ms
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/v1/predict", strings.NewReader(degradedBody(3, `"on_degraded": "fail"`, ""))).WithContext(ctx))
	if w.Code != statusClientClosed {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if got := testutil.ToFloat64(d.srv.cancelled); got != 1 {
		t.Errorf("cancelled %v", got)
	}
	if n := testutil.CollectAndCount(d.srv.degradedBy.queries) + testutil.CollectAndCount(d.srv.degradedBy.values) + testutil.CollectAndCount(d.srv.degraded); n != 0 {
		t.Errorf("%d degraded series after a cancelled query", n)
	}
	if n := len(d.logs.lines(t, "degraded")); n != 0 {
		t.Errorf("%d degraded lines", n)
	}
}
