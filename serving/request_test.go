package serving

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/registry"
)

// rankingQuery is rankingBody as a typed request, with the request
// features typed as a Go caller would write them: hour_of_day (an int
// input) as a float, distance_km (a float input) as a float.
func rankingQuery(debug bool) *PredictRequest {
	q := Query{
		ID: "q", Model: "store_ranker", Context: map[string]string{"consumer": "1"},
		Features: map[string]features.Value{"hour_of_day": features.FloatValue(19)},
	}
	for i := range 200 {
		q.Candidates = append(q.Candidates, Candidate{
			Entities: map[string]string{"store": fmt.Sprint(i)},
			Features: map[string]features.Value{"distance_km": features.FloatValue(float64(i%50) / 5)},
		})
	}
	return &PredictRequest{Debug: debug, Queries: []Query{q}}
}

// httpAnswer posts body to the handler and decodes the answer.
func httpAnswer(t *testing.T, srv *Server, path, body string) map[string]any {
	t.Helper()
	w := httptest.NewRecorder()
	srv.Handler().ServeHTTP(w, httptest.NewRequest("POST", path, strings.NewReader(body)))
	if w.Code != 200 {
		t.Fatalf("%s: %d %s", path, w.Code, w.Body)
	}
	var out map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPredictTyped requires the Go API to give the HTTP API's answer to
// the same 200-candidate query, score for score and cell for cell.
func TestPredictTyped(t *testing.T) {
	srv := testServer(t)
	want := httpAnswer(t, srv, "/v1/predict", rankingBody(true))["results"].([]any)[0].(map[string]any)
	resp, err := srv.Predict(context.Background(), rankingQuery(true))
	if err != nil {
		t.Fatal(err)
	}
	got := resp.Results[0]
	if got.ID != "q" || got.Model != "store_ranker" || got.Version != want["version"] || got.Outputs != 1 || got.Degraded() {
		t.Errorf("result %s %s@%s, %d outputs, degraded %v", got.ID, got.Model, got.Version, got.Outputs, got.DegradedStores)
	}
	wantScores := want["scores"].([]any)
	if len(got.Scores) != len(wantScores) {
		t.Fatalf("%d scores, want %d", len(got.Scores), len(wantScores))
	}
	for i, w := range wantScores {
		if got.Scores[i] != w.(float64) {
			t.Errorf("score %d: Go API %v, HTTP %v", i, got.Scores[i], w)
		}
	}
	wantDebug := want["debug"].([]any)
	if got.Debug == nil || got.Debug.Len() != len(wantDebug) {
		t.Fatalf("debug rows: got %+v, want %d", got.Debug, len(wantDebug))
	}
	for r, row := range wantDebug {
		for k, cell := range got.Debug.Row(r) {
			name := got.Debug.Inputs[k]
			b, _ := json.Marshal(cell)
			var gotCell any
			_ = json.Unmarshal(b, &gotCell)
			if diff := cmp.Diff(row.(map[string]any)[name], gotCell); diff != "" {
				t.Errorf("row %d %s: (-HTTP +Go API)\n%s", r, name, diff)
			}
		}
	}

	// Without debug, no rows.
	resp, err = srv.Predict(context.Background(), rankingQuery(false))
	if err != nil || resp.Results[0].Debug != nil {
		t.Errorf("without debug: %v, debug %v", err, resp.Results[0].Debug)
	}
}

// TestFeaturesTyped requires the Go API to give the HTTP API's values.
func TestFeaturesTyped(t *testing.T) {
	srv := testServer(t)
	body := `{"queries": [{"id": "f", "features": ["store_avg_rating", "consumer_avg_spend", "store_cuisine"], "context": {"consumer": 1},
	  "candidates": [{"entities": {"store": "3"}}, {"entities": {"store": "999"}}, {"entities": {"store": "4"}, "features": {"store_cuisine": "x"}}]}]}`
	want := httpAnswer(t, srv, "/v1/features", body)["results"].([]any)[0].(map[string]any)
	resp, err := srv.Features(context.Background(), &FeaturesRequest{Queries: []FeaturesQuery{{
		ID: "f", Features: []string{"store_avg_rating", "consumer_avg_spend", "store_cuisine"}, Context: map[string]string{"consumer": "1"},
		Candidates: []Candidate{
			{Entities: map[string]string{"store": "3"}}, {Entities: map[string]string{"store": "999"}},
			{Entities: map[string]string{"store": "4"}, Features: map[string]features.Value{"store_cuisine": features.StringValue("x")}},
		},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	got := resp.Results[0]
	rows := want["rows"].([]any)
	if got.ID != "f" || got.Rows.Len() != len(rows) {
		t.Fatalf("id %q, %d rows, want %d", got.ID, got.Rows.Len(), len(rows))
	}
	for r, row := range rows {
		for k, cell := range got.Rows.Row(r) {
			b, _ := json.Marshal(cell)
			var gotCell any
			_ = json.Unmarshal(b, &gotCell)
			if diff := cmp.Diff(row.(map[string]any)[got.Rows.Inputs[k]], gotCell); diff != "" {
				t.Errorf("row %d %s: (-HTTP +Go API)\n%s", r, got.Rows.Inputs[k], diff)
			}
		}
	}
	if c := got.Rows.Row(2)[2]; c.Source != features.FromRequest || c.Value.Str() != "x" {
		t.Errorf("request value: %+v", c)
	}
}

// TestTypedErrors checks the Go API's errors: the sentinel to test with
// errors.Is and a message naming the field.
func TestTypedErrors(t *testing.T) {
	srv := testServer(t)
	one := func(q Query) *PredictRequest { return &PredictRequest{Queries: []Query{q}} }
	tests := []struct {
		name     string
		req      *PredictRequest
		sentinel error
		want     string
	}{
		{"no queries", &PredictRequest{}, ErrBadRequest, "queries: none given"},
		{"too many queries", &PredictRequest{Queries: make([]Query, 65)}, ErrBadRequest, "queries: more than the limit of 64"},
		{"too many candidates", one(Query{Model: "store_ranker", Candidates: make([]Candidate, 1001)}), ErrBadRequest, "queries[0].candidates: more than the limit of 1000"},
		{"no model", one(Query{}), ErrBadRequest, "queries[0].model: missing"},
		{"unknown model", one(Query{Model: "nope"}), registry.ErrUnknownModel, `queries[0].model: unknown model "nope"`},
		{"unknown version", one(Query{Model: "store_ranker@9"}), registry.ErrUnknownVersion, `unknown model version "9"`},
		{"unknown entity", one(Query{Model: "store_ranker", Context: map[string]string{"shop": "1"}}), features.ErrQuery, `unknown entity type "shop"`},
		{"empty id", one(Query{Model: "store_ranker", Candidates: []Candidate{{}, {Entities: map[string]string{"store": ""}}}}), ErrBadRequest,
			"queries[0].candidates[1].entities.store: want a non-empty id"},
		{"wrong type", one(Query{Model: "store_ranker", Features: map[string]features.Value{"store_cuisine": features.IntValue(3)}}), ErrBadRequest,
			"queries[0].features.store_cuisine: want string, got number 3"},
		{"fractional int", one(Query{Model: "store_ranker", Candidates: []Candidate{{Features: map[string]features.Value{"hour_of_day": features.FloatValue(1.5)}}}}), ErrBadRequest,
			"queries[0].candidates[0].features.hour_of_day: want int, got number 1.5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := srv.Predict(context.Background(), tt.req)
			if err == nil || !errors.Is(err, tt.sentinel) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %v with %q", err, tt.sentinel, tt.want)
			}
			if c := classify(err); c == classInternal {
				t.Errorf("%v maps to an internal error", err)
			}
		})
	}
	_, err := srv.Features(context.Background(), &FeaturesRequest{Queries: []FeaturesQuery{{Features: []string{"nope"}}}})
	if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "queries[0].features") {
		t.Errorf("unknown feature: %v", err)
	}
	// Values a Go caller gives as another number type are converted; names
	// the model does not read and invalid values are ignored.
	resp, err := srv.Predict(context.Background(), one(Query{Model: "store_ranker", Debug: true, Features: map[string]features.Value{
		"hour_of_day": features.FloatValue(7), "distance_km": features.IntValue(2), "unread": features.StringValue("x"), "store_avg_rating": {},
	}}))
	if err != nil {
		t.Fatal(err)
	}
	row := resp.Results[0].Debug.Row(0)
	for k, name := range resp.Results[0].Debug.Inputs {
		c := row[k]
		switch name {
		case "hour_of_day":
			if c.Value.Type() != features.Int || c.Value.Int() != 7 {
				t.Errorf("hour_of_day: %v", c.Value)
			}
		case "distance_km":
			if c.Value.Type() != features.Float || c.Value.Float() != 2 {
				t.Errorf("distance_km: %v", c.Value)
			}
		case "store_avg_rating":
			if c.Source != features.FromDefault {
				t.Errorf("store_avg_rating: %+v", c)
			}
		}
	}
}
